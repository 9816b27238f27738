"""The m3e-hq stage's heavy steps on Ray: the same pure functions as the local executor, so the same rows.

- statistics and MinHash band keys: one Ray task per STATS_TASK_ROWS rows of a source's part files runs
  stage._stats_task over their batches (a task per whole file left a source of one part file on one CPU:
  benchmarks/bench_scale.py); the driver streams the results, in row order, into the same cached stats
  file the local path writes, so a thresholds-only rerun reads the cache and takes seconds whichever executor made it.
- candidate edges: a hash shuffle in Ray tasks, through files (below). Map tasks (MAP_ROWS rows of one band
  each) split the live rows' (band, key, gidx) by hash(band, key) into `partitions_for` pieces, a number
  that grows with live rows x bands so that a reduce task holds about BUCKET_ENTRIES entries however large
  the corpus; a reduce task per partition holds whole buckets and turns them into edges with
  dedup.band_candidates, split again by hash(edge), and says how many edges each piece holds.
- the candidates' texts: the rows any edge joins (each bucket task lists its own) are spilled once
  (spill.SharedSpill) by SPILL_ROWS-row writer tasks, each reading only the row groups that hold its run.
- verification: a task per run of edge partitions (`verify_groups`: about VERIFY_EDGES edge copies each)
  holds every copy of its edges, drops the repeats and verifies the rest with dedup.verify_edges, the local
  executor's own rule (see `_verify`), reading each chunk's texts from the shared spill by position. (Each
  task once spilled its own rows, scanning every source's texts: 8+ scans where the local executor makes one.)
- connected components and survivors: on the driver (dedup.components / dedup.survivors) over the verified
  edges, refused past MAX_EDGES (see there).
- survivors and rejects: one Ray task per source runs stage.write_source (OUT must be a folder every
  node sees, as it is for a local cluster), sent only the ids its duplicates point to (KeptIds.subset).

The shuffle's pieces are Arrow files under the near-dedup scratch folder (OUT/.cache/hq-verify/shuffle-*/,
removed as they are read and at the end), and the object store carries only their names and counts: a
worker that writes or reads an object keeps the store's pages it touched mapped (its PSS grew ~20 MB per
map task, ~400 MB at 1M rows), while a file read into a task's own memory leaves with the task. A
worker's memory is therefore bounded by the constants below, not by the input's size, except for what
a verification task is sent of the whole corpus: an s2s flag per live row (1 byte, zero-copy from the
object store). A spill writer is sent where its own rows lie (SourceTexts.locate). Each task hands its freed memory back (stage.release_memory) before the worker runs the next.

Every task is retried by Ray when its worker dies (max_retries); each is a pure function of its inputs
or an atomic folder write, so a retry gives the same output. Ray Data (read_parquet/map_batches, groupby)
was the first design: on a small cluster its per-pipeline start-up cost 10-40 s per source, against
milliseconds for a task, so the stage uses tasks. Exact dedup, the quality rules and decontamination stay
on the driver, as in the local executor: they read a few narrow columns of the cached statistics.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence, Sized
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from m3e_data.executors.ray_session import require_ray
from m3e_data.stages.hq.decisions import Decisions, KeptIds
from m3e_data.stages.hq.dedup import band_candidates, clusters, verify_edges
from m3e_data.stages.hq.distinct import distinct
from m3e_data.stages.hq.quality import StatsParams
from m3e_data.stages.hq.spill import SharedSpill, save_npy
from m3e_data.stages.hq.stage import (
    SPILL_ROWS,
    STATS_TASK_ROWS,
    Executor,
    Located,
    SourceInput,
    range_stats,
    release_memory,
    write_source,
    write_spill,
)
from m3e_data.storage.store import parquet_files

PARTITIONS = 8  # the fewest shuffle partitions (and verification tasks): enough to spread a small cluster's CPUs
# A task's share of the shuffle is bounded, not a fixed fraction of the corpus (with 8 partitions a worker grew
# ~390 MB per million rows: benchmarks/bench_scale.py). Peaks above a worker's idle ~270 MB, measured at 1M and
# 2M rows (2026-12-03, README "Scale on one machine"):
# - MAP_ROWS: rows of one band one map task splits: up to ~70 MB;
# - BUCKET_ENTRIES: (band, key, gidx) entries one bucket task holds: partitions = live rows x bands /
#   BUCKET_ENTRIES, at least PARTITIONS. Up to ~125 MB (polars' group-by and join in band_candidates);
# - VERIFY_EDGES: candidate edge copies (16 bytes; an edge found in k bands comes k times) one verification
#   task holds: the bucket tasks' pieces are grouped into tasks of about this many (at least PARTITIONS tasks,
#   at most one per partition). Candidates are verified VERIFY_ROWS rows at a time (dedup.verify_edges),
#   their texts read from the shared spill. Up to ~350 MB, the worker's peak: with fewer than PARTITIONS x
#   VERIFY_EDGES copies (~5M rows of the benchmark's corpus) a task holds 1/PARTITIONS of them, so this
#   grows slowly (~25 MB per million rows) until then, and no more after.
# - SPILL_ROWS: candidate rows one spill writer reads and writes, a row group's batch at a time (at least
#   PARTITIONS writers); it holds their 16-byte index.
# Entries a hash partition gets vary around the mean (a few percent at these sizes), and a bucket with one
# key is never split: a key shared by millions of rows would still land in one task.
MAP_ROWS = 500_000
BUCKET_ENTRIES = 2_000_000
VERIFY_EDGES = 2_000_000
# Components run on the driver over the verified edges. Peak memory per edge: a and b (16 bytes), the
# verified frame's three float32 Jaccards and flag (13), and components' labels[a], labels[b] and their
# minimum (24): ~64 bytes, so MAX_EDGES is ~1 GiB of driver memory. Every near-duplicate row brings at
# least one verified edge and a pair of copies exactly one, so this is ~16 million near-duplicate rows
# where copies come in pairs, fewer where clusters are large (a cluster of k copies found in one small
# bucket holds up to k(k-1)/2 edges).
MAX_EDGES = 16_000_000


class TooManyEdges(RuntimeError):
    """The verified near-duplicate edges exceed what the driver's components step is allowed to hold."""


