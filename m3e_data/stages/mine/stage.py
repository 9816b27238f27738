"""The thin driver of the mine stage: OUT/m3e-hq/<source>/ -> OUT/m3e-hq-with-score/<source>/.

Per source: read its parts, mine (m3e_data.stages.mine.mining), write the parts with the mining record in the Parquet
schema metadata, then `_SUCCESS.json`. A source whose input, model and parameters are unchanged since its
last complete run is skipped without loading the model; an interrupted run resumes at the first source
without `_SUCCESS.json`. The run's record goes into the "mine" section of OUT/build-manifest.json.

Where the record and the default embedding cache go (`record_folder`): mine writes only inside what it
was given or the build folder its output belongs to, never into a parent it merely happens to sit in.
`--out OUT/m3e-hq-with-score` beside `--in OUT/m3e-hq`, or in a folder whose build-manifest.json
m3e-data wrote, belongs to that build: the record goes into OUT/build-manifest.json (its "mine" section
only) and the cache into OUT/cache/embeddings. Any other `--out D` keeps both inside D
(D/build-manifest.json, D/.cache/embeddings: hidden, so no reader takes it for a source), and a
build-manifest.json that m3e-data did not write is never overwritten.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from m3e_data import __version__
from m3e_data.manifest import MANIFEST, now, read_manifest, write_stage
from m3e_data.schema import UNIFIED_SCHEMA, conform
from m3e_data.stages.mine.mining import (
    SCORE_MEANING,
    MiningParams,
    SourceStats,
    distribution,
    filter_reasons,
    mine_rows,
    search_topk,
)
from m3e_data.stages.mine.semdedup import near_duplicates, pair_vectors
from m3e_data.storage import ownership
from m3e_data.storage.store import (
    SUCCESS,
    PartWriter,
    atomic_write_json,
    clean_stale,
    parquet_files,
    read_success,
    staged_folder,
)

STAGE = "mine"
METADATA_KEY = b"m3e_data.stages.mine.mining"
# Bump when a change to mining would change its output for the same input and parameters.
MINING_VERSION = 2
SEMANTIC_DUPLICATE = "semantic_duplicate"
# The hq stage's reject columns (hq.REJECT_SCHEMA, spelled out: importing hq costs a second), plus what the
# mine filters decided on: the positive's rank among the source's positives, and a semantic duplicate's
# pair cosine to its kept row (kept_id).
REJECT_SCHEMA = pa.schema([
    *UNIFIED_SCHEMA,
    pa.field("reason", pa.string(), nullable=False),
    pa.field("kept_id", pa.string(), nullable=True),
    pa.field("matched", pa.string(), nullable=True),
    pa.field("positive_rank", pa.int32(), nullable=True),
    pa.field("similarity", pa.float32(), nullable=True),
])

MINED, UNCHANGED, FAILED = "mined", "unchanged", "failed"
OWNER = "mine"  # the marker name of a mined source folder (m3e_data.storage.ownership)


def is_m3e_manifest(path: Path) -> bool:
    """Whether `path` is a build-manifest.json that m3e-data wrote (versions and stages sections)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return False
    return (isinstance(data, dict) and isinstance(data.get("stages"), dict)
            and isinstance(data.get("versions"), dict) and "m3e-data" in data["versions"])


def record_folder(input_dir: Path, out: Path) -> Path:
    """Where the run's record (build-manifest.json) and the default cache go: see the module note."""
    parent = out.resolve().parent
    if (parent / MANIFEST).exists():
        return out.parent if is_m3e_manifest(parent / MANIFEST) else out
    return out.parent if input_dir.resolve().parent == parent else out


def rejects_dir(input_dir: Path, out: Path) -> Path:
    """OUT/rejects/mine beside the build's other rejects; inside --out (hidden) when --out is no build's."""
    folder = record_folder(input_dir, out)
    return folder / "rejects" / STAGE if folder != out else out / ".rejects" / STAGE


def default_cache_dir(input_dir: Path, out: Path) -> Path:
    folder = record_folder(input_dir, out)
    return folder / "cache" / "embeddings" if folder != out else out / ".cache" / "embeddings"


