"""Benchmark of the m3e-hq stage on a synthetic corpus of Chinese pairs with planted duplicates.

    python benchmarks/bench_hq.py                     # 100k quality/speed/baseline, RSS at 1M and 4M
    python benchmarks/bench_hq.py --sizes 20000 --rss-sizes 100000 --baseline-rows 5000   # quick

Prints:
- quality: recall of planted duplicate pairs with true Jaccard >= 0.8 (exact Jaccard of the pairs' 3-gram
  sets, computed after planting) and precision of the reported duplicates (the dropped row and the row
  kept for it come from the same planted group; and, stricter, their true Jaccard is >= 0.8 directly);
- speed: pairs/s of the whole hq stage (statistics in a 2-process pool, rules, dedup, writing) and texts/s
  of the signatures, total and per core, plus the re-run with cached statistics;
- baseline: datasketch's plain pipeline (MinHash.update per shingle, MinHashLSH at threshold 0.8) on the
  same pairs, its time and its recall (candidates, unverified), against our near dedup doing the same job
  (signatures, bands, grouping, verification, components) and against our whole hq stage;
- memory: peak RSS of the hq stage at each --rss-sizes, each run in a fresh subprocess (main process and
  largest pool worker).

The corpus: 4 sources; 80% unrelated background pairs; planted groups of a base and 3 variants with
random character edits aimed at Jaccard 0.5-0.95; exact copies with punctuation/space noise; copies of rows
into another source (exact or one character edited). Query 8-24 and positive 16-96 Han characters.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from m3e_data.dedup import near_duplicates, pair_similarity
from m3e_data.minhash import MinHashParams, band_keys, signatures
from m3e_data.schema import UNIFIED_SCHEMA
from m3e_data.store import SUCCESS, atomic_write_json

SOURCES = ("bench_a", "bench_b", "bench_c", "bench_d")
HAN = np.arange(0x4E00, 0x4E00 + 3500, dtype=np.uint32)
LEVELS = np.array([0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.6, 0.5])
THRESHOLD = 0.8
SIDE_THRESHOLD = 0.5  # hq.HqConfig.side_jaccard


# ---------------------------------------------------------------------------------------------------------
# The corpus


def _texts(rng: np.random.Generator, lengths: np.ndarray) -> list[str]:
    cps = rng.choice(HAN, size=int(lengths.sum()))
    big = cps.tobytes().decode("utf-32-le")
    ends = np.cumsum(lengths)
    starts = ends - lengths
    return [big[s:e] for s, e in zip(starts.tolist(), ends.tolist(), strict=True)]


def _edit(rng: np.random.Generator, q: str, p: str, target: float) -> tuple[str, str]:
    """Replace k random characters of q + p, k chosen so that J ≈ (S - 3k) / (S + 3k)."""
    text = list(q + p)
    size = max(len(q) - 2, 1) + max(len(p) - 2, 1)
    k = max(1, round(size * (1 - target) / (3 * (1 + target))))
    for pos in rng.choice(len(text), size=min(k, len(text)), replace=False):
        text[pos] = chr(int(rng.choice(HAN)))
    return "".join(text[: len(q)]), "".join(text[len(q) :])


def generate(n: int, out: Path, seed: int = 0) -> pl.DataFrame:
    """Write n pairs as OUT/m3e/<source>/ and return the truth: id, group, original (planted copies)."""
    rng = np.random.default_rng(seed)
    n_bg = int(n * 0.8)
    queries = _texts(rng, rng.integers(8, 25, n_bg))
    positives = _texts(rng, rng.integers(16, 97, n_bg))
    source = rng.integers(0, len(SOURCES), n_bg).tolist()
    group = list(range(n_bg))
    original = [-1] * n_bg
    level = [np.nan] * n_bg
    noise = ["", "。", " ", "！", "？"]
    while len(queries) < n:
        kind = rng.random()
        base = int(rng.integers(0, n_bg))
        q, p = queries[base], positives[base]
        if kind < 0.6:  # a near-duplicate group: 3 variants of the base
            for target in rng.choice(LEVELS, size=3):
                vq, vp = _edit(rng, q, p, float(target))
                queries.append(vq)
                positives.append(vp)
                source.append(source[base] if rng.random() < 0.7 else int(rng.integers(0, len(SOURCES))))
                group.append(base)
                original.append(base)
                level.append(float(target))
        elif kind < 0.8:  # an exact copy with punctuation/space noise
            queries.append(q + noise[int(rng.integers(0, len(noise)))])
            positives.append(p)
            source.append(source[base])
            group.append(base)
            original.append(base)
            level.append(1.0)
        else:  # a copy in another source, exact or with one character edited
            vq, vp = (q, p) if rng.random() < 0.5 else _edit(rng, q, p, 0.95)
            queries.append(vq)
            positives.append(vp)
            source.append((source[base] + 1 + int(rng.integers(0, len(SOURCES) - 1))) % len(SOURCES))
            group.append(base)
            original.append(base)
            level.append(0.95)
    queries, positives = queries[:n], positives[:n]
    source, group, original, level = source[:n], group[:n], original[:n], level[:n]
    ids = [f"{SOURCES[s]}/train/{i:08d}" for i, s in enumerate(source)]
    truth = pl.DataFrame({"row": np.arange(n), "id": ids, "source": [SOURCES[s] for s in source],
                          "group": group, "original": original, "level": level})
    src = np.asarray(source)
    for s, name in enumerate(SOURCES):
        idx = np.flatnonzero(src == s)
        folder = out / "m3e" / name
        folder.mkdir(parents=True, exist_ok=True)
        m = len(idx)
        table = pa.table({
            "id": [ids[i] for i in idx], "source": [name] * m, "split": ["train"] * m,
            "query": [queries[i] for i in idx], "positive": [positives[i] for i in idx],
            "negatives": pa.array([[]] * m, pa.list_(pa.string())), "positive_score": pa.nulls(m, pa.float32()),
            "negative_scores": pa.nulls(m, pa.list_(pa.float32())), "task": ["similarity"] * m,
            "homogeneous": [False] * m, "domain": ["colloquial"] * m, "license": ["synthetic"] * m,
            "commercial": [True] * m,
        }).cast(UNIFIED_SCHEMA)
        pq.write_table(table, folder / "part-00000.parquet", row_group_size=100_000)
        atomic_write_json(folder / SUCCESS, {"key": {"bench": n, "seed": seed, "source": name}, "parts": ["part-00000.parquet"]})
    # True similarity of every planted (copy, original) pair, as dedup defines a near duplicate: exact
    # Jaccard of the united pair 3-gram sets >= THRESHOLD and of the less alike side >= SIDE_THRESHOLD.
    planted = truth.filter(pl.col("original") >= 0)
    a = planted["row"].to_numpy()
    b = planted["original"].to_numpy()
    rows = np.unique(np.concatenate([a, b]))
    j, side = pair_similarity([queries[i] for i in rows], [positives[i] for i in rows],
                              np.searchsorted(rows, a), np.searchsorted(rows, b))
    j = np.where(side >= SIDE_THRESHOLD, j, 0.0)  # "jaccard" below: the pair's, where the sides qualify
    truth = truth.join(planted.select("row", pl.Series("jaccard", j)), on="row", how="left")
    truth.write_parquet(out / "truth.parquet")
    return truth


def read_corpus(out: Path) -> tuple[list[str], list[str], list[str]]:
    """ids, queries, positives in truth-row order."""
    truth = pl.read_parquet(out / "truth.parquet", columns=["id"])
    frames = [pl.read_parquet(out / "m3e" / s / "part-00000.parquet", columns=["id", "query", "positive"]) for s in SOURCES]
    df = truth.join(pl.concat(frames), on="id", how="left", maintain_order="left")
    return df["id"].to_list(), df["query"].to_list(), df["positive"].to_list()


# ---------------------------------------------------------------------------------------------------------
# Measurements


def quality_figures(out: Path, truth: pl.DataFrame) -> dict[str, float]:
    """Recall of planted pairs at J >= 0.8 and precision of the reported duplicates."""
    dropped = pl.concat([
        pl.read_parquet(p, columns=["id", "reason", "kept_id"]) for p in (out / "rejects" / "dedup").glob("*/part-*.parquet")
    ]) if (out / "rejects" / "dedup").exists() else pl.DataFrame(schema={"id": pl.String, "reason": pl.String, "kept_id": pl.String})
    cluster = truth.select("id", "row").join(dropped.select("id", "kept_id"), on="id", how="left").with_columns(
        pl.coalesce("kept_id", "id").alias("cluster")
    )
    cl = dict(zip(cluster["row"].to_list(), cluster["cluster"].to_list(), strict=True))
    planted = truth.filter(pl.col("original") >= 0, pl.col("jaccard") >= THRESHOLD)
    found = sum(cl[a] == cl[b] for a, b in zip(planted["row"].to_list(), planted["original"].to_list(), strict=True))
    recall = found / max(planted.height, 1)
    by_id = truth.select("id", "row", "group")
    pairs = dropped.join(by_id, on="id").join(by_id.rename({"id": "kept_id", "row": "kept_row", "group": "kept_group"}), on="kept_id")
    precision = float((pairs["group"] == pairs["kept_group"]).mean()) if pairs.height else 1.0
    # Stricter: the dropped row's own Jaccard with the row kept for it.
    ids, queries, positives = read_corpus(out)
    rows = np.unique(np.concatenate([pairs["row"].to_numpy(), pairs["kept_row"].to_numpy()])) if pairs.height else np.zeros(0, np.int64)
    strict = 1.0
    if len(rows):
        j, side = pair_similarity([queries[i] for i in rows], [positives[i] for i in rows],
                                  np.searchsorted(rows, pairs["row"].to_numpy()), np.searchsorted(rows, pairs["kept_row"].to_numpy()))
        strict = float(((j >= THRESHOLD) & (side >= SIDE_THRESHOLD)).mean())
    return {"planted_pairs_j>=0.8": planted.height, "recall": recall, "reported": pairs.height,
            "precision_same_group": precision, "precision_direct_j>=0.8": strict}


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children: per-core speed that contention does not hide."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _sig_chunk(texts: list[str]) -> int:
    signatures(texts, MinHashParams())
    return len(texts)


def signature_speed(texts: list[str], workers: int) -> dict[str, float]:
    chunks = [texts[i : i + 20_000] for i in range(0, len(texts), 20_000)]
    t0, c0 = time.perf_counter(), time.process_time()
    for c in chunks:
        _sig_chunk(c)
    one, one_cpu = time.perf_counter() - t0, time.process_time() - c0
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_sig_chunk, chunks[:workers]))  # warm the workers
        t0 = time.perf_counter()
        list(pool.map(_sig_chunk, chunks))
        many = time.perf_counter() - t0
    return {"texts": len(texts), "texts_per_s_1_process": len(texts) / one, "texts_per_cpu_s": len(texts) / one_cpu,
            f"texts_per_s_{workers}_processes": len(texts) / many, "texts_per_s_per_core": len(texts) / many / workers}


def baseline(queries: list[str], positives: list[str], truth: pl.DataFrame) -> dict[str, float]:
    """datasketch's plain pipeline: MinHash.update per shingle (default sha1 hash), MinHashLSH(0.8)."""
    from datasketch import MinHash, MinHashLSH

    from m3e_data.minhash import shingles

    n = len(queries)
    t0, c0 = time.perf_counter(), time.process_time()
    lsh = MinHashLSH(threshold=THRESHOLD, num_perm=128)
    found: set[tuple[int, int]] = set()
    for i in range(n):
        m = MinHash(num_perm=128)
        for g in set(shingles(queries[i])) | set(shingles(positives[i])):
            m.update(g.encode("utf-8"))
        for j in lsh.query(m):
            found.add((min(i, j), max(i, j)))
        lsh.insert(i, m)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    planted = truth.filter(pl.col("row") < n, pl.col("original") >= 0, pl.col("original") < n, pl.col("jaccard") >= THRESHOLD)
    hits = sum((min(a, b), max(a, b)) in found for a, b in zip(planted["row"].to_list(), planted["original"].to_list(), strict=True))
    return {"pairs": n, "seconds": seconds, "cpu_seconds": cpu, "pairs_per_s": n / seconds, "recall_candidates": hits / max(planted.height, 1),
            "params_bands_rows": list(lsh.b_r) if hasattr(lsh, "b_r") else [lsh.b, lsh.r]}


