"""The thin driver of the normalize stage: for each source, locate, read, normalize, write, record.

Output: OUT/m3e/<source>/part-*.parquet + _SUCCESS.json, and the "normalize" section of
OUT/build-manifest.json. A source whose input fingerprint, recipe code, options and splits are unchanged
since its last complete build is skipped; anything else is rebuilt from scratch into a temp folder. The
fingerprint covers the full content of every file the source may read (fingerprint.py).

A source built from some of its splits (the others' files are absent) carries a warning per missing split;
a source where one drop reason takes FLAG_SHARE of its rows or more is flagged (a label read with the
wrong type, a missing side file): the CLI exits 1 on a flag unless --allow-empty.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from m3e_data import __version__
from m3e_data.catalog import Source, load_catalog
from m3e_data.manifest import now, read_manifest, write_stage
from m3e_data.recipe import Context, Recipe, load_recipe
from m3e_data.stages.normalize.locate import Located, SourceMissing, locate
from m3e_data.stages.normalize.normalize import NORMALIZE_VERSION, Counts, normalize, to_batch
from m3e_data.storage.fingerprint import HashCache
from m3e_data.storage.lock import hold
from m3e_data.storage.store import (
    SUCCESS,
    PartWriter,
    atomic_write_json,
    clean_stale,
    read_success,
    staged_folder,
)

BATCH_ROWS = 20_000
STAGE = "normalize"
FLAG_SHARE = 0.99

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
    warnings: list[str] = field(default_factory=list)
    missing_splits: dict[str, list[str]] = field(default_factory=dict)  # split -> file names looked for

    @property
    def flag(self) -> str:
        """Why this source's output is suspect (one reason dropped almost every row), or ""."""
        return drop_flag(self.counts) if self.status in (BUILT, UNCHANGED) else ""

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
                negatives_removed=dict(sorted(self.counts.negatives_removed.items())),
                repairs=dict(sorted(self.counts.repairs.items())),
                splits={s: c.as_dict() for s, c in self.splits.items()},
                seconds=round(self.seconds, 3),
            )
            if self.flag:
                d["flag"] = self.flag
            if self.missing_splits:
                d["missing_splits"] = self.missing_splits
            if self.warnings:
                d["warnings"] = self.warnings
        return d

    @classmethod
    def from_success(cls, name: str, record: dict[str, Any]) -> SourceResult:
        counts = Counts.from_dict
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


def drop_flag(counts: Counts) -> str:
    """"" for a healthy source; else what took its rows: nothing read, or one reason >= FLAG_SHARE."""
    if counts.read == 0:
        return "no rows read"
    if not counts.dropped:
        return ""
    reason, n = counts.dropped.most_common(1)[0]
    # Validation drops count pairs, several per raw row at times: the share is of every outcome.
    total = max(counts.read, counts.written + sum(counts.dropped.values()))
    return f"{n / total:.1%} of rows dropped as {reason}" if n >= FLAG_SHARE * total else ""


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
    read = recipe.reader(ctx.options)
    return read(located, split, ctx) if read else located.rows(split)


@dataclass
class Prepared:
    """A source found, keyed and due for a build: everything its rows need but the rows. Picklable (the
    recipe is loaded again by name), so that a cluster's workers can each build a part of it."""

    source: Source
    recipe_options: dict[str, Any]
    located: Located
    key: dict[str, Any]

    @property
    def recipe(self) -> Recipe:
        recipe = load_recipe(self.source.name)
        assert recipe is not None  # prepare() found it
        return recipe

    def context(self, split: str) -> Context:
        located = self.located
        return Context(self.source.name, split, self.recipe_options, located.layout.name, located.layout.options,
                       located=located)

    def new_result(self) -> SourceResult:
        located = self.located
        return SourceResult(
            self.source.name, BUILT, origin=located.origin, layout=located.layout.name,
            fingerprint=located.fingerprint, warnings=located.warnings(), missing_splits=located.missing,
        )


