"""Training rows: read a build's m3e-hq / m3e-hq-with-score (or the Hub dataset), select, hold out, shape.

Everything here is Arrow in, Arrow out, and imports neither torch nor transformers: `m3e-data train --help`
must work without the training extra. The datasets library is imported only where a Hub id is read.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from m3e_data.catalog import load_catalog
from m3e_data.commercial import row_problems
from m3e_data.schema import COLUMNS, EVAL_SPLITS, conform
from m3e_data.storage.store import SUCCESS, parquet_files, read_success

# The build stages train/ can read, most refined first: the one with mined negatives and scores wins
# when a build folder holds both.
STAGES = ("m3e-hq-with-score", "m3e-hq")

# What a source trains as; decided per source from what its rows carry (see `training_kind`).
PAIRS, NEGATIVES, SCORED, DISTILL = "pairs", "negatives", "scored", "distill"
LOSSES = ("auto", "infonce", "cosent", "distill")
# What --loss auto means. InfoNCE with the hard negatives for every source, mined or not (what BGE and E5
# do with mined negatives); CoSENT on the miner's own cosines would leave them unused as negatives. The
# ablation (benchmarks/bench_quality.py, README "Data quality") found CoSENT clearly worse and nothing better.
AUTO_LOSS = "infonce"
# A source's rows without negatives form a second training set named <source>__pairs, and rows with
# fewer hard negatives than most form <source>__neg<k> (names must be valid dataset split names, so no
# slash).
PAIRS_SUFFIX = "__pairs"
NEG_SUFFIX = "__neg"
# A group of rows with one number of negatives smaller than this joins the next smaller group (its rows
# truncated to that number), so that a source does not splinter into sets too small to fill a batch.
MIN_BUCKET_ROWS = 256


@dataclass
class SourceRows:
    """One source's rows after selection, split into training rows and a held-out evaluation sample."""

    name: str
    train: pa.Table
    heldout: pa.Table
    license: str
    commercial: bool
    task: str
    dropped: Counter[str] = field(default_factory=Counter)


@dataclass
class TrainData:
    origin: str  # the folder or Hub id the rows came from
    stage: str  # m3e-hq or m3e-hq-with-score ("hub" when unknown)
    sources: dict[str, SourceRows]
    skipped: dict[str, str] = field(default_factory=dict)  # source -> why it was not used


def locate_stage(path: Path) -> tuple[Path, str]:
    """The folder that holds one sub-folder per source, and the stage's name.

    PATH may be the build root (OUT/, holding m3e-hq/ and maybe m3e-hq-with-score/) or a stage folder
    itself. A build root with both stages trains on m3e-hq-with-score: it is m3e-hq plus mined negatives.
    """
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such folder")
    for stage in STAGES:
        if (path / stage).is_dir():
            return path / stage, stage
    if any(parquet_files(sub) for sub in path.iterdir() if sub.is_dir()):
        return path, path.name if path.name in STAGES else "local"
    raise FileNotFoundError(
        f"{path}: neither a build folder (with {' or '.join(STAGES)}/) nor a folder of <source>/part-*.parquet"
    )


def read_local(
    path: Path, *, sources: list[str] | None = None, commercial_only: bool = False
) -> tuple[dict[str, pa.Table], dict[str, str], str]:
    """Tables per source from a stage folder, and the sources skipped with the reason."""
    folder, stage = locate_stage(path)
    tables: dict[str, pa.Table] = {}
    skipped: dict[str, str] = {}
    available = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    _check_requested(sources, available)
    for name in available:
        if sources is not None and name not in sources:
            continue
        sub = folder / name
        # A folder without _SUCCESS.json is a stage that was killed mid-write: never trust it.
        if (sub / SUCCESS).exists() and read_success(sub) is None:
            skipped[name] = "unreadable _SUCCESS.json, or parts it lists are missing or damaged"
            continue
        if not (sub / SUCCESS).exists():
            skipped[name] = "unfinished (no _SUCCESS.json)"
            continue
        files = parquet_files(sub)
        if not files:
            skipped[name] = "no part-*.parquet"
            continue
        table = conform(pa.concat_tables(pq.read_table(f) for f in files))
        tables[name] = table
    tables = _filter_commercial(tables, skipped, commercial_only)
    return tables, skipped, stage


