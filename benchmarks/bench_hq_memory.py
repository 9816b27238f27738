"""Whole-process-tree peak memory and CPU seconds of the m3e-hq stage at realistic text lengths.

    python benchmarks/bench_hq_memory.py --sizes 250000 1000000      # corpus written once per size under --tmp
    python benchmarks/bench_hq_memory.py --sizes 250000 --tmp /tmp/hqmem --keep   # reuse the corpus next time

The corpus (a quick stand-in for benchmarks/corpus.py): 4 sources, one s2s; queries 10-40 and positives
50-500 characters made of words (1-3 Han characters) drawn from a Zipf-weighted vocabulary of 20,000, so
that unrelated texts share common 3-grams; 20% planted copies (a character edited per ~20, or an exact
copy with a punctuation mark added).

Each run is a fresh subprocess running `run_hq` on a clean OUT (no statistics cache). The parent samples the
subprocess and its pool workers every 0.2 s with psutil and reports the peak of their summed PSS (RSS where
PSS is unreadable) — forked workers share pages with the main process, which RSS would count twice — and
the CPU seconds (user + system) of the whole tree from getrusage of the reaped children.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from m3e_data.schema import UNIFIED_SCHEMA
from m3e_data.storage.store import SUCCESS, atomic_write_json

SOURCES = ("mem_a", "mem_b", "mem_c", "mem_d")
S2S = "mem_d"
VOCAB = 20_000
HAN = np.arange(0x4E00, 0x4E00 + 3500, dtype=np.uint32)


def _vocabulary(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Words of 1-3 Han characters as CSR (code points, starts) and their Zipf weights."""
    lengths = rng.choice([1, 2, 3], size=VOCAB, p=[0.2, 0.6, 0.2])
    starts = np.zeros(VOCAB + 1, dtype=np.int64)
    np.cumsum(lengths, out=starts[1:])
    cps = rng.choice(HAN, size=int(starts[-1]))
    weights = 1.0 / np.arange(1, VOCAB + 1) ** 1.05
    return cps, starts, weights / weights.sum()