def prepare(source: Source, options: BuildOptions, cache: HashCache | None = None) -> Prepared | SourceResult:
    """The source located and keyed, or its final result when there is nothing to build: no recipe, bad
    options, its files missing, or unchanged since its last complete build."""
    recipe = load_recipe(source.name)
    if recipe is None:
        return SourceResult(source.name, NO_RECIPE, "recipe not written yet")
    try:
        recipe_options = recipe.resolve_options(options.recipe_options.get(source.name, {}))
    except ValueError as exc:
        return SourceResult(source.name, FAILED, str(exc))
    own_cache = cache is None
    cache = HashCache(options.out) if cache is None else cache
    try:
        located = locate(source, options.sources, options.splits, cache)
    except SourceMissing as exc:
        status = UNAVAILABLE if not source.available and options.sources in ("demo", "hub") else MISSING
        return SourceResult(source.name, status, str(exc))
    finally:
        if own_cache:
            cache.save()

    key = {
        "fingerprint": located.fingerprint,
        "recipe_version": recipe.version,
        "m3e_data": __version__,
        "normalize": NORMALIZE_VERSION,
        "options": recipe_options,
        "splits": located.splits,
        "layout": located.layout.name,
        # A catalog licence change must rebuild: every row carries the licence and the commercial flag.
        "license": {"spdx": source.license.spdx, "commercial": source.commercial},
    }
    done = read_success(options.out / "m3e" / source.name, options.verify)
    if done is not None and done.get("key") == key:
        unchanged = SourceResult.from_success(source.name, done)
        unchanged.warnings, unchanged.missing_splits = located.warnings(), located.missing
        return unchanged
    return Prepared(source, recipe_options, located, key)


def success_record(prepared: Prepared, parts: list[str], result: SourceResult) -> dict[str, Any]:
    """The `_SUCCESS.json` of a built source (its folder's file list is added when it is sealed)."""
    return {
        "key": prepared.key,
        "parts": parts,
        "finished": now(),
        "counts": result.counts.as_dict(),
        "splits": {s: c.as_dict() for s, c in result.splits.items()},
        "seconds": round(result.seconds, 3),
        "origin": result.origin,
        "layout": result.layout,
    }


def build_source(
    source: Source,
    options: BuildOptions,
    on_rows: Callable[[str, int], None] | None = None,
    cache: HashCache | None = None,
    clean_temps: bool = True,
) -> SourceResult:
    """Normalize one source into OUT/m3e/<source>/ (or skip it when unchanged). `cache` holds file hashes
    across sources of one build; without it OUT's is loaded and saved here. `clean_temps=False` leaves
    the temps of dead runs to the caller: on a cluster a temp's pid may be a live process of another node."""
    prepared = prepare(source, options, cache)
    if isinstance(prepared, SourceResult):
        return prepared
    started = time.perf_counter()
    recipe, located = prepared.recipe, prepared.located
    result = prepared.new_result()
    target = options.out / "m3e" / source.name
    if clean_temps:
        clean_stale(target.parent)
    with staged_folder(target) as tmp:
        writer = PartWriter(tmp)
        try:
            for split in located.splits:
                counts = Counts()
                ctx = prepared.context(split)
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
        atomic_write_json(tmp / SUCCESS, success_record(prepared, parts, result))
    return result


OnStart = Callable[[str], None]
OnRows = Callable[[str, int], None]
# An executor: build every source (build_unit each), saving `cache` as it goes; one result per source, in
# the order of `sources`, a failure as that source's FAILED result.
MapSources = Callable[[list[Source], BuildOptions, HashCache, OnStart | None, OnRows | None], list[SourceResult]]


def build_unit(
    source: Source, options: BuildOptions, on_rows: OnRows | None = None, cache: HashCache | None = None,
    clean_temps: bool = True,
) -> SourceResult:
    """build_source, where a broken file or recipe ends its own source (FAILED), not the build."""
    try:
        return build_source(source, options, on_rows, cache, clean_temps)
    except Exception as exc:
        return SourceResult(source.name, FAILED, f"{type(exc).__name__}: {exc}")


def map_local(
    sources: list[Source], options: BuildOptions, cache: HashCache, on_start: OnStart | None = None,
    on_rows: OnRows | None = None,
) -> list[SourceResult]:
    """The local executor: each source in turn, in this process."""
    results = []
    for source in sources:
        if on_start:
            on_start(source.name)
        try:
            results.append(build_unit(source, options, on_rows, cache))
        finally:
            cache.save()  # hashes of a 9 GB file survive a later source's crash or Ctrl-C
    return results


def build(
    sources: list[Source],
    options: BuildOptions,
    on_start: OnStart | None = None,
    on_rows: OnRows | None = None,
    map_sources: MapSources = map_local,
) -> list[SourceResult]:
    """Normalize every source with `map_sources` (the executor); one source's failure never stops the others.

    The manifest's `selected` lists the sources this run built or found unchanged: what the later stages
    read, never another run's folders nor the older output of a source that failed now.
    """
    cache = HashCache(options.out)
    with hold(options.out):
        results = map_sources(sources, options, cache, on_start, on_rows)
        # Sources built by earlier runs into the same folder keep their record.
        recorded = read_manifest(options.out).get("stages", {}).get(STAGE, {}).get("sources", {})
        recorded.update({r.name: r.as_dict() for r in results})
        selected = [r.name for r in results if r.status in (BUILT, UNCHANGED)]
        write_stage(options.out, STAGE, {"options": options.as_dict(), "finished": now(), "selected": selected,
                                         "sources": recorded})
    return results
