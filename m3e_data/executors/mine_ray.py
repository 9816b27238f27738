"""The mine stage on a Ray cluster: the same rows as the local executor, encoded and searched by actors.

Encoding: the texts a source needs, less the embedding cache's hits, are sorted longest first and cut into
the very batches the local Encoder would form (batch_size at a time within each CACHE_FLUSH_TEXTS flush), so
padding, hence every vector, is the same. The batches go to a pool of EncoderActor (one GPU each where the
cluster has GPUs, else one CPU each), at most IN_FLIGHT queued per actor; the driver writes what comes back
into the same embedding cache in OUT as the local executor, so either executor reuses the other's work. On
CPUs the pool lives as long as the encoder (the whole run) and answers the search too: an actor's start
(torch imported, the model loaded) costs seconds of CPU, which per source was most of a small source's time
when each source had a Ray Data pipeline of its own (benchmarks/bench_scale.py). On GPUs the pool is
released after each encoding: the search actors need the GPUs.

Search: the corpus embeddings go to the object store; actors holding them (on GPUs in fp16, rescored in fp32
on the host: the same answer) take query chunks (the local search's chunks) and call the local search_topk.
A corpus whose embeddings take more than `max_corpus_bytes` on the device (fp16 on a GPU: 2 bytes a value,
fp32 on a CPU: 4; shard_count) is cut into shards searched one after the other; each shard's top-k lists are merged into the corpus-wide top-k, which
is the unsharded answer. Negative selection, the filters and the writing stay in the local code on the driver.

Faults: Ray restarts a killed actor and retries its batch or chunk (the encoder and search actors restart
and retry without limit); nothing is written before a source's answer is complete, so a retried source
writes the same rows.
"""

from __future__ import annotations

import math
import os
import signal
import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from m3e_data.executors.ray_session import ray_session
from m3e_data.stages.mine.halfsearch import half_by_default
from m3e_data.stages.mine.mining import chunk_rows
from m3e_data.stages.mine.stage import LazyEncoder, MineOptions, ModelLoadError

IN_FLIGHT = 2  # encoder batches queued per actor: the next one is there when a batch finishes
# Test-only fault hook: when this path is set, the first EncoderActor call creates the file and kills its own
# process (SIGKILL, as an OOM killer or a lost node would); later calls see the file and run normally.
KILL_ONCE_MARKER: Path | None = None


def encode_batches(order: list[int], batch_size: int, flush: int) -> list[list[int]]:
    """The local Encoder's batches of length-sorted items: batch_size at a time within each cache flush."""
    batches = []
    for part in range(0, len(order), flush):
        chunk = order[part:part + flush]
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    return batches


