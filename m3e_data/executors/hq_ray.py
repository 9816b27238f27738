"""The m3e-hq stage's heavy steps on Ray: the same pure functions as the local executor, so the same rows.

- statistics and MinHash band keys: one Ray task per STATS_TASK_ROWS rows of a source's part files runs
  stage._stats_task over their batches (a task per whole file left a source of one part file on one CPU:
  benchmarks/bench_scale.py); the driver streams the results, in row order, into the same cached stats
  file the local path writes, so a thresholds-only rerun reads the cache and takes seconds whichever executor made it.
- candidate edges: a hash shuffle in Ray tasks. A map task per band splits the live rows' (band, key, gidx)
  by hash(band, key) into PARTITIONS pieces; a reduce task per partition holds whole buckets and turns them
  into edges with dedup.band_candidates, split again by hash(edge).
- verification: a task per edge partition holds every copy of its edges, drops the repeats and verifies the
  rest with dedup.near_duplicates itself (see `_verify`), reading the rows' texts from the sources.
- connected components and survivors: on the driver (dedup.components / dedup.survivors) over the verified
  edges, refused past MAX_EDGES (see there).
- survivors and rejects: one Ray task per source runs stage.write_source (OUT must be a folder every
  node sees, as it is for a local cluster).

Every task is retried by Ray when its worker dies (max_retries); each is a pure function of its inputs
or an atomic folder write, so a retry gives the same output. Ray Data (read_parquet/map_batches, groupby)
was the first design: on a small cluster its per-pipeline start-up cost 10-40 s per source, against
milliseconds for a task, so the stage uses tasks. Exact dedup, the quality rules and decontamination stay
on the driver, as in the local executor: they read a few narrow columns of the cached statistics.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from m3e_data.executors.ray_session import require_ray
from m3e_data.stages.hq.decisions import Decisions, KeptIds
from m3e_data.stages.hq.dedup import band_candidates, clusters, near_duplicates
from m3e_data.stages.hq.quality import StatsParams
from m3e_data.stages.hq.stage import (
    STATS_TASK_ROWS,
    Executor,
    SourceInput,
    range_stats,
    write_source,
)
from m3e_data.storage.store import parquet_files

PARTITIONS = 8  # shuffle partitions for buckets and edges: enough to spread a small cluster's CPUs
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
    return range_stats((path, start, stop), params)


def _shuffle_band(band: int, gidx: np.ndarray, key: np.ndarray, parts: int) -> list[pa.Table]:
    """One band's (band, key, gidx) rows split by hash(band, key): a bucket lands whole in one partition."""
    table = pa.table({"band": np.full(len(gidx), band, dtype=np.int64), "key": key, "gidx": gidx})
    return _split(table, _partition([table["band"].to_numpy(), key], parts), parts)


def _bucket_edges(parts: int, *pieces: pa.Table) -> list[pa.Table]:
    """Candidate edges of one partition's whole buckets, band by band (band_candidates' rule), split again by
    hash(edge) so that every copy of an edge (found in several bands) meets in one verification task."""
    df = pl.from_arrow(pa.concat_tables(pieces))
    assert isinstance(df, pl.DataFrame)
    edges = [band_candidates(g["gidx"].to_numpy(), g["key"].to_numpy()) for _, g in df.group_by("band")]
    out = pl.concat(edges) if edges else pl.DataFrame(schema={"a": pl.Int64, "b": pl.Int64})
    table = out.to_arrow()
    return _split(table, _partition([out["a"].to_numpy(), out["b"].to_numpy()], parts), parts)