def read_hub(
    repo_id: str,
    *,
    sources: list[str] | None = None,
    commercial_only: bool = False,
    revision: str | None = None,
    cache_dir: str | None = None,
) -> tuple[dict[str, pa.Table], dict[str, str], str]:
    """Tables per source from a published dataset: one config per source, plus `all`, which is skipped."""
    import datasets

    configs = [c for c in datasets.get_dataset_config_names(repo_id, revision=revision) if c != "all"]
    _check_requested(sources, configs)
    tables: dict[str, pa.Table] = {}
    skipped: dict[str, str] = {}
    for name in configs:
        if sources is not None and name not in sources:
            continue
        # Every split but the evaluation ones, as a local build folder reads every part: a source whose
        # rows come in other splits than "train" is not lost.
        splits = [s for s in datasets.get_dataset_split_names(repo_id, name, revision=revision)
                  if s not in EVAL_SPLITS]
        if not splits:
            skipped[name] = f"only evaluation splits ({', '.join(EVAL_SPLITS)}) on the Hub"
            continue
        parts = [
            datasets.load_dataset(repo_id, name, split=split, revision=revision, cache_dir=cache_dir).data.table
            for split in splits
        ]
        tables[name] = conform(pa.concat_tables([conform(t) for t in parts]))
    tables = _filter_commercial(tables, skipped, commercial_only)
    return tables, skipped, "hub"


def _check_requested(sources: list[str] | None, available: list[str]) -> None:
    if sources is None:
        return
    unknown = sorted(set(sources) - set(available))
    if unknown:
        raise ValueError(f"unknown sources {', '.join(unknown)}; available: {', '.join(available) or 'none'}")


def _filter_commercial(tables: dict[str, pa.Table], skipped: dict[str, str], commercial_only: bool) -> dict[str, pa.Table]:
    if not commercial_only:
        return tables
    kept: dict[str, pa.Table] = {}
    problems: list[str] = []
    catalog = load_catalog()
    for name, table in tables.items():
        # Per row, not per source: the column is the contract, and a source may mix licences.
        table = table.filter(pc.field("commercial"))
        if table.num_rows:
            kept[name] = table
            # The rows left must also carry a commercial licence the catalog agrees with (push's check).
            problems += row_problems(table, name, catalog)
        else:
            skipped[name] = "not commercial (--commercial-only)"
    if problems:
        raise ValueError("refusing --commercial-only training on rows whose licence says otherwise:\n  "
                         + "\n  ".join(problems[:20]))
    return kept