@dataclass
class MineOptions:
    input: Path
    out: Path
    model: str = "moka-ai/m3e-small"
    revision: str | None = None
    device: str | None = None
    batch_size: int = 64
    max_length: int = 512
    cache_dir: Path | None = None
    chunk_size: int | None = None
    sources: list[str] | None = None
    params: MiningParams = field(default_factory=MiningParams)
    consistency_topk: int | None = None
    min_positive_score: float | None = None
    score_model: str | None = None
    score_revision: str | None = None
    semantic_dedup: float | None = None

    def filters(self) -> dict[str, Any]:
        """What decides which mined rows are kept and what their scores mean (part of a source's key)."""
        return {"consistency_topk": self.consistency_topk, "min_positive_score": self.min_positive_score,
                "score_model": self.score_model, "score_revision": self.score_revision,
                "semantic_dedup": self.semantic_dedup}

    def public_filters(self) -> dict[str, Any]:
        """filters() as published in the Parquet metadata: a local score model by its folder name only."""
        from m3e_data.stages.mine.teacher import public_name

        filters = self.filters()
        if self.score_model:
            filters["score_model"] = public_name(self.score_model)
        return filters

    def score_meaning(self) -> str:
        if self.score_model is None:
            return SCORE_MEANING
        from m3e_data.stages.mine.teacher import score_meaning

        return score_meaning(self.score_model, self.score_revision)

    def as_dict(self) -> dict[str, Any]:
        return {
            "in": str(self.input), "out": str(self.out), "model": self.model, "revision": self.revision,
            "device": self.device, "batch_size": self.batch_size, "max_length": self.max_length,
            "cache_dir": str(self.cache_dir) if self.cache_dir else None, "chunk_size": self.chunk_size,
            "sources": self.sources, **self.params.as_dict(), **self.filters(),
        }


@dataclass
class SourceResult:
    name: str
    status: str
    reason: str = ""
    stats: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"status": self.status}
        if self.reason:
            d["reason"] = self.reason
        return {**d, **self.stats, "seconds": round(self.seconds, 3)} if self.stats else d


