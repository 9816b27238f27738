"""Stage a Hub repository folder from OUT/m3e-hq (or OUT/m3e-hq-with-score).

Layout, one config per source plus `all` (whose data_files glob every source folder):

    <source>/<split>-00000-of-00002.parquet
    <source>/<split>-00001-of-00002.parquet

Shards roll over at ~500 MB of in-memory Arrow data, the same measure `datasets.push_to_hub` uses for its
`max_shard_size`, so our repos look like the ones the Hub's own tooling makes. Every staged row is cast to
the unified schema: all configs then share one set of features, which the `all` config needs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from m3e_data.schema import UNIFIED_SCHEMA, conform
from m3e_data.storage import ownership
from m3e_data.storage.store import SUCCESS, iter_batches, parquet_files, read_success, staged_folder

SHARD_BYTES = 500 * 1024 * 1024
# Small row groups keep the Hub's dataset viewer and random access cheap on long passages.
ROW_GROUP_ROWS = 10_000
READ_BATCH_ROWS = 50_000
ALL_CONFIG = "all"
MINING_KEY = b"m3e_data.stages.mine.mining"  # schema metadata of mined parts: JSON with model, revision, parameters
# The split names `datasets` accepts (datasets.naming._split_re).
_SPLIT_RE = re.compile(r"^\w+(\.\w+)*$")
_SHARD_RE = re.compile(r"^(?P<split>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.parquet$")
# What huggingface_hub's resumable large-folder upload keeps inside the folder it uploads (never uploaded).
HUB_UPLOAD_CACHE = ".cache/huggingface"
OWNER = "push"  # the marker name of a staged folder (m3e_data.storage.ownership)
LOCAL_NOTE = " (a local model folder)"


class StageError(ValueError):
    """The input folder cannot be staged as it is (unfinished source, bad split name, reserved name)."""


@dataclass
class SplitFiles:
    rows: int = 0
    num_bytes: int = 0  # uncompressed size, as datasets reports `num_bytes`
    download_size: int = 0  # bytes on disk
    files: list[str] = field(default_factory=list)


@dataclass
class StagedRepo:
    """What a staged folder holds, read back from its files (so a card can be written from any staging)."""

    folder: Path
    configs: dict[str, dict[str, SplitFiles]]  # source -> split -> files
    mining: dict[str, str] = field(default_factory=dict)  # source -> JSON from MINING_KEY, when mined

    @property
    def splits(self) -> list[str]:
        found = {s for splits in self.configs.values() for s in splits}
        # train first, then the rest alphabetically: the Hub viewer opens the first split.
        return sorted(found, key=lambda s: (s != "train", s))

    @property
    def rows(self) -> int:
        return sum(f.rows for splits in self.configs.values() for f in splits.values())

    def split_rows(self, split: str) -> int:
        return sum(splits[split].rows for splits in self.configs.values() if split in splits)


def is_local_model(model: object, revision: object) -> bool:
    """Whether a mining record names a local model folder (the mine stage records its revision as
    "local" / "local:<fingerprint>") rather than a Hub id."""
    return isinstance(model, str) and str(revision or "").startswith("local")


def public_model_name(model: str, revision: object) -> str:
    """A model as a reader of the release may see it: a Hub id as is, a local folder by its name only."""
    if not is_local_model(model, revision) or model.endswith(LOCAL_NOTE):
        return model  # a name made public already (a staged shard's record) is not named again
    name = model.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1] or "model"
    return f"{name}{LOCAL_NOTE}"


def public_mining_record(raw: bytes) -> bytes:
    """The mining record a staged shard carries, with a local model folder's path reduced to its name:
    the shards are published, the machine they were mined on is nobody's business."""
    try:
        record = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return raw
    if not isinstance(record, dict) or not is_local_model(record.get("model"), record.get("revision")):
        return raw
    record["model"] = public_model_name(record["model"], record.get("revision"))
    return json.dumps(record, ensure_ascii=False).encode("utf-8")


def check_replaceable(dest: Path) -> None:
    """Refuse to stage over a folder holding anything a staging did not write (it would be deleted)."""
    try:
        ownership.check_replaceable(dest, OWNER)
    except ownership.ForeignFiles as exc:
        raise StageError(str(exc)) from None


def input_sources(data_dir: Path) -> list[Path]:
    """The finished source folders of a stage output; an unfinished one is an error, never skipped."""
    if not data_dir.is_dir():
        raise StageError(f"{data_dir}: no such folder")
    folders = sorted(p for p in data_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise StageError(f"{data_dir}: holds no source folders")
    for folder in folders:
        if folder.name == ALL_CONFIG:
            raise StageError(f"{folder}: a source may not be named {ALL_CONFIG!r} (that config holds every source)")
        # Checksums too: what is published or exported must be what the stage committed.
        if read_success(folder, verify=True) is None:
            raise StageError(f"{folder}: no {SUCCESS}, or parts it lists are missing or damaged; the stage that "
                             "writes it did not finish cleanly, rerun it first")
    return folders


def select_rows(batch: pa.RecordBatch | pa.Table, commercial_only: bool) -> pa.Table:
    """Cast one batch to the unified schema and keep the rows this repo publishes."""
    table = conform(batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch]))
    if commercial_only:
        table = table.filter(pc.equal(table["commercial"], True))
    return table


