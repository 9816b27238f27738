"""A source cut into units that workers normalize apart: its large JSON-lines files into line-aligned byte
ranges, every other file whole; then put back together into the very files the local executor writes.

A unit (split, file, byte range) is normalized on its own into an Arrow IPC file of unified rows whose
positional keys are not final yet: a row's id is its split position (normalize's key when the recipe
gives none), and a unit only knows positions within itself. The raw rows of a split before a unit are
the `read` counts of the units before it, so `commit` offsets each unit's positions by those counts, fills
the ids, and writes the parts through the local PartWriter.

Why re-assemble rather than let each unit write its own parts: a part's rows and its row groups follow
from the whole split (PART_ROWS per part; a row group per normalize batch of BATCH_ROWS pairs, cut after
the raw row that fills it), which no unit knows alone. `commit` replays exactly that cut, so the parts,
their sha256 in `_SUCCESS.json` and the manifest equal the local executor's byte for byte, and the local
executor stays as it was. The price is one more write and read of the rows (uncompressed Arrow IPC, read
back memory-mapped): ~2 CPU-s per million rows against ~15 to normalize them (webtext2019zh-like rows), and
temporary disk about the size of the rows' text (~0.75 KB a row there) until the source is committed.

Only sources read by the framework's JSON reader are cut: a recipe whose own `read` runs (for its options:
READ_IF) or with a GROUP_BY sees a whole split at once, and a `.gz` file cannot be entered mid-way.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from m3e_data.catalog import Source
from m3e_data.recipe import Pair
from m3e_data.schema import UNIFIED_SCHEMA, make_id
from m3e_data.stages.normalize.normalize import Counts, normalize, to_batch
from m3e_data.stages.normalize.readers import (
    ReadItem,
    is_json_lines,
    iter_json_lines_range,
    line_ranges,
    read_file,
)
from m3e_data.stages.normalize.stage import BATCH_ROWS, Prepared, SourceResult, success_record
from m3e_data.storage.store import SUCCESS, PartWriter, atomic_write_json, staged_folder, temp_name

DEFAULT_SPLIT_BYTES = 128 << 20

ROW, PAIR = "_row", "_pair"  # a pair's raw row position within its unit, its place in the row (-1: alone)
UNIT_SCHEMA = UNIFIED_SCHEMA.set(0, pa.field("id", pa.string())).append(pa.field(ROW, pa.int64())).append(
    pa.field(PAIR, pa.int32())
)
# Uncompressed: lz4 cost ~4 CPU-s per million rows to write and read back (more than a fifth of normalizing
# them, benchmarks/bench_scale.py) for half the disk; the units' files are temporary (see the module's note).
_IPC = pa.ipc.IpcWriteOptions(compression=None)


@dataclass(frozen=True)
class Unit:
    split: str
    path: str
    start: int = 0
    end: int | None = None  # None: the whole file, through the layout's reader


@dataclass
class Plan:
    """A source's units, and the folder their outputs go to until the commit."""

    prepared: Prepared
    units: list[Unit]
    folder: Path
    started: float


def plan_units(prepared: Prepared, split_bytes: int) -> list[Unit] | None:
    """The units of a source, in split and file order; None when no file of it is cut (the source is then
    built whole, as locally)."""
    located = prepared.located
    recipe = prepared.recipe
    if recipe.reader(prepared.recipe_options) or recipe.group_by or located.remote or located.layout.format != "json":
        return None
    field = located.layout.options.get("field") or "data"
    units: list[Unit] = []
    cut = False
    for split in located.splits:
        for name in located.files[split]:
            path = located.local_path(name)
            if path.suffix != ".gz" and path.stat().st_size > split_bytes and is_json_lines(path, field):
                ranges = line_ranges(path, split_bytes)
                cut = cut or len(ranges) > 1
                units.extend(Unit(split, str(path), a, b) for a, b in ranges)
            else:
                units.append(Unit(split, str(path)))
    return units if cut else None


def new_plan(prepared: Prepared, split_bytes: int, parent: Path) -> Plan | None:
    """A plan whose unit outputs go to a temp folder in `parent` named after this process, so that a
    later run removes it should this process die before the commit."""
    units = plan_units(prepared, split_bytes)
    if units is None:
        return None
    folder = parent / temp_name(f"units.{prepared.source.name}")
    return Plan(prepared, units, folder, time.time())


def _unit_items(prepared: Prepared, unit: Unit) -> Iterator[ReadItem]:
    path = Path(unit.path)
    if unit.end is not None:
        return iter_json_lines_range(path, unit.start, unit.end)
    layout = prepared.located.layout
    return read_file(path, layout.format, layout.options)


def _positional(given: str | None, index: int, j: int, several: bool) -> tuple[str | None, int, int]:
    return given, index, j if several else -1


def unit_file(plan: Plan, i: int) -> Path:
    return plan.folder / f"unit-{i:05d}.arrow"


