"""One run per output folder: an OS lock on OUT/.m3e-lock, held for the whole run.

Two runs writing one folder deleted each other's temp folders and committed empty stages; with the lock
the second run refuses (or waits up to `wait` seconds) and names the pid that holds the folder. The lock
is `fcntl.flock` on an open file, so the kernel releases it when its holder exits, however it exits
(kill -9 included): a stale lock file never blocks anyone. Nested holds in one process (build, then hq
inside the same command) share the one lock.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_FILE = ".m3e-lock"
POLL_SECONDS = 0.2

# Resolved folder -> (open lock file descriptor, nesting depth), for the holds of this process.
_held: dict[Path, tuple[int, int]] = {}


class FolderBusy(RuntimeError):
    """Another process holds the output folder's lock."""

    def __init__(self, folder: Path, pid: str) -> None:
        self.folder, self.pid = folder, pid
        who = f"pid {pid}" if pid else "another process"
        super().__init__(
            f"{folder}: another m3e-data run ({who}) is writing this folder; wait for it to finish or use "
            "another output folder"
        )


def _holder(path: Path) -> str:
    try:
        return path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return ""


def acquire(folder: Path, wait: float = 0.0) -> None:
    """Take the folder's lock (or deepen this process's hold); FolderBusy after `wait` seconds."""
    folder.mkdir(parents=True, exist_ok=True)
    key = folder.resolve()
    if key in _held:
        fd, depth = _held[key]
        _held[key] = (fd, depth + 1)
        return
    path = key / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise FolderBusy(folder, _holder(path)) from None
            time.sleep(POLL_SECONDS)
    # The pid is for the message a second run prints; the lock itself is the flock, not this text.
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _held[key] = (fd, 1)


def release(folder: Path) -> None:
    key = folder.resolve()
    fd, depth = _held[key]
    if depth > 1:
        _held[key] = (fd, depth - 1)
        return
    del _held[key]
    os.ftruncate(fd, 0)
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


@contextmanager
def hold(folder: Path, wait: float = 0.0) -> Iterator[None]:
    """The folder's lock for the duration of the block."""
    acquire(folder, wait)
    try:
        yield
    finally:
        release(folder)
