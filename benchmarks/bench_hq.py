"""Near dedup of m3e-data against its peers at matched settings, and the whole hq stage, on one realistic
corpus with exact ground truth (benchmarks/corpus.py: queries 10-40 characters, positives 50-500, a
Zipf-weighted vocabulary, 20% planted copies).

    python benchmarks/bench_hq.py                                  # 100k rows, 3 interleaved rounds
    python benchmarks/bench_hq.py --rows 20000 --rounds 1 --stage-rows   # quick
    python benchmarks/bench_hq.py --rows 1000000 --stage-rows 250000 1000000

Near dedup, every method on the same rows, in its own fresh process (`--child`), one process each:
- m3e-data: the MinHash of query and positive, united (120 permutations; the stage's one-pass `sketch`
  where this m3e-data has it, else `minhash.signatures`), `band_keys` 20 x 6, `dedup.near_duplicates`
  (candidates, exact verification, components, serially) — the entry points the stage calls, so this
  measures whatever code is installed;
- datasketch: `MinHash.bulk` (its default hash) of the same 3-gram sets, `LeanMinHash` in a
  `MinHashLSH(num_perm=120, params=(20, 6))`, a query per row, then the same exact verification;
- rensa: `RMinHash.from_token_sets` (120 permutations) and `RMinHashLSH(num_bands=20)`, `query_all`, then the
  same exact verification;
- datatrove: its four-step MinHash pipeline (signatures, buckets, cluster, filter) at 3-grams, 20 buckets of
  6 hashes (64-bit xxhash), reading the rows from Parquet, one task (one per bucket in the bucket step); its
  word tokenizer is replaced by characters (its Chinese one needs spaCy, and matched settings want character
  3-grams), and its hash is handed UTF-8 bytes (xxhash 4 refuses str). It verifies nothing.
The same verification is dedup's own (`similarities`, `question_rows`, the rule of `near_duplicates`), and
components and the kept row (the smallest row) come from the same functions, so the methods differ only in
how they find candidates.

One scoring (corpus.score): recall of the ground-truth pairs (both rows in one predicted cluster); strict
precision (a removed row's kept row is in its ground-truth cluster); rows removed against the rows the
ground truth removes; and the share of sibling questions (same passage, another question) merged.

Measured per run: wall seconds, CPU seconds (user + system of the process and its reaped children), and
peak PSS of the whole process tree (psutil memory_full_info, sampled every 50 ms in a thread), also above the
process's PSS before the job (the corpus in memory). Each child first runs its method on 200 rows, off the
clock (imports, a compiled kernel). Rounds are interleaved (each round runs every method,
in a rotated order); min and median over rounds.

Whole hq stage (`--stage-rows`): `run_hq` with 2 workers on the corpus written as OUT/m3e/<source>/, wall,
CPU and whole-tree peak PSS, recall and precision from its dedup rejects.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
import corpus as C  # noqa: E402

from m3e_data.stages.hq.dedup import components, near_duplicates, question_rows, similarities, survivors  # noqa: E402
from m3e_data.stages.hq.minhash import MinHashParams, band_keys, shingles, signatures  # noqa: E402

NUM_PERM, BANDS, ROWS = 120, 20, 6
THRESHOLD, SIDE_THRESHOLD = 0.8, 0.5  # hq.HqConfig's jaccard and side_jaccard
METHODS = ("m3e-data", "datasketch", "rensa", "datatrove")


# ---------------------------------------------------------------------------------------------------------
# Measuring


class TreeMemory:
    """Peak PSS of this process and all its descendants, sampled in a thread."""

    def __init__(self, interval: float = 0.05) -> None:
        import psutil

        self._psutil = psutil
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> int:
        me = self._psutil.Process()
        total = 0
        for p in [me, *me.children(recursive=True)]:
            with contextlib.suppress(self._psutil.NoSuchProcess, self._psutil.AccessDenied):  # it just ended
                total += p.memory_full_info().pss
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.sample())
            self._stop.wait(self.interval)

    def __enter__(self) -> TreeMemory:
        self.base = self.sample()
        self.peak = self.base
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.sample())


def cpu_seconds() -> float:
    """User + system seconds of this process (every thread) and its reaped children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def measured(job: Callable[[], np.ndarray]) -> tuple[np.ndarray, dict[str, float]]:
    with TreeMemory() as mem:
        t0, c0 = time.perf_counter(), cpu_seconds()
        predicted = job()
        wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    return predicted, {"wall_s": wall, "cpu_s": cpu, "peak_pss_mb": mem.peak / 2**20,
                       "above_start_mb": (mem.peak - mem.base) / 2**20}


