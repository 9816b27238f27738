"""Candidate rows' texts set aside for near-dedup verification, read back by position.

Verification takes chunks of candidate rows spread over the whole corpus. Reading each chunk from the
sources' Parquet would decode the text columns from the start every time, so the candidates' texts are
first written once, in row order, to flat files: each row's query and positive as UTF-8, back to back.
Where a row starts and how long its two texts are (16 bytes a row) is the file's index.

A chunk's rows are read with os.pread, never through a memory map: the rows lie all over the file, and a
mapping kept every page it touched resident in the reading process (the whole file, ~900 MB at 4M pairs).

- `write_rows`: one file from (positions, table of query and positive) pieces; returns its index.
- `SpilledRows`: some rows' places in one or more spill files; `load()` reads exactly their bytes. A pool
  worker or Ray task is sent this (a few numbers per row), not the texts.
- `SharedSpill`: a spill written by several writers at once (Ray tasks), each a consecutive run of the
  sorted rows, with its index in a file beside its texts; any process that sees the folder reads it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from m3e_data.stages.hq.distinct import distinct

INDEX = np.dtype([("start", "<i8"), ("q_len", "<i4"), ("p_len", "<i4")])


def write_rows(path: Path, pieces: Iterable[tuple[np.ndarray, pa.Table]], n: int) -> np.ndarray:
    """Writes n rows' texts to `path` (whole or not at all: a temp file renamed) from pieces of (positions
    among the n rows, table with query and positive), in the order the pieces come; returns the INDEX of
    each of the n rows (zeros for a row no piece gave)."""
    index = np.zeros(n, dtype=INDEX)
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as sink:
            end = 0
            for where, table in pieces:
                q = [t.encode("utf-8", "surrogatepass") for t in table.column("query").to_pylist()]
                p = [t.encode("utf-8", "surrogatepass") for t in table.column("positive").to_pylist()]
                ql = np.fromiter(map(len, q), dtype=np.int64, count=len(q))
                pl_ = np.fromiter(map(len, p), dtype=np.int64, count=len(p))
                ends = end + np.cumsum(ql + pl_)
                index["start"][where], index["q_len"][where], index["p_len"][where] = ends - ql - pl_, ql, pl_
                sink.write(b"".join(x for pair in zip(q, p, strict=True) for x in pair))
                end = int(ends[-1]) if len(ends) else end
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return index


@dataclass
class SpilledRows:
    """Where some rows' texts lie: row i in file paths[file[i]] at byte start[i], its query q_len[i] bytes
    and its positive the p_len[i] bytes right after."""

    paths: tuple[str, ...]
    file: np.ndarray  # int32
    start: np.ndarray  # int64
    q_len: np.ndarray  # int32: UTF-8 bytes
    p_len: np.ndarray

    def load(self) -> tuple[list[str], list[str]]:
        queries: list[str] = []
        positives: list[str] = []
        fds = {f: os.open(self.paths[f], os.O_RDONLY) for f in distinct(self.file).tolist()}
        try:
            for f, off, ql, pl_ in zip(self.file.tolist(), self.start.tolist(), self.q_len.tolist(),
                                       self.p_len.tolist(), strict=True):
                data = os.pread(fds[f], ql + pl_, off)
                queries.append(data[:ql].decode("utf-8", "surrogatepass"))
                positives.append(data[ql:].decode("utf-8", "surrogatepass"))
        finally:
            for fd in fds.values():
                os.close(fd)
        return queries, positives


class SharedSpill:
    """The texts of `rows` (sorted, unique global row numbers) under `folder`, written by len(bounds) - 1
    writers: writer t holds rows[bounds[t]:bounds[t + 1]] in texts-<t>.bin, its INDEX in index-<t>.npy, and
    rows.npy holds `rows` itself. Picklable and small (a folder and the bounds), so each task is sent it and
    reads what it needs through memory maps it closes again: a task's memory does not grow with the spill."""

    def __init__(self, folder: Path, bounds: list[int]) -> None:
        self.folder, self.bounds = Path(folder), bounds

    @classmethod
    def plan(cls, folder: Path, rows: np.ndarray, writers: int) -> SharedSpill:
        """Saves `rows` and cuts them into `writers` runs of about the same length (at least one row each)."""
        folder.mkdir(parents=True, exist_ok=True)
        save_npy(folder / "rows.npy", np.asarray(rows, dtype=np.int64))
        writers = max(1, min(writers, len(rows)))
        return cls(folder, np.linspace(0, len(rows), writers + 1).round().astype(int).tolist())

    @property
    def writers(self) -> int:
        return len(self.bounds) - 1

    def rows_of(self, t: int) -> np.ndarray:
        """The sorted row numbers writer t spills."""
        return np.array(np.load(self.folder / "rows.npy", mmap_mode="r")[self.bounds[t]: self.bounds[t + 1]])

    def write(self, t: int, pieces: Iterable[tuple[np.ndarray, pa.Table]]) -> None:
        """Writer t's file and index from the pieces of its rows (positions into rows_of(t)); a retried
        writer writes both again."""
        n = self.bounds[t + 1] - self.bounds[t]
        index = write_rows(self.folder / f"texts-{t}.bin", pieces, n)
        save_npy(self.folder / f"index-{t}.npy", index)

    def __call__(self, rows: np.ndarray) -> SpilledRows:
        """Where the given rows (each one of the spilled rows) lie."""
        rows = np.asarray(rows, dtype=np.int64)
        spilled = np.load(self.folder / "rows.npy", mmap_mode="r")
        at = np.searchsorted(spilled, rows)
        if len(rows) and (at.max() >= len(spilled) or not np.array_equal(spilled[at], rows)):
            raise KeyError("a row that was not spilled was asked for")
        del spilled
        file = (np.searchsorted(self.bounds, at, side="right") - 1).astype(np.int32)
        index = np.zeros(len(rows), dtype=INDEX)
        for t in distinct(file).tolist():
            sel = file == t
            index[sel] = np.load(self.folder / f"index-{t}.npy", mmap_mode="r")[at[sel] - self.bounds[t]]
        paths = tuple(str(self.folder / f"texts-{t}.bin") for t in range(self.writers))
        return SpilledRows(paths, file, index["start"], index["q_len"], index["p_len"])


def save_npy(path: Path, array: np.ndarray) -> None:
    """np.save whole or not at all (a temp file renamed): a retried task writes it again."""
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex}.tmp.npy")
    np.save(tmp, array)
    os.replace(tmp, path)
