"""The normalize stage on Ray: each source is a Ray task running the local executor's own `build_unit`.

A task writes OUT/m3e/<source>/ itself (a staged folder swapped into place, as locally) and returns the
source's result with the file hashes it learnt; the driver gathers the results in the order of the sources
and does everything else as the local executor does (stage.build: the lock, the manifest, the summary). So
every node must see OUT and a --sources folder at the same path (a shared filesystem); both are made
absolute first, since a worker's working directory is not the driver's.

Faults: a task whose worker process dies (killed, out of memory, its node lost) is retried by Ray up to
MAX_RETRIES times; its half-written temp folder is never trusted and is removed once the stage has
finished. Errors raised by the code are not retried: build_unit already turned them into the source's
FAILED result, exactly as locally. A driver that is interrupted or killed takes its tasks with it (they are
cancelled, or Ray ends a dead driver's tasks); a rerun resumes like a local one, as each source that
finished is found unchanged.

Large JSON-lines files: a source with a file over `split_bytes` (the CLI's --split-bytes) is cut into
units (units.py: one per line-aligned byte range of such a file, one per other file). Its task becomes the
source's coordinator: it submits one task per unit, waits for all (blocked in ray.get, it holds no CPU)
and then commits the source itself, writing the same parts, counts and `_SUCCESS.json` as the local
executor. A unit whose worker dies is retried alone (MAX_RETRIES); a unit lost on every attempt, or one
whose code raised, fails its source alone and nothing of that source is committed. The units' outputs wait
in a temp folder named after the coordinator's process, removed after the commit, or by the stage's last
clean-up when the coordinator itself died (Ray then ends its unit tasks and retries the whole source).
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from m3e_data.catalog import Source
from m3e_data.executors.ray_session import ray_session
from m3e_data.stages.normalize.locate import DEMO, HUB
from m3e_data.stages.normalize.normalize import Counts
from m3e_data.stages.normalize.stage import (
    FAILED,
    BuildOptions,
    MapSources,
    OnRows,
    OnStart,
    Prepared,
    SourceResult,
    build_unit,
    prepare,
)
from m3e_data.stages.normalize.units import DEFAULT_SPLIT_BYTES, Plan, commit, new_plan, run_unit
from m3e_data.storage.fingerprint import HashCache
from m3e_data.storage.remote import is_url
from m3e_data.storage.store import clean_stale

MAX_RETRIES = 3  # attempts after a worker's death; an exception raised by the code is never retried

HashEntries = dict[str, dict[str, int | str]]


RunUnit = Callable[[Plan, int], Counts]


def run_source(
    unit: Any, source: Source, options: BuildOptions, split_bytes: int = 0, range_unit: RunUnit = run_unit,
    max_retries: int = MAX_RETRIES,
) -> tuple[SourceResult, HashEntries, list[str]]:
    """One Ray task: `unit` (build_unit) over one source, with a private copy of OUT's hash cache, or the
    coordination of its units when a JSON-lines file of it is over `split_bytes` (0: never cut); returns
    the result and the cache entries it added or replaced and those it dropped, for the driver to save."""
    cache = HashCache(options.out)
    before = dict(cache.entries)
    plan = _plan(source, options, cache, split_bytes) if split_bytes else None
    if plan is None:
        result = unit(source, options, None, cache, clean_temps=False)
    else:
        result = build_in_units(plan, options, range_unit, max_retries)
    changed = {k: v for k, v in cache.entries.items() if before.get(k) != v}
    removed = [k for k in before if k not in cache.entries]
    return result, changed, removed


def _plan(source: Source, options: BuildOptions, cache: HashCache, split_bytes: int) -> Plan | None:
    """The source's units, or None to build it whole: nothing to build (unchanged, missing: `unit` says
    so again from the same cache), no file to cut, or an error `unit` will meet and report as locally."""
    try:
        prepared = prepare(source, options, cache)
        if not isinstance(prepared, Prepared):
            return None
        return new_plan(prepared, split_bytes, options.out / "m3e")
    except Exception:
        return None


def _attempt(range_unit: RunUnit, plan: Plan, i: int) -> Counts | str:
    """One unit task: its counts, or what its code raised (not retried: it would raise again), worded as
    build_unit words a failure."""
    try:
        return range_unit(plan, i)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


def build_in_units(plan: Plan, options: BuildOptions, range_unit: RunUnit, max_retries: int) -> SourceResult:
    """Inside a source's task: a task per unit, then the commit once all of them succeeded."""
    import ray

    source = plan.prepared.source
    task = ray.remote(max_retries=max_retries, retry_exceptions=False)(_attempt)
    refs = [task.remote(range_unit, plan, i) for i in range(len(plan.units))]
    try:
        try:
            outcomes = ray.get(refs)
        except ray.exceptions.RayError as exc:
            for ref in refs:
                ray.cancel(ref, force=True)
            return _lost(source, exc, max_retries + 1, isinstance(exc, ray.exceptions.RayTaskError))
        failed = next((o for o in outcomes if isinstance(o, str)), None)
        if failed is not None:
            return SourceResult(source.name, FAILED, failed)
        try:
            return commit(plan, outcomes, options.out)
        except Exception as exc:
            return SourceResult(source.name, FAILED, f"{type(exc).__name__}: {exc}")
    finally:
        shutil.rmtree(plan.folder, ignore_errors=True)