def near_dedup_only(queries: list[str], positives: list[str], truth: pl.DataFrame) -> dict[str, float]:
    """The same job as the baseline with our pieces, in one process: signatures (numpy, datasketch-exact),
    20 x 6 band keys, candidate grouping in polars, exact verification, connected components."""
    n = len(queries)
    t0, c0 = time.perf_counter(), time.process_time()
    pair_sig = np.minimum(signatures(queries), signatures(positives))  # MinHash of the union of the sets
    bands = band_keys(pair_sig, 20, 6)
    keep, _ = near_duplicates(
        n, ((np.arange(n), bands[:, i]) for i in range(bands.shape[1])),
        lambda g: ([queries[i] for i in g], [positives[i] for i in g]), np.arange(n), THRESHOLD,
        side_threshold=SIDE_THRESHOLD,
    )
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    planted = truth.filter(pl.col("row") < n, pl.col("original") >= 0, pl.col("original") < n, pl.col("jaccard") >= THRESHOLD)
    hits = int((keep[planted["row"].to_numpy()] == keep[planted["original"].to_numpy()]).sum())
    return {"pairs": n, "seconds": seconds, "cpu_seconds": cpu, "pairs_per_s": n / seconds,
            "recall_clusters": hits / max(planted.height, 1)}


def run_stage(out: Path, workers: int) -> dict[str, float]:
    from m3e_data.hq import HqConfig, run_hq

    t0, c0 = time.perf_counter(), _cpu_seconds()
    results = run_hq(out, workers=workers)
    first, cpu = time.perf_counter() - t0, _cpu_seconds() - c0
    t0 = time.perf_counter()  # a threshold change: statistics come from the cache, outputs are rewritten
    run_hq(out, HqConfig(defaults={"max_char_run": 9}), workers=workers)
    rerun = time.perf_counter() - t0
    rows = sum(r.rows_in for r in results.values())
    return {"pairs": rows, "seconds": first, "pairs_per_s": rows / first, "pairs_per_s_per_core": rows / first / workers,
            "cpu_seconds": cpu, "pairs_per_cpu_s": rows / cpu,
            "rerun_cached_seconds": rerun}


