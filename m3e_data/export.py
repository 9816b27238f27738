"""Export m3e-hq / m3e-hq-with-score in the layouts that training tools read directly.

- uniem: Parquet with uniem's record columns, which uniem infers the record type from: `text, text_pos`
  (pair), `text, text_pos, text_neg` (triplet; uniem takes one negative, we give the first, hardest one)
  and, for mined data, `sentence1, sentence2, label` (scored pair; label = the encoder score) for CoSENT.
  Files: <source>/<split>-pair.parquet, -triplet.parquet, -scored_pair.parquet.
- sentence-transformers: Parquet in the n-tuple form `mine_hard_negatives` writes: `anchor, positive,
  negative_1..negative_n` plus, for mined data, `scores` = [positive score, negative scores...] (a label
  column the trainer hands to distillation losses). A dataset needs the same columns on every row, so n
  is the fewest negatives any row of that file has (cap it with max_negatives) and rows without
  negatives go to a separate `anchor, positive[, score]` file.
  Files: <source>/<split>-ntuple.parquet, <source>/<split>-pair.parquet.
- flagembedding: JSONL with `query, pos, neg` and, for mined data, `pos_scores, neg_scores` (used for
  knowledge distillation). FlagEmbedding reads every .jsonl file of the folder it is given, each as its
  own dataset, and needs negatives on every row: <source>-<split>.jsonl at the top, rows without
  negatives in no_negatives/<source>-<split>.jsonl (not read unless named).

Converters are pure functions over Arrow tables; `export` is the driver (files, atomic output folder).

A commercial-only export (`commercial_only`, or data whose build was commercial-only, as its
build-manifest.json says) keeps only rows flagged commercial and re-checks every row it writes with the
check `push --commercial-only` makes; one row that fails it refuses the whole export.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from m3e_data.catalog import load_catalog
from m3e_data.commercial import row_problems
from m3e_data.hub_stage import input_sources, select_rows, split_groups
from m3e_data.manifest import read_manifest
from m3e_data.ownership import ForeignFiles, check_replaceable
from m3e_data.store import iter_batches, parquet_files, staged_folder

FORMATS = ("uniem", "sentence-transformers", "flagembedding")
READ_BATCH_ROWS = 50_000
OWNER = "export"  # the marker name of an export folder (m3e_data.ownership)


class ExportError(ValueError):
    """The data cannot be exported in the asked format (e.g. scores that do not match the negatives)."""


@dataclass
class ExportResult:
    out: Path
    files: Counter = field(default_factory=Counter)  # relative path -> rows
    negatives_dropped: int = 0  # negatives beyond the per-file count a fixed-column format can hold


def _counts(table: pa.Table) -> pa.Array:
    return pc.fill_null(pc.list_value_length(table["negatives"]), 0)


def _with_negatives(table: pa.Table) -> tuple[pa.Table, pa.Table]:
    has = pc.greater(_counts(table), 0)
    return table.filter(has), table.filter(pc.invert(has))


def _check_scores(table: pa.Table) -> None:
    if table["positive_score"].null_count:
        raise ExportError("scored export: some rows have no positive_score")
    if not pc.all(pc.equal(pc.fill_null(pc.list_value_length(table["negative_scores"]), 0), _counts(table))).as_py():
        raise ExportError("scored export: negative_scores and negatives differ in length on some rows")


def _list_of_one(values: pa.ChunkedArray | pa.Array) -> pa.Array:
    values = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    return pa.ListArray.from_arrays(pa.array(np.arange(len(values) + 1, dtype=np.int32)), values)


def to_uniem(table: pa.Table, scored: bool) -> dict[str, pa.Table]:
    with_neg, without = _with_negatives(table)
    out = {
        "pair": pa.table({"text": without["query"], "text_pos": without["positive"]}),
        "triplet": pa.table(
            {
                "text": with_neg["query"],
                "text_pos": with_neg["positive"],
                "text_neg": pc.list_element(with_neg["negatives"], 0),
            }
        ),
    }
    if scored:
        _check_scores(table)
        negatives = pc.list_flatten(table["negatives"])
        parents = pc.list_parent_indices(table["negatives"])
        out["scored_pair"] = pa.concat_tables(
            [
                pa.table(
                    {"sentence1": table["query"], "sentence2": table["positive"], "label": table["positive_score"]}
                ),
                pa.table(
                    {
                        "sentence1": pc.take(table["query"], parents),
                        "sentence2": negatives,
                        "label": pc.list_flatten(table["negative_scores"]),
                    }
                ),
            ]
        )
    return out


def to_sentence_transformers(table: pa.Table, n: int, scored: bool) -> dict[str, pa.Table]:
    """`n` negatives per n-tuple row (every row with negatives has at least `n`)."""
    if scored:
        _check_scores(table)
    with_neg, without = _with_negatives(table) if n > 0 else (table.slice(0, 0), table)
    pair = {"anchor": without["query"], "positive": without["positive"]}
    if scored:
        pair["score"] = without["positive_score"]
    out = {"pair": pa.table(pair)}
    if n > 0:
        columns = {"anchor": with_neg["query"], "positive": with_neg["positive"]}
        for i in range(n):
            columns[f"negative_{i + 1}"] = pc.list_element(with_neg["negatives"], i)
        if scored and with_neg.num_rows:
            negs = pc.list_flatten(pc.list_slice(with_neg["negative_scores"], 0, n)).to_numpy(zero_copy_only=False)
            pos = with_neg["positive_score"].to_numpy()
            flat = np.column_stack([pos, negs.reshape(-1, n)]).astype(np.float32).ravel()
            offsets = np.arange(0, flat.size + 1, n + 1, dtype=np.int32)
            columns["scores"] = pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat))
        elif scored:
            columns["scores"] = pa.array([], pa.list_(pa.float32()))
        out["ntuple"] = pa.table(columns)
    return out


def to_flagembedding(table: pa.Table, scored: bool) -> dict[str, pa.Table]:
    if scored:
        _check_scores(table)
    out = {}
    for kind, rows in zip(("", "no_negatives"), _with_negatives(table), strict=True):
        columns = {"query": rows["query"], "pos": _list_of_one(rows["positive"]), "neg": rows["negatives"]}
        if scored:
            columns["pos_scores"] = _list_of_one(rows["positive_score"])
            columns["neg_scores"] = rows["negative_scores"]
        out[kind] = pa.table(columns)
    return out


def _path(fmt: str, source: str, split: str, kind: str) -> str:
    if fmt == "flagembedding":
        return f"{kind}/{source}-{split}.jsonl" if kind else f"{source}-{split}.jsonl"
    return f"{source}/{split}-{kind}.parquet"


class _Sinks:
    """One open file per output path, Parquet or JSONL by suffix; a file is created by its first rows."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.parquet: dict[str, pq.ParquetWriter] = {}
        self.jsonl: dict[str, IO[bytes]] = {}

    def write(self, rel: str, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        path = self.folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if rel.endswith(".jsonl"):
            if rel not in self.jsonl:
                self.jsonl[rel] = path.open("wb")
            pl.from_arrow(table).write_ndjson(self.jsonl[rel])
        else:
            if rel not in self.parquet:
                self.parquet[rel] = pq.ParquetWriter(path, table.schema, compression="zstd")
            self.parquet[rel].write_table(table)

    def close(self) -> None:
        for writer in self.parquet.values():
            writer.close()
        for fh in self.jsonl.values():
            fh.close()


def _profile(parts: list[Path]) -> tuple[dict[str, int], bool]:
    """Per split, the fewest negatives among rows that have some; and whether every row is scored."""
    fewest: dict[str, int] = {}
    scored, rows = True, 0
    batches = (
        pa.Table.from_batches([b])
        for part in parts
        for b in iter_batches(part, READ_BATCH_ROWS, ["split", "negatives", "positive_score"])
    )
    for table in batches:  # batch by batch: the negatives column of a whole part can take gigabytes
        rows += table.num_rows
        scored = scored and table["positive_score"].null_count == 0
        counts = table.append_column("n", _counts(table)).filter(pc.field("n") > 0)
        for row in counts.group_by("split").aggregate([("n", "min")]).to_pylist():
            fewest[row["split"]] = min(fewest.get(row["split"], row["n_min"]), row["n_min"])
    return fewest, scored and rows > 0


def built_commercial_only(data_dir: Path) -> bool:
    """Whether the build that made `data_dir` (OUT/m3e-hq or OUT/m3e-hq-with-score) was commercial-only."""
    stages = read_manifest(data_dir.parent).get("stages", {})
    return bool(stages.get("hq", {}).get("commercial_only")
                or (stages.get("normalize", {}).get("options") or {}).get("commercial_only"))


def export(
    data_dir: Path, fmt: str, out: Path, *, max_negatives: int | None = None, commercial_only: bool = False
) -> ExportResult:
    """Write every source of `data_dir` in `fmt` into `out` (replaced atomically when done).

    `out` must be new, empty or an earlier export holding only what that export wrote (its marker says
    so, m3e_data.ownership): anything else would be deleted, so it is refused and named.
    `commercial_only` keeps only commercial rows; with it, or when the data's build was commercial-only,
    every written row is re-checked and any that fails refuses the export (nothing is written).
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if max_negatives is not None and max_negatives < 0:
        raise ExportError(f"max_negatives must be >= 0, got {max_negatives}")
    sources = input_sources(data_dir)
    try:
        check_replaceable(out, OWNER)
    except ForeignFiles as exc:
        raise ExportError(str(exc)) from None
    check = commercial_only or built_commercial_only(data_dir)
    catalog = load_catalog() if check else {}
    result = ExportResult(out)
    with staged_folder(out, OWNER) as tmp:
        sinks = _Sinks(tmp)
        try:
            for src in sources:
                parts = parquet_files(src)
                fewest, scored = _profile(parts)
                for part in parts:
                    for batch in iter_batches(part, READ_BATCH_ROWS):
                        table = select_rows(batch, commercial_only=commercial_only)
                        if check:
                            problems = row_problems(table, part.relative_to(data_dir).as_posix(), catalog)
                            if problems:
                                raise ExportError("refusing a commercial-only export; nothing was written:\n  "
                                                  + "\n  ".join(problems[:20]))
                        for split, rows in split_groups(table):
                            if fmt == "uniem":
                                tables = to_uniem(rows, scored)
                            elif fmt == "sentence-transformers":
                                n = fewest.get(split, 0)
                                n = n if max_negatives is None else min(n, max_negatives)
                                result.negatives_dropped += int(
                                    pc.sum(pc.max_element_wise(pc.subtract(_counts(rows), n), 0)).as_py() or 0
                                )
                                tables = to_sentence_transformers(rows, n, scored)
                            else:
                                tables = to_flagembedding(rows, scored)
                            for kind, table in tables.items():
                                rel = _path(fmt, src.name, split, kind)
                                sinks.write(rel, table)
                                result.files[rel] += table.num_rows
        finally:
            sinks.close()
    result.files = Counter({k: v for k, v in result.files.items() if v})
    return result