def input_sources(folder: Path, names: list[str] | None = None) -> list[str]:
    """Source folders holding Parquet parts (hidden temp folders of a killed stage are not sources)."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: input folder not found (expected OUT/m3e-hq with one folder per source)")
    found = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")
                   and parquet_files(p))
    if names is None:
        return found
    missing = [n for n in names if n not in found]
    if missing:
        raise ValueError(f"no input for source(s): {', '.join(missing)} under {folder}")
    return [n for n in found if n in names]


def fingerprint(folder: Path) -> str:
    """Identifies a source's input: its completion record where it has one, else its files' sizes/times."""
    h = hashlib.sha256()
    done = folder / SUCCESS
    if done.is_file():
        h.update(done.read_bytes())
    for p in parquet_files(folder):
        st = p.stat()
        h.update(f"{p.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


class ModelLoadError(RuntimeError):
    """The model cannot be loaded: every source would fail the same way, so mining stops at once."""


class LazyEncoder:
    """Loads the model on first use only: a rerun with every source done costs no model load.

    The local executor's encoder and search; m3e_data.executors.mine_ray.RayEncoder overrides `encode`,
    `search` and `search_device` to run both on a Ray cluster.
    """

    search = staticmethod(search_topk)

    def __init__(self, options: MineOptions, show_progress: bool) -> None:
        self.options, self.show_progress = options, show_progress
        self._encoder: Any = None

    def get(self) -> Any:
        if self._encoder is None:
            from m3e_data.stages.mine.encoder import Encoder

            o = self.options
            try:
                self._encoder = Encoder(o.model, revision=o.revision, device=o.device, batch_size=o.batch_size,
                                        max_length=o.max_length, cache_dir=o.cache_dir)
            except (OSError, ValueError, RuntimeError) as exc:  # no weights, no tokenizer, a bad config
                raise ModelLoadError(f"cannot load the model {o.model!r}: {exc}") from exc
        return self._encoder

    def identity(self) -> tuple[str, str]:
        """(model id, revision) without loading weights when the model is a local folder."""
        if self._encoder is not None:
            return self._encoder.model_id, self._encoder.revision
        from m3e_data.stages.mine.encoder import resolve_model

        _, revision, identity = resolve_model(self.options.model, self.options.revision)
        return self.options.model, identity

    def search_device(self) -> str:
        # The search runs on the encoder's first device: --device may name several ("cuda:0,cuda:1"), or
        # just "cuda", which the encoder resolves to every visible GPU.
        return str(self.get().devices[0])

    def encode(self, texts: list[str], on_progress: Callable[[int, int], None] | None = None) -> Any:
        return self.get().encode(texts, show_progress=self.show_progress and on_progress is None,
                                 on_progress=on_progress)

    def close(self) -> None:
        if self._encoder is not None:
            self._encoder.close()


class LazyTeacher:
    """The cross-encoder of --score-model, loaded when a source first needs scoring."""

    def __init__(self, options: MineOptions) -> None:
        self.options = options
        self._score: Any = None

    def get(self) -> Any:
        if self._score is None:
            from m3e_data.stages.mine.teacher import load_cross_encoder

            o = self.options
            try:
                # One device: --device may list several for the bi-encoder ("cuda:0,cuda:1").
                device = o.device.split(",")[0].strip() if o.device else None
                self._score = load_cross_encoder(str(o.score_model), revision=o.score_revision, device=device,
                                                 batch_size=o.batch_size, max_length=o.max_length)
            except (OSError, ValueError, RuntimeError) as exc:
                raise ModelLoadError(f"cannot load the score model {o.score_model!r}: {exc}") from exc
        return self._score


@dataclass
class DedupState:
    """Kept pairs of the sources before this one in the run, for --semantic-dedup across sources.

    A source skipped as unchanged is only named in `pending`: its kept rows are encoded (the embedding
    cache makes that cheap) when a later source needs mining, never when nothing does.
    """

    vectors: list[Any] = field(default_factory=list)
    queries: list[Any] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    pending: list[Path] = field(default_factory=list)

    def add(self, ids: list[str], query_emb: Any, positive_emb: Any) -> None:
        self.ids += ids
        self.queries.append(query_emb)
        self.vectors.append(pair_vectors(query_emb, positive_emb))

    def mark(self) -> tuple[int, int]:
        return len(self.ids), len(self.vectors)

    def rollback(self, mark: tuple[int, int]) -> None:
        del self.ids[mark[0]:], self.vectors[mark[1]:], self.queries[mark[1]:]

    def load_pending(self, encoder: LazyEncoder) -> None:
        for folder in self.pending:
            table = read_source(folder)
            if table.num_rows:
                self.add(table.column("id").to_pylist(), encoder.encode(table.column("query").to_pylist()),
                         encoder.encode(table.column("positive").to_pylist()))
        self.pending = []

    def arrays(self) -> tuple[Any, Any]:
        if not self.vectors:
            return None, None
        return np.concatenate(self.vectors), np.concatenate(self.queries)


def read_source(folder: Path) -> pa.Table:
    tables = [pq.read_table(p) for p in parquet_files(folder)]
    return conform(pa.concat_tables(tables)) if tables else UNIFIED_SCHEMA.empty_table()


def filter_rows(mined: Any, options: MineOptions, dedup: DedupState | None) -> tuple[pa.Table, pa.Table]:
    """(kept rows, rejected rows with reason, kept_id, positive_rank, similarity) of one mined source."""
    table = mined.table
    scores = table.column("positive_score").to_numpy(zero_copy_only=False)
    ranks = mined.positive_rank if mined.positive_rank is not None else np.ones(table.num_rows, np.int64)
    reasons = filter_reasons(ranks, scores, topk=options.consistency_topk, min_score=options.min_positive_score)
    kept_id = np.full(table.num_rows, None, dtype=object)
    similarity = np.full(table.num_rows, np.nan, dtype=np.float32)
    if dedup is not None:
        candidates = np.flatnonzero(reasons == None)  # noqa: E711
        prior_vectors, prior_queries = dedup.arrays()
        kept_of, sims = near_duplicates(
            pair_vectors(mined.query_emb[candidates], mined.positive_emb[candidates]),
            mined.query_emb[candidates], float(options.semantic_dedup),
            prior_vectors=prior_vectors, prior_cluster_on=prior_queries, seed=options.params.seed)
        ids = dedup.ids + [table.column("id")[int(i)].as_py() for i in candidates]
        dup = kept_of >= 0
        reasons[candidates[dup]] = SEMANTIC_DUPLICATE
        kept_id[candidates[dup]] = [ids[j] for j in kept_of[dup]]
        similarity[candidates[dup]] = sims[dup]
        survivors = candidates[~dup]
        dedup.add([table.column("id")[int(i)].as_py() for i in survivors], mined.query_emb[survivors],
                  mined.positive_emb[survivors])
    drop = reasons != None  # noqa: E711
    rejected = table.filter(pa.array(drop))
    n = rejected.num_rows
    rejected = (rejected.append_column("reason", pa.array(reasons[drop].tolist(), pa.string()))
                .append_column("kept_id", pa.array(kept_id[drop].tolist(), pa.string()))
                .append_column("matched", pa.nulls(n, pa.string()))
                .append_column("positive_rank", pa.array(ranks[drop].astype(np.int32), pa.int32(),
                                                         mask=None if mined.positive_rank is not None
                                                         else np.ones(n, dtype=bool)))
                .append_column("similarity", pa.array(similarity[drop], pa.float32(),
                                                      mask=np.isnan(similarity[drop]))))
    return table.filter(pa.array(~drop)), rejected.cast(REJECT_SCHEMA)


def write_rejects(folder: Path, rejected: pa.Table, key: dict[str, Any]) -> None:
    """OUT/rejects/mine/<source>/, atomically; a source without rejects this time leaves no folder."""
    if not rejected.num_rows:
        ownership.remove(folder, OWNER)
        return
    with staged_folder(folder, OWNER) as tmp:
        writer = PartWriter(tmp, REJECT_SCHEMA)
        writer.write(rejected)
        parts = writer.finish()
        atomic_write_json(tmp / SUCCESS, {"key": key, "stage": STAGE, "parts": parts, "rows": writer.rows,
                                          "finished": now()})


def mine_source(
    name: str,
    options: MineOptions,
    encoder: LazyEncoder,
    model_identity: tuple[str, str],
    on_search: Callable[[int], None] | None = None,
    on_encode: Callable[[int, int], None] | None = None,
    teacher: LazyTeacher | None = None,
    dedup: DedupState | None = None,
    after: list[str] | None = None,
) -> SourceResult:
    """Mine one source; `after` (with --semantic-dedup) fingerprints the sources deduplicated before it."""
    source_in = options.input / name
    target = options.out / name
    key = {
        "input": fingerprint(source_in),
        "model": model_identity[0],
        "revision": model_identity[1],
        "max_length": options.max_length,
        "params": options.params.as_dict(),
        "filters": options.public_filters(),
        "after": after or [],
        "mining_version": MINING_VERSION,
    }
    done = read_success(target)
    if done is not None and done.get("key") == key:
        if dedup is not None:
            dedup.pending.append(target)
        return SourceResult(name, UNCHANGED, stats=done.get("stats", {}))

    if dedup is not None:
        dedup.load_pending(encoder)
        mark = dedup.mark()
    try:
        return _mine_and_write(name, options, encoder, model_identity, key, on_search, on_encode, teacher, dedup)
    except BaseException:
        if dedup is not None:  # rows never written cannot be any later row's kept row
            dedup.rollback(mark)
        raise


def _mine_and_write(
    name: str,
    options: MineOptions,
    encoder: LazyEncoder,
    model_identity: tuple[str, str],
    key: dict[str, Any],
    on_search: Callable[[int], None] | None,
    on_encode: Callable[[int, int], None] | None,
    teacher: LazyTeacher | None,
    dedup: DedupState | None,
) -> SourceResult:
    source_in, target = options.input / name, options.out / name
    rejects = rejects_dir(options.input, options.out) / name
    started = time.perf_counter()
    table = read_source(source_in)
    rejected = REJECT_SCHEMA.empty_table()
    if table.num_rows:
        device = encoder.search_device()

        def encode(texts: list[str]) -> Any:
            return encoder.encode(texts, on_progress=on_encode)

        result = mine_rows(table, encode, options.params, device=device, chunk_size=options.chunk_size,
                           on_search=on_search, ranks=options.consistency_topk is not None, search=encoder.search)
        stats = result.stats
        if teacher is not None:
            from m3e_data.stages.mine.teacher import rescore

            result.table = rescore(result.table, teacher.get())
        mined, rejected = filter_rows(result, options, dedup)
        if result.positive_rank is not None:
            stats.positive_ranks = distribution(result.positive_rank)
        if teacher is not None:  # the score distributions describe the scores the rows carry
            stats.positive_scores = distribution(result.table.column("positive_score").to_numpy())
            flat = result.table.column("negative_scores").combine_chunks().flatten().to_numpy()
            stats.mined_scores, stats.native_scores = distribution(flat), {}
    else:
        mined, stats = table, SourceStats()
    stats.rows_kept = mined.num_rows
    reasons, counts = np.unique(rejected.column("reason").to_numpy(zero_copy_only=False), return_counts=True)
    stats.dropped = {str(r): int(c) for r, c in zip(reasons, counts, strict=True)}
    write_rejects(rejects, rejected, key)
    record = {
        "model": model_identity[0],
        "revision": model_identity[1],
        "score": options.score_meaning(),
        "params": options.params.as_dict(),
        "filters": options.public_filters(),
        "max_length": options.max_length,
        "source": name,
        "stats": stats.as_dict(),
    }
    schema = UNIFIED_SCHEMA.with_metadata({METADATA_KEY: json.dumps(record, ensure_ascii=False).encode()})
    with staged_folder(target, OWNER) as tmp:
        writer = PartWriter(tmp, schema=schema)
        writer.write(mined.cast(schema))
        parts = writer.finish()
        seconds = time.perf_counter() - started
        atomic_write_json(tmp / SUCCESS, {"key": key, "stage": STAGE, "parts": parts, "rows": writer.rows,
                                          "stats": stats.as_dict(), "seconds": round(seconds, 3),
                                          "finished": now(), "m3e_data": __version__})
    return SourceResult(name, MINED, stats=stats.as_dict(), seconds=seconds)


def mine(
    options: MineOptions,
    *,
    show_progress: bool = False,
    on_start: Callable[[str, int], None] | None = None,
    on_search: Callable[[str, int], None] | None = None,
    on_done: Callable[[SourceResult], None] | None = None,
    on_encode: Callable[[str, int, int], None] | None = None,
    encoder: LazyEncoder | None = None,
) -> list[SourceResult]:
    """Mine every source under options.input into options.out; record the run in build-manifest.json of
    `record_folder` (OUT beside m3e-hq, else options.out itself). `encoder` (default: a LazyEncoder of
    `options`) is how texts are encoded and searched: the executor's choice; mine closes it."""
    names = input_sources(options.input, options.sources)
    record = record_folder(options.input, options.out)
    if (record / MANIFEST).exists() and not is_m3e_manifest(record / MANIFEST):
        raise ValueError(f"{record / MANIFEST}: not a manifest m3e-data wrote; refusing to overwrite it: "
                         "move it, or choose another --out")
    options.out.mkdir(parents=True, exist_ok=True)
    clean_stale(options.out)  # only our temps (store.TEMP_PREFIX) whose run is dead: never a user's .tmp
    encoder = encoder or LazyEncoder(options, show_progress)
    identity = encoder.identity()
    teacher = LazyTeacher(options) if options.score_model else None
    dedup = DedupState() if options.semantic_dedup is not None else None
    after: list[str] = []
    results: list[SourceResult] = []
    try:
        for name in names:
            if on_start is not None:
                on_start(name, sum(pq.ParquetFile(p).metadata.num_rows for p in parquet_files(options.input / name)))

            def searched(n: int, _name: str = name) -> None:
                if on_search is not None:
                    on_search(_name, n)

            def encoded(done: int, total: int, _name: str = name) -> None:
                if on_encode is not None:
                    on_encode(_name, done, total)

            try:
                result = mine_source(name, options, encoder, identity, searched,
                                     encoded if on_encode is not None else None, teacher, dedup, list(after))
            except (ValueError, OSError, pa.ArrowException) as exc:  # bad input: record it, go on
                result = SourceResult(name, FAILED, f"{type(exc).__name__}: {exc}")
            results.append(result)
            if dedup is not None:  # a later source's rows are compared with this one's kept rows
                after.append(f"{name}:{fingerprint(options.input / name)}")
            if on_done is not None:
                on_done(result)
    finally:
        encoder.close()
    # A run over some sources keeps the record of the others mined earlier with the same model and params.
    previous = read_manifest(record).get("stages", {}).get(STAGE, {}).get("sources", {})
    same = {"model": identity[0], "revision": identity[1], "params": options.params.as_dict(),
            "filters": options.public_filters()}
    kept = {
        n: d for n, d in previous.items()
        if {k: ((read_success(options.out / n) or {}).get("key") or {}).get(k) for k in same} == same
    }
    dropped: dict[str, int] = {}
    for r in results:
        for reason, n in r.stats.get("dropped", {}).items():
            dropped[reason] = dropped.get(reason, 0) + n
    write_stage(record, STAGE, {
        "finished": now(),
        "dropped": dropped,
        "model": identity[0],
        "revision": identity[1],
        "score": options.score_meaning(),
        **({"score_model": options.score_model, "mining_score": SCORE_MEANING} if options.score_model else {}),
        "rejects": str(rejects_dir(options.input, options.out).relative_to(record)),
        "options": options.as_dict(),
        "sources": {**kept, **{r.name: r.as_dict() for r in results}},
    })
    return results
