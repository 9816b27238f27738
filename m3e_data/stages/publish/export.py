"""Export m3e-hq / m3e-hq-with-score in the layouts that training tools read directly.

- uniem: Parquet with uniem's record columns, which uniem infers the record type from: `text, text_pos`
  (pair), `text, text_pos, text_neg` (triplet; uniem takes one negative, we give the first, hardest one)
  and, for mined data, `sentence1, sentence2, label` (scored pair; label = the encoder score) for CoSENT.
  Files: <source>/<split>-pair.parquet, -triplet.parquet, -scored_pair.parquet.
- sentence-transformers: a dataset folder `datasets.load_dataset(folder, CONFIG)` reads, one config per
  column layout, named as the Hub's sentence-transformers datasets name theirs: `pair` (anchor, positive),
  `pair-score` (anchor, positive, score: mined data without negatives), `triplet` (anchor, positive,
  negative) and `n-tuple-N` (anchor, positive, negative_1..negative_N, the form `mine_hard_negatives`
  writes); mined data adds `scores` = [positive score, negative scores...] to rows with negatives. A
  dataset needs the same columns on every row, so rows are grouped by their negative count (capped by
  max_negatives; what lies beyond is counted) rather than cut to the fewest. Each layout is one config over
  all sources and one per source (`<source>-<layout>`, for one-source-per-batch training); README.md
  declares them in its `configs:` metadata and says which loss suits each.
  Files: <source>/<split>-<layout>.parquet, README.md.
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
import yaml

from m3e_data.catalog import load_catalog
from m3e_data.commercial import row_problems
from m3e_data.manifest import read_manifest
from m3e_data.stages.publish.hub_stage import input_sources, select_rows, split_groups
from m3e_data.storage.ownership import ForeignFiles, check_replaceable
from m3e_data.storage.store import atomic_write_text, iter_batches, parquet_files, staged_folder

FORMATS = ("uniem", "sentence-transformers", "flagembedding")
READ_BATCH_ROWS = 50_000
OWNER = "export"  # the marker name of an export folder (m3e_data.storage.ownership)


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


def st_layout(negatives: int, scored: bool) -> str:
    """The config a row with `negatives` negatives goes to."""
    if negatives == 0:
        return "pair-score" if scored else "pair"
    return "triplet" if negatives == 1 else f"n-tuple-{negatives}"


def st_columns(layout: str, scored: bool) -> list[str]:
    """The columns of a layout, in the order the trainer reads them (positionally; `score`/`scores` are the
    label)."""
    if layout in ("pair", "pair-score"):
        return ["anchor", "positive", *(["score"] if layout == "pair-score" else [])]
    n = 1 if layout == "triplet" else int(layout.rsplit("-", 1)[1])
    negatives = ["negative"] if n == 1 else [f"negative_{i}" for i in range(1, n + 1)]
    return ["anchor", "positive", *negatives, *(["scores"] if scored else [])]


# Which sentence-transformers losses fit each layout (README.md of the export).
ST_LOSSES = {
    "pair": "MultipleNegativesRankingLoss (or its Cached/GIST variants): the other rows' positives are the "
            "negatives",
    "pair-score": "CoSENTLoss or AnglELoss (`score`, the mining encoder's similarity, is the label); "
                  "MultipleNegativesRankingLoss ignores it",
    "triplet": "MultipleNegativesRankingLoss: the hard negative joins the in-batch candidates",
    "n-tuple": "MultipleNegativesRankingLoss: the hard negatives join the in-batch candidates",
    "scores": "; with `scores` ([positive, negatives...] by the mining encoder, the label): DistillKLDivLoss",
}


def to_sentence_transformers(table: pa.Table, scored: bool, max_negatives: int | None = None) -> dict[str, pa.Table]:
    """Rows grouped by layout (st_layout of their negative count, at most `max_negatives`)."""
    if scored:
        _check_scores(table)
    counts = _counts(table).to_numpy(zero_copy_only=False)
    if max_negatives is not None:
        counts = np.minimum(counts, max_negatives)
    out = {}
    for n in np.unique(counts).tolist():
        rows = table.filter(pa.array(counts == n))
        layout = st_layout(n, scored)
        names = st_columns(layout, scored)
        columns = {"anchor": rows["query"], "positive": rows["positive"]}
        if n == 0 and scored:
            columns["score"] = rows["positive_score"]
        for i, name in enumerate(names[2:2 + n]):
            columns[name] = pc.list_element(rows["negatives"], i)
        if n and scored:
            negs = pc.list_flatten(pc.list_slice(rows["negative_scores"], 0, n)).to_numpy(zero_copy_only=False)
            pos = rows["positive_score"].to_numpy()
            flat = np.column_stack([pos, negs.reshape(-1, n)]).astype(np.float32).ravel()
            offsets = np.arange(0, flat.size + 1, n + 1, dtype=np.int32)
            columns["scores"] = pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat))
        out[layout] = pa.table(columns)
    return out


def st_readme(parts: dict[tuple[str, str, str], str], rows: Counter, scored: bool) -> str:
    """README.md of a sentence-transformers export: `configs:` metadata (the Hub's convention, which
    `load_dataset(folder, CONFIG)` reads) and what each config holds and suits.

    `parts`: (source, split, layout) -> file; `rows`: file -> rows.
    """
    layouts = sorted({layout for _, _, layout in parts}, key=_layout_order)
    configs: list[tuple[str, str, list[tuple[str, str, str]]]] = [  # (name, layout, parts)
        (layout, layout, [k for k in parts if k[2] == layout]) for layout in layouts
    ]
    for source in sorted({k[0] for k in parts}):
        configs += [(f"{source}-{layout}", layout, keys) for layout in layouts
                    if (keys := [k for k in parts if k[0] == source and k[2] == layout])]
    total = {name: sum(rows[parts[k]] for k in keys) for name, _, keys in configs}
    default = max(layouts, key=lambda lay: total[lay]) if layouts else None
    meta = []
    for name, _, keys in configs:
        splits: dict[str, list[str]] = {}
        for key in sorted(keys):
            splits.setdefault(key[1], []).append(parts[key])
        meta.append({"config_name": name, "data_files": [{"split": k, "path": v} for k, v in sorted(splits.items())],
                     **({"default": True} if name == default else {})})
    front = yaml.safe_dump({"configs": meta, "tags": ["sentence-transformers"]}, allow_unicode=True, sort_keys=False)
    lines = [
        "---", front.rstrip("\n"), "---", "",
        "# sentence-transformers export of m3e-data", "",
        "A dataset needs the same columns on every row, so rows are grouped by how many hard negatives they "
        "have: one config per column layout over all sources, and one per source and layout "
        "(`<source>-<layout>`) for training with one source per batch. The trainer reads the columns in order; "
        "`score`/`scores` is the label.", "",
        "```python",
        "from datasets import load_dataset",
        f'train = load_dataset("PATH_TO_THIS_FOLDER", "{default}", split="train")',
        "```", "",
        "| config | columns | rows | loss |", "|---|---|---:|---|",
    ]
    for layout in layouts:
        loss = ST_LOSSES["n-tuple" if layout.startswith("n-tuple") else layout]
        if scored and layout not in ("pair", "pair-score"):
            loss += ST_LOSSES["scores"]
        columns = ", ".join(f"`{c}`" for c in st_columns(layout, scored))
        lines.append(f"| `{layout}` | {columns} | {total[layout]:,} | {loss} |")
    lines += ["", "Per source (the columns and losses of its layout):", "", "| config | rows |", "|---|---:|"]
    lines += [f"| `{name}` | {total[name]:,} |" for name, layout, _ in configs if name != layout]
    return "\n".join([*lines, ""])


def _layout_order(layout: str) -> tuple[int, str]:
    order = {"pair": 0, "pair-score": 1, "triplet": 2}
    return (order[layout], "") if layout in order else (3, layout.rsplit("-", 1)[1].zfill(6))


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


def _scored(parts: list[Path]) -> bool:
    """Whether every row of a source is scored (mined): then the formats carry the scores."""
    rows = 0
    for part in parts:
        for batch in iter_batches(part, READ_BATCH_ROWS, ["positive_score"]):
            rows += batch.num_rows
            if batch.column(0).null_count:
                return False
    return rows > 0


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
    so, m3e_data.storage.ownership): anything else would be deleted, so it is refused and named.
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
    st_parts: dict[tuple[str, str, str], str] = {}
    scored_sources = {src.name: _scored(parquet_files(src)) for src in sources}
    # A config is one column set over every source: scores go in only when every source has them.
    st_scored = all(scored_sources.values())
    with staged_folder(out, OWNER) as tmp:
        sinks = _Sinks(tmp)
        try:
            for src in sources:
                parts = parquet_files(src)
                scored = scored_sources[src.name]
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
                                if max_negatives is not None:
                                    result.negatives_dropped += int(pc.sum(pc.max_element_wise(
                                        pc.subtract(_counts(rows), max_negatives), 0)).as_py() or 0)
                                tables = to_sentence_transformers(rows, st_scored, max_negatives)
                            else:
                                tables = to_flagembedding(rows, scored)
                            for kind, table in tables.items():
                                rel = _path(fmt, src.name, split, kind)
                                sinks.write(rel, table)
                                result.files[rel] += table.num_rows
                                if table.num_rows:
                                    st_parts[(src.name, split, kind)] = rel
        finally:
            sinks.close()
        if fmt == "sentence-transformers":
            atomic_write_text(tmp / "README.md", st_readme(st_parts, result.files, st_scored))
    result.files = Counter({k: v for k, v in result.files.items() if v})
    return result
