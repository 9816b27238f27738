"""Test helpers: build one source through the real pipeline and read back its unified rows."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from m3e_data.catalog import load_catalog
from m3e_data.stages.normalize.stage import BuildOptions, SourceResult, build_source

SHARED = Path(__file__).resolve().parents[2] / "shared"


def build_one(
    name: str, out: Path, sources: str = "demo", options: dict[str, str] | None = None,
    splits: list[str] | None = None,
) -> tuple[list[dict], SourceResult]:
    """Normalize one source with the real locate/read/recipe/write path; rows in file order."""
    result = build_source(
        load_catalog()[name],
        BuildOptions(out=out, sources=sources, splits=splits, recipe_options={name: options or {}}),
    )
    assert result.status in ("built", "unchanged"), result.reason
    rows = pq.read_table(out / "m3e" / name).to_pylist()
    return rows, result


def pairs(rows: list[dict]) -> list[tuple]:
    """(split, query, positive, negatives) of each row: what a recipe test asserts exactly."""
    return [(r["split"], r["query"], r["positive"], r["negatives"]) for r in rows]
