"""Atomic files and per-source output folders that a killed build never leaves half-written.

A stage writes one source into a hidden temp folder, adds `_SUCCESS.json` (its statistics and the key
that says what it was built from), then swaps the folder into place with renames. A folder without
`_SUCCESS.json` is never trusted; a rerun whose key matches skips the source.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from m3e_data import ownership
from m3e_data.schema import UNIFIED_SCHEMA

SUCCESS = "_SUCCESS.json"
PART_ROWS = 1_000_000  # rows per Parquet part file
ROW_GROUP_ROWS = 100_000


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        # mkstemp makes the file 0600; the result is an ordinary file (a report, a card), readable as any.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, ensure_ascii=False, indent=2, sort_keys=False) + "\n")


def read_success(folder: Path) -> dict[str, Any] | None:
    """The completion record of a finished source folder, or None if it is absent or unreadable."""
    try:
        return json.loads((folder / SUCCESS).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


class PartWriter:
    """Writes batches into part-00000.parquet, part-00001.parquet, … of PART_ROWS rows at most."""

    def __init__(self, folder: Path, schema: pa.Schema = UNIFIED_SCHEMA, part_rows: int = PART_ROWS) -> None:
        self.folder, self.schema, self.part_rows = folder, schema, part_rows
        self.parts: list[str] = []
        self.rows = 0
        self._writer: pq.ParquetWriter | None = None
        self._in_part = 0

    def write(self, batch: pa.RecordBatch | pa.Table) -> None:
        offset = 0
        while offset < batch.num_rows:
            if self._writer is None or self._in_part >= self.part_rows:
                self._open_next()
            assert self._writer is not None
            take = min(batch.num_rows - offset, self.part_rows - self._in_part)
            chunk = batch.slice(offset, take)
            table = chunk if isinstance(chunk, pa.Table) else pa.Table.from_batches([chunk])
            self._writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
            self._in_part += take
            self.rows += take
            offset += take

    def _open_next(self) -> None:
        self.close()
        name = f"part-{len(self.parts):05d}.parquet"
        self.parts.append(name)
        self._writer = pq.ParquetWriter(self.folder / name, self.schema, compression="zstd")
        self._in_part = 0

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def finish(self) -> list[str]:
        """Close the last part; an empty output still gets one (empty) part so readers see the schema."""
        if not self.parts:
            self._open_next()
        self.close()
        return self.parts


@contextmanager
def staged_folder(target: Path, owner: str = "build") -> Iterator[Path]:
    """A temp folder beside `target` that replaces it on success and is removed on failure.

    `target` is replaced only if `owner` wrote everything in it (m3e_data.ownership): refused before any
    work starts and checked again before the swap; the new folder gets `owner`'s marker.
    """
    ownership.check_replaceable(target, owner)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        ownership.check_replaceable(target, owner)
        ownership.mark(tmp, owner)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = target.parent / f".{target.name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)


def clean_stale(folder: Path) -> None:
    """Remove temp folders that a killed run left behind."""
    if folder.is_dir():
        for p in folder.glob(".*.tmp"):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


def parquet_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("part-*.parquet"))


def iter_batches(path: Path, batch_size: int, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
    """Record batches of one Parquet file, streamed in bounded memory.

    pre_buffer=False: a pre-buffering ParquetFile (pyarrow's default) keeps every byte range it has read
    until it is closed, so reading a file batch by batch still grew to its whole size (2M rows: 1.0 GB of
    Arrow memory at the end instead of 1 MB).
    """
    pf = pq.ParquetFile(path, pre_buffer=False)
    try:
        yield from pf.iter_batches(batch_size=batch_size, columns=columns)
    finally:
        pf.close()
