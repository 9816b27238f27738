"""The thin driver of the m3e-hq stage: OUT/m3e/<source>/ → OUT/m3e-hq/<source>/ + OUT/rejects/<stage>/<source>/.

Per source, the statistics (quality.compute_stats: lengths, character classes, language, keys, MinHash band
keys) are computed once, in a process pool over batches, and cached in OUT/.cache/hq/<source>/ under a key
made of the source's _SUCCESS.json and the statistics' version and MinHash parameters. Everything after
that reads the cache, so changing a threshold re-runs in seconds. The decisions, in order (a row gets the
reason of the first stage that drops it):

1. eval_split     the source's validation/test rows (unless keep_eval_splits)
2. quality        the first quality rule that fires (quality.rules, thresholds per source)
3. decontaminate  query or positive matches an evaluation sentence
4. dedup          exact_duplicate, then near_duplicate (MinHash LSH, Jaccard >= threshold), across all
                  sources at once; the cluster keeps the row dedup.keep_order ranks first

Outputs are written per source with store.staged_folder; a source whose _SUCCESS.json key matches this
run's is left alone, so a killed run re-run with the same inputs finishes the rest and gives the same output.

The stage reads exactly the sources of the run it follows: those `build` selected and built (the manifest's
normalize `selected`), never every folder under OUT/m3e (an older run's, or the older output of a source
that failed now), and it removes the outputs of sources outside that selection from m3e-hq/ and rejects/.
A commercial-only selection is checked row by row before anything is written.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import hashlib
import json
import os
import pickle
import shutil
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from m3e_data import __version__
from m3e_data.catalog import Source, load_catalog
from m3e_data.commercial import row_problems
from m3e_data.manifest import now, read_manifest, write_stage
from m3e_data.schema import EVAL_SPLITS, UNIFIED_SCHEMA, conform
from m3e_data.stages.hq import normkey, quality, spill
from m3e_data.stages.hq import sketch as kernels
from m3e_data.stages.hq.decisions import Decisions, KeptIds, reason_stage
from m3e_data.stages.hq.decontaminate import EvalIndex, contaminated
from m3e_data.stages.hq.dedup import exact_duplicates, keep_order, near_duplicates
from m3e_data.stages.hq.distinct import distinct
from m3e_data.stages.hq.quality import StatsParams, band_columns
from m3e_data.storage import ownership
from m3e_data.storage.lock import hold
from m3e_data.storage.store import (
    SUCCESS,
    PartWriter,
    atomic_write_json,
    clean_stale,
    commit_hooks_held,
    iter_batches,
    parquet_files,
    read_success,
    run_commit_hooks,
    staged_folder,
)

STAGE = "hq"
REJECT_STAGES = ("eval_split", "quality", "decontaminate", "dedup")
# kept_id: the row a duplicate's cluster kept; matched: the evaluation file a decontaminated row matched.
REJECT_SCHEMA = (
    UNIFIED_SCHEMA.append(pa.field("reason", pa.string(), nullable=False))
    .append(pa.field("kept_id", pa.string(), nullable=True))
    .append(pa.field("matched", pa.string(), nullable=True))
)
STATS_BATCH = 20_000  # pairs per pool task: bounds a worker's temporaries (~250 MB)
LENGTH_BINS = (0, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)

ProgressFn = Callable[[str, str, int], None]  # (step, source, rows done)


class HqConfigError(ValueError):
    """A --config file that cannot be used."""


class NothingToDo(ValueError):
    """OUT/m3e holds no finished source (every source was missing or failed)."""


class InputError(ValueError):
    """A selected source whose normalize output is missing, damaged, or not commercial in a commercial-only
    run: the stage refuses rather than leave it out silently."""


@dataclass
class HqConfig:
    """Thresholds and dedup settings: code defaults < --config `defaults` < catalog `hq:` < --config `sources`."""

    defaults: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    jaccard: float = 0.8  # near-dedup (of the united pair sets) and decontamination threshold
    side_jaccard: float = 0.5  # near-dedup: the least Jaccard of each side, query with query, positive with positive
    stats: StatsParams = field(default_factory=StatsParams)

    @classmethod
    def load(cls, path: Path | None) -> HqConfig:
        if path is None:
            return cls()
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise HqConfigError(f"{path}: cannot read the hq config: {exc}") from exc
        if not isinstance(data, dict):
            raise HqConfigError(f"{path}: expected a mapping with `defaults:` and/or `sources:`")
        unknown = set(data) - {"defaults", "sources", "dedup"}
        if unknown:
            raise HqConfigError(f"{path}: unknown section(s) {', '.join(sorted(unknown))}; expected defaults, sources, dedup")
        defaults = data.get("defaults") or {}
        sources = data.get("sources") or {}
        dedup = data.get("dedup") or {}
        if not isinstance(defaults, dict) or not isinstance(sources, dict) or not isinstance(dedup, dict):
            raise HqConfigError(f"{path}: defaults, sources and dedup must be mappings")
        quality.resolve(defaults, where=f"{path}: defaults")
        for name, values in sources.items():
            if not isinstance(values, dict):
                raise HqConfigError(f"{path}: sources.{name} must be a mapping")
            quality.resolve(values, where=f"{path}: sources.{name}")
        bad = set(dedup) - {"jaccard", "side_jaccard", "bands", "rows", "num_perm", "seed"}
        if bad:
            raise HqConfigError(f"{path}: unknown dedup setting(s) {', '.join(sorted(bad))}")
        stats = StatsParams(
            minhash=quality.MinHashParams(num_perm=int(dedup.get("num_perm", 128)), seed=int(dedup.get("seed", 1))),
            bands=int(dedup.get("bands", StatsParams.bands)),
            rows=int(dedup.get("rows", StatsParams.rows)),
        )
        if stats.bands * stats.rows > stats.minhash.num_perm:
            raise HqConfigError(f"{path}: dedup.bands x dedup.rows exceeds dedup.num_perm")
        unknown_sources = set(sources) - set(load_catalog())
        if unknown_sources:
            raise HqConfigError(f"{path}: sources: no catalog entry named {', '.join(sorted(unknown_sources))}")
        return cls(defaults, sources, float(dedup.get("jaccard", 0.8)), float(dedup.get("side_jaccard", 0.5)), stats)

    def thresholds(self, name: str, task: str, catalog_hq: dict[str, Any]) -> dict[str, Any]:
        return quality.resolve(
            quality.task_defaults(task), self.defaults, catalog_hq, self.sources.get(name, {}),
            where=f"thresholds of {name}",
        )


@dataclass
class SourceInput:
    name: str
    folder: Path
    success: dict[str, Any]
    task: str
    quality: str
    catalog_hq: dict[str, Any]
    homogeneous: bool = False


@dataclass
class HqSourceResult:
    name: str
    rows_in: int = 0
    rows_out: int = 0
    dropped: Counter = field(default_factory=Counter)
    through: dict[str, int] = field(default_factory=dict)  # rows left after each stage
    stats_cached: bool = False
    written: bool = False
    lengths: dict[str, list[int]] = field(default_factory=dict)
    duplicate_ids: int = 0  # rows whose id another row of the source already has (a source key that repeats)

    def by_stage(self) -> dict[str, dict[str, int]]:
        """Drops per stage per reason: {stage: {reason: rows}} (stages in order, only those that dropped)."""
        out: dict[str, dict[str, int]] = {}
        for reason, n in sorted(self.dropped.items()):
            out.setdefault(reason_stage(reason), {})[reason] = n
        return {stage: out[stage] for stage in REJECT_STAGES if stage in out}

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows_in": self.rows_in,
            "rows_out": self.rows_out,
            "dropped": dict(sorted(self.dropped.items())),
            "dropped_by_stage": self.by_stage(),
            "through": self.through,
            "stats_cached": self.stats_cached,
            "lengths": self.lengths,
            "duplicate_ids": self.duplicate_ids,
        }


# ---------------------------------------------------------------------------------------------------------
# Inputs and the statistics cache


def selection(out: Path) -> tuple[list[str] | None, bool]:
    """The sources the last build into OUT selected and built, and whether it was commercial-only.

    None when no build recorded a selection (an OUT/m3e written by other means): every finished folder.
    """
    normalize = read_manifest(out).get("stages", {}).get("normalize", {})
    selected = normalize.get("selected")
    commercial_only = bool((normalize.get("options") or {}).get("commercial_only"))
    return (list(selected) if isinstance(selected, list) else None), commercial_only


def find_sources(out: Path, names: list[str] | None = None, verify: bool = False) -> list[SourceInput]:
    """The normalize outputs under OUT/m3e named by `names` (every finished one when None), by name.

    A named source whose folder is missing or damaged is an InputError, never skipped.
    """
    catalog = load_catalog()
    found = []
    root = out / "m3e"
    if names is None:
        folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) if root.is_dir() else []
    else:
        folders = [root / n for n in sorted(set(names))]
    for folder in folders:
        success = read_success(folder, verify)
        if success is None:
            if names is None:
                continue
            raise InputError(f"{folder}: the build selected this source but its output is missing or damaged; "
                             "rerun the build")
        entry: Source | None = catalog.get(folder.name)
        task = entry.task if entry else _first_value(folder, "task")
        homogeneous = entry.homogeneous if entry else bool(_first_value(folder, "homogeneous"))
        found.append(
            SourceInput(
                folder.name, folder, success, task or "none", entry.quality if entry else "good",
                dict(entry.hq) if entry else {}, homogeneous,
            )
        )
    return found


def _first_value(folder: Path, column: str) -> str | None:
    for path in parquet_files(folder):
        pf = pq.ParquetFile(path)  # not pq.read_table: that imports pyarrow.dataset (and pandas), seconds
        if pf.metadata.num_rows:
            return pf.read_row_group(0, columns=[column]).column(column)[0].as_py()
    return None


def _identity(success: dict[str, Any]) -> dict[str, Any]:
    """A completion record without its file list: what the output was made from and holds, not the bytes
    of its files (a record sealed by an older version still matches)."""
    return {k: v for k, v in success.items() if k != "files"}


def _digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()[:16]


def _batches(folder: Path, columns: list[str] | None = None, rows: int | None = None) -> Iterator[pa.Table]:
    for path in parquet_files(folder):
        for batch in iter_batches(path, rows or STATS_BATCH, columns):
            yield pa.Table.from_batches([batch])


def _stats_task(table: pa.Table, params: StatsParams) -> pa.Table:
    stats = quality.compute_stats(table, params)
    return stats.append_column("split", table.column("split")).append_column("commercial", table.column("commercial"))


STATS_TASK_ROWS = 100_000  # rows a statistics task reads itself: the part writer's row group, read once
STATS_INPUT = ["id", "query", "positive", "negatives", "homogeneous", "split", "commercial"]


def row_range(path: Path, start: int, stop: int, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
    """Rows [start, stop) of a Parquet file in batches of at most STATS_BATCH, reading only their row groups."""
    pf = pq.ParquetFile(path, pre_buffer=False)
    try:
        first = 0
        for i in range(pf.metadata.num_row_groups):
            n = pf.metadata.row_group(i).num_rows
            lo, hi = max(start, first), min(stop, first + n)
            if lo < hi:  # the group batch by batch: a whole group's decoded columns would sit in memory
                at = first
                for batch in pf.iter_batches(batch_size=STATS_BATCH, row_groups=[i], columns=columns):
                    a, b = max(lo, at), min(hi, at + batch.num_rows)
                    if a < b:
                        yield batch.slice(a - at, b - a)
                    at += batch.num_rows
                    if at >= hi:
                        break
            first += n
            if first >= stop:
                break
    finally:
        pf.close()


def stats_ranges(folder: Path, rows: int | None = None) -> Iterator[tuple[str, int, int]]:
    """(part file, start, stop) of each statistics task (STATS_TASK_ROWS rows) over a source's parts, in
    row order."""
    rows = rows or STATS_TASK_ROWS
    for path in parquet_files(folder):
        n = pq.read_metadata(path).num_rows
        for start in range(0, n, rows):
            yield str(path), start, min(start + rows, n)


def range_stats(task: tuple[str, int, int], params: StatsParams) -> pa.Table:
    """The statistics of rows [start, stop) of one part file, read by the worker itself, in row order
    (compute_stats is per row: batch bounds do not matter); STATS_BATCH rows at a time bound its memory."""
    path, start, stop = task
    tables = [_stats_task(pa.Table.from_batches([b]), params) for b in row_range(Path(path), start, stop, STATS_INPUT)]
    return pa.concat_tables(tables) if tables else _stats_task(UNIFIED_SCHEMA.empty_table(), params)


PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    """Pool initializer: a worker ends when the process that started it does, kill -9 included.

    Linux sends the signal set here when the parent dies; a parent that died before the call is caught by
    the pid check. Elsewhere the pool's own shutdown is all there is.
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


