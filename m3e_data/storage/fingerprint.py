"""Content fingerprints of a source's local input files, with a per-OUT cache of file hashes.

Every byte of every input file is hashed (xxh3-128, streamed), so that a same-size edit anywhere in a file
rebuilds its source. Re-hashing a 9 GB file on every rerun would cost seconds to minutes, so each file's
hash is cached in OUT/.cache/fingerprints.json under its absolute path, and reused while the file's size
and mtime are those it had when it was hashed.

A file modified within RACY_SECONDS of being hashed is hashed again next time: file systems keep mtime
with coarse granularity (a jiffy, or seconds), so a second same-size write in the same tick would keep
the mtime the cache holds (git's "racy clean" problem).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from pathlib import Path

import xxhash

from m3e_data.storage.store import atomic_write_json

CACHE_FILE = Path(".cache") / "fingerprints.json"
CHUNK = 8 << 20
RACY_SECONDS = 2.0


def hash_file(path: Path) -> str:
    """xxh3-128 of the whole file, read in CHUNK-sized blocks into one reused buffer."""
    h = xxhash.xxh3_128()
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    with path.open("rb", buffering=0) as fh:
        while n := fh.readinto(buffer):
            h.update(view[:n])
    return h.hexdigest()


class HashCache:
    """path -> (size, mtime_ns, hash), loaded from and saved to OUT/.cache/fingerprints.json.

    With `out=None` nothing is read or written and every file is hashed (locate() called on its own)."""

    def __init__(self, out: Path | None = None) -> None:
        self.path = out / CACHE_FILE if out is not None else None
        self.entries: dict[str, dict[str, int | str]] = {}
        self.hashed = 0  # files hashed (not taken from the cache) since loading: tests and benchmarks read it
        self._dirty = False
        if self.path is not None:
            try:
                loaded = json.loads(self.path.read_text(encoding="utf-8"))
                if isinstance(loaded, dict):
                    self.entries = loaded
            except (OSError, json.JSONDecodeError):
                pass  # a missing or damaged cache only costs a re-hash

    def digest(self, path: Path) -> str:
        key = str(path.resolve())
        st = path.stat()
        entry = self.entries.get(key)
        if entry and entry.get("size") == st.st_size and entry.get("mtime_ns") == st.st_mtime_ns:
            return str(entry["hash"])
        started = time.time_ns()
        digest = hash_file(path)
        self.hashed += 1
        if started - st.st_mtime_ns > RACY_SECONDS * 1e9:
            self.entries[key] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "hash": digest}
            self._dirty = True
        elif self.entries.pop(key, None) is not None:
            self._dirty = True
        return digest

    def merge(self, changed: dict[str, dict[str, int | str]], removed: Iterable[str] = ()) -> None:
        """Take what another copy of this cache learnt: a Ray task hashes on its own node and hands its new
        entries to the driver, the one writer of the file (copies saving in turn would drop each other's)."""
        for key in removed:
            self._dirty |= self.entries.pop(key, None) is not None
        if changed:
            self.entries.update(changed)
            self._dirty = True

    def save(self) -> None:
        if self.path is not None and self._dirty:
            # Entries of files since deleted (a replaced download, an old temp copy) would only grow the file.
            self.entries = {k: v for k, v in self.entries.items() if Path(k).is_file()}
            atomic_write_json(self.path, self.entries)
            self._dirty = False


def input_files(main: Iterable[Path]) -> list[Path]:
    """The files a source's build may read: its main files and every file beside them.

    Recipes read side files found next to a main file (simclue's train_rank.json, zhuiyi_nl2sql's
    `*.tables.json`, and whatever a future recipe looks up the same way); taking every sibling means no
    recipe has to declare them, and a side file added after a build changes the fingerprint. Hidden files
    (editor swap files, `.gitattributes`) are left out."""
    files: set[Path] = set()
    for path in main:
        files.add(path)
        files.update(p for p in path.parent.iterdir() if p.is_file() and not p.name.startswith("."))
    return sorted(files)


def fingerprint_files(paths: Iterable[Path], root: Path, cache: HashCache | None = None) -> str:
    """One hash over the relative name, size and content hash of each file (order independent)."""
    cache = HashCache() if cache is None else cache
    h = xxhash.xxh3_128()
    for p in sorted(paths):
        h.update(f"{p.relative_to(root).as_posix()}\0{p.stat().st_size}\0{cache.digest(p)}\n".encode())
    return h.hexdigest()