def _verify(texts: Any, homogeneous: np.ndarray, threshold: float, side_threshold: float,
            fault: tuple[str, str] | None, *pieces: pa.Table) -> pa.Table:
    """The verified edges among one partition's candidates, by dedup.near_duplicates itself: each edge
    becomes a bucket of its two rows, which near_duplicates turns back into exactly that edge and verifies
    (the same rule whatever the dedup module's verification becomes)."""
    _maybe_fail(fault, "verify")
    edges = pl.from_arrow(pa.concat_tables(pieces))
    assert isinstance(edges, pl.DataFrame)
    edges = edges.unique()
    if edges.height == 0:
        return pa.table({"a": pa.array([], pa.int64()), "b": pa.array([], pa.int64())})
    ga, gb = edges["a"].to_numpy(), edges["b"].to_numpy()
    involved = np.unique(np.concatenate([ga, gb]))
    la, lb = np.searchsorted(involved, ga), np.searchsorted(involved, gb)
    gidx = np.stack([la, lb], axis=1).ravel()
    bucket = np.repeat(np.arange(len(la), dtype=np.uint64), 2)
    _, verified = near_duplicates(
        len(involved), [(gidx, bucket)], lambda local: texts(involved[local]),
        np.arange(len(involved), dtype=np.int64), threshold, homogeneous[involved], side_threshold,
    )
    return pa.table({"a": involved[verified["a"].to_numpy()], "b": involved[verified["b"].to_numpy()]})


def _write(out: Path, src: SourceInput, d: Decisions, kept_ids: KeptIds, run_key: dict[str, Any],
           fault: tuple[str, str] | None) -> str:
    _maybe_fail(fault, "write")
    write_source(out, src, d, kept_ids, run_key)
    return src.name


class RayExecutor(Executor):
    """The hq stage's statistics, near dedup and writing on the Ray session already joined (ray_session).

    `fault` is for tests only: (step, marker file) kills a worker the first time that step ("stats",
    "verify" or "write") runs, to show that Ray's retry gives the same output.
    """

    def __init__(self, partitions: int = PARTITIONS, max_edges: int = MAX_EDGES,
                 fault: tuple[str, str] | None = None, stats_rows: int = STATS_TASK_ROWS) -> None:
        super().__init__(1)
        self.ray = require_ray()
        self.partitions = partitions
        self.stats_rows = stats_rows
        self.max_edges = max_edges
        self.fault = fault

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
        ray, parts = self.ray, self.partitions
        shuffle = ray.remote(num_returns=parts, max_retries=3)(_shuffle_band)
        bucket = ray.remote(num_returns=parts, max_retries=3)(_bucket_edges)
        verify = ray.remote(max_retries=3)(_verify)
        mapped = [shuffle.remote(i, np.asarray(g, dtype=np.int64), np.asarray(k, dtype=np.uint64), parts)
                  for i, (g, k) in enumerate(bands)]
        edges = pl.DataFrame(schema={"a": pl.Int64, "b": pl.Int64})
        if mapped:
            if parts == 1:
                mapped = [[m] for m in mapped]
            by_bucket = [bucket.remote(parts, *(m[p] for m in mapped)) for p in range(parts)]
            if parts == 1:
                by_bucket = [[b] for b in by_bucket]
            s2s = np.asarray(homogeneous if homogeneous is not None else np.zeros(n, dtype=bool), dtype=bool)
            texts_ref, s2s_ref = ray.put(texts), ray.put(s2s)
            verified = ray.get([
                verify.remote(texts_ref, s2s_ref, threshold, side_threshold, self.fault, *(b[p] for b in by_bucket))
                for p in range(parts)
            ])
            found = pl.from_arrow(pa.concat_tables(verified))
            assert isinstance(found, pl.DataFrame)
            edges = found.sort("a", "b")
        if edges.height > self.max_edges:
            raise TooManyEdges(
                f"{edges.height:,} verified near-duplicate edges exceed the driver's bound of {self.max_edges:,} "
                f"(~64 bytes each); run hq with a stricter dedup.jaccard or more dedup.rows per band"
            )
        return clusters(n, edges["a"].to_numpy(), edges["b"].to_numpy(), rank), edges

    def write(self, out: Path, jobs: list[tuple[SourceInput, Decisions]], kept_ids: KeptIds,
              run_key: dict[str, Any], on_written: Callable[[SourceInput], None]) -> None:
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
