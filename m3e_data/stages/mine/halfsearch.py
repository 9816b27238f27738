"""search_topk's fp16 path: the corpus on the device in half the memory, the fp32 answer.

A chunk's scores are computed in fp16 against the fp16 corpus, the top (k + margin) become candidates, and
only those are rescored in fp32 against the fp32 rows kept on the host (gathered, batched dot products). The
top-k by those scores is the answer, ties to the lower corpus index, as merge_topk orders them.

fp16 moves a score by up to ~1.5e-3 for unit vectors, so the candidates could miss a true top-k row; the
answer is therefore checked: a row left out scores at most its fp16 score plus FP16_ERROR (scaled by the
norms), which is at most the last candidate's fp16 score plus that. When the k-th rescored score is above
this, nothing left out could enter the top-k. Query rows that fail the check are searched again from the same
fp16 scores with twice the candidates, up to the whole corpus, so the answer is exact whatever the data;
near-duplicate-dense corpora only cost more rescoring.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

# Bound on |fp16 score - exact score| per unit of |q| * |c|, with fp32 accumulation: inputs rounded to fp16
# (2u), the score rounded to fp16 (u), fp32 sums over up to a few thousand dims (< u); u = 2**-11. 8u leaves
# room: a loose bound only costs a few more candidates rescored, a tight one risks a wrong answer.
FP16_ERROR = 2.0**-8


def margin(k: int) -> int:
    """Extra fp16 candidates beyond k: the k-th true row is usually within ~1.5e-3 of its fp16 rank, and a
    quarter of k (at least 16) covers the rows that close in a typical score tail; the check catches the rest."""
    return max(16, k // 4)


def half_by_default(device: str) -> bool:
    """Whether search_topk takes the fp16 path on `device`: on GPUs (memory-bound), never on the CPU."""
    return str(device).startswith("cuda")


@dataclass
class HalfCorpus:
    """One corpus held twice: fp16 on the device (searched), fp32 on the host (rescored)."""

    device_rows: Any  # torch.float16 (n, dim) on the device
    host_rows: Any  # torch.float32 (n, dim) on the CPU, sharing the caller's numpy memory
    error: float  # FP16_ERROR times the largest row norm: the score bound per unit query norm

    @classmethod
    def upload(cls, corpus: np.ndarray, device: str) -> HalfCorpus:
        import torch

        host = np.ascontiguousarray(corpus, dtype=np.float32)
        with warnings.catch_warnings():
            # A Ray shard is a read-only view of the object store: it is only ever read here.
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            host_rows = torch.from_numpy(host)
        # Converted on the host, then copied: the device never holds the fp32 rows.
        device_rows = host_rows.to(dtype=torch.float16).to(device)
        norm = float(np.sqrt(np.max(np.einsum("ij,ij->i", host, host)))) if len(host) else 0.0
        return cls(device_rows, host_rows, FP16_ERROR * norm)

    def __len__(self) -> int:
        return int(self.host_rows.shape[0])


@contextmanager
def _fp32_accumulation() -> Iterator[None]:
    """cuBLAS may otherwise reduce fp16 products in fp16 (split-K), outside FP16_ERROR's budget."""
    import torch

    matmul = torch.backends.cuda.matmul
    saved = matmul.allow_fp16_reduced_precision_reduction
    matmul.allow_fp16_reduced_precision_reduction = False
    try:
        yield
    finally:
        matmul.allow_fp16_reduced_precision_reduction = saved


def rescore(queries: np.ndarray, host_rows: Any, candidates: np.ndarray, block_bytes: int) -> np.ndarray:
    """fp32 scores of each query against its candidate rows, (rows, width), gathering at most block_bytes."""
    import torch

    rows, width = candidates.shape
    dim = int(host_rows.shape[1])
    out = np.empty((rows, width), dtype=np.float32)
    per = max(1, block_bytes // max(1, width * dim * 4))
    q = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32))
    cand = torch.from_numpy(np.ascontiguousarray(candidates, dtype=np.int64))
    for s in range(0, rows, per):
        b = min(per, rows - s)
        gathered = host_rows.index_select(0, cand[s:s + b].reshape(-1)).view(b, width, dim)
        out[s:s + b] = torch.bmm(gathered, q[s:s + b, :, None])[:, :, 0].numpy()
    return out


def exact_topk(sims16: Any, queries: np.ndarray, corpus: HalfCorpus, k: int,
               block_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    """The fp32 top-k of each query row from its fp16 scores `sims16` (rows, n), checked as the module says."""
    import torch

    rows, n = sims16.shape
    scores = np.empty((rows, k), dtype=np.float32)
    indices = np.empty((rows, k), dtype=np.int64)
    bound = corpus.error * np.linalg.norm(queries, axis=1)
    todo = np.arange(rows)
    width = min(n, k + margin(k))
    while len(todo):
        part = sims16 if len(todo) == rows else sims16[torch.from_numpy(todo).to(sims16.device)]
        top16, cand_t = torch.topk(part, width, dim=1, sorted=True)
        cand = cand_t.cpu().numpy()
        floor16 = top16[:, -1].float().cpu().numpy()  # no row left out scores above this in fp16
        s32 = rescore(queries[todo], corpus.host_rows, cand, block_bytes)
        order = np.lexsort((cand, -s32), axis=1)[:, :k]
        best_s, best_i = np.take_along_axis(s32, order, 1), np.take_along_axis(cand, order, 1)
        done = np.full(len(todo), True) if width == n else best_s[:, -1] > floor16 + bound[todo]
        scores[todo[done]], indices[todo[done]] = best_s[done], best_i[done]
        todo = todo[~done]
        width = min(n, 2 * width)
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
