"""The thin driver of the normalize stage: for each source, locate, read, normalize, write, record.

Output: OUT/m3e/<source>/part-*.parquet + _SUCCESS.json, and the "normalize" section of
OUT/build-manifest.json. A source whose input fingerprint, recipe code, options and splits are unchanged
since its last complete build is skipped; anything else is rebuilt from scratch into a temp folder.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from m3e_data import __version__
from m3e_data.catalog import Source, load_catalog
from m3e_data.locate import Located, SourceMissing, locate
from m3e_data.lock import hold
from m3e_data.manifest import now, read_manifest, write_stage
from m3e_data.normalize import Counts, normalize, to_batch
from m3e_data.recipe import Context, Recipe, load_recipe
from m3e_data.store import SUCCESS, PartWriter, atomic_write_json, clean_stale, read_success, staged_folder

BATCH_ROWS = 20_000
STAGE = "normalize"

# Outcomes of one source, in the order the summary shows them.
BUILT, UNCHANGED, FAILED, MISSING, NO_RECIPE, UNAVAILABLE = (
    "built", "unchanged", "failed", "missing", "no recipe", "unavailable"
)


@dataclass
class BuildOptions:
    out: Path
    sources: str = "hub"  # "demo", "hub", or a directory holding <source>/ folders
    splits: list[str] | None = None
    commercial_only: bool = False
    recipe_options: dict[str, dict[str, str]] = field(default_factory=dict)
    verify: bool = False  # compare a reusable output's checksums, not only its sizes

    def as_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "sources": self.sources,
            "splits": self.splits,
            "commercial_only": self.commercial_only,
            "recipe_options": self.recipe_options,
        }


@dataclass
class SourceResult:
    name: str
    status: str
    reason: str = ""
    counts: Counts = field(default_factory=Counts)
    splits: dict[str, Counts] = field(default_factory=dict)
    seconds: float = 0.0
    origin: str = ""
    layout: str = ""
    fingerprint: str = ""

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"status": self.status}
        if self.reason:
            d["reason"] = self.reason
        if self.status in (BUILT, UNCHANGED):
            d.update(
                origin=self.origin,
                layout=self.layout,
                fingerprint=self.fingerprint,
                rows_read=self.counts.read,
                rows_written=self.counts.written,
                dropped=dict(sorted(self.counts.dropped.items())),
                splits={s: c.as_dict() for s, c in self.splits.items()},
                seconds=round(self.seconds, 3),
            )
        return d

    @classmethod
    def from_success(cls, name: str, record: dict[str, Any]) -> SourceResult:
        def counts(d: dict[str, Any]) -> Counts:
            c = Counts(d["read"], d["written"])
            c.dropped.update(d["dropped"])
            return c

        return cls(
            name,
            UNCHANGED,
            counts=counts(record["counts"]),
            splits={s: counts(d) for s, d in record["splits"].items()},
            seconds=record["seconds"],
            origin=record["origin"],
            layout=record["layout"],
            fingerprint=record["key"]["fingerprint"],
        )


def select_sources(recipe_arg: str, commercial_only: bool = False) -> list[Source]:
    """Catalog entries named by --recipe ("all" or a comma list), optionally commercial ones only."""
    catalog = load_catalog()
    if recipe_arg.strip() == "all":
        chosen = list(catalog.values())
    else:
        names = [n.strip() for n in recipe_arg.split(",") if n.strip()]
        unknown = [n for n in names if n not in catalog]
        if unknown:
            raise ValueError(f"unknown source(s): {', '.join(unknown)}; `m3e-data list` shows the catalog")
        chosen = [catalog[n] for n in names]
    return [s for s in chosen if s.commercial or not commercial_only]


def _rows(recipe: Recipe, located: Located, split: str, ctx: Context):
    return recipe.read(located, split, ctx) if recipe.read else located.rows(split)


def build_source(
    source: Source,
    options: BuildOptions,
    on_rows: Callable[[str, int], None] | None = None,
) -> SourceResult:
    """Normalize one source into OUT/m3e/<source>/ (or skip it when unchanged)."""
    recipe = load_recipe(source.name)
    if recipe is None:
        return SourceResult(source.name, NO_RECIPE, "recipe not written yet")
    try:
        recipe_options = recipe.resolve_options(options.recipe_options.get(source.name, {}))
    except ValueError as exc:
        return SourceResult(source.name, FAILED, str(exc))
    try:
        located = locate(source, options.sources, options.splits)
    except SourceMissing as exc:
        status = UNAVAILABLE if not source.available and options.sources in ("demo", "hub") else MISSING
        return SourceResult(source.name, status, str(exc))

    key = {
        "fingerprint": located.fingerprint,
        "recipe_version": recipe.version,
        "m3e_data": __version__,
        "options": recipe_options,
        "splits": located.splits,
        "layout": located.layout.name,
        # A catalog licence change must rebuild: every row carries the licence and the commercial flag.
        "license": {"spdx": source.license.spdx, "commercial": source.commercial},
    }
    target = options.out / "m3e" / source.name
    done = read_success(target, options.verify)
    if done is not None and done.get("key") == key:
        return SourceResult.from_success(source.name, done)

    started = time.perf_counter()
    result = SourceResult(
        source.name, BUILT, origin=located.origin, layout=located.layout.name, fingerprint=located.fingerprint
    )
    clean_stale(target.parent)
    with staged_folder(target) as tmp:
        writer = PartWriter(tmp)
        try:
            for split in located.splits:
                counts = Counts()
                ctx = Context(
                    source.name, split, recipe_options, located.layout.name, located.layout.options,
                    located=located,
                )
                for batch in normalize(_rows(recipe, located, split, ctx), recipe, ctx, counts, BATCH_ROWS):
                    writer.write(to_batch(batch, source, split))
                    if on_rows:
                        on_rows(source.name, len(batch))
                result.splits[split] = counts
                result.counts.add(counts)
            parts = writer.finish()
        finally:
            writer.close()
        result.seconds = time.perf_counter() - started
        atomic_write_json(
            tmp / SUCCESS,
            {
                "key": key,
                "parts": parts,
                "finished": now(),
                "counts": result.counts.as_dict(),
                "splits": {s: c.as_dict() for s, c in result.splits.items()},
                "seconds": round(result.seconds, 3),
                "origin": result.origin,
                "layout": result.layout,
            },
        )
    return result


def build(
    sources: list[Source],
    options: BuildOptions,
    on_start: Callable[[str], None] | None = None,
    on_rows: Callable[[str, int], None] | None = None,
) -> list[SourceResult]:
    """Normalize every source in turn; one source's failure never stops the others.

    The manifest's `selected` lists the sources this run built or found unchanged: what the later stages
    read, never another run's folders nor the older output of a source that failed now.
    """
    results = []
    with hold(options.out):
        for source in sources:
            if on_start:
                on_start(source.name)
            try:
                result = build_source(source, options, on_rows)
            except Exception as exc:  # a broken file or recipe ends its own source, not the build
                result = SourceResult(source.name, FAILED, f"{type(exc).__name__}: {exc}")
            results.append(result)
        # Sources built by earlier runs into the same folder keep their record.
        recorded = read_manifest(options.out).get("stages", {}).get(STAGE, {}).get("sources", {})
        recorded.update({r.name: r.as_dict() for r in results})
        selected = [r.name for r in results if r.status in (BUILT, UNCHANGED)]
        write_stage(options.out, STAGE, {"options": options.as_dict(), "finished": now(), "selected": selected,
                                         "sources": recorded})
    return results