def release_memory() -> None:
    """Hand the memory freed since the last call back to the system: Arrow's pool keeps freed blocks for
    reuse, and glibc keeps freed heap under its top and, once a large array was freed, serves the next
    large ones from the heap too; a worker then keeps the high-water mark of every task it ran."""
    pa.default_memory_pool().release_unused()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None).malloc_trim(0)


def _then_release(fn: Callable[..., Any], item: Any, params: Any) -> Any:
    """fn(item, params) in a pool worker, then its temporaries returned to the system before the next task.

    An error that would not survive the trip back (an exception class whose __init__ takes other arguments
    than its args) would break the whole pool instead of failing this task: it comes back as a RuntimeError
    with its message."""
    try:
        return fn(item, params)
    except Exception as exc:
        try:
            pickle.loads(pickle.dumps(exc))
        except Exception:  # noqa: BLE001 (whatever makes it unpicklable)
            raise RuntimeError(f"{type(exc).__name__}: {exc}") from None
        raise
    finally:
        release_memory()


# The run's one process pool (worker_pool): every source's statistics and the dedup verification share it,
# so worker start-up (imports, numba's cached kernels) is paid once per run, not once per source.
_POOL: tuple[int, ProcessPoolExecutor] | None = None


@contextlib.contextmanager
def worker_pool(workers: int) -> Iterator[None]:
    """Open one pool of `workers` processes for the enclosed code's `_bounded_map` calls (none for 1)."""
    global _POOL
    if workers <= 1 or _POOL is not None:
        yield
        return
    if kernels.USE_NUMBA:  # built once here, the forked workers share it instead of each building its own
        normkey.code_point_classes(quality._DROP_CHARS)
    pool = ProcessPoolExecutor(max_workers=workers, initializer=_die_with_parent, initargs=(os.getpid(),))
    _POOL = (workers, pool)
    try:
        yield
    finally:
        _POOL = None
        pool.shutdown(wait=True, cancel_futures=True)