def run_unit(plan: Plan, i: int) -> Counts:
    """Normalize unit `i` into its IPC file (written to a temp, then renamed: a killed attempt leaves no
    file its retry or the commit could mistake for whole); its counts."""
    prepared, unit = plan.prepared, plan.units[i]
    recipe, source = prepared.recipe, prepared.source
    ctx = prepared.context(unit.split)
    counts = Counts()
    path = unit_file(plan, i)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(temp_name(path.name))
    try:
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, UNIT_SCHEMA, options=_IPC) as writer:
            for batch in normalize(_unit_items(prepared, unit), recipe, ctx, counts, BATCH_ROWS, _positional):
                writer.write_batch(_unit_batch(batch, source, unit.split))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return counts


def _unit_batch(keyed: list[tuple[tuple[str | None, int, int], Pair]], source: Source, split: str) -> pa.RecordBatch:
    """to_batch's batch with the ids of positional rows left null and each pair's (ROW, PAIR) kept."""
    given = [key for (key, _, _), _ in keyed]
    unified = to_batch([(key or "", pair) for key, (_, pair) in zip(given, keyed, strict=True)], source, split)
    ids = unified.column(0)
    if None in given:
        ids = pc.if_else(pa.array([key is not None for key in given]), ids, pa.scalar(None, pa.string()))
    columns = [ids, *unified.columns[1:], pa.array([k[1] for k, _ in keyed], pa.int64()),
               pa.array([k[2] for k, _ in keyed], pa.int32())]
    return pa.RecordBatch.from_arrays(columns, schema=UNIT_SCHEMA)


def _final(rows: pa.Table, prefix: str) -> pa.RecordBatch:
    """Unit rows (their ROW already offset to split positions) as the local executor's batch."""
    ids = rows["id"]
    if ids.null_count:  # the rows whose recipe gave no key
        positional = pc.binary_join_element_wise(prefix, pc.cast(rows[ROW], pa.string()), "")
        pair = rows[PAIR]
        several = pc.binary_join_element_wise(positional, pc.cast(pair, pa.string()), "-")
        ids = pc.coalesce(ids, pc.if_else(pc.greater_equal(pair, 0), several, positional))
    table = rows.drop_columns([ROW, PAIR]).set_column(0, UNIFIED_SCHEMA.field(0), ids)
    return table.cast(UNIFIED_SCHEMA).combine_chunks().to_batches()[0]


def _rebatched(tables: Iterator[pa.Table], batch_rows: int) -> Iterator[pa.Table]:
    """The split's rows in normalize's local batches: a batch ends after the raw row that brings it to
    `batch_rows` pairs (a raw row's pairs are never parted: they are in one unit and one unit batch)."""
    held: list[pa.Table] = []
    n = 0
    for table in tables:
        held.append(table)
        n += table.num_rows
        while n >= batch_rows:
            rows = pa.concat_tables(held)
            positions = rows[ROW].to_numpy()
            cut = int(np.searchsorted(positions, positions[batch_rows - 1], side="right"))
            yield rows.slice(0, cut)
            held, n = [rows.slice(cut)], rows.num_rows - cut
    if n:
        yield pa.concat_tables(held)


def _split_rows(plan: Plan, indices: list[int], outcomes: list[Counts]) -> Iterator[pa.Table]:
    """The rows of one split's units in order, their ROW offset by the raw rows of the units before."""
    offset = 0
    for i in indices:
        with pa.memory_map(str(unit_file(plan, i))) as source:
            reader = pa.ipc.open_file(source)
            for k in range(reader.num_record_batches):
                batch = reader.get_batch(k)
                table = pa.Table.from_batches([batch])
                if offset:
                    table = table.set_column(table.schema.get_field_index(ROW), ROW,
                                             pc.add(table[ROW], pa.scalar(offset, pa.int64())))
                yield table
        offset += outcomes[i].read


def commit(plan: Plan, outcomes: list[Counts], out: Path) -> SourceResult:
    """Put the units' outputs together into OUT/m3e/<source>/ (a staged folder, as build_source): the
    counts of each split are the sum of its units'. Called once every unit has succeeded."""
    prepared = plan.prepared
    source = prepared.source
    result = prepared.new_result()
    with staged_folder(out / "m3e" / source.name) as tmp:
        writer = PartWriter(tmp)
        try:
            for split in prepared.located.splits:
                indices = [i for i, u in enumerate(plan.units) if u.split == split]
                counts = Counts()
                for i in indices:
                    counts.add(outcomes[i])
                prefix = make_id(source.name, split, "")
                for rows in _rebatched(_split_rows(plan, indices, outcomes), BATCH_ROWS):
                    writer.write(_final(rows, prefix))
                result.splits[split] = counts
                result.counts.add(counts)
            parts = writer.finish()
        finally:
            writer.close()
        result.seconds = time.time() - plan.started
        atomic_write_json(tmp / SUCCESS, success_record(prepared, parts, result))
    return result