class EncoderActor:
    """Holds one Encoder (on the GPU Ray gave it, else the CPU) and encodes whole batches as given."""

    def __init__(self, model: str, revision: str | None, device: str | None, batch_size: int, max_length: int,
                 kill_once: str | None = None) -> None:
        from m3e_data.stages.mine.encoder import Encoder

        self.encoder = Encoder(model, revision=revision, device=device, batch_size=batch_size,
                               max_length=max_length, cache_dir=None)
        self.kill_once = kill_once

    def encode(self, batch: int, texts: list[str]) -> tuple[int, np.ndarray]:
        """One of the local Encoder's batches, encoded as given (not re-cut: the same padding)."""
        if self.kill_once and not os.path.exists(self.kill_once):
            Path(self.kill_once).touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return batch, np.ascontiguousarray(self.encoder.encode_batches(texts), dtype=np.float32)

    def search(self, shard: np.ndarray, offset: int, queries: np.ndarray,
               ks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A CPU pool's search: the shard is read in place from the object store, as by _search_task."""
        return _search_task(shard, offset, queries, ks)


class SearchActor:
    """Holds one corpus shard on its device and answers query chunks with the local search_topk.

    On a GPU (or with `half`) the shard is held in fp16 on the device and in fp32 on the host, where the fp16
    candidates are rescored (halfsearch): half the device memory, the fp32 answer. On the CPU it stays fp32.
    """

    def __init__(self, shard: np.ndarray, offset: int, device: str, half: bool | None = None) -> None:
        import torch

        from m3e_data.stages.mine.halfsearch import HalfCorpus, half_by_default

        self.device = "cuda" if device == "cuda" and torch.cuda.is_available() else "cpu"
        half = half_by_default(self.device) if half is None else half
        # On the device once, not per chunk: search_topk uses a tensor already there, or a HalfCorpus, in place.
        if half:
            self.shard: Any = HalfCorpus.upload(shard, self.device)
        else:
            with warnings.catch_warnings():
                # The object store's shard is read-only and the search only reads it: sharing it, not copying
                # it, is what torch warns about.
                warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
                self.shard = torch.from_numpy(np.ascontiguousarray(shard, dtype=np.float32)).to(self.device)
        self.offset = offset

    def search(self, queries: np.ndarray, ks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from m3e_data.stages.mine.mining import search_topk

        # One chunk: the caller already cut the queries as the local search would.
        (_, scores, indices), = search_topk(queries, self.shard, ks, chunk_size=len(queries), device=self.device)
        return scores, indices + self.offset


def _search_task(shard: np.ndarray, offset: int, queries: np.ndarray, ks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return SearchActor(shard, offset, "cpu").search(queries, ks)


def merge_topk(parts: list[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """The top-k of several shards' top-k lists of the same queries, by descending score."""
    scores = np.concatenate([p[0] for p in parts], axis=1)
    indices = np.concatenate([p[1] for p in parts], axis=1)
    # Ties (distinct texts rarely tie) go to the lower corpus index: a fixed order, whatever the shards.
    order = np.lexsort((indices, -scores), axis=1)[:, :k]
    return np.take_along_axis(scores, order, 1), np.take_along_axis(indices, order, 1)


def shard_count(rows: int, dim: int, bound: int, half: bool) -> int:
    """Corpus shards of `rows` embeddings of `dim` values such that each takes at most `bound` bytes on the
    device that searches it: 2 bytes a value in fp16 (`half`, on a GPU), else 4."""
    return max(1, math.ceil(rows * dim * (2 if half else 4) / max(bound, 1)))


class RayEncoder(LazyEncoder):
    """LazyEncoder's interface (encode, search, identity, close) over a Ray cluster; joins it on first use."""

    def __init__(self, options: MineOptions, show_progress: bool = False, *, address: str | None = None,
                 max_corpus_bytes: int | None = None, actors: int | None = None) -> None:
        super().__init__(options, show_progress)
        self.address, self.max_corpus_bytes, self.actors = address, max_corpus_bytes, actors
        self._stack = ExitStack()
        self._ray: Any = None
        self._facts: dict[str, Any] | None = None
        self._cache: Any = None
        self._pool: list[Any] = []  # EncoderActor handles while a pool is up
        # What the cluster did: texts sent to encoder actors, search shards and chunks (tests and the record).
        self.stats = {"texts": 0, "cache_hits": 0, "encoded": 0, "batches": 0, "shards": 0, "chunks": 0}

    # -- the cluster -----------------------------------------------------------------------------------
    def ray(self) -> Any:
        if self._ray is None:
            self._ray = self._stack.enter_context(ray_session(self.address))
        return self._ray

    def gpus(self) -> int:
        if self.options.device == "cpu" or (self.options.device or "").startswith("cpu"):
            return 0
        return int(self.ray().cluster_resources().get("GPU", 0))

    def workers(self) -> int:
        """Actors per pool: one per GPU, else one per CPU."""
        if self.actors:
            return self.actors
        gpus = self.gpus()
        return gpus if gpus else max(1, int(self.ray().cluster_resources().get("CPU", 1)))

    def _model_facts(self) -> dict[str, Any]:
        """Cache namespace and dimension from the model's config: the driver never loads the weights."""
        if self._facts is None:
            from transformers import AutoConfig

            from m3e_data.stages.mine.encoder import (
                cache_namespace,
                effective_max_length,
                read_layout,
                resolve_model,
            )

            o = self.options
            try:
                folder, _, identity = resolve_model(o.model, o.revision)
                layout = read_layout(folder)
                config = AutoConfig.from_pretrained(layout.transformer_dir)
            except (OSError, ValueError) as exc:
                raise ModelLoadError(f"cannot load the model {o.model!r}: {exc}") from exc
            max_length = effective_max_length(o.max_length, layout, config)
            self._facts = {"namespace": cache_namespace(o.model, identity, max_length, layout.pooling),
                           "dim": int(config.hidden_size)}
        return self._facts

    def _embedding_cache(self) -> Any:
        if self._cache is None and self.options.cache_dir is not None:
            from m3e_data.stages.mine.encoder import EmbeddingCache

            facts = self._model_facts()
            self._cache = EmbeddingCache(Path(self.options.cache_dir), facts["namespace"], facts["dim"])
        return self._cache

    # -- LazyEncoder's interface -----------------------------------------------------------------------
    def get(self) -> Any:
        raise TypeError("RayEncoder holds no local model: its actors do")

    def search_device(self) -> str:
        """Where the driver's own work runs (the consistency filter's ranks): actors do the search."""
        import torch

        if self.options.device:
            return self.options.device.split(",")[0].strip()
        return "cuda" if torch.cuda.is_available() else "cpu"

    def encode(self, texts: list[str], on_progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """float32 (len(texts), dim), L2-normalised: the local Encoder.encode's answer, computed by actors."""
        from m3e_data.stages.mine.encoder import CACHE_FLUSH_TEXTS, EmbeddingCache, _normalize

        dim = self._model_facts()["dim"]
        cache = self._embedding_cache()
        unique = list(dict.fromkeys(texts))
        vectors = np.empty((len(unique), dim), dtype=np.float32)
        todo = list(range(len(unique)))
        keys: list[bytes] = []
        if cache is not None:
            keys = [EmbeddingCache.key(t) for t in unique]
            cached = cache.get(keys)
            todo = [i for i, k in enumerate(keys) if k not in cached]
            hits = [i for i, k in enumerate(keys) if k in cached]
            if hits:
                vectors[hits] = _normalize(np.stack([cached[keys[i]] for i in hits]).astype(np.float32))
            self.stats["cache_hits"] += len(hits)
        todo.sort(key=lambda i: -len(unique[i]))  # as Encoder.encode sorts: longest first, stable
        batches = encode_batches(todo, self.options.batch_size, CACHE_FLUSH_TEXTS)
        done = 0
        for b, out in self._encode_on_cluster([[unique[i] for i in batch] for batch in batches], dim):
            part = batches[b]
            if cache is not None:
                # Stored as float16 and read back, so cached and fresh vectors are bit-identical (as locally).
                cache.put([keys[i] for i in part], out)
                out = _normalize(out.astype(np.float16).astype(np.float32))
            vectors[part] = out
            done += len(part)
            if on_progress is not None:
                on_progress(done, len(todo))
        self.stats["texts"] += len(texts)
        self.stats["encoded"] += len(todo)
        self.stats["batches"] += len(batches)
        position = {t: i for i, t in enumerate(unique)}
        return vectors if len(unique) == len(texts) else vectors[[position[t] for t in texts]]

    def _encoders(self) -> list[Any]:
        """The pool of EncoderActor, started on first use."""
        if not self._pool:
            ray, o = self.ray(), self.options
            gpus = self.gpus()
            actor = ray.remote(num_gpus=1 if gpus else 0, num_cpus=0 if gpus else 1, max_restarts=-1,
                               max_task_retries=-1)(EncoderActor)
            self._pool = [actor.remote(o.model, o.revision, None if gpus else (o.device or "cpu"), o.batch_size,
                                       o.max_length, str(KILL_ONCE_MARKER) if KILL_ONCE_MARKER else None)
                          for _ in range(self.workers())]
        return self._pool

    def _release_pool(self) -> None:
        for actor in self._pool:
            self.ray().kill(actor)
        self._pool = []

    def _encode_on_cluster(self, batches: list[list[str]], dim: int) -> Iterator[tuple[int, np.ndarray]]:
        """(batch index, float32 vectors) of each batch, in the order the actors finish them."""
        if not batches:
            return
        ray = self.ray()
        pool = self._encoders()
        todo = iter(enumerate(batches))
        running: dict[Any, Any] = {}  # ObjectRef -> the actor computing it

        def submit(actor: Any) -> None:
            item = next(todo, None)
            if item is not None:
                running[actor.encode.remote(*item)] = actor

        try:
            for actor in pool * IN_FLIGHT:
                submit(actor)
            while running:
                [ref], _ = ray.wait(list(running), num_returns=1)
                submit(running.pop(ref))
                b, vectors = ray.get(ref)
                yield b, vectors.reshape(-1, dim)
        except ray.exceptions.RayError as exc:  # an actor that cannot start fails every source alike
            self._release_pool()
            raise ModelLoadError(f"encoding on Ray failed: {exc}") from exc
        finally:
            if self._pool and self.gpus():  # the search actors need the GPUs
                self._release_pool()

    def search(self, queries: np.ndarray, corpus: np.ndarray, ks: np.ndarray, *, chunk_size: int | None = None,
               device: str = "cpu") -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """search_topk's answer: query chunks over actors holding the corpus, shard by shard, merged."""
        if len(corpus) == 0 or len(queries) == 0:
            from m3e_data.stages.mine.mining import search_topk

            yield from search_topk(queries, corpus, ks, chunk_size=chunk_size, device="cpu")
            return
        ray = self.ray()
        corpus = np.ascontiguousarray(corpus, dtype=np.float32)
        step = chunk_rows(len(corpus), chunk_size)  # the local chunks: same k per chunk, same answer
        starts = list(range(0, len(queries), step))
        chunk_k = [int(min(len(corpus), max(1, ks[s:s + step].max()))) for s in starts]
        bound = self.max_corpus_bytes or self._default_corpus_bytes()
        # The GPU actors hold their shard in fp16 (SearchActor: half_by_default("cuda")), CPU tasks in fp32.
        n_shards = shard_count(len(corpus), corpus.shape[1], bound, half=bool(self.gpus()) and half_by_default("cuda"))
        bounds = np.linspace(0, len(corpus), n_shards + 1).astype(int)
        self.stats["shards"] += n_shards
        self.stats["chunks"] += len(starts) * n_shards
        best: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(starts)
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
            shard = ray.put(corpus[lo:hi])
            with self._searchers(shard, int(lo), len(starts)) as searchers:
                refs = [searchers[i % len(searchers)](queries[s:s + step], ks[s:s + step])
                        for i, s in enumerate(starts)]
                for i, ref in enumerate(refs):
                    found = ray.get(ref)
                    best[i] = found if best[i] is None else merge_topk([best[i], found], chunk_k[i])
            del shard
        for s, found in zip(starts, best, strict=True):
            assert found is not None
            yield s, found[0], found[1]

    @contextmanager
    def _searchers(self, shard: Any, offset: int, chunks: int) -> Iterator[list[Callable[..., Any]]]:
        """Callables (queries, ks) -> ObjectRef of (scores, indices) over one shard.

        On GPUs, actors that upload the shard once and keep it for every chunk, released when the shard is
        done (the next source's encoder actors need the GPUs). On CPUs, tasks: the shard is read in place
        from the object store, and Ray's pooled workers keep torch imported from one source to the next.
        """
        ray = self.ray()
        n = max(1, min(self.workers(), chunks))
        if not self.gpus():
            if self._pool:  # the encoder actors hold the CPUs: they search too, torch already imported
                yield [lambda q, k, a=a: a.search.remote(shard, offset, q, k) for a in self._pool]
                return
            task = ray.remote(num_cpus=1, max_retries=-1)(_search_task)
            yield [lambda q, k: task.remote(shard, offset, q, k)] * n
            return
        actor_cls = ray.remote(num_gpus=1, max_restarts=-1, max_task_retries=-1)(SearchActor)
        pool = [actor_cls.remote(shard, offset, "cuda") for _ in range(n)]
        try:
            yield [actor.search.remote for actor in pool]
        finally:
            for actor in pool:
                ray.kill(actor)

    def _default_corpus_bytes(self) -> int:
        """A shard's bytes on its device (shard_count): half a GPU's memory (the rest holds the score blocks
        and the fp16 candidates), else a quarter of the smallest node's."""
        ray = self.ray()
        if self.gpus():
            @ray.remote(num_gpus=1)
            def device_memory() -> int:
                import torch

                return int(torch.cuda.get_device_properties(0).total_memory)

            return ray.get(device_memory.remote()) // 2
        memories = [n["Resources"].get("memory", 0) for n in ray.nodes() if n.get("Alive")]
        return int(min(memories)) // 4 if memories and min(memories) > 0 else 2**31

    def close(self) -> None:
        if self._pool:  # a session that outlives this encoder (a test's, a notebook's) gets its CPUs back
            self._release_pool()
        if self._cache is not None:
            self._cache.close()
            self._cache = None
        self._stack.close()