def _bounded_map(fn: Callable[..., Any], items: Iterator[Any], params: Any, workers: int) -> Iterator[Any]:
    """fn(item, params) over items in a process pool, in order, with at most 2 x workers items in flight
    (memory). The run's pool (worker_pool) when one of this size is open, else a pool for this call.

    The workers run numpy/pyarrow code only (no polars), so the default fork start is safe and cheap.
    """
    if workers <= 1:
        for item in items:
            yield fn(item, params)
        return
    if _POOL is not None and _POOL[0] == workers:
        yield from _in_pool(_POOL[1], fn, items, params, workers)
        return
    with ProcessPoolExecutor(max_workers=workers, initializer=_die_with_parent, initargs=(os.getpid(),)) as pool:
        yield from _in_pool(pool, fn, items, params, workers)


def _in_pool(pool: ProcessPoolExecutor, fn: Callable[..., Any], items: Iterator[Any], params: Any,
             workers: int) -> Iterator[Any]:
    pending: list[Future] = []
    try:
        for item in items:
            pending.append(pool.submit(_then_release, fn, item, params))
            if len(pending) >= 2 * workers:
                yield pending.pop(0).result()
        while pending:
            yield pending.pop(0).result()
    finally:  # a failed or abandoned map leaves nothing queued in a shared pool
        for fut in pending:
            fut.cancel()


def _pool_map(fn: Callable[..., Any], items: Iterator[Any], params: Any) -> Iterator[Any]:
    """`_bounded_map` on the run's pool (serially when none is open): dedup's map_chunks."""
    return _bounded_map(fn, items, params, _POOL[0] if _POOL is not None else 1)