def split_groups(table: pa.Table) -> Iterator[tuple[str, pa.Table]]:
    splits = pc.unique(table["split"]).to_pylist()
    for split in splits:
        if not _SPLIT_RE.match(split):
            raise StageError(f"split name {split!r} is not one the Hub accepts (letters, digits, _ and .)")
        # Parts usually hold one split per batch: no copy then.
        yield split, table if len(splits) == 1 else table.filter(pc.equal(table["split"], split))


class _ShardWriter:
    """Writes one split of one config into shards, named once their count is known."""

    def __init__(self, folder: Path, split: str, shard_bytes: int, schema: pa.Schema) -> None:
        self.folder, self.split, self.shard_bytes, self.schema = folder, split, shard_bytes, schema
        self.shards: list[Path] = []
        self._writer: pq.ParquetWriter | None = None
        self._bytes = 0

    def write(self, table: pa.Table) -> None:
        # Slice by the batch's mean row size so a shard ends near the budget, not a whole batch past it.
        row_bytes = max(1, table.nbytes // max(1, table.num_rows))
        offset = 0
        while offset < table.num_rows:
            if self._writer is None or self._bytes >= self.shard_bytes:
                self._open()
            assert self._writer is not None
            take = max(1, (self.shard_bytes - self._bytes) // row_bytes)
            chunk = table.slice(offset, take)
            self._writer.write_table(chunk, row_group_size=ROW_GROUP_ROWS)
            self._bytes += chunk.num_rows * row_bytes
            offset += chunk.num_rows

    def _open(self) -> None:
        self.close()
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f".{self.split}-{len(self.shards):05d}.parquet.tmp"
        self.shards.append(path)
        self._writer = pq.ParquetWriter(path, self.schema, compression="zstd")
        self._bytes = 0

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def finish(self) -> list[str]:
        self.close()
        names = []
        for i, tmp in enumerate(self.shards):
            name = f"{self.split}-{i:05d}-of-{len(self.shards):05d}.parquet"
            tmp.rename(self.folder / name)
            names.append(name)
        return names


def _stage_source(src: Path, dest: Path, commercial_only: bool, shard_bytes: int) -> None:
    parts = parquet_files(src)
    mining = None
    for part in parts:
        mining = mining or (pq.read_schema(part).metadata or {}).get(MINING_KEY)
    mining = public_mining_record(mining) if mining else None
    schema = UNIFIED_SCHEMA.with_metadata({MINING_KEY: mining}) if mining else UNIFIED_SCHEMA
    writers: dict[str, _ShardWriter] = {}
    try:
        for part in parts:
            for batch in iter_batches(part, READ_BATCH_ROWS):
                table = select_rows(batch, commercial_only)
                for split, rows in split_groups(table):
                    if split not in writers:
                        writers[split] = _ShardWriter(dest, split, shard_bytes, schema)
                    writers[split].write(rows.replace_schema_metadata(schema.metadata))
        for writer in writers.values():
            writer.finish()
    finally:
        for writer in writers.values():
            writer.close()


def stage(
    data_dir: Path, dest: Path, *, commercial_only: bool = False, shard_bytes: int = SHARD_BYTES
) -> StagedRepo:
    """Write the Parquet shards of every source in `data_dir` into `dest`, atomically (temp, then rename).

    A source left with no rows (every row non-commercial under `commercial_only`) gets no config.
    """
    if shard_bytes <= 0:
        raise StageError(f"shard size must be positive, got {shard_bytes} bytes")
    sources = input_sources(data_dir)
    check_replaceable(dest)
    with staged_folder(dest, OWNER) as tmp:
        for src in sources:
            _stage_source(src, tmp / src.name, commercial_only, shard_bytes)
    return scan_staged(dest)


def scan_staged(folder: Path) -> StagedRepo:
    """Read what a staged folder holds from the Parquet footers (no data pages are read)."""
    configs: dict[str, dict[str, SplitFiles]] = {}
    mining: dict[str, str] = {}
    for config_dir in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for path in sorted(config_dir.glob("*.parquet")):
            match = _SHARD_RE.match(path.name)
            if not match:
                raise StageError(f"{path}: not a shard name (<split>-NNNNN-of-MMMMM.parquet)")
            meta = pq.read_metadata(path)
            files = configs.setdefault(config_dir.name, {}).setdefault(match["split"], SplitFiles())
            files.rows += meta.num_rows
            files.num_bytes += sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
            files.download_size += path.stat().st_size
            files.files.append(path.name)
            found = (meta.schema.to_arrow_schema().metadata or {}).get(MINING_KEY)
            if found:
                mining[config_dir.name] = found.decode("utf-8")
    for config, splits in configs.items():
        for split, files in splits.items():
            count = int(_SHARD_RE.match(files.files[0])["count"])
            if count != len(files.files):
                raise StageError(f"{folder / config}: split {split} has {len(files.files)} of {count} shards")
    return StagedRepo(folder, configs, mining)


def staged_parquet(folder: Path) -> list[Path]:
    """Every Parquet file a staged folder would upload, hidden ones included (an upload would send them)."""
    return sorted(p for p in folder.rglob("*.parquet") if p.is_file())