def select_rows(
    table: pa.Table, *, max_rows: int | None, heldout_rows: int, seed: int
) -> tuple[pa.Table, pa.Table, Counter[str]]:
    """Drop evaluation splits and unusable rows, cap the source, and hold out a seeded sample.

    Returns (train, heldout, dropped-by-reason). The held-out sample comes out before the cap, so a capped
    run is still evaluated on rows it never trained on.
    """
    dropped: Counter[str] = Counter()
    keep = pc.invert(pc.is_in(table["split"], pa.array(EVAL_SPLITS)))
    dropped["eval_split"] = table.num_rows - pc.sum(keep).as_py() if table.num_rows else 0
    table = table.filter(keep)
    empty = pc.or_(
        pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(table["query"])), 0),
        pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(table["positive"])), 0),
    )
    dropped["empty_text"] = pc.sum(empty).as_py() or 0
    table = table.filter(pc.invert(empty))
    rng = np.random.default_rng(seed)
    order = rng.permutation(table.num_rows)
    # Hold out at most a tenth of a small source: evaluating on half of it would starve training.
    n_heldout = min(heldout_rows, table.num_rows // 10)
    heldout = table.take(np.sort(order[:n_heldout]))
    rest = order[n_heldout:]
    if max_rows is not None and len(rest) > max_rows:
        dropped["over_max_rows"] = len(rest) - max_rows
        rest = rest[:max_rows]
    train = table.take(np.sort(rest))
    return train, heldout, Counter({k: v for k, v in dropped.items() if v})


def load_rows(
    data: str,
    *,
    sources: list[str] | None = None,
    commercial_only: bool = False,
    max_rows_per_source: int | None = None,
    heldout_rows: int = 200,
    seed: int = 42,
) -> TrainData:
    """The driver: a local build folder or a Hub dataset id -> selected rows per source."""
    path = Path(data)
    if path.exists():
        tables, skipped, stage = read_local(path, sources=sources, commercial_only=commercial_only)
    else:
        tables, skipped, stage = read_hub(data, sources=sources, commercial_only=commercial_only)
    selected: dict[str, SourceRows] = {}
    for i, (name, table) in enumerate(sorted(tables.items())):
        train, heldout, dropped = select_rows(
            table, max_rows=max_rows_per_source, heldout_rows=heldout_rows, seed=seed + i
        )
        if train.num_rows == 0:
            skipped[name] = "no training rows left after selection"
            continue
        selected[name] = SourceRows(
            name=name,
            train=train,
            heldout=heldout,
            license=_most_common(train["license"]),
            commercial=bool(pc.all(train["commercial"]).as_py()),
            task=_most_common(train["task"]),
            dropped=dropped,
        )
    if not selected:
        reasons = "; ".join(f"{k}: {v}" for k, v in skipped.items()) or "no source folders"
        raise ValueError(f"{data}: nothing to train on ({reasons})")
    return TrainData(origin=data, stage=stage, sources=selected, skipped=skipped)


def _most_common(column: pa.ChunkedArray) -> str:
    counts = pc.value_counts(column).to_pylist()
    return max(counts, key=lambda c: c["counts"])["values"] if counts else ""


def has_scores(table: pa.Table) -> bool:
    """Rows carry encoder scores (m3e-hq-with-score) when every row has a positive_score."""
    return table.num_rows > 0 and table["positive_score"].null_count == 0


def training_kind(table: pa.Table, loss: str) -> str:
    """What a source trains as, given --loss auto|infonce|cosent|distill.

    auto is AUTO_LOSS (InfoNCE, with the hard negatives when the rows have them, scored or not). cosent and
    distill need rows with scores (the with-score stage): without them they are an error, not a silent
    fallback.
    """
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}")
    loss = AUTO_LOSS if loss == "auto" else loss
    if loss in ("cosent", "distill"):
        if not has_scores(table):
            raise ValueError(f"--loss {loss} needs rows with scores (the m3e-hq-with-score stage)")
        return SCORED if loss == "cosent" else DISTILL
    n_neg = pc.list_value_length(table["negatives"])
    return NEGATIVES if pc.max(n_neg).as_py() else PAIRS