class Executor:
    """Where the stage's heavy steps run. This one runs them on this machine (`workers` processes for the
    statistics); m3e_data/executors/hq_ray.py runs the same functions on Ray. The decisions between the
    steps stay in this module, so both give the same rows."""

    def __init__(self, workers: int = 2) -> None:
        self.workers = workers

    def stats(self, folder: Path, params: StatsParams) -> Iterator[pa.Table]:
        """The statistics of a source's rows, in row order, a task's rows at a time (each worker reads its
        rows itself: the main process sends a file name and two numbers, not the rows)."""
        return _bounded_map(range_stats, stats_ranges(folder), params, self.workers)

    def session(self) -> contextlib.AbstractContextManager[None]:
        """Held for the whole run: one pool of `workers` processes shared by every source's steps."""
        return worker_pool(self.workers)

    def near_duplicates(self, *args: Any, **kwargs: Any) -> tuple[np.ndarray, pl.DataFrame]:
        """dedup.near_duplicates, the same arguments and answer; candidates verified in chunks on the pool."""
        return near_duplicates(*args, map_chunks=_pool_map, **kwargs)

    def write(self, out: Path, jobs: list[tuple[SourceInput, Decisions]], kept_ids: KeptIds,
              run_key: dict[str, Any], on_written: Callable[[SourceInput], None]) -> None:
        """write_source for each (source, decisions), `workers` sources at a time; each gets the ids its
        own duplicates point to. The folders a source committed are announced here, in this process (an
        object store's push runs here, not in a worker)."""
        tasks = ((src, d, kept_ids.subset(d.kept_gidx[d.kept_gidx >= 0])) for src, d in jobs)
        for (src, _), folders in zip(jobs, _bounded_map(_write_task, tasks, (out, run_key), self.workers),
                                     strict=True):
            release_memory()
            for folder in folders:
                run_commit_hooks(Path(folder))
            on_written(src)


def _write_task(job: tuple[SourceInput, Decisions, KeptIds], params: tuple[Path, dict[str, Any]]) -> list[str]:
    """write_source in a pool worker; returns the folders it committed (m3e-hq's, then the rejects')."""
    src, d, kept_ids = job
    out, run_key = params
    with commit_hooks_held():
        write_source(out, src, d, kept_ids, run_key)
    stages = [s for s in REJECT_STAGES if d.stage_codes(s) and np.isin(d.code, d.stage_codes(s)).any()]
    return [str(out / "m3e-hq" / src.name), *(str(out / "rejects" / s / src.name) for s in stages)]


def stats_path(out: Path, name: str) -> Path:
    return out / ".cache" / "hq" / name


def ensure_stats(out: Path, src: SourceInput, params: StatsParams, workers: int, on_progress: ProgressFn | None,
                 verify: bool = False, executor: Executor | None = None) -> tuple[Path, bool]:
    """The cached statistics folder of one source, computed now (by `executor`, default local with `workers`)
    if missing, stale or damaged. Returns (folder, cached)."""
    key = {"input": _digest(_identity(src.success)), "stats": params.record(), "polars": pl.__version__}
    folder = stats_path(out, src.name)
    done = read_success(folder, verify)
    if done is not None:
        # Statistics that hold the text band keys serve a run that does not need them, too.
        fuller = {**key, "stats": {**key["stats"], "text_bands": True}}
        if done.get("key") in (key, fuller):
            return folder, True
    clean_stale(folder.parent)
    with staged_folder(folder) as tmp:
        writer: pq.ParquetWriter | None = None
        rows = 0
        try:
            for stats in (executor or Executor(workers)).stats(src.folder, params):
                if writer is None:
                    writer = pq.ParquetWriter(tmp / "stats.parquet", stats.schema, compression="zstd")
                writer.write_table(stats)
                rows += stats.num_rows
                if on_progress:
                    on_progress("statistics", src.name, rows)
            if writer is None:  # an empty source still gets a (schema-only) stats file
                empty = _stats_task(UNIFIED_SCHEMA.empty_table(), params)
                pq.write_table(empty, tmp / "stats.parquet")
        finally:
            if writer is not None:
                writer.close()
        atomic_write_json(tmp / SUCCESS, {"key": key, "rows": rows, "finished": now()})
    release_memory()
    return folder, False


def read_stats(folder: Path, columns: list[str]) -> pl.DataFrame:
    return pl.read_parquet(folder / "stats.parquet", columns=columns)


# ---------------------------------------------------------------------------------------------------------
# Decisions


# Where some rows lie in one source: (its folder, their row numbers in its parquet ascending, their positions
# among the rows asked for). A few numbers a row: what a pool worker or Ray task is sent to read them itself.
Located = tuple[str, np.ndarray, np.ndarray]
SPILL_ROWS = 250_000  # candidate rows one spill writer (a pool or Ray task) reads and writes


def read_located(located: Located) -> Iterator[tuple[np.ndarray, pa.Table]]:
    """(positions, the (query, positive) table of those rows) for rows of one source, in row order; only the
    part files and row groups that hold them are read, a batch at a time."""
    folder, rows_sorted, positions = located
    first = 0
    for path in parquet_files(Path(folder)):
        end = first + pq.read_metadata(path).num_rows
        lo, hi = np.searchsorted(rows_sorted, [first, end])
        if hi > lo:
            at = int(rows_sorted[lo])  # the first row of the batch below
            pos = lo
            for batch in row_range(path, at - first, int(rows_sorted[hi - 1]) + 1 - first, ["query", "positive"]):
                stop = np.searchsorted(rows_sorted, at + batch.num_rows, side="left")
                if stop > pos:
                    yield positions[pos:stop], pa.Table.from_batches([batch.take(pa.array(rows_sorted[pos:stop] - at))])
                    pos = stop
                at += batch.num_rows
        first = end


def write_spill(job: tuple[spill.SharedSpill, int, list[Located]], _params: Any = None) -> None:
    """Writer t of a shared spill, from where its rows lie (SourceTexts.spill_jobs): a pool or Ray task."""
    spilled, t, located = job
    spilled.write(t, (piece for loc in located for piece in read_located(loc)))