def _rss_mb() -> tuple[float, float]:
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)


def child_hq(out: Path, workers: int) -> None:
    from m3e_data.hq import run_hq

    t0, c0 = time.perf_counter(), _cpu_seconds()
    results = run_hq(out, workers=workers)
    seconds, cpu = time.perf_counter() - t0, _cpu_seconds() - c0
    main_mb, worker_mb = _rss_mb()
    print(json.dumps({"pairs": sum(r.rows_in for r in results.values()), "seconds": seconds, "cpu_seconds": cpu,
                      "peak_rss_main_mb": main_mb, "peak_rss_worker_mb": worker_mb}))


def _subprocess(args: list[str]) -> dict:
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"child {args} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="*", default=[100_000], help="pairs for quality and speed")
    ap.add_argument("--baseline-rows", type=int, default=100_000, help="pairs the datasketch baseline runs on (0: skip)")
    ap.add_argument("--rss-sizes", type=int, nargs="*", default=[1_000_000, 4_000_000], help="pairs for peak RSS")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--tmp", type=Path, default=None, help="scratch folder (default: a temp dir)")
    ap.add_argument("--child-generate", nargs=2, metavar=("N", "OUT"), help=argparse.SUPPRESS)
    ap.add_argument("--child-hq", metavar="OUT", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_generate:
        generate(int(args.child_generate[0]), Path(args.child_generate[1]))
        print(json.dumps({"ok": True}))
        return
    if args.child_hq:
        child_hq(Path(args.child_hq), args.workers)
        return

    print(f"cpus {os.cpu_count()}, load average {os.getloadavg()}", flush=True)
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        for n in args.sizes:
            out = Path(tmp) / f"q{n}"
            t0 = time.perf_counter()
            truth = generate(n, out)
            print(f"\n== {n:,} pairs (generated in {time.perf_counter() - t0:.1f}s) ==", flush=True)
            stage = run_stage(out, args.workers)
            print("hq stage:", json.dumps(stage, indent=None), flush=True)
            print("quality:", json.dumps(quality_figures(out, truth)), flush=True)
            ids, queries, positives = read_corpus(out)
            print("signatures:", json.dumps(signature_speed(queries + positives, args.workers)), flush=True)
            if args.baseline_rows:
                m = min(args.baseline_rows, n)
                base = baseline(queries[:m], positives[:m], truth)
                # Our stage on exactly those pairs, for the ratio.
                sub = Path(tmp) / f"sub{m}"
                sub_truth = _subset(out, sub, m, truth)
                ours = run_stage(sub, args.workers)
                q = quality_figures(sub, sub_truth)
                print("baseline datasketch:", json.dumps(base), flush=True)
                print(f"our whole hq stage (quality, exact + near dedup, writing) on the same {m:,} pairs: "
                      f"{ours['seconds']:.1f}s ({ours['cpu_seconds']:.1f} CPU-s), recall {q['recall']:.4f}; speed ratio "
                      f"{base['seconds'] / ours['seconds']:.1f}x wall, {base['cpu_seconds'] / ours['cpu_seconds']:.1f}x CPU",
                      flush=True)
                near = near_dedup_only(queries[:m], positives[:m], truth)
                print(f"our near dedup alone (the baseline's job) on the same {m:,} pairs: {near['seconds']:.1f}s "
                      f"({near['cpu_seconds']:.1f} CPU-s, one process), recall {near['recall_clusters']:.4f}; speed ratio "
                      f"{base['seconds'] / near['seconds']:.1f}x wall, {base['cpu_seconds'] / near['cpu_seconds']:.1f}x CPU",
                      flush=True)
            print(f"load average {os.getloadavg()}", flush=True)
        for n in args.rss_sizes:
            out = Path(tmp) / f"rss{n}"
            _subprocess(["--child-generate", str(n), str(out)])
            fig = _subprocess(["--child-hq", str(out), "--workers", str(args.workers)])
            fig["pairs_per_s"] = fig["pairs"] / fig["seconds"]
            print(f"\n== peak RSS at {n:,} pairs ==\n", json.dumps(fig), f"load average {os.getloadavg()}", flush=True)


def _subset(out: Path, sub: Path, m: int, truth: pl.DataFrame) -> pl.DataFrame:
    """The first m truth rows as their own corpus (same ids and texts)."""
    keep = truth.filter(pl.col("row") < m)
    for s in SOURCES:
        table = pq.read_table(out / "m3e" / s / "part-00000.parquet")
        ids = set(keep.filter(pl.col("source") == s)["id"].to_list())
        mask = pa.array([i in ids for i in table.column("id").to_pylist()])
        folder = sub / "m3e" / s
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(table.filter(mask), folder / "part-00000.parquet")
        atomic_write_json(folder / SUCCESS, {"key": {"subset": m, "source": s}, "parts": ["part-00000.parquet"]})
    keep.write_parquet(sub / "truth.parquet")
    return keep


if __name__ == "__main__":
    main()
