"""build-manifest.json: what a build was made of and what happened to every row.

One file per output folder. Each stage owns one section under "stages" (normalize, hq, mine, ...), with
its options and, per source, its counts; a rerun of a stage replaces only its own section.
"""

from __future__ import annotations

import json
import platform
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from m3e_data import __version__
from m3e_data.storage.store import atomic_write_json

MANIFEST = "build-manifest.json"
_TRACKED = ("datasets", "huggingface-hub", "polars", "pyarrow", "datasketch", "langdetect", "opencc",
            "torch", "transformers", "sentence-transformers")


def versions() -> dict[str, str]:
    found = {"m3e-data": __version__, "python": platform.python_version()}
    for name in _TRACKED:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read_manifest(out: Path) -> dict[str, Any]:
    try:
        return json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def write_stage(out: Path, stage: str, section: dict[str, Any]) -> dict[str, Any]:
    """Replace one stage's section of OUT/build-manifest.json (atomically) and return the whole."""
    manifest = read_manifest(out)
    manifest.update(
        {
            "versions": versions(),
            "command": " ".join(["m3e-data", *sys.argv[1:]]),
            "updated": now(),
        }
    )
    manifest.setdefault("stages", {})[stage] = section
    atomic_write_json(out / MANIFEST, manifest)
    return manifest
