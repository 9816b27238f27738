"""The bundled text encoder: an M3E-style model (mean pooling, L2-normalised) with an on-disk cache.

Loads a Hub id or a local folder with transformers' AutoModel/AutoTokenizer, sentence-transformers model
folders included (their modules.json says where the transformer weights sit and 1_Pooling/config.json
which pooling to use). torch and transformers are imported lazily: the core package must import without
the `mine` extra.
"""

from __future__ import annotations

import copy
import hashlib
import json
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xxhash

DEFAULT_MODEL = "moka-ai/m3e-small"
POOLINGS = ("mean", "cls")
# sentence-transformers modules that do not change the direction of the vector (the encoder normalises).
_NEUTRAL_MODULES = ("Normalize",)
# Texts encoded between two cache commits: an interrupted run keeps what it had already encoded.
CACHE_FLUSH_TEXTS = 8192
# Files a Hub snapshot needs; other formats (ONNX, OpenVINO, TF, Flax) would only cost download time.
_IGNORE_ON_HUB = ["*.onnx", "onnx/*", "openvino/*", "*.h5", "*.msgpack", "*.ot", "*.tflite", "rust_model*",
                  "*.gguf"]


@dataclass(frozen=True)
class ModelLayout:
    """Where a model's transformer lives inside its folder and how its token vectors are pooled."""

    transformer_dir: Path
    pooling: str
    max_seq_length: int | None


def read_layout(folder: Path) -> ModelLayout:
    """The layout of a plain transformers folder or a sentence-transformers one (modules.json)."""
    modules_file = folder / "modules.json"
    if not modules_file.is_file():
        return ModelLayout(folder, "mean", None)
    modules = json.loads(modules_file.read_text(encoding="utf-8"))
    transformer_dir, pooling = folder, "mean"
    for module in modules:
        kind = str(module.get("type", "")).rsplit(".", 1)[-1]
        path = folder / module.get("path", "")
        if kind == "Transformer":
            transformer_dir = path
        elif kind == "Pooling":
            config = json.loads((path / "config.json").read_text(encoding="utf-8"))
            pooling = _pooling_mode(config, folder)
        elif kind not in _NEUTRAL_MODULES:
            # A Dense projection, a LayerNorm, a Router... change the vector: ignoring one would silently
            # give other embeddings (and other mined negatives) than the model's own.
            raise ValueError(f"{folder}: module {module.get('type')!r} is not supported; the encoder runs "
                             "Transformer + Pooling (+ Normalize) models")
    max_seq_length = None
    for config_dir in (transformer_dir, folder):
        st_config = config_dir / "sentence_bert_config.json"
        if st_config.is_file():
            max_seq_length = json.loads(st_config.read_text(encoding="utf-8")).get("max_seq_length")
            break
    return ModelLayout(transformer_dir, pooling, max_seq_length)


def _pooling_mode(config: dict[str, Any], folder: Path) -> str:
    if "pooling_mode" in config:  # newer sentence-transformers write a single string
        mode = {"mean": "mean", "cls": "cls"}.get(config["pooling_mode"])
    elif config.get("pooling_mode_cls_token") and not config.get("pooling_mode_mean_tokens"):
        mode = "cls"
    elif config.get("pooling_mode_mean_tokens") and not any(
        config.get(k) for k in ("pooling_mode_cls_token", "pooling_mode_max_tokens",
                                "pooling_mode_mean_sqrt_len_tokens", "pooling_mode_weightedmean_tokens",
                                "pooling_mode_lasttoken")
    ):
        mode = "mean"
    else:
        mode = None
    if mode is None:
        raise ValueError(f"{folder}: unsupported pooling {config}; the encoder supports mean or CLS pooling")
    return mode