# ---------------------------------------------------------------------------------------------------------
# The methods: each returns, for every row, the row kept for it


def verify(queries: list[str], positives: list[str], a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """dedup's exact verification of candidate edges a-b (every row here is s2p), as near_duplicates does."""
    if not len(a):
        return np.zeros(0, dtype=bool)
    involved = np.unique(np.concatenate([a, b]))
    q, p = [queries[i] for i in involved], [positives[i] for i in involved]
    la, lb = np.searchsorted(involved, a), np.searchsorted(involved, b)
    pair, query, positive = similarities(q, p, la, lb)
    question, norm = question_rows(q, p, np.zeros(len(involved), dtype=bool))
    strict = question[la] | question[lb]
    return np.where(strict, (norm[la] == norm[lb]) & (positive >= THRESHOLD),
                    (pair >= THRESHOLD) & (np.minimum(query, positive) >= SIDE_THRESHOLD))


def _kept(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return survivors(components(n, a, b), np.arange(n))


def _verified_kept(queries: list[str], positives: list[str], edges: set[tuple[int, int]] | np.ndarray) -> np.ndarray:
    e = np.array(sorted(edges), dtype=np.int64).reshape(-1, 2) if isinstance(edges, set) else edges
    ok = verify(queries, positives, e[:, 0], e[:, 1])
    return _kept(len(queries), e[ok, 0], e[ok, 1])


SET_BATCH = 20_000  # rows whose Python 3-gram sets a peer holds at once


def _pair_sets(queries: list[str], positives: list[str]) -> list[set[str]]:
    """Each pair's 3-gram set (query's and positive's united), the sets the bands of every method hash."""
    return [set(shingles(q)) | set(shingles(p)) for q, p in zip(queries, positives, strict=True)]


def _pair_signatures(queries: list[str], positives: list[str], params: MinHashParams) -> np.ndarray:
    """MinHash of each pair's united 3-gram sets the way the installed stage computes it: the one-pass
    `sketch` (compiled where numba is installed) when this m3e-data has it, else `signatures`."""
    n = len(queries)
    try:
        from m3e_data.stages.hq.minhash import codepoints
        from m3e_data.stages.hq.sketch import sketch
    except ImportError:
        return np.minimum(signatures(queries, params), signatures(positives, params))
    cp, cp_starts = codepoints(list(queries) + list(positives))
    sig = sketch(cp, cp_starts, n, params, BANDS * ROWS)[3]
    return np.minimum(sig[:n], sig[n:])


def run_ours(queries: list[str], positives: list[str], _data: Path) -> np.ndarray:
    n = len(queries)
    sig = _pair_signatures(queries, positives, MinHashParams(num_perm=NUM_PERM))
    bands = band_keys(sig, BANDS, ROWS)
    del sig
    rows = np.arange(n)
    keep, _ = near_duplicates(n, ((rows, bands[:, i]) for i in range(BANDS)),
                              lambda g: ([queries[i] for i in g], [positives[i] for i in g]), rows, THRESHOLD,
                              np.zeros(n, dtype=bool), SIDE_THRESHOLD)
    return keep


def run_datasketch(queries: list[str], positives: list[str], _data: Path) -> np.ndarray:
    from datasketch import LeanMinHash, MinHash, MinHashLSH

    lsh = MinHashLSH(num_perm=NUM_PERM, params=(BANDS, ROWS))
    hashes = []
    for lo in range(0, len(queries), SET_BATCH):  # a batch of token sets at a time, as for rensa
        sets = [[g.encode("utf-8") for g in s] for s in _pair_sets(queries[lo : lo + SET_BATCH], positives[lo : lo + SET_BATCH])]
        hashes += [LeanMinHash(m) for m in MinHash.bulk(sets, num_perm=NUM_PERM)]
    with lsh.insertion_session() as session:
        for i, m in enumerate(hashes):
            session.insert(i, m, check_duplication=False)
    edges = {(min(i, j), max(i, j)) for i, m in enumerate(hashes) for j in lsh.query(m) if j != i}
    return _verified_kept(queries, positives, edges)


def run_rensa(queries: list[str], positives: list[str], _data: Path) -> np.ndarray:
    from rensa import RMinHash, RMinHashLSH

    # The token sets a batch at a time: a million rows' Python sets of 3-gram strings would need ~30 GB.
    hashes = [h for lo in range(0, len(queries), SET_BATCH)
              for h in RMinHash.from_token_sets(_pair_sets(queries[lo : lo + SET_BATCH], positives[lo : lo + SET_BATCH]),
                                                NUM_PERM, 1)]
    lsh = RMinHashLSH(THRESHOLD, NUM_PERM, BANDS)
    lsh.insert_many(hashes)
    edges = {(min(i, j), max(i, j)) for i, found in enumerate(lsh.query_all(hashes)) for j in found if j != i}
    return _verified_kept(queries, positives, edges)


class _Characters:
    """A word tokenizer for datatrove that yields characters: its n-grams are then character n-grams."""

    def word_tokenize(self, text: str) -> list[str]:
        return [c for c in text if not c.isspace()]

    def sent_tokenize(self, text: str) -> list[str]:
        return [text]

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        return [(0, len(text))]


def run_datatrove(queries: list[str], _positives: list[str], data: Path) -> np.ndarray:
    import struct

    import xxhash
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup import minhash
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.readers import ParquetReader

    minhash.load_word_tokenizer = lambda language: _Characters()
    # xxhash 4 takes bytes only; datatrove 0.10 hands it str (older xxhash encoded str as UTF-8 itself).
    minhash.create_hash_func = lambda config: lambda text: xxhash.xxh64_intdigest(text.encode("utf-8"))
    config = MinhashConfig(n_grams=3, num_buckets=BANDS, hashes_per_bucket=ROWS)
    work = Path(tempfile.mkdtemp(dir=data))
    reader = ParquetReader(str(data), glob_pattern="datatrove.parquet", text_key="text", id_key="id")
    steps = [
        [reader, MinhashDedupSignature(output_folder=str(work / "sigs"), config=config)],
        [MinhashDedupBuckets(input_folder=str(work / "sigs"), output_folder=str(work / "buckets"), config=config)],
        [MinhashDedupCluster(input_folder=str(work / "buckets"), output_folder=str(work / "remove"), config=config,
                             save_cluster_id=True)],
        [reader, MinhashDedupFilter(input_folder=str(work / "remove"))],
    ]
    for i, pipeline in enumerate(steps):
        tasks = BANDS if i == 1 else 1  # the bucket step runs one task per bucket, as datatrove's example does
        LocalPipelineExecutor(pipeline=pipeline, tasks=tasks, workers=1, logging_dir=str(work / f"logs{i}"),
                              skip_completed=False).run()
    n = len(queries)
    predicted = np.arange(n)
    removed = set()
    if (work / "remove" / "000000.remove").exists():
        raw = (work / "remove" / "000000.remove").read_bytes()
        removed = set(struct.unpack(f"<{len(raw) // 4}I", raw))
    if (work / "remove" / "000000.clusters").exists():
        pairs = np.frombuffer((work / "remove" / "000000.clusters").read_bytes(), dtype="<u4").reshape(-1, 2)
        doc, cluster = pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64)
        head = {int(c): int(d) for d, c in zip(doc, cluster, strict=True) if int(d) not in removed}
        predicted[doc] = [head[int(c)] for c in cluster]
    return predicted


RUNNERS = {"m3e-data": run_ours, "datasketch": run_datasketch, "rensa": run_rensa, "datatrove": run_datatrove}


# Imported before the clock starts: a library's import time is not its dedup time.
IMPORTS = {"m3e-data": [], "datasketch": ["datasketch"], "rensa": ["rensa"],
           "datatrove": ["xxhash", "datatrove.executor", "datatrove.pipeline.dedup.minhash", "datatrove.pipeline.readers"]}


def child(method: str, data: Path) -> None:
    import importlib

    for module in IMPORTS[method]:
        importlib.import_module(module)
    corpus = C.load_written(data)
    queries, positives = corpus.queries, corpus.positives
    if method != "datatrove":  # warm up (a compiled kernel, lazy imports) on 200 rows, off the clock
        RUNNERS[method](queries[:200], positives[:200], data)
    predicted, fig = measured(lambda: RUNNERS[method](queries, positives, data))
    fig.update(C.score(corpus, predicted))
    sibling = np.flatnonzero(np.array(corpus.kind) == "sibling")
    fig["siblings_merged"] = float((predicted[sibling] == predicted[corpus.base[sibling]]).mean()) if len(sibling) else 0.0
    print("RESULT " + json.dumps({"method": method, **fig}), flush=True)


def child_stage(data: Path, workers: int) -> None:
    from m3e_data.stages.hq.stage import run_hq

    corpus = C.load_written(data)
    _, fig = measured(lambda: run_hq(data, workers=workers) and np.zeros(0))
    rejects = [p for p in (data / "rejects" / "dedup").glob("*/part-*.parquet")]
    dropped = pl.concat([pl.read_parquet(p, columns=["id", "kept_id"]) for p in rejects]) if rejects else None
    row = {i: r for r, i in enumerate(corpus.ids)}
    predicted = np.arange(len(corpus.ids))
    if dropped is not None:
        predicted[[row[i] for i in dropped["id"].to_list()]] = [row[i] for i in dropped["kept_id"].to_list()]
    fig.update(C.score(corpus, predicted))
    print("RESULT " + json.dumps({"method": "hq stage", "workers": workers, **fig}), flush=True)


# ---------------------------------------------------------------------------------------------------------
# The driver


def _run_child(args: list[str]) -> dict:
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), *args], capture_output=True, text=True,
                          check=False, cwd=Path(__file__).resolve().parents[1])
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if done.returncode or line is None:
        return {"error": (done.stderr or done.stdout)[-2000:]}
    return json.loads(line[7:])


