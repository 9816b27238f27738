"""zhuiyi_nl2sql: question -> SQL string, train + validation.

M3E's rule: one pair per question, train + val (test not counted): 41,522 + 4,396 = 45,918 pairs. About
three paraphrased questions share one SQL string. Two layouts:

- luge's NL2SQL.zip: train.json / dev.json, JSON arrays like DuSQL with the SQL string in `query`
  (`sql_query` in older files), read directly.
- GitHub ZhuiyiTechnology/TableQA: train/train.json + train.tables.json, val/val.json + val.tables.json,
  JSON lines. A question holds `table_id` and `sql {sel, agg, cond_conn_op, conds}` (column indices and
  codes); the SQL string is built from it and the table's `header`, e.g.
  `SELECT MAX(票价) FROM Table_9ab1 WHERE 城市 == "杭州" and 座位数 > 100` (text values quoted, numbers not).

One canonical SQL string whatever the layout: wherever a row holds the structured `sql` and its table is
known, the string is built from them (luge rows carry both, and their own SQL text is written differently
from TableQA's); a row with only a SQL string keeps it. Tables are looked up in `<questions>.tables.json`
beside each question file, whichever layout matched. A question file whose rows need tables but has no
tables file beside it is an error naming every such file, not a split of `unknown_table` drops.
"""

from pathlib import Path

from m3e_recipes.dusql import sql_pair

from m3e_data.recipe import Pair, Skip
from m3e_data.stages.normalize.locate import SourceMissing
from m3e_data.stages.normalize.readers import BadRow, iter_json

AGG = ("", "AVG", "MAX", "MIN", "COUNT", "SUM")
OPS = (">", "<", "==", "!=")
CONN = ("and", "and", "or")  # 0 means "one condition or none": join with "and" if ever needed
TABLES_SUFFIX = ".tables.json"


def _load_tables(path: Path) -> dict[str, dict]:
    """table id -> the table's name, header and column types (rows are not kept)."""
    tables = {}
    for row in iter_json(path):
        if isinstance(row, dict) and "id" in row and isinstance(row.get("header"), list):
            tables[row["id"]] = {k: row.get(k) for k in ("id", "name", "header", "types")}
    return tables


def _tables_file(path: Path) -> Path:
    return path.with_name(path.stem + TABLES_SUFFIX)


def _question_files(located, split) -> list[Path]:
    paths = (located.local_path(name) for name in located.files[split])
    return [p for p in paths if not p.name.endswith(TABLES_SUFFIX)]


def _missing_tables(located) -> str:
    missing = [
        str(_tables_file(p)) for split in located.splits for p in _question_files(located, split)
        if not _tables_file(p).is_file()
    ]
    return (
        f"{located.source.name}: the questions' SQL is built from their tables, but these tables files are "
        f"missing: {', '.join(missing)}; put each beside its question file (TableQA ships them together)"
    )


def read(located, split, ctx):
    for path in _question_files(located, split):
        side = _tables_file(path)
        tables = _load_tables(side) if side.is_file() else None
        for row in iter_json(path):
            if not isinstance(row, BadRow) and _structured(row):
                if tables is None and not _has_sql_string(row):
                    raise SourceMissing(_missing_tables(located))
                row["_table"] = None if tables is None else tables.get(row.get("table_id"))
            yield row


def _structured(row):
    """A TableQA-style question: `table_id` and `sql {sel, agg, conds}` (luge rows have them too)."""
    sql = row.get("sql")
    return "table_id" in row and isinstance(sql, dict) and {"sel", "agg", "conds"} <= sql.keys()


def _has_sql_string(row):
    return "query" in row or "sql_query" in row


def _column(header, index):
    if not 0 <= index < len(header):
        raise IndexError(f"column {index} of {len(header)}")
    return header[index]


def _value(value, kind):
    return str(value) if kind == "real" else '"' + str(value).replace('"', '\\"') + '"'


def build_sql(sql, table):
    """The SQL string of a TableQA `sql` dict over `table` (its header names the columns)."""
    header, types = table["header"], table.get("types") or []
    selected = []
    for column, agg in zip(sql["sel"], sql["agg"], strict=True):
        name = _column(header, column)
        selected.append(f"{AGG[agg]}({name})" if AGG[agg] else name)
    text = f"SELECT {', '.join(selected)} FROM {table.get('name') or 'Table_' + str(table['id'])}"
    conds = sql.get("conds") or []
    if conds:
        parts = [
            f"{_column(header, c)} {OPS[op]} {_value(v, types[c] if c < len(types) else 'text')}"
            for c, op, v in conds
        ]
        text += " WHERE " + f" {CONN[sql.get('cond_conn_op') or 0]} ".join(parts)
    return text


def to_pairs(row, ctx):
    table = row.get("_table")
    if table is not None:
        yield Pair(row["question"], build_sql(row["sql"], table))
    elif _has_sql_string(row):
        yield sql_pair(row)  # ids are positions: luge's question_id is not documented as unique
    else:
        raise Skip("unknown_table")