def _local_fingerprint(folder: Path) -> str:
    """Identifies the weights of a local folder, so a model retrained in place does not hit a stale cache."""
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.suffix in (".safetensors", ".bin", ".json", ".txt", ".model"):
            st = p.stat()
            h.update(f"{p.relative_to(folder)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def resolve_model(model: str, revision: str | None) -> tuple[Path, str, str]:
    """(local folder, revision, cache identity): a local path as is, a Hub id through the Hub cache."""
    path = Path(model).expanduser()
    if path.is_dir():
        if revision:
            raise ValueError(f"--revision applies to Hub ids, not to the local folder {model}")
        return path.resolve(), "local", f"local:{_local_fingerprint(path.resolve())}"
    from huggingface_hub import snapshot_download

    folder = Path(snapshot_download(model, revision=revision, ignore_patterns=_IGNORE_ON_HUB))
    commit = folder.name  # snapshots/<commit hash>
    return folder, commit, commit


def effective_max_length(max_length: int, layout: ModelLayout, config: Any) -> int:
    """Tokens per text: the caller's bound, capped by the model folder's and the position embeddings'."""
    limits = [max_length, layout.max_seq_length, getattr(config, "max_position_embeddings", None)]
    return min(x for x in limits if x)


def cache_namespace(model: str, identity: str, max_length: int, pooling: str) -> dict[str, Any]:
    """What an embedding depends on: the key of the cache file (shared by every executor that encodes)."""
    return {"model": model, "revision": identity, "max_length": max_length, "pooling": pooling, "normalized": True}


class EmbeddingCache:
    """Embeddings on disk: one SQLite file per (model, revision, max_length, pooling), float16 blobs
    keyed by a 128-bit hash of the text. float16 halves the disk (22M texts x 512 dims = 22 GB); values
    are always read back through it, so a first and a second pass return identical vectors."""

    def __init__(self, folder: Path, namespace: dict[str, Any], dim: int) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        ident = hashlib.sha256(json.dumps(namespace, sort_keys=True).encode()).hexdigest()[:20]
        self.path = folder / f"embeddings-{ident}.sqlite"
        self.dim = dim
        (folder / f"embeddings-{ident}.json").write_text(json.dumps(namespace, indent=2) + "\n")
        self._db = sqlite3.connect(self.path, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS emb (key BLOB PRIMARY KEY, vec BLOB NOT NULL) WITHOUT ROWID")

    @staticmethod
    def key(text: str) -> bytes:
        return xxhash.xxh3_128_digest(text.encode("utf-8"))

    def get(self, keys: list[bytes]) -> dict[bytes, np.ndarray]:
        found: dict[bytes, np.ndarray] = {}
        for start in range(0, len(keys), 900):  # SQLite's bound-parameter limit
            chunk = keys[start:start + 900]
            rows = self._db.execute(
                f"SELECT key, vec FROM emb WHERE key IN ({','.join('?' * len(chunk))})", chunk
            ).fetchall()
            for key, vec in rows:
                found[key] = np.frombuffer(vec, dtype=np.float16)
        return found

    def put(self, keys: list[bytes], vectors: np.ndarray) -> None:
        blobs = vectors.astype(np.float16)
        self._db.executemany("INSERT OR REPLACE INTO emb VALUES (?, ?)",
                             ((k, blobs[i].tobytes()) for i, k in enumerate(keys)))
        self._db.commit()

    def close(self) -> None:
        self._db.close()


class Encoder:
    """Encodes texts into float32, L2-normalised vectors (mean or CLS pooling, as the model folder says)."""

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        revision: str | None = None,
        device: str | None = None,
        batch_size: int = 64,
        max_length: int = 512,
        cache_dir: str | Path | None = None,
        trust_remote_code: bool = False,
    ) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        if batch_size < 1 or max_length < 2:
            raise ValueError("batch_size must be >= 1 and max_length >= 2")
        folder, self.revision, identity = resolve_model(model, revision)
        self.model_id = model
        layout = read_layout(folder)
        self.pooling = layout.pooling
        self.batch_size = batch_size

        self.devices = _devices(torch, device)
        on_cuda = self.devices[0].type == "cuda"
        # bf16 keeps fp32's range (no overflow in long sums); fp16 where the GPU lacks bf16; fp32 on CPU.
        self.dtype = (
            (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) if on_cuda else torch.float32
        )
        self.tokenizer = AutoTokenizer.from_pretrained(layout.transformer_dir, trust_remote_code=trust_remote_code)
        base = AutoModel.from_pretrained(layout.transformer_dir, dtype=self.dtype,
                                         trust_remote_code=trust_remote_code)
        base.eval()
        self.max_length = effective_max_length(max_length, layout, base.config)
        # One replica per visible GPU; batches are dealt out round-robin and run in threads (torch
        # releases the GIL inside kernels).
        self.replicas = [base.to(self.devices[0])]
        for dev in self.devices[1:]:
            self.replicas.append(copy.deepcopy(base).to(dev))
        self.dim = int(base.config.hidden_size)
        self.cache: EmbeddingCache | None = None
        if cache_dir is not None:
            self.cache = EmbeddingCache(Path(cache_dir), cache_namespace(model, identity, self.max_length,
                                                                         self.pooling), self.dim)
        self.stats = {"texts": 0, "cache_hits": 0, "encoded": 0, "batches": 0}

    def encode(self, texts: list[str], show_progress: bool = False,
               on_progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """float32 (len(texts), dim), L2-normalised. Duplicates are encoded once; cached texts not at all.

        `on_progress(done, total)` is called after each batch with the texts encoded so far and the number to
        encode (cache hits excluded), for a caller that draws its own progress display.
        """
        unique = list(dict.fromkeys(texts))
        vectors = np.empty((len(unique), self.dim), dtype=np.float32)
        todo = list(range(len(unique)))
        keys: list[bytes] = []
        if self.cache is not None:
            keys = [EmbeddingCache.key(t) for t in unique]
            cached = self.cache.get(keys)
            todo, hits = [], []
            for i, k in enumerate(keys):
                if k in cached:
                    vectors[i] = cached[k]
                    hits.append(i)
                else:
                    todo.append(i)
            if hits:
                vectors[hits] = _normalize(vectors[hits])
            self.stats["cache_hits"] += len(unique) - len(todo)
        # Longest first: similar lengths share a batch (little padding) and an OOM shows at once.
        todo.sort(key=lambda i: -len(unique[i]))
        progress = _progress(show_progress, len(todo), on_progress)
        try:
            for start in range(0, len(todo), CACHE_FLUSH_TEXTS):
                part = todo[start:start + CACHE_FLUSH_TEXTS]
                out = self._encode_sorted([unique[i] for i in part], progress)
                if self.cache is not None:
                    # Stored as float16 and read back, so cached and fresh vectors are bit-identical.
                    self.cache.put([keys[i] for i in part], out)
                    out = _normalize(out.astype(np.float16).astype(np.float32))
                vectors[part] = out
        finally:
            if progress is not None:
                progress.stop()
        self.stats["texts"] += len(texts)
        self.stats["encoded"] += len(todo)
        position = {t: i for i, t in enumerate(unique)}
        return vectors if len(unique) == len(texts) else vectors[[position[t] for t in texts]]

    def encode_batches(self, texts: list[str]) -> np.ndarray:
        """float32 (len(texts), dim) of texts as given, batch_size at a time: no dedup, no cache, no sort.

        The Ray executor hands each actor one batch that `encode` would have formed, so both give the same
        padding, hence the same vectors.
        """
        return self._encode_sorted(texts, None)

    def _encode_sorted(self, texts: list[str], progress: Any) -> np.ndarray:
        # Tokenized here, in one thread: a fast tokenizer shared by threads raises "Already borrowed".
        batches = [
            self.tokenizer(texts[i:i + self.batch_size], padding=True, truncation=True,
                           max_length=self.max_length, return_tensors="pt")
            for i in range(0, len(texts), self.batch_size)
        ]
        results: list[np.ndarray | None] = [None] * len(batches)

        def run(replica_index: int) -> None:
            replica = self.replicas[replica_index]
            for b in range(replica_index, len(batches), len(self.replicas)):
                results[b] = self._forward(replica, batches[b])
                if progress is not None:
                    progress.advance(len(results[b]))

        if len(self.replicas) == 1:
            run(0)
        else:
            with ThreadPoolExecutor(len(self.replicas)) as pool:
                list(pool.map(run, range(len(self.replicas))))
        if not batches:
            return np.empty((0, self.dim), dtype=np.float32)
        return np.concatenate(results)  # type: ignore[arg-type]

    def _forward(self, model: Any, batch: Any) -> np.ndarray:
        import torch

        device = next(model.parameters()).device
        enc = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        with torch.inference_mode():
            hidden = model(**enc).last_hidden_state
            if self.pooling == "cls":
                pooled = hidden[:, 0].float()
            else:
                # Sum in fp32: a bf16 sum over 512 tokens loses digits the cosine later needs.
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).float().sum(1) / mask.float().sum(1).clamp(min=1)
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
        self.stats["batches"] += 1
        return pooled.cpu().numpy()

    def close(self) -> None:
        if self.cache is not None:
            self.cache.close()


def _devices(torch: Any, device: str | None) -> list[Any]:
    if device in (None, "cuda") and torch.cuda.is_available():
        return [torch.device(f"cuda:{i}") for i in range(torch.cuda.device_count())]
    if device is None:
        return [torch.device("cpu")]
    return [torch.device(d.strip()) for d in device.split(",")]


def _normalize(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


class _Progress:
    """Texts encoded so far, drawn as a rich bar and/or reported to a callback (thread-safe)."""

    def __init__(self, show: bool, total: int, callback: Callable[[int, int], None] | None) -> None:
        self.total, self.done, self.callback = total, 0, callback
        self._lock = threading.Lock()
        self._bar: Any = None
        if show:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(TextColumn("encoding"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                 transient=True)
            self._task = self._bar.add_task("encode", total=total)
            self._bar.start()

    def advance(self, n: int) -> None:
        with self._lock:
            self.done += n
            done = self.done
            if self._bar is not None:
                self._bar.advance(self._task, n)
            if self.callback is not None:
                self.callback(done, self.total)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def _progress(show: bool, total: int, callback: Callable[[int, int], None] | None = None) -> _Progress | None:
    if total == 0 or not (show or callback):
        return None
    return _Progress(show, total, callback)