def _maybe_fail(fault: tuple[str, str] | None, step: str) -> None:
    """Test-only fault: kill this worker the first time `step` runs (the marker file says it happened)."""
    if fault is None or fault[0] != step:
        return
    try:
        fd = os.open(fault[1], os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.close(fd)
    os.kill(os.getpid(), signal.SIGKILL)


def _partition(keys: list[np.ndarray], parts: int) -> np.ndarray:
    """A stable hash of the key columns mod parts (not Python's hash: it differs per process)."""
    h = np.zeros(len(keys[0]), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in keys:
            h = (h ^ k.astype(np.uint64)) * np.uint64(0x9E3779B97F4A7C15)
            h ^= h >> np.uint64(29)
    return (h % np.uint64(parts)).astype(np.int64)


def _split(table: pa.Table, part: np.ndarray, parts: int) -> list[pa.Table]:
    """The rows of `table` by partition: the map side of the hash shuffle."""
    order = np.argsort(part, kind="stable")
    bounds = np.searchsorted(part[order], np.arange(parts + 1))
    return [table.take(pa.array(order[bounds[i]: bounds[i + 1]])) for i in range(parts)]


def _file_stats(path: str, params: StatsParams, fault: tuple[str, str] | None, start: int, stop: int) -> pa.Table:
    """stage.range_stats: the statistics of rows [start, stop) of one part file, in row order."""
    _maybe_fail(fault, "stats")
    try:
        return range_stats((path, start, stop), params)
    finally:
        release_memory()


def partitions_for(rows: int, bands: int, least: int = PARTITIONS, entries: int = BUCKET_ENTRIES) -> int:
    """Shuffle partitions for `rows` live rows of `bands` bands: each bucket task about `entries` entries."""
    return max(least, -(-rows * bands // entries), 1)


def verify_groups(counts: np.ndarray, least: int = PARTITIONS, edges: int = VERIFY_EDGES) -> list[list[int]]:
    """The edge partitions (by their edge copies `counts`) each verification task takes: consecutive runs of
    about the same number of copies, enough tasks that each holds about `edges`, at least `least` (where there
    are that many partitions). Fewer, larger tasks than partitions: less per-task overhead."""
    parts = len(counts)
    tasks = min(parts, max(least, -(-int(counts.sum()) // edges), 1))
    cum = np.cumsum(counts)
    # Partition p goes to the task its copies' midpoint falls in: runs of even weight, in order.
    mid = (cum - counts / 2) * tasks / max(int(cum[-1]), 1) if parts else np.zeros(0)
    task_of = np.minimum(mid.astype(np.int64), tasks - 1)
    return [g for g in (np.flatnonzero(task_of == t).tolist() for t in range(tasks)) if g]


ENTRY_SCHEMA = pa.schema([("band", pa.int64()), ("key", pa.uint64()), ("gidx", pa.int64())])
EDGE_SCHEMA = pa.schema([("a", pa.int64()), ("b", pa.int64())])


def _save(path: Path, tables: list[pa.Table], schema: pa.Schema) -> None:
    """tables as the record batches 0..n-1 of one Arrow file, written whole or not at all (a retried task
    writes it again)."""
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex}.tmp")
    with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
        for table in tables:
            batches = table.cast(schema).combine_chunks().to_batches()
            writer.write_batch(batches[0] if batches else pa.RecordBatch.from_pylist([], schema=schema))
    os.replace(tmp, path)


def _load(pieces: Sequence[tuple[str, int]], schema: pa.Schema) -> pa.Table:
    """Record batch i of each file: read into this task's own memory (not mapped), so that what the task
    read leaves the worker with the task."""
    batches = []
    for path, i in pieces:
        with pa.OSFile(path, "rb") as source:
            batches.append(pa.ipc.open_file(source).get_batch(i))
    return pa.Table.from_batches(batches, schema)


def _shuffle_band(src: str, dst: str, band: int, parts: int) -> None:
    """Some rows of one band (file `src`: gidx, key) as (band, key, gidx), split by hash(band, key) into the
    batches of file `dst`: a bucket lands whole in one partition. `src` is removed once `dst` is written
    (a retry of a task that got that far finds `dst` and is done)."""
    if not os.path.exists(src) and os.path.exists(dst):
        return
    try:
        with pa.OSFile(src, "rb") as source:
            rows = pa.ipc.open_file(source).read_all()
        key = rows["key"].to_numpy()
        table = pa.table({"band": np.full(len(key), band, dtype=np.int64), "key": key, "gidx": rows["gidx"]})
        del rows
        _save(Path(dst), _split(table, _partition([table["band"].to_numpy(), key], parts), parts), ENTRY_SCHEMA)
        os.unlink(src)
    finally:
        release_memory()


def _bucket_edges(dst: str, parts: int, pieces: list[tuple[str, int]]) -> np.ndarray:
    """Candidate edges of one partition's whole buckets, band by band (band_candidates' rule), split again by
    hash(edge) into the batches of file `dst`, so that every copy of an edge (found in several bands) meets in
    one verification task; the rows they join (sorted) go to `dst`'s .rows.npy, for the spill. Returns the
    number of edges in each batch (the driver groups them by it)."""
    try:
        df = pl.from_arrow(_load(pieces, ENTRY_SCHEMA))
        assert isinstance(df, pl.DataFrame)
        edges = [band_candidates(g["gidx"].to_numpy(), g["key"].to_numpy()) for _, g in df.group_by("band")]
        del df
        out = pl.concat(edges) if edges else pl.DataFrame(schema={"a": pl.Int64, "b": pl.Int64})
        del edges
        a, b = out["a"].to_numpy(), out["b"].to_numpy()
        save_npy(Path(dst + ".rows.npy"), distinct(np.concatenate([a, b])))
        split = _split(out.to_arrow(), _partition([a, b], parts), parts)
        _save(Path(dst), split, EDGE_SCHEMA)
        return np.array([t.num_rows for t in split], dtype=np.int64)
    finally:
        release_memory()


def _spill(job: tuple[SharedSpill, int, list[Located]], fault: tuple[str, str] | None) -> None:
    """Writer t of the shared spill: its run of the candidate rows' texts, read from the sources' row groups
    that hold them (stage.write_spill)."""
    _maybe_fail(fault, "spill")
    try:
        write_spill(job)
    finally:
        release_memory()


def _verify(spilled: SharedSpill, homogeneous: np.ndarray, threshold: float, side_threshold: float,
            fault: tuple[str, str] | None, pieces: list[tuple[str, int]]) -> pa.Table:
    """The verified edges among some partitions' candidates: every copy of an edge meets here (the bucket
    tasks split by hash(edge)), the repeats are dropped and the rest go through dedup.verify_edges, the very
    rule the local executor runs, each chunk's texts read from the shared spill by position."""
    _maybe_fail(fault, "verify")
    try:
        edges = pl.from_arrow(_load(pieces, EDGE_SCHEMA))
        assert isinstance(edges, pl.DataFrame)
        verified = verify_edges(edges.unique().sort("a", "b"), spilled, threshold, homogeneous, side_threshold)
        return verified.select("a", "b").to_arrow()
    finally:
        release_memory()


def _write(out: Path, src: SourceInput, d: Decisions, kept_ids: KeptIds, run_key: dict[str, Any],
           fault: tuple[str, str] | None) -> str:
    _maybe_fail(fault, "write")
    try:
        write_source(out, src, d, kept_ids, run_key)
    finally:
        release_memory()
    return src.name


class RayExecutor(Executor):
    """The hq stage's statistics, near dedup and writing on the Ray session already joined (ray_session).

    `fault` is for tests only: (step, marker file) kills a worker the first time that step ("stats",
    "spill", "verify" or "write") runs, to show that Ray's retry gives the same output.
    """

    def __init__(self, partitions: int = PARTITIONS, max_edges: int = MAX_EDGES,
                 fault: tuple[str, str] | None = None, stats_rows: int = STATS_TASK_ROWS,
                 bucket_entries: int = BUCKET_ENTRIES, verify_edges: int = VERIFY_EDGES,
                 map_rows: int = MAP_ROWS, spill_rows: int = SPILL_ROWS) -> None:
        super().__init__(1)
        self.ray = require_ray()
        self.partitions = partitions  # the fewest: more where the input asks for them (partitions_for)
        self.stats_rows = stats_rows
        self.max_edges = max_edges
        self.fault = fault
        self.bucket_entries, self.verify_edges, self.map_rows = bucket_entries, verify_edges, map_rows
        self.spill_rows = spill_rows
        # What the last near_duplicates used (tests, logs).
        self.last_partitions = self.last_verify_tasks = self.last_spill_writers = 0

    def stats(self, folder: Path, params: StatsParams) -> Iterator[pa.Table]:
        """One Ray task per `stats_rows` rows of each part file, at most 2 x CPUs in flight; results in row order."""
        task = self.ray.remote(max_retries=3)(_file_stats)
        in_flight = max(2, 2 * int(self.ray.cluster_resources().get("CPU", 1)))
        pending: list[Any] = []
        for path in parquet_files(folder):
            rows = pq.read_metadata(path).num_rows
            for start in range(0, max(rows, 1), self.stats_rows):  # an empty file: one task, an empty answer
                pending.append(task.remote(str(path), params, self.fault, start, min(start + self.stats_rows, rows)))
                if len(pending) >= in_flight:
                    yield from self._rows(pending.pop(0))
        for ref in pending:
            yield from self._rows(ref)

    def _rows(self, ref: Any) -> Iterator[pa.Table]:
        table = self.ray.get(ref)
        if table.num_rows:  # an empty part adds nothing (the cache of an empty source is written by the caller)
            yield table

    def near_duplicates(
        self,
        n: int,
        bands: Iterable[tuple[np.ndarray, np.ndarray]],
        texts: Callable[[np.ndarray], tuple[Sequence[str], Sequence[str]]],
        rank: np.ndarray,
        threshold: float = 0.8,
        homogeneous: np.ndarray | None = None,
        side_threshold: float = 0.5,
    ) -> tuple[np.ndarray, pl.DataFrame]:
        band_list = bands if isinstance(bands, Sized) else list(bands)
        it = iter(band_list)
        first = next(it, None)
        edges = pl.DataFrame(schema={"a": pl.Int64, "b": pl.Int64})
        if first is not None:
            parts = partitions_for(len(first[0]), len(band_list), self.partitions, self.bucket_entries)
            self.last_partitions = parts
            # The stage's texts (SourceTexts) name OUT's scratch folder, which every node sees; any other
            # texts callable gets a temporary folder, which serves a one-node cluster only.
            base = getattr(texts, "scratch", None)
            base = Path(base) if base is not None else Path(tempfile.mkdtemp(prefix="hq-"))
            # A killed run's shuffle files (GBs at millions of rows); no other run is using them: run_hq
            # holds OUT's lock.
            for stale in base.glob("shuffle-*"):
                shutil.rmtree(stale, ignore_errors=True)
            root = base / f"shuffle-{uuid.uuid4().hex}"
            root.mkdir(parents=True)
            try:
                verified = self._shuffle(root, parts, itertools.chain([first], it), texts, n, threshold,
                                         homogeneous, side_threshold)
            finally:
                shutil.rmtree(root, ignore_errors=True)
                with contextlib.suppress(OSError):  # another run's folder may still be there
                    root.parent.rmdir()
            found = pl.from_arrow(pa.concat_tables(verified))
            assert isinstance(found, pl.DataFrame)
            edges = found.sort("a", "b")
        if edges.height > self.max_edges:
            raise TooManyEdges(
                f"{edges.height:,} verified near-duplicate edges exceed the driver's bound of {self.max_edges:,} "
                f"(~64 bytes each); run hq with a stricter dedup.jaccard or more dedup.rows per band"
            )
        return clusters(n, edges["a"].to_numpy(), edges["b"].to_numpy(), rank), edges

    def _shuffle(self, root: Path, parts: int, bands: Iterator[tuple[np.ndarray, np.ndarray]], texts: Any, n: int,
                 threshold: float, homogeneous: np.ndarray | None, side_threshold: float) -> list[pa.Table]:
        """Band keys to verified edges through files under `root` (a folder every node sees): the object store
        carries only file names and counts, so a worker keeps none of the shuffle's pages when its task ends."""
        ray = self.ray
        shuffle = ray.remote(max_retries=3)(_shuffle_band)
        bucket = ray.remote(max_retries=3)(_bucket_edges)
        verify = ray.remote(max_retries=3)(_verify)
        maps: list[str] = []
        done: list[Any] = []
        for i, (g, k) in enumerate(bands):
            g, k = np.asarray(g, dtype=np.int64), np.asarray(k, dtype=np.uint64)
            for lo in range(0, max(len(g), 1), self.map_rows):
                src, dst = root / f"in-{len(maps)}.arrow", root / f"map-{len(maps)}.arrow"
                rows = pa.table({"gidx": g[lo: lo + self.map_rows], "key": k[lo: lo + self.map_rows]})
                with pa.OSFile(str(src), "wb") as sink, pa.ipc.new_file(sink, rows.schema) as writer:
                    writer.write_table(rows)
                done.append(shuffle.remote(str(src), str(dst), i, parts))
                maps.append(str(dst))
        ray.get(done)
        buckets = [str(root / f"bucket-{p}.arrow") for p in range(parts)]
        counts = np.sum(ray.get([bucket.remote(buckets[p], parts, [(m, p) for m in maps]) for p in range(parts)]),
                        axis=0)
        for m in maps:  # disk: the shuffle's files hold ~40 bytes per live row and band until here
            os.unlink(m)
        # The candidates' texts, spilled once by writers that each read a run of the rows' row groups; every
        # verification task reads its chunks from there (rather than each scanning the sources itself).
        rows = distinct(np.concatenate([np.load(b + ".rows.npy") for b in buckets]))
        for b in buckets:
            os.unlink(b + ".rows.npy")
        spilled = SharedSpill.plan(root / "spill", rows, max(self.partitions, -(-len(rows) // self.spill_rows)))
        del rows
        self.last_spill_writers = spilled.writers
        if hasattr(texts, "spill_jobs"):  # the stage's SourceTexts: each writer is sent where its rows lie
            spill = ray.remote(max_retries=3)(_spill)
            ray.get([spill.remote(job, self.fault) for job in texts.spill_jobs(spilled)])
        else:  # any other texts callable is read here
            for t in range(spilled.writers):
                queries, positives = texts(spilled.rows_of(t))
                spilled.write(t, [(np.arange(len(queries)), pa.table({"query": list(queries),
                                                                      "positive": list(positives)}))])
        groups = verify_groups(counts, self.partitions, self.verify_edges)
        self.last_verify_tasks = len(groups)
        s2s = np.asarray(homogeneous if homogeneous is not None else np.zeros(n, dtype=bool), dtype=bool)
        s2s_ref = ray.put(s2s)
        return list(ray.get([
            verify.remote(spilled, s2s_ref, threshold, side_threshold, self.fault,
                          [(b, p) for p in group for b in buckets])
            for group in groups
        ]))

    def write(self, out: Path, jobs: list[tuple[SourceInput, Decisions]], kept_ids: KeptIds,
              run_key: dict[str, Any], on_written: Callable[[SourceInput], None]) -> None:
        """write_source per source in a Ray task, each given only the ids its duplicates point to."""
        ray = self.ray
        task = ray.remote(max_retries=3)(_write)
        pending = {  # each writer gets the ids its own duplicates point to, not the corpus's
            task.remote(out, src, d, kept_ids.subset(d.kept_gidx[d.kept_gidx >= 0]), run_key, self.fault): src
            for src, d in jobs
        }
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            ray.get(done[0])  # a task that failed for good raises here
            on_written(pending.pop(done[0]))