def _texts(rng: np.random.Generator, lengths: np.ndarray, vocab: tuple[np.ndarray, np.ndarray, np.ndarray]) -> list[str]:
    """Texts of about `lengths` characters (whole words, cut at the length)."""
    cps, starts, p = vocab
    words = rng.choice(VOCAB, size=int(lengths.sum() // 2 + len(lengths) * 2), p=p)
    wl = starts[words + 1] - starts[words]
    flat = cps[np.repeat(starts[words], wl) + (np.arange(wl.sum()) - np.repeat(np.cumsum(wl) - wl, wl))]
    big = flat.astype(np.uint32).tobytes().decode("utf-32-le")
    ends = np.cumsum(lengths)
    return [big[s:e] for s, e in zip((ends - lengths).tolist(), ends.tolist(), strict=True)]


GEN_CHUNK = 1_000_000  # texts drawn per call and rows written per step: bounds the generator's memory


def _texts_chunked(rng: np.random.Generator, lengths: np.ndarray, vocab: tuple[np.ndarray, np.ndarray, np.ndarray]
                   ) -> list[str]:
    """_texts in steps of GEN_CHUNK texts (one step, so the same texts, up to GEN_CHUNK)."""
    out: list[str] = []
    for lo in range(0, len(lengths), GEN_CHUNK):
        out += _texts(rng, lengths[lo : lo + GEN_CHUNK], vocab)
    return out


def generate(n: int, out: Path, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    vocab = _vocabulary(rng)
    n_bg = int(n * 0.8)
    queries = _texts_chunked(rng, rng.integers(10, 41, n_bg), vocab)
    positives = _texts_chunked(rng, rng.integers(50, 501, n_bg), vocab)
    source = rng.integers(0, len(SOURCES), n).tolist()
    base = rng.integers(0, n_bg, n - n_bg)
    for b in base.tolist():
        q, p = queries[b], positives[b]
        if rng.random() < 0.3:
            queries.append(q + "。")
            positives.append(p)
            continue
        chars = list(p)
        for pos in rng.choice(len(chars), size=max(1, len(chars) // 20), replace=False).tolist():
            chars[pos] = chr(int(rng.choice(HAN)))
        queries.append(q)
        positives.append("".join(chars))
    src = np.asarray(source)
    for s, name in enumerate(SOURCES):
        folder = out / "m3e" / name
        folder.mkdir(parents=True, exist_ok=True)
        with pq.ParquetWriter(folder / "part-00000.parquet", UNIFIED_SCHEMA) as writer:
            for lo in range(0, n, GEN_CHUNK):  # rows in order, GEN_CHUNK of the corpus at a time
                idx = (lo + np.flatnonzero(src[lo : lo + GEN_CHUNK] == s)).tolist()
                m = len(idx)
                table = pa.table({
                    "id": [f"{name}/train/{i:08d}" for i in idx], "source": [name] * m, "split": ["train"] * m,
                    "query": [queries[i] for i in idx], "positive": [positives[i] for i in idx],
                    "negatives": pa.array([[]] * m, pa.list_(pa.string())),
                    "positive_score": pa.nulls(m, pa.float32()),
                    "negative_scores": pa.nulls(m, pa.list_(pa.float32())), "task": ["similarity"] * m,
                    "homogeneous": [name == S2S] * m, "domain": ["colloquial"] * m, "license": ["synthetic"] * m,
                    "commercial": [True] * m,
                }).cast(UNIFIED_SCHEMA)
                writer.write_table(table, row_group_size=100_000)
        atomic_write_json(folder / SUCCESS, {"key": {"bench": n, "seed": seed, "source": name},
                                             "parts": ["part-00000.parquet"]})


# The child runs the stage and, for --timeline, stamps each progress step (time, step) on stderr.
_CHILD = (
    "import sys, time\n"
    "from m3e_data.stages.hq.stage import run_hq\n"
    "def mark(step, source, rows):\n"
    "    print(f'{time.perf_counter()}\\t{step} {source}', file=sys.stderr, flush=True)\n"
    "r = run_hq(sys.argv[1], workers=int(sys.argv[2]), on_progress=mark)\n"
    "print(sum(x.rows_out for x in r.values()))\n"
)


def _tree_memory(proc) -> tuple[int, int, float]:  # noqa: ANN001 (psutil.Process)
    """PSS (RSS where unreadable) of the process and of its descendants, in bytes, and the CPU seconds of
    the live tree (a worker that exited no longer counts here; the run's total comes from getrusage)."""
    totals, cpu = [0, 0], 0.0
    try:
        tree = [proc, *proc.children(recursive=True)]
    except Exception:  # noqa: BLE001 (the stage exited between two samples)
        return 0, 0, 0.0
    for k, p in enumerate(tree):
        try:
            info = p.memory_full_info()
            times = p.cpu_times()
        except Exception:  # noqa: BLE001 (a worker that just exited)
            continue
        totals[min(k, 1)] += getattr(info, "pss", info.rss)
        cpu += times.user + times.system
    return totals[0], totals[1], cpu


def measure(out: Path, workers: int, timeline: Path | None = None) -> dict[str, float]:
    """Run the hq stage on OUT in a subprocess; whole-tree peak PSS, CPU seconds and wall time."""
    import psutil

    for stale in (out / ".cache", out / "m3e-hq", out / "rejects", out / "manifest.json"):
        if stale.is_dir():
            shutil.rmtree(stale)
        elif stale.exists():
            stale.unlink()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(out), str(workers)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE if timeline else None, text=True)
    proc = psutil.Process(child.pid)
    peak = 0
    samples: list[tuple[float, int, int, float]] = []  # (seconds, main PSS, workers' PSS, tree CPU seconds)
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            main, rest, cpu = _tree_memory(proc)
            peak = max(peak, main + rest)
            samples.append((time.perf_counter() - t0, main, rest, cpu))
            stop.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = child.communicate()
    stop.set()
    sampler.join()
    seconds = time.perf_counter() - t0
    if child.returncode:
        raise SystemExit(f"hq stage failed (exit {child.returncode})")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if timeline:
        _write_timeline(timeline, samples, stderr, t0)
    return {"kept": int(stdout.split()[-1]), "seconds": round(seconds, 1), "cpu_seconds": round(cpu, 1),
            "peak_tree_pss_mb": round(peak / 2**20)}


def _write_timeline(path: Path, samples: list[tuple[float, int, int, float]], stderr: str, t0: float) -> None:
    """Per sample: seconds, main and workers' PSS (MB), CPU seconds so far and the stage's last progress step;
    the peak's sample, and per step kind (statistics, near dedup, ...) the CPU seconds and peak spent in it."""
    marks = [(float(t) - t0, step) for t, step in (line.split("\t", 1) for line in stderr.splitlines() if "\t" in line)]
    rows, k, phase = [], 0, "start"
    for t, main, rest, cpu in samples:
        while k < len(marks) and marks[k][0] <= t:
            phase = marks[k][1]
            k += 1
        rows.append({"s": round(t, 1), "main_mb": round(main / 2**20), "workers_mb": round(rest / 2**20),
                     "cpu_s": round(cpu, 1), "after": phase})
    phases: dict[str, dict[str, float]] = {}
    for prev, row in zip(rows, rows[1:], strict=False):
        kind = phases.setdefault(row["after"].split(" ")[0], {"cpu_s": 0.0, "wall_s": 0.0, "peak_mb": 0})
        kind["cpu_s"] = round(kind["cpu_s"] + max(row["cpu_s"] - prev["cpu_s"], 0.0), 1)
        kind["wall_s"] = round(kind["wall_s"] + row["s"] - prev["s"], 1)
        kind["peak_mb"] = max(kind["peak_mb"], row["main_mb"] + row["workers_mb"])
    peak = max(rows, key=lambda r: r["main_mb"] + r["workers_mb"], default=None)
    path.write_text(json.dumps({"peak": peak, "phases": phases, "samples": rows}, ensure_ascii=False) + "\n",
                    encoding="utf-8")
    print("peak sample:", json.dumps(peak, ensure_ascii=False), "phases:", json.dumps(phases), flush=True)


def fit(figures: list[dict[str, float]], target: int = 22_000_000) -> list[str]:
    """Least-squares lines through (pairs, peak PSS) and (pairs, CPU seconds, wall seconds), and their
    values at `target` pairs."""
    n = np.array([f["pairs"] for f in figures], dtype=float)
    out = []
    for key, unit in (("peak_tree_pss_mb", "MB"), ("cpu_seconds", "CPU-s"), ("seconds", "wall s")):
        slope, intercept = np.polyfit(n, [f[key] for f in figures], 1)
        out.append(f"{key}: {intercept:,.0f} + {slope * 1e6:,.1f} per million pairs -> {intercept + slope * target:,.0f}"
                   f" {unit} at {target:,}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="*", default=[250_000, 1_000_000])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--tmp", type=Path, default=None, help="corpus folder (kept with --keep, reused if present)")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--timeline", type=Path, default=None,
                    help="write per-sample main/worker PSS and the stage's progress step to TIMELINE-<size>.json")
    ap.add_argument("--generate-only", action="store_true", help="write the corpora under --tmp, measure nothing")
    ap.add_argument("--fit", type=Path, nargs="*", default=None,
                    help="only fit: read the JSON result lines of earlier runs' logs and project to 22M pairs")
    args = ap.parse_args()
    if args.fit is not None:
        figures = [json.loads(line.split(" load average")[0]) for path in args.fit
                   for line in path.read_text(encoding="utf-8").splitlines() if line.startswith('{"pairs"')]
        print("\n".join(fit(sorted(figures, key=lambda f: f["pairs"]))))
        return
    root = args.tmp or Path(tempfile.mkdtemp(prefix="hqmem-"))
    print(f"cpus {os.cpu_count()}, load average {os.getloadavg()}", flush=True)
    figures = []
    try:
        for n in args.sizes:
            out = root / f"n{n}"
            if not (out / "m3e" / SOURCES[-1] / SUCCESS).exists():
                t0 = time.perf_counter()
                generate(n, out)
                print(f"generated {n:,} pairs in {time.perf_counter() - t0:.0f}s", flush=True)
            if args.generate_only:
                continue
            timeline = args.timeline.with_name(f"{args.timeline.stem}-{n}.json") if args.timeline else None
            fig = measure(out, args.workers, timeline)
            print(json.dumps({"pairs": n, **fig}), f"load average {os.getloadavg()}", flush=True)
            figures.append({"pairs": n, **fig})
        if len(figures) > 1:
            print("\n".join(fit(figures)), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