def prepare(rows: int, folder: Path, seed: int = 0) -> C.Corpus:
    """The corpus in m3e's layout, and as one Parquet file of documents (id, text) for datatrove."""
    corpus = C.generate(rows, seed=seed)
    C.write_m3e(corpus, folder)
    pl.DataFrame({"id": corpus.ids, "text": corpus.texts()}).write_parquet(folder / "datatrove.parquet")
    return corpus


def summary(results: dict[str, list[dict]]) -> list[str]:
    lines = ["| method | wall s (min / median) | CPU s (min / median) | peak PSS, tree MB (above start) | recall | "
             "precision (strict) | rows removed (truth) | siblings merged |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for method, runs in results.items():
        ok = [r for r in runs if "error" not in r]
        if not ok:
            lines.append(f"| {method} | not measured: {runs[0]['error'].strip().splitlines()[-1][:120]} | | | | | | |")
            continue
        wall = [r["wall_s"] for r in ok]
        cpu = [r["cpu_s"] for r in ok]
        r = ok[0]
        lines.append(
            f"| {method} | {min(wall):.1f} / {np.median(wall):.1f} | {min(cpu):.1f} / {np.median(cpu):.1f} | "
            f"{max(x['peak_pss_mb'] for x in ok):,.0f} ({max(x['above_start_mb'] for x in ok):,.0f}) | "
            f"{r['recall']:.4f} | {r['precision']:.4f} | {r['removed']:,} ({r['truth_removed']:,}) | "
            f"{r['siblings_merged']:.3f} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000, help="rows for the near-dedup comparison (0: skip)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    ap.add_argument("--stage-rows", type=int, nargs="*", default=[250_000], help="rows for the whole hq stage")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--tmp", type=Path, default=None, help="scratch folder (default: a temp dir)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--child-stage", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.data)
        return
    if args.child_stage:
        child_stage(args.data, args.workers)
        return

    print(f"cpus {os.cpu_count()}, load average {os.getloadavg()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
          flush=True)
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        if args.rows:
            data = Path(tmp) / f"near{args.rows}"
            t0 = time.perf_counter()
            corpus = prepare(args.rows, data)
            print(f"corpus: {args.rows:,} rows, {len(corpus.pairs):,} ground-truth pairs, generated in "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)
            results: dict[str, list[dict]] = {m: [] for m in args.methods}
            for r in range(args.rounds):
                order = args.methods[r % len(args.methods):] + args.methods[: r % len(args.methods)]
                for method in order:
                    fig = _run_child(["--child", method, "--data", str(data)])
                    results[method].append(fig)
                    print(f"round {r + 1} {method}: {json.dumps(fig)} load {os.getloadavg()[0]:.2f}", flush=True)
            print(f"\n== near dedup, {args.rows:,} rows, {args.rounds} interleaved rounds ==")
            print("\n".join(summary(results)), flush=True)
        for n in args.stage_rows:
            data = Path(tmp) / f"stage{n}"
            prepare(n, data)
            fig = _run_child(["--child-stage", "--data", str(data), "--workers", str(args.workers)])
            print(f"\n== whole hq stage, {n:,} rows, {args.workers} workers ==\n{json.dumps(fig)} "
                  f"load {os.getloadavg()[0]:.2f}", flush=True)


if __name__ == "__main__":
    main()
