"""Benchmark: search_topk's fp16 path (fp16 corpus on the device, fp32 rescoring on the host) against fp32.

Same vectors, same chunks, same k for both. Prints per case the seconds of each path (and the host rescoring's share), whether the answers
agree (indices identical, largest score difference), how many query rows the check sent to a second pass past
the first k + margin candidates, the candidates rescored per query, and the corpus bytes on the device (plus the
peak CUDA memory on a GPU). The vectors are unit vectors around a shared direction: `--common 0` is
isotropic (cosines near 0, a sparse score tail), larger values crowd the scores the way real sentence
embeddings do (unrelated texts at cosine ~0.5 and up), so more rows sit within fp16's error of the k-th.

    python benchmarks/bench_half_search.py                                  # CPU: the rescoring's overhead
    python benchmarks/bench_half_search.py --device cuda --corpus 1000000 --queries 100000
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import m3e_data.stages.mine.halfsearch as halfsearch
from m3e_data.stages.mine.mining import search_topk


def vectors(n: int, dim: int, common: float, rng: np.random.Generator) -> np.ndarray:
    shared = np.zeros(dim, np.float32)
    shared[0] = common
    v = rng.standard_normal((n, dim), dtype=np.float32) / np.sqrt(dim, dtype=np.float32) + shared
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def timed(device: str, fn):
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    out = fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else None
    return out, time.perf_counter() - started, peak


def exact_gap(queries: np.ndarray, corpus: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    rows = np.flatnonzero((a != b).any(axis=1))
    if not len(rows):
        return 0.0
    q = queries[rows].astype(np.float64)
    sa = np.einsum("rd,rkd->rk", q, corpus[a[rows]].astype(np.float64))
    sb = np.einsum("rd,rkd->rk", q, corpus[b[rows]].astype(np.float64))
    return float(np.abs(sa - sb).max())


def run(args: argparse.Namespace, common: float) -> dict:
    rng = np.random.default_rng(0)
    corpus = vectors(args.corpus, args.dim, common, rng)
    queries = vectors(args.queries, args.dim, common, rng)
    ks = np.full(args.queries, args.k)

    def collect(half: bool):
        chunks = list(search_topk(queries, corpus, ks, device=args.device, half=half))
        return np.concatenate([c[1] for c in chunks]), np.concatenate([c[2] for c in chunks])

    # Rows through the rescoring: the first pass sees every row once, widened rows come back.
    rescored = {"rows": 0, "candidates": 0, "seconds": 0.0}
    real = halfsearch.rescore

    def counted(q, host_rows, candidates, block_bytes):
        rescored["rows"] += len(q)
        rescored["candidates"] += candidates.size
        started = time.perf_counter()
        out = real(q, host_rows, candidates, block_bytes)
        rescored["seconds"] += time.perf_counter() - started
        return out

    (s32, i32), t32, peak32 = timed(args.device, lambda: collect(False))
    halfsearch.rescore = counted
    try:
        (s16, i16), t16, peak16 = timed(args.device, lambda: collect(True))
    finally:
        halfsearch.rescore = real
    return {
        "device": args.device, "corpus": args.corpus, "queries": args.queries, "dim": args.dim, "k": args.k,
        "common": common, "k_th_cosine_mean": round(float(s32[:, -1].mean()), 3),
        "fp32_s": round(t32, 2), "fp16_rescored_s": round(t16, 2),
        "same_indices_rows": f"{(i16 == i32).all(axis=1).mean():.2%}",
        # Where the two orders differ, by how much the swapped rows differ in exact (float64) score: fp32
        # rounding (mm against the rescoring's gathered dot products), not a miss, when ~1e-6.
        "max_exact_gap_where_differ": exact_gap(queries, corpus, i16, i32),
        "max_score_diff": float(np.abs(s16 - s32).max()),
        "second_pass_rows": f"{(rescored['rows'] - args.queries) / args.queries:.2%}",
        "rescored_per_query": round(rescored["candidates"] / args.queries, 1),
        "rescore_s": round(rescored["seconds"], 2),  # the host's share of fp16_rescored_s
        "corpus_device_mib": {"fp32": round(corpus.nbytes / 2**20), "fp16": round(corpus.nbytes / 2**21)},
        "peak_cuda_mib": {"fp32": peak32, "fp16": peak16} if peak32 is not None else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--corpus", type=int, default=20_000)
    parser.add_argument("--queries", type=int, default=2_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--k", type=int, default=107, help="mining's depth: range_max 100 + the excluded texts")
    parser.add_argument("--common", type=float, nargs="+", default=[0.0, 1.0])
    args = parser.parse_args()
    for common in args.common:
        print(run(args, common), flush=True)


if __name__ == "__main__":
    main()
