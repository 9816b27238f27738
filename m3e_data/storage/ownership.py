"""Which files in a folder a command wrote, so that it replaces or deletes those and nothing else.

Every command that writes a folder it was given (`export --out`, `push --dry-run`/`--stage-dir`,
`train --out`, `mine --out`, a stage's per-source folders) records what it wrote in MARKER, inside that
folder and never beside it (a folder moved or copied keeps its record, and nothing lands in a parent the
user did not give). A command replaces a folder only when it is new, empty, or its marker says this
command wrote it and nothing else is there; otherwise it refuses and names the files it did not write.
Nothing is ever deleted to make room.

The marker lists every entry the command wrote (files with their size: a file the user changed since is
no longer the command's) and, for folders whose content a library manages (transformers' checkpoints,
huggingface_hub's upload cache), whole trees.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

MARKER = ".m3e-owner.json"
# Commands whose per-source folders (part-*.parquet + _SUCCESS.json) predate markers.
LEGACY_STAGE_OWNERS = ("build", "mine")
SHOWN = 5  # foreign files named in a refusal; the rest are counted


class ForeignFiles(ValueError):
    """A folder a command would replace holds files that command did not write."""

    def __init__(self, folder: Path, command: str, foreign: list[str]) -> None:
        self.folder, self.command, self.foreign = folder, command, foreign
        shown = ", ".join(foreign[:SHOWN]) + (f" and {len(foreign) - SHOWN} more" if len(foreign) > SHOWN else "")
        super().__init__(
            f"{folder}: holds files that m3e-data {command} did not write ({shown}); refusing to replace them: "
            "move them out, or choose an empty or new folder"
        )

    def __reduce__(self) -> tuple[type, tuple[Path, str, list[str]]]:
        # Raised in a pool worker (hq writes sources there), it must cross back to the main process whole.
        return (type(self), (self.folder, self.command, self.foreign))


def read_marker(folder: Path) -> dict[str, Any] | None:
    try:
        marker = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return marker if isinstance(marker, dict) else None


def _entries(folder: Path) -> Iterable[tuple[str, Path]]:
    """Every entry under `folder` as (relative posix path, path); links are entries, never followed."""
    for root, dirs, files in os.walk(folder):
        base = Path(root)
        for name in sorted(dirs) + sorted(files):
            path = base / name
            yield path.relative_to(folder).as_posix(), path


def _legacy_stage(folder: Path) -> dict[str, Any] | None:
    """A stage folder written before markers existed: its _SUCCESS.json names its parts (a statistics
    cache's names none: its Parquet files at the top are its own)."""
    try:
        done = json.loads((folder / "_SUCCESS.json").read_text(encoding="utf-8"))
        if not isinstance(done, dict):
            return None
        parts = done.get("parts")
        if parts is None:
            parts = [p.name for p in folder.glob("*.parquet") if p.is_file()]
        parts = [p for p in parts if isinstance(p, str)]
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, TypeError):
        return None
    return {"entries": {"_SUCCESS.json": None, **dict.fromkeys(parts)}, "trees": []}


def _owns(marker: dict[str, Any], rel: str, path: Path, sizes: bool = True) -> bool:
    trees = [t for t in marker.get("trees", []) if isinstance(t, str)]
    if any(rel == t or rel.startswith(t + "/") or t.startswith(rel + "/") for t in trees):
        return True
    entries = marker.get("entries", {})
    if not isinstance(entries, dict) or rel not in entries:
        return False
    size = entries[rel]
    if path.is_symlink():
        return False  # the command writes no links
    if path.is_dir():
        return size is None
    try:
        return size is None or not sizes or path.stat().st_size == size
    except OSError:
        return False


def foreign_files(folder: Path, command: str, *, sizes: bool = True) -> list[str]:
    """What under `folder` `command` did not write, as relative paths ([] for a new or empty folder).

    A per-source folder of a stage (LEGACY_STAGE_OWNERS) without a marker counts as the stage's when it
    holds just what its _SUCCESS.json lists: folders built before markers existed stay rebuildable. `sizes=False`:
    a file the command wrote counts as its own even if changed since (only added files are foreign).
    """
    if not folder.exists() and not folder.is_symlink():
        return []
    if folder.is_symlink() or not folder.is_dir():
        return [folder.name]
    raw = read_marker(folder)
    # Another command's folder: nothing in it is this one's, its marker included.
    marker = raw if raw is not None and raw.get("command") == command else None
    if raw is None and command in LEGACY_STAGE_OWNERS:
        marker = _legacy_stage(folder)
    foreign = []
    for rel, path in _entries(folder):
        if rel == MARKER and marker is not None and marker is raw:
            continue
        if marker is None or not _owns(marker, rel, path, sizes):
            foreign.append(rel + ("/" if path.is_dir() and not path.is_symlink() else ""))
    # A foreign folder is named once, not with everything in it.
    folders = [f for f in foreign if f.endswith("/")]
    return sorted(f for f in foreign if not any(f != d and f.startswith(d) for d in folders))


def check_replaceable(folder: Path, command: str, *, sizes: bool = True) -> None:
    """Raise ForeignFiles unless `command` may replace `folder` (new, empty, or all its own); `sizes` as in
    foreign_files."""
    foreign = foreign_files(folder, command, sizes=sizes)
    if foreign:
        raise ForeignFiles(folder, command, foreign)


def mark(folder: Path, command: str, *, trees: Iterable[str] = (), **info: Any) -> None:
    """Record everything now in `folder` as written by `command` (call it after the command wrote it).

    `trees`: folders owned whole, whatever they come to hold. `info`: extra fields kept in the marker (a
    staging keeps its input key there).
    """
    from m3e_data.storage.store import atomic_write_json  # store calls this module; import at use

    trees = sorted(set(trees))
    entries: dict[str, int | None] = {}
    for rel, path in _entries(folder):
        if rel == MARKER or path.is_symlink() or any(rel == t or rel.startswith(t + "/") for t in trees):
            continue
        entries[rel] = None if path.is_dir() else path.stat().st_size
    atomic_write_json(folder / MARKER, {"command": command, "by": "m3e-data", **info,
                                        "trees": trees, "entries": entries})


def remove(folder: Path, command: str, *, sizes: bool = True) -> None:
    """Delete `folder` if `command` wrote everything in it; refuse (ForeignFiles) otherwise (`sizes` as in
    foreign_files)."""
    import shutil

    check_replaceable(folder, command, sizes=sizes)
    if folder.is_dir():
        shutil.rmtree(folder)
