"""Atomic files and per-source output folders that a killed build never leaves half-written.

A stage writes one source into a hidden temp folder, adds `_SUCCESS.json` (its statistics and the key
that says what it was built from), then swaps the folder into place with renames. On the way in, the
record gets the folder's files with their sizes and SHA-256 (`files`). A folder without `_SUCCESS.json`,
or whose listed files are missing or of another size, is never trusted (`read_success` says None, so the
stage rebuilds it); `verify=True` compares the checksums too (on `--verify` and before publishing).

Temp names start with TEMP_PREFIX and the owner's pid (`.m3e-tmp.<pid>.<random>.<name>`): a name no
user file has, so cleaning up after a killed run removes only temps whose owner is dead, never a live
run's and never a user's file.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from m3e_data.schema import UNIFIED_SCHEMA
from m3e_data.storage import ownership

SUCCESS = "_SUCCESS.json"
TEMP_PREFIX = ".m3e-tmp."
PART_ROWS = 1_000_000  # rows per Parquet part file
ROW_GROUP_ROWS = 100_000

# Called with each folder staged_folder commits (storage.remote pushes it to an object store at once).
_commit_hooks: list[Callable[[Path], None]] = []


def add_commit_hook(hook: Callable[[Path], None]) -> None:
    _commit_hooks.append(hook)


def remove_commit_hook(hook: Callable[[Path], None]) -> None:
    if hook in _commit_hooks:
        _commit_hooks.remove(hook)


@contextmanager
def commit_hooks_held() -> Iterator[None]:
    """No commit hook runs inside (a pool worker's commits are announced by the process that owns the
    hooks, with run_commit_hooks, once the worker reports them)."""
    held = list(_commit_hooks)
    _commit_hooks.clear()
    try:
        yield
    finally:
        _commit_hooks[:] = held


def run_commit_hooks(target: Path) -> None:
    """Announce a folder committed elsewhere (see commit_hooks_held)."""
    for hook in list(_commit_hooks):
        hook(target)


def temp_name(name: str) -> str:
    """A name for a temp beside `name` that says whose it is (this process) and that no user file has."""
    return f"{TEMP_PREFIX}{os.getpid()}.{secrets.token_hex(4)}.{name}"


def temp_owner(name: str) -> int | None:
    """The pid a temp name carries, or None when the name is not one of ours."""
    if not name.startswith(TEMP_PREFIX):
        return None
    pid = name[len(TEMP_PREFIX):].split(".", 1)[0]
    return int(pid) if pid.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / temp_name(path.name)
    try:
        # O_EXCL: a new file, created with the umask's ordinary permissions (a report, a card).
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, ensure_ascii=False, indent=2, sort_keys=False) + "\n")


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def list_files(folder: Path) -> dict[str, dict[str, Any]]:
    """Every file under `folder` but the completion record: relative path -> bytes and sha256."""
    return {
        p.relative_to(folder).as_posix(): {"bytes": p.stat().st_size, "sha256": file_sha256(p)}
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != SUCCESS
    }


def damage(folder: Path, record: dict[str, Any], verify: bool = False) -> list[str]:
    """What is wrong with a committed folder's files against its record ([] when intact).

    Sizes always (a stat per file); checksums when `verify`. A record written before files were listed
    has its `parts` checked for presence.
    """
    files = record.get("files")
    if not isinstance(files, dict):
        parts = record.get("parts")
        names = parts if isinstance(parts, list) else []
        return [f"{n}: missing" for n in names if not (folder / str(n)).is_file()]
    problems = []
    for rel, want in files.items():
        path = folder / rel
        try:
            size = path.stat().st_size
        except OSError:
            problems.append(f"{rel}: missing")
            continue
        if size != want.get("bytes"):
            problems.append(f"{rel}: {size:,} bytes, the record says {want.get('bytes')}")
        elif verify and file_sha256(path) != want.get("sha256"):
            problems.append(f"{rel}: checksum differs from the record")
    return problems


def read_success(folder: Path, verify: bool = False) -> dict[str, Any] | None:
    """The completion record of a finished folder, or None if it is absent, unreadable, or its files are
    missing or damaged (see `damage`): such a folder is rebuilt, never trusted."""
    try:
        record = json.loads((folder / SUCCESS).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(record, dict) or damage(folder, record, verify):
        return None
    return record


def _seal(folder: Path) -> None:
    """Add the folder's file list (sizes, checksums) to its completion record, if it has one."""
    path = folder / SUCCESS
    if not path.is_file():
        return
    record = json.loads(path.read_text(encoding="utf-8"))
    record["files"] = list_files(folder)
    atomic_write_json(path, record)


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

    A `_SUCCESS.json` written into it gets the folder's file list (sizes, checksums) before the swap.
    `target` is replaced only if `owner` wrote everything in it (m3e_data.storage.ownership): refused before any
    work starts and checked again before the swap; the new folder gets `owner`'s marker.
    """
    # A stage's own part that changed size is damage to rebuild (verify), not a user's file: only files the
    # stage did not write at all are foreign here.
    ownership.check_replaceable(target, owner, sizes=False)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / temp_name(target.name)
    tmp.mkdir()  # ordinary permissions per the umask (mkdtemp made 0700 folders)
    try:
        yield tmp
        _seal(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        ownership.check_replaceable(target, owner, sizes=False)
        ownership.mark(tmp, owner)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    swap_in(tmp, target)
    for hook in list(_commit_hooks):
        hook(target)


def swap_in(tmp: Path, target: Path) -> None:
    """Put the finished folder `tmp` at `target` with renames, the old one (if any) moved aside first and
    removed after: a reader sees the old folder or the new one, never a mix."""
    old = target.parent / temp_name(target.name + ".old")
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)


def ordinary_permissions(folder: Path) -> None:
    """Folders and files under `folder` get the umask's ordinary modes (0755/0644 for 022), whatever the
    library that wrote them chose (a temp folder is 0700, some writers make 0600 files)."""
    mask = os.umask(0)
    os.umask(mask)
    for p in [folder, *folder.rglob("*")]:
        if not p.is_symlink():
            p.chmod((0o777 if p.is_dir() else 0o666) & ~mask)


def clean_stale(folder: Path) -> None:
    """Remove the temps a killed run left behind: only ours (TEMP_PREFIX) and only if the owner is dead."""
    if not folder.is_dir():
        return
    for p in folder.glob(TEMP_PREFIX + "*"):
        pid = temp_owner(p.name)
        if pid is None or _alive(pid):
            continue
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() and not p.is_symlink() else p.unlink(missing_ok=True)


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