class SourceTexts:
    """texts(gidx) → (queries, positives) of rows by global number, read from the sources' parquet.

    A call reads the row groups that hold the rows it needs, so near dedup, which asks for one chunk of rows
    at a time from all over the corpus, first `spilled` its candidate rows: writers (pool tasks here, Ray tasks
    in hq_ray) each read a run of them once and write their texts to a scratch file (spill.SharedSpill), from
    which each chunk reads its rows' bytes."""

    def __init__(self, sources: list[SourceInput], offsets: np.ndarray, local: list[np.ndarray],
                 scratch: Path | None = None) -> None:
        self.sources, self.offsets, self.local, self.scratch = sources, offsets, local, scratch

    def locate(self, gidx: np.ndarray) -> list[Located]:
        """Where the rows gidx lie, source by source."""
        gidx = np.asarray(gidx, dtype=np.int64)
        which = np.searchsorted(self.offsets, gidx, side="right") - 1
        found = []
        for s in distinct(which).tolist():
            sel = np.flatnonzero(which == s)
            rows = self.local[s][gidx[sel] - self.offsets[s]]  # row numbers inside the source's parquet
            order = np.argsort(rows, kind="stable")
            found.append((str(self.sources[s].folder), rows[order], sel[order]))
        return found

    def pieces(self, gidx: np.ndarray) -> Iterator[tuple[np.ndarray, pa.Table]]:
        """(positions into gidx, the (query, positive) table of those rows), in source and row order."""
        for located in self.locate(gidx):
            yield from read_located(located)

    def __call__(self, gidx: np.ndarray) -> tuple[list[str], list[str]]:
        gidx = np.asarray(gidx, dtype=np.int64)
        queries: list[str] = [""] * len(gidx)
        positives: list[str] = [""] * len(gidx)
        for where, table in self.pieces(gidx):
            for k, q, p in zip(where.tolist(), table.column("query").to_pylist(), table.column("positive").to_pylist(),
                               strict=True):
                queries[k], positives[k] = q, p
        return queries, positives

    def spill_jobs(self, spilled: spill.SharedSpill) -> Iterator[tuple[spill.SharedSpill, int, list[Located]]]:
        """write_spill's job for each writer of `spilled`."""
        for t in range(spilled.writers):
            yield spilled, t, self.locate(spilled.rows_of(t))

    @contextlib.contextmanager
    def spilled(self, gidx: np.ndarray) -> Iterator[Callable[[np.ndarray], Any]]:
        """A reader of the rows `gidx` (sorted, unique) from a scratch spill, removed on exit, written by the
        run's pool (serially without one).

        The reader returns a chunk's SpilledRows, which the pool worker verifying the chunk loads itself: the
        main process sends a few numbers per row, not the texts."""
        if self.scratch is None or len(gidx) == 0:
            yield self
            return
        folder = self.scratch / f"spill-{os.getpid()}"
        workers = _POOL[0] if _POOL is not None else 1
        try:
            spilled = spill.SharedSpill.plan(folder, np.asarray(gidx, dtype=np.int64),
                                             max(workers, -(-len(gidx) // SPILL_ROWS)))
            for _ in _pool_map(write_spill, self.spill_jobs(spilled), None):
                pass
            yield spilled
        finally:
            shutil.rmtree(folder, ignore_errors=True)
            with contextlib.suppress(OSError):  # another run's spill may still be there
                self.scratch.rmdir()


class Counted(Iterable[Any]):
    """An iterable that says its length before it is iterated: the Ray executor sizes its shuffle by the
    number of bands, which are read one at a time (all of them at once would be every live row x bands)."""

    def __init__(self, n: int, make: Callable[[], Iterator[Any]]) -> None:
        self.n, self.make = n, make

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[Any]:
        return self.make()


def _texts_reader(sources: list[SourceInput], offsets: np.ndarray, local: list[np.ndarray],
                  scratch: Path | None = None) -> SourceTexts:
    return SourceTexts(sources, offsets, local, scratch)


def decide(
    out: Path,
    sources: list[SourceInput],
    folders: list[Path],
    config: HqConfig,
    eval_index: EvalIndex | None,
    keep_eval_splits: bool,
    on_progress: ProgressFn | None = None,
    executor: Executor | None = None,
) -> tuple[list[Decisions], dict[str, dict[str, int]], dict[str, int], KeptIds]:
    """Every row's fate. Returns per-source decisions, the cross-source overlap, decontamination counts per
    evaluation file, and the ids of the rows duplicates point to (by gidx, what kept_gidx points into).

    Memory: what lives for every row of the corpus at once is a few numpy arrays (decision code, kept row,
    local row number, survival rank: ~25 bytes a row); each source's statistics, ids and keys are read
    one source (or one column) at a time."""
    params = config.stats
    decisions: list[Decisions] = []
    order_parts: list[pl.DataFrame] = []
    local: list[np.ndarray] = []
    decon_counts: Counter = Counter()
    src_order = _name_order([s.name for s in sources])
    global_ids = not all(_ids_prefixed(folder, src.name) for src, folder in zip(sources, folders, strict=True))
    for s, (src, folder) in enumerate(zip(sources, folders, strict=True)):
        stats = read_stats(folder, ["id", "split", "commercial", "n_neg", *quality_columns()])
        n = stats.height
        d = Decisions.new(n, stats["id"].len() - stats["id"].n_unique())
        if not keep_eval_splits:
            d.drop(np.flatnonzero(stats["split"].is_in(list(EVAL_SPLITS)).to_numpy()), "eval_split")
        q_reason = quality.apply_rules(stats, config.thresholds(src.name, src.task, src.catalog_hq))["reason"]
        fired = np.flatnonzero(q_reason.is_not_null().to_numpy() & d.kept)
        rules, which = np.unique(q_reason.gather(fired).to_numpy().astype(str), return_inverse=True)
        for k, rule in enumerate(rules.tolist()):
            d.drop(fired[which == k], f"quality:{rule}")
        decisions.append(d)
        alive = pl.Series(d.kept)
        local.append(np.flatnonzero(d.kept).astype(np.int64))
        # keep_order's id: the id itself where ids may not sort by source; else (source's place, id's rank
        # in its source), which sorts the same when every id starts with its source's "<name>/".
        id_key = pl.col("id") if global_ids else (
            pl.lit(src_order[s], pl.Int64) * (1 << 32) + pl.col("id").rank("ordinal").cast(pl.Int64)
        )
        order_parts.append(stats.select(
            id_key.alias("id"), "commercial", "n_neg", pl.lit(src.quality, pl.String).alias("quality"),
        ).filter(alive))
        del stats
        if on_progress:
            on_progress("rules", src.name, n)

    # Global numbering of the rows still alive: gidx in source order, then row order.
    offsets = np.zeros(len(sources) + 1, dtype=np.int64)
    np.cumsum([len(x) for x in local], out=offsets[1:])
    n_alive = int(offsets[-1])
    rank = keep_order(pl.concat(order_parts)) if n_alive else np.zeros(0, dtype=np.int64)
    del order_parts
    texts = _texts_reader(sources, offsets, local, out / ".cache" / "hq-verify")
    alive_of = [pl.Series(d.kept) for d in decisions]  # before decontamination: what gidx numbers

    def source_of(g: np.ndarray) -> np.ndarray:
        return np.searchsorted(offsets, g, side="right") - 1

    def mark(g: np.ndarray, reason: str, kept: np.ndarray | None = None) -> None:
        """Drop the rows of global numbers g (sorted) for `reason`, pointing at `kept` where given."""
        cuts = np.searchsorted(g, offsets)
        for s, d in enumerate(decisions):
            lo, hi = cuts[s], cuts[s + 1]
            if hi > lo:
                d.drop(local[s][g[lo:hi] - offsets[s]], reason, None if kept is None else kept[lo:hi])

    overlap: Counter = Counter()
    src_names = [s.name for s in sources]

    def count_overlap(g: np.ndarray, kept: np.ndarray) -> None:
        pairs = pl.DataFrame({"a": source_of(g), "b": source_of(kept)}).group_by("a", "b").len()
        for a, b, n in pairs.iter_rows():
            overlap[(src_names[a], src_names[b])] += n

    dropped = np.zeros(n_alive, dtype=bool)
    if eval_index is not None and n_alive:
        for s, folder in enumerate(folders):
            cols = ["q_key", "p_key", *band_columns("q", params.bands), *band_columns("p", params.bands)]
            st = read_stats(folder, cols).filter(alive_of[s]).with_columns(
                pl.int_range(offsets[s], offsets[s + 1], dtype=pl.Int64).alias("gidx")
            )
            hit = contaminated(st, eval_index, texts, params, config.jaccard)
            if hit.height:
                # The file's name, not its path: rejects may be shared, and a path says nothing more.
                first = hit.select("gidx", "file").unique("gidx", keep="first").sort("gidx")
                g = first["gidx"].to_numpy()
                mark(g, "decontaminated")
                decisions[s].matched.update(zip((local[s][g - offsets[s]]).tolist(),
                                                (Path(f).name for f in first["file"].to_list()), strict=True))
                dropped[g] = True
                decon_counts.update(hit["file"].to_list())
            if on_progress:
                on_progress("decontaminate", sources[s].name, st.height)

    def column(name: str) -> pl.Series:
        """One statistics column of the rows alive, in gidx order."""
        return pl.concat([read_stats(folder, [name]).filter(alive_of[s])[name] for s, folder in enumerate(folders)])

    # Exact duplicates among the rows still alive. Marked after near dedup: the row an exact copy points
    # to may itself be a near duplicate of a better row, and kept_id must name the row that survives.
    live = np.flatnonzero(~dropped)
    exact_rows = exact_kept = np.zeros(0, dtype=np.int64)
    if len(live):
        kept_local = exact_duplicates(column("pair_key").to_numpy()[live], rank[live])
        copy = np.flatnonzero(kept_local != np.arange(len(live)))
        exact_rows, exact_kept = live[copy], live[kept_local[copy]]
        dropped[exact_rows] = True
        del kept_local
        if on_progress:
            on_progress("exact dedup", "all", len(live))

    # Near duplicates among the rest, one band at a time across every source.
    live = np.flatnonzero(~dropped)
    if len(live):
        live_mask = pl.Series(~dropped)

        def bands() -> Iterator[tuple[np.ndarray, np.ndarray]]:
            for name in band_columns("pair", params.bands):
                yield live, column(name).filter(live_mask).to_numpy()
                if on_progress:
                    on_progress("near dedup", name, len(live))

        s2s = np.repeat(np.array([src.homogeneous for src in sources], dtype=bool), np.diff(offsets))
        keep_g, _ = (executor or Executor()).near_duplicates(
            n_alive, Counted(params.bands, bands), texts, rank, config.jaccard, s2s, config.side_jaccard
        )
        del s2s
        release_memory()
        near = live[keep_g[live] != live]
        mark(near, "near_duplicate", keep_g[near])
        count_overlap(near, keep_g[near])
        exact_kept = keep_g[exact_kept]  # the row an exact copy points to, after its own near dedup
        del keep_g
    if len(exact_rows):
        mark(exact_rows, "exact_duplicate", exact_kept)
        count_overlap(exact_rows, exact_kept)

    cross: dict[str, dict[str, int]] = {}
    for (a, b), n in sorted(overlap.items()):
        if a != b:
            cross.setdefault(a, {})[b] = n
    return decisions, cross, dict(decon_counts), _kept_ids(decisions, folders, offsets, local)


def _name_order(names: list[str]) -> list[int]:
    """Each source's place when its ids ("<name>/<split>/<key>") are sorted: ids of two sources compare as
    "<name>/" does, whatever follows (no name holds "/")."""
    order = sorted(range(len(names)), key=lambda k: names[k] + "/")
    place = [0] * len(names)
    for p, k in enumerate(order):
        place[k] = p
    return place


def _ids_prefixed(folder: Path, name: str) -> bool:
    """Every id of the source starts with "<name>/" (normalize's make_id), so ids sort by source first."""
    return bool(read_stats(folder, ["id"])["id"].str.starts_with(f"{name}/").all())


def _kept_ids(decisions: list[Decisions], folders: list[Path], offsets: np.ndarray, local: list[np.ndarray]
              ) -> KeptIds:
    """The ids of the rows some duplicate points to, read source by source from the statistics."""
    wanted = distinct(np.concatenate([d.kept_gidx[d.kept_gidx >= 0] for d in decisions] or [np.zeros(0, np.int64)]))
    cuts = np.searchsorted(wanted, offsets)
    ids = []
    for s, folder in enumerate(folders):
        g = wanted[cuts[s] : cuts[s + 1]]
        if len(g):
            ids.append(read_stats(folder, ["id"])["id"].gather(local[s][g - offsets[s]]))
    return KeptIds(wanted, pl.concat(ids) if ids else pl.Series("id", [], pl.String))


def quality_columns() -> list[str]:
    cols = ["qp_jaccard", "boilerplate", "neg_equal", "q_key", "p_key"]
    for side in ("q", "p"):
        cols += [f"{side}_{c}" for c in ("len", "han", "letters", "special", "max_run", "shingles", "rep3", "lang")]
    return cols


# ---------------------------------------------------------------------------------------------------------
# Outputs


def _histogram(values: np.ndarray) -> list[int]:
    return np.histogram(values, bins=[*LENGTH_BINS, np.iinfo(np.int64).max])[0].tolist()


def write_source(
    out: Path, src: SourceInput, d: Decisions, kept_ids: KeptIds, run_key: dict[str, Any]
) -> None:
    """OUT/m3e-hq/<source>/ and OUT/rejects/<stage>/<source>/ for one source, each folder atomically."""
    stage_of = d.stage
    stages_here = [s for s in REJECT_STAGES if (stage_of == s).any()]
    del stage_of
    for stage in REJECT_STAGES:
        if stage not in stages_here:
            ownership.remove(out / "rejects" / stage / src.name, "build")  # never a user's file in it
    with staged_folder(out / "m3e-hq" / src.name) as tmp_out:
        writers = {"": PartWriter(tmp_out)}
        folders: dict[str, Any] = {}
        try:
            for stage in stages_here:
                target = out / "rejects" / stage / src.name
                clean_stale(target.parent)
                cm = staged_folder(target)
                folders[stage] = (cm, cm.__enter__())
                writers[stage] = PartWriter(folders[stage][1], REJECT_SCHEMA)
            start = 0
            for batch in _batches(src.folder):
                end = start + batch.num_rows
                code = d.code[start:end]
                writers[""].write(conform(batch.filter(pa.array(code == 0))))
                for name in stages_here:
                    rows = np.flatnonzero(np.isin(code, d.stage_codes(name)))
                    if len(rows):
                        at = start + rows
                        kept = d.kept_gidx[at]
                        kept_id = np.full(len(rows), None, dtype=object)
                        kept_id[kept >= 0] = kept_ids.of(kept[kept >= 0])
                        rej = conform(batch.take(pa.array(rows)))
                        rej = rej.append_column("reason", pa.array([d.reasons[c - 1] for c in code[rows].tolist()],
                                                                   pa.string()))
                        rej = rej.append_column("kept_id", pa.array(kept_id, pa.string()))
                        rej = rej.append_column("matched", pa.array([d.matched.get(r) for r in at.tolist()],
                                                                    pa.string()))
                        writers[name].write(rej.cast(REJECT_SCHEMA))
                start = end
            for name, w in writers.items():
                parts = w.finish()
                folder = tmp_out if name == "" else folders[name][1]
                atomic_write_json(folder / SUCCESS, {"key": run_key, "parts": parts, "rows": w.rows, "finished": now()})
        except BaseException as exc:
            for cm, _ in folders.values():
                cm.__exit__(type(exc), exc, exc.__traceback__)
            raise
        for cm, _ in folders.values():
            cm.__exit__(None, None, None)


def check_commercial(sources: list[SourceInput]) -> None:
    """Every row of a commercial-only selection must say commercial, with a licence the catalog agrees
    with: the check `push --commercial-only` makes, over the stage's input."""
    problems: list[str] = []
    for src in sources:
        for path in parquet_files(src.folder):
            table = pq.read_table(path, columns=["source", "license", "commercial"])
            problems += row_problems(table, f"{src.name}/{path.name}")
    if problems:
        shown = "\n  ".join(problems[:20])
        raise InputError(f"a commercial-only build holds rows that are not commercial; nothing was written:\n  {shown}")


def remove_unselected(out: Path, names: set[str]) -> None:
    """Remove the m3e-hq, rejects and m3e-hq-with-score outputs of sources outside this run's selection:
    left there, a commercial-only m3e-hq (or the mined data beside it) would still hold an earlier full
    run's sources. Only folders a stage wrote whole are removed; one holding a user's file stops the run
    (ForeignFiles) rather than stay behind in the selection's output."""
    owners = [(out / "m3e-hq", "build"), (out / "m3e-hq-with-score", "mine")]
    owners += [(out / "rejects" / stage, "build") for stage in REJECT_STAGES]
    for parent, owner in owners:
        if not parent.is_dir():
            continue
        for folder in sorted(parent.iterdir()):
            if folder.name in names or folder.name.startswith(".") or not folder.is_dir():
                continue
            ownership.remove(folder, owner, sizes=False)


# ---------------------------------------------------------------------------------------------------------
# The driver


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def run_hq(
    out: Path,
    config: HqConfig | Path | None = None,
    decontaminate: list[Path] | tuple[Path, ...] = (),
    keep_eval_splits: bool = False,
    on_progress: ProgressFn | None = None,
    workers: int = 2,
    sources: list[str] | None = None,
    verify: bool = False,
    executor: Executor | None = None,
) -> dict[str, HqSourceResult]:
    """Run the m3e-hq stage over the sources the last build selected (or `sources`); per-source results.

    Holds OUT's lock for the run. `verify` checks every input part's checksum, not only its size.
    `executor`: where the heavy steps run (default: this machine, `workers` processes).
    """
    out = Path(out)
    with hold(out):
        return _run_hq(out, config, decontaminate, keep_eval_splits, on_progress, executor or Executor(workers),
                       sources, verify)


def _run_hq(
    out: Path,
    config: HqConfig | Path | None,
    decontaminate: list[Path] | tuple[Path, ...],
    keep_eval_splits: bool,
    on_progress: ProgressFn | None,
    executor: Executor,
    names: list[str] | None,
    verify: bool,
) -> dict[str, HqSourceResult]:
    started = time.perf_counter()
    selected, commercial_only = selection(out)
    if names is None:
        names = selected
    cfg = config if isinstance(config, HqConfig) else HqConfig.load(config)
    eval_paths = [Path(p) for p in decontaminate]
    if eval_paths and not cfg.stats.text_bands:
        cfg = dataclasses.replace(cfg, stats=dataclasses.replace(cfg.stats, text_bands=True))
    if names is not None:  # first: a run that stops below must not leave another selection's outputs
        remove_unselected(out, set(names))
    sources = find_sources(out, names, verify)
    if not sources:
        raise NothingToDo(f"no finished source under {out / 'm3e'}: build one first (m3e-data build)")
    if commercial_only:
        check_commercial(sources)
    results = {s.name: HqSourceResult(s.name) for s in sources}
    folders = []
    with executor.session():
        for src in sources:
            folder, cached = ensure_stats(out, src, cfg.stats, 1, on_progress, verify, executor)
            folders.append(folder)
            results[src.name].stats_cached = cached
        eval_index = EvalIndex.build(eval_paths, cfg.stats) if eval_paths else None

        decisions, overlap, decon, kept_ids = decide(
            out, sources, folders, cfg, eval_index, keep_eval_splits, on_progress, executor
        )

    options = {
        "config": {"defaults": cfg.defaults, "sources": cfg.sources, "jaccard": cfg.jaccard,
                   "side_jaccard": cfg.side_jaccard},
        "stats": cfg.stats.record(),
        "decontaminate": {str(p): _file_digest(p) for p in eval_paths},
        "keep_eval_splits": keep_eval_splits,
    }
    run_key = {
        "m3e_data": __version__,
        "options": options,
        "inputs": {s.name: _digest(_identity(s.success)) for s in sources},
        "thresholds": {s.name: cfg.thresholds(s.name, s.task, s.catalog_hq) for s in sources},
    }
    # Global numbering of kept ids: decisions hold gidx into the concatenation of alive rows.
    jobs: list[tuple[SourceInput, Decisions]] = []
    for src, folder, d in zip(sources, folders, decisions, strict=True):
        r = results[src.name]
        r.rows_in = len(d)
        r.rows_out = int(d.kept.sum())
        counts = np.bincount(d.code, minlength=len(d.reasons) + 1)
        for k, reason in enumerate(d.reasons, start=1):
            if counts[k]:
                r.dropped[reason] += int(counts[k])
        left = r.rows_in
        r.through["input"] = left
        for stage in REJECT_STAGES:
            left -= int(counts[d.stage_codes(stage)].sum())
            r.through[stage] = left
        r.duplicate_ids = d.duplicate_ids
        lens = read_stats(folder, ["q_len", "p_len"])
        keep = pl.Series(d.kept)
        r.lengths = {
            "query": _histogram(lens["q_len"].filter(keep).to_numpy()),
            "positive": _histogram(lens["p_len"].filter(keep).to_numpy()),
        }
        done = read_success(out / "m3e-hq" / src.name)
        if done is None or done.get("key") != run_key:
            jobs.append((src, d))

    def written(src: SourceInput) -> None:
        results[src.name].written = True
        if on_progress:
            on_progress("write", src.name, results[src.name].rows_in)

    if jobs:
        clean_stale(out / "m3e-hq")
        executor.write(out, jobs, kept_ids, run_key, written)

    remove_unselected(out, {s.name for s in sources})
    write_stage(
        out,
        STAGE,
        {
            "commercial_only": commercial_only,
            "options": options,
            "finished": now(),
            "seconds": round(time.perf_counter() - started, 3),
            "length_bins": list(LENGTH_BINS),
            "sources": {name: r.as_dict() for name, r in results.items()},
            "overlap": overlap,
            "thresholds": run_key["thresholds"],  # per source, as applied (the report's length floors)
            "decontamination": {str(p): decon.get(str(p), 0) for p in eval_paths},  # every file, 0 included
        },
    )
    return results
