"""search_topk's fp16 path: the corpus on the device in half the memory, the fp32 answer.

A chunk's scores are computed in fp16 against the fp16 corpus, the top (k + margin) become candidates, and
only those are rescored in fp32 against the fp32 rows kept on the host (gathered, batched dot products). The
top-k by those scores is the answer, ties to the lower corpus index, as merge_topk orders them.

fp16 moves a score by up to `fp16_error` (~1.5e-3 for unit vectors), so k + margin candidates can miss a
true top-k row where scores crowd. The answer is therefore checked: a row left out scores at most the last
candidate's fp16 score plus the error, so when the k-th rescored score is above that, nothing left out can
enter the top-k. A query row failing the check gets a second, final pass: the k-th rescored score is a lower
bound of the true k-th, so every row scoring at least that minus the error in fp16 (counted on the device)
becomes a candidate, and no other row can be in the top-k. The answer is exact whatever the data; crowded
score tails only cost more rescoring.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

U16 = 2.0**-11  # fp16's unit roundoff


def fp16_error(dim: int) -> float:
    """Bound on |fp16 score - exact score| per unit of |q| * |c| for vectors of norm ~1 (embeddings are unit;
    fp16 would overflow far above that), the products summed in fp32: each input rounded to fp16 moves q.c by
    at most U16 * sum|q_i c_i| <= U16 (2 * U16 for both) plus 2**-25 * sqrt(dim) for components too small for
    fp16's precision, the score rounded to fp16 by U16 * |score|, and fp32 sums over `dim` terms by
    dim * 2**-24 at most (counted twice: a loose bound costs a few more candidates, a tight one a wrong answer)."""
    return 3 * U16 + U16**2 + dim**0.5 * 2.0**-24 + dim * 2.0**-23


def margin(k: int) -> int:
    """Extra fp16 candidates beyond k for the first pass. fp16 moves a score by up to ~1.5e-3, which is a few
    ranks where the k-th score's tail is sparse and hundreds where it is crowded (a large corpus); a quarter
    of k, at least 16, settles most queries in one pass (bench_half_search.py, k=107, dim 384: all of them at
    20k isotropic rows, 91% at 20k crowded rows, 68% at 200k) and the check sends the rest to the second."""
    return max(16, k // 4)


def half_by_default(device: str) -> bool:
    """Whether search_topk takes the fp16 path on `device`: on GPUs, where device memory bounds the shard;
    never on the CPU, where fp16 products are slower than fp32 and memory is the same host memory."""
    return str(device).startswith("cuda")


@dataclass
class HalfCorpus:
    """One corpus held twice: fp16 on the device (searched), fp32 on the host (rescored)."""

    device_rows: Any  # torch.float16 (n, dim) on the device
    host_rows: np.ndarray  # float32 (n, dim): the caller's array, not a copy (a Ray shard stays in the store)
    error: float  # fp16_error times the largest row norm: the score bound per unit query norm

    @classmethod
    def upload(cls, corpus: np.ndarray, device: str) -> HalfCorpus:
        import torch

        host = np.ascontiguousarray(corpus, dtype=np.float32)
        # Converted on the host, then copied: the device never holds the fp32 rows.
        device_rows = torch.from_numpy(host.astype(np.float16)).to(device)
        norm = float(np.sqrt(np.max(np.einsum("ij,ij->i", host, host)))) if len(host) else 0.0
        return cls(device_rows, host, fp16_error(host.shape[1]) * norm)

    def __len__(self) -> int:
        return int(self.host_rows.shape[0])


@contextmanager
def _fp32_accumulation() -> Iterator[None]:
    """cuBLAS may otherwise reduce fp16 products in fp16 (split-K), outside fp16_error's budget."""
    import torch

    matmul = torch.backends.cuda.matmul
    saved = matmul.allow_fp16_reduced_precision_reduction
    matmul.allow_fp16_reduced_precision_reduction = False
    try:
        yield
    finally:
        matmul.allow_fp16_reduced_precision_reduction = saved


def rescore(queries: np.ndarray, host_rows: np.ndarray, candidates: np.ndarray, block_bytes: int) -> np.ndarray:
    """fp32 scores of each query against its candidate rows, (rows, width), gathering at most block_bytes.

    numpy, not torch: its gather and batched products ran ~4x faster on this project's CPU."""
    rows, width = candidates.shape
    dim = host_rows.shape[1]
    out = np.empty((rows, width), dtype=np.float32)
    per = max(1, block_bytes // max(1, width * dim * 4))
    q = np.ascontiguousarray(queries, dtype=np.float32)
    for s in range(0, rows, per):
        gathered = np.take(host_rows, candidates[s:s + per], axis=0)
        out[s:s + per] = np.matmul(gathered, q[s:s + per, :, None])[:, :, 0]
    return out


def _top_rescored(sims16: Any, queries: np.ndarray, corpus: HalfCorpus, k: int, width: int,
                  block_bytes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The top-k by fp32 score among each row's `width` best fp16 candidates, and the last candidate's
    fp16 score (no row left out scores above it in fp16)."""
    import torch

    top16, cand_t = torch.topk(sims16, width, dim=1, sorted=True)
    cand = cand_t.cpu().numpy()
    s32 = rescore(queries, corpus.host_rows, cand, block_bytes)
    order = np.lexsort((cand, -s32), axis=1)[:, :k]
    return np.take_along_axis(s32, order, 1), np.take_along_axis(cand, order, 1), top16[:, -1].float().cpu().numpy()


def exact_topk(sims16: Any, queries: np.ndarray, corpus: HalfCorpus, k: int,
               block_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    """The fp32 top-k of each query row from its fp16 scores `sims16` (rows, n), checked as the module says."""
    import torch

    n = sims16.shape[1]
    bound = corpus.error * np.linalg.norm(queries, axis=1)
    scores, indices, floor16 = _top_rescored(sims16, queries, corpus, k, min(n, k + margin(k)), block_bytes)
    if k + margin(k) >= n:  # every row was a candidate
        return scores, indices
    redo = np.flatnonzero(scores[:, -1] <= floor16 + bound)
    if len(redo):
        # Rows below the k-th rescored score minus the error, in fp16, score below it exactly: never top-k.
        rows = torch.from_numpy(redo).to(sims16.device)
        part = sims16[rows]
        threshold = torch.from_numpy(scores[redo, -1] - bound[redo]).to(sims16.device)
        width = int((part.float() >= threshold[:, None]).sum(dim=1).max())
        scores[redo], indices[redo], _ = _top_rescored(part, queries[redo], corpus, k, max(k, width), block_bytes)
    return scores, indices


def search_half(queries: np.ndarray, corpus: HalfCorpus, ks: np.ndarray, step: int,
                block_bytes: int) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """search_topk's answer and chunks (`step` queries each) over a HalfCorpus."""
    import torch

    n, device = len(corpus), corpus.device_rows.device
    with torch.inference_mode():
        # One fp16 score block, reused, as search_topk's fp32 one: half its bytes.
        block = torch.empty((min(step, len(queries)), n), dtype=torch.float16, device=device)
        for start in range(0, len(queries), step):
            stop = min(len(queries), start + step)
            k = int(min(n, max(1, ks[start:stop].max())))
            q32 = np.ascontiguousarray(queries[start:stop], dtype=np.float32)
            q16 = torch.from_numpy(q32).to(dtype=torch.float16).to(device)
            with _fp32_accumulation():
                sims = torch.mm(q16, corpus.device_rows.T, out=block[: stop - start])
            scores, indices = exact_topk(sims, q32, corpus, k, block_bytes)
            yield start, scores, indices