def for_workers(options: BuildOptions) -> BuildOptions:
    """`options` with OUT and a --sources folder absolute: a worker resolves paths from its own cwd."""
    keep = options.sources in (DEMO, HUB) or is_url(options.sources)  # an object store URL is the same anywhere
    sources = options.sources if keep else str(Path(options.sources).resolve())
    return dataclasses.replace(options, out=options.out.resolve(), sources=sources)


def _lost(source: Source, exc: Exception, attempts: int, task_error: bool) -> SourceResult:
    """The FAILED result of a source whose task never returned: its code raised outside build_unit, or
    every attempt lost its worker."""
    first = (str(exc).strip().splitlines() or [""])[0]
    if task_error:
        return SourceResult(source.name, FAILED, f"{type(exc).__name__}: {first}")
    times = f"{attempts} time{'s' if attempts > 1 else ''}"
    return SourceResult(
        source.name, FAILED,
        f"{type(exc).__name__}: the Ray task failed {times} (its worker or node died: killed, out of memory?); "
        f"rerun the same command to retry it. {first}".strip(),
    )


def gather(
    ray: Any, unit: Any, sources: list[Source], options: BuildOptions, cache: HashCache,
    on_start: OnStart | None = None, on_rows: OnRows | None = None, max_retries: int = MAX_RETRIES,
    split_bytes: int = DEFAULT_SPLIT_BYTES, range_unit: RunUnit = run_unit,
) -> list[SourceResult]:
    """Submit one task per source, then collect them in order (so Ctrl-C names the first unfinished one).
    A source whose every attempt lost its worker is that source's FAILED result, as any local failure."""
    task = ray.remote(max_retries=max_retries, retry_exceptions=False)(run_source)
    stage_dir = options.out / "m3e"
    clean_stale(stage_dir)  # before any task of this run exists: every temp there is a dead run's
    shipped = for_workers(options)
    refs = [task.remote(unit, source, shipped, split_bytes, range_unit, max_retries) for source in sources]
    results = []
    try:
        for source, ref in zip(sources, refs, strict=True):
            if on_start:
                on_start(source.name)
            try:
                result, changed, removed = ray.get(ref)
            except ray.exceptions.RayError as exc:
                result = _lost(source, exc, max_retries + 1, isinstance(exc, ray.exceptions.RayTaskError))
            else:
                cache.merge(changed, removed)
                cache.save()  # as locally: the hashes of every finished source survive a Ctrl-C
                if on_rows and result.counts.written:
                    on_rows(source.name, result.counts.written)
            results.append(result)
    except BaseException:
        # Tasks left running would write OUT after this run released its lock.
        for ref in refs:
            ray.cancel(ref, force=True)
        raise
    clean_stale(stage_dir)  # the temps of workers killed mid-source (their retries built the source)
    return results


def ray_executor(
    address: str | None = None, unit: Any = build_unit, max_retries: int = MAX_RETRIES,
    split_bytes: int = DEFAULT_SPLIT_BYTES, range_unit: RunUnit = run_unit,
) -> MapSources:
    """The Ray executor for stage.build: joins the cluster at `address` (ray_session: --ray-address, else
    RAY_ADDRESS, else a local Ray) for the length of the stage; JSON-lines files over `split_bytes` are
    cut into units. `unit` is build_unit and `range_unit` run_unit; tests pass wrappers."""

    def map_sources(
        sources: list[Source], options: BuildOptions, cache: HashCache, on_start: OnStart | None = None,
        on_rows: OnRows | None = None,
    ) -> list[SourceResult]:
        with ray_session(address) as ray:
            return gather(ray, unit, sources, options, cache, on_start, on_rows, max_retries, split_bytes, range_unit)

    return map_sources