def contrastive_columns(table: pa.Table, num_negatives: int,
                        min_bucket_rows: int = MIN_BUCKET_ROWS, with_scores: bool = False) -> dict[str, pa.Table]:
    """InfoNCE tables: (anchor, positive[, negative_1..k]), keyed by sub-set suffix.

    The loss needs the same number of negatives in every row of a batch, so rows are grouped by how many
    they have (capped by num_negatives): the largest group is the source's own set (suffix ""), others are
    "<source>__neg<k>". A group under `min_bucket_rows` joins the next smaller one, its rows truncated to
    that k (one short row no longer truncates every row of the source). Rows without negatives train as
    plain pairs in "<source>__pairs". Every batch still comes from one source. `with_scores` adds the
    teacher's scores of (positive, negative_1..k) as `label` (distillation); a row whose scores do not line
    up with its negatives has no target and trains as a pair.
    """
    lengths = pc.list_value_length(table["negatives"]).fill_null(0).to_numpy(zero_copy_only=False)
    if with_scores:
        n_scores = pc.list_value_length(table["negative_scores"]).fill_null(-1).to_numpy(zero_copy_only=False)
        lengths = np.where(n_scores == lengths, lengths, 0)
    ks = np.minimum(lengths, max(num_negatives, 0))
    buckets: list[tuple[int, np.ndarray]] = []  # (k, row indices), largest k first
    pending = np.empty(0, dtype=np.int64)
    distinct = sorted({int(k) for k in ks if k > 0}, reverse=True)
    for i, k in enumerate(distinct):
        pending = np.concatenate([pending, np.flatnonzero(ks == k)])
        if len(pending) >= min_bucket_rows or i == len(distinct) - 1:
            buckets.append((k, np.sort(pending)))
            pending = np.empty(0, dtype=np.int64)
    out: dict[str, pa.Table] = {}
    main = max(range(len(buckets)), key=lambda b: len(buckets[b][1])) if buckets else -1
    for b, (k, rows_idx) in enumerate(buckets):
        rows = table.take(pa.array(rows_idx))
        cols = {"anchor": rows["query"], "positive": rows["positive"]}
        flat = pc.list_slice(rows["negatives"], 0, k)
        for j in range(k):
            cols[f"negative_{j + 1}"] = pc.list_element(flat, j)
        if with_scores:
            scores = pc.list_slice(rows["negative_scores"], 0, k)
            cols["label"] = pa.array([[p, *n] for p, n in zip(rows["positive_score"].to_pylist(),
                                                               scores.to_pylist(), strict=True)],
                                     pa.list_(pa.float32()))
        out["" if b == main else f"{NEG_SUFFIX}{k}"] = pa.table(cols)
    pairs = table.filter(pa.array(ks == 0))
    if pairs.num_rows:
        out[PAIRS_SUFFIX if out else ""] = pa.table({"anchor": pairs["query"], "positive": pairs["positive"]})
    return out


def scored_pairs(table: pa.Table) -> pa.Table:
    """CoSENT table: (sentence1, sentence2, score), one row per (query, positive) and per (query, negative)."""
    neg_len = pc.list_value_length(table["negatives"]).to_numpy(zero_copy_only=False)
    scores_len = pc.list_value_length(table["negative_scores"]).fill_null(0).to_numpy(zero_copy_only=False)
    # Negatives whose score list does not line up cannot be trusted; keep only their positive pair.
    usable = neg_len == scores_len
    negs = table.filter(pa.array(usable))
    parent = pc.list_parent_indices(negs["negatives"].combine_chunks())
    return pa.table(
        {
            "sentence1": pa.concat_arrays(
                [table["query"].combine_chunks(), negs["query"].combine_chunks().take(parent)]
            ),
            "sentence2": pa.concat_arrays(
                [table["positive"].combine_chunks(), pc.list_flatten(negs["negatives"]).combine_chunks()]
            ),
            "score": pa.concat_arrays(
                [
                    table["positive_score"].combine_chunks().cast(pa.float32()),
                    pc.list_flatten(negs["negative_scores"]).combine_chunks().cast(pa.float32()),
                ]
            ),
        }
    )


def training_tables(data: TrainData, *, loss: str, num_negatives: int) -> dict[str, tuple[pa.Table, str]]:
    """Named training sets (one or two per source) with the kind each trains as."""
    sets: dict[str, tuple[pa.Table, str]] = {}
    for name, rows in data.sources.items():
        kind = training_kind(rows.train, loss)
        if kind == SCORED:
            sets[name] = (scored_pairs(rows.train), SCORED)
            continue
        distill = kind == DISTILL
        for suffix, table in contrastive_columns(rows.train, num_negatives, with_scores=distill).items():
            has_negatives = "negative_1" in table.column_names
            sets[name + suffix] = (table, (DISTILL if distill else NEGATIVES) if has_negatives else PAIRS)
    return sets


def source_of(set_name: str) -> str:
    """The source a training set belongs to: the name without __pairs / __neg<k>."""
    return re.sub(rf"({re.escape(PAIRS_SUFFIX)}|{re.escape(NEG_SUFFIX)}\d+)$", "", set_name)


__all__ = [
    "AUTO_LOSS",
    "COLUMNS",
    "DISTILL",
    "LOSSES",
    "NEGATIVES",
    "PAIRS",
    "SCORED",
    "SourceRows",
    "TrainData",
    "contrastive_columns",
    "has_scores",
    "load_rows",
    "locate_stage",
    "scored_pairs",
    "select_rows",
    "source_of",
    "training_kind",
    "training_tables",
]
