"""Publish/export speed and memory on a synthetic m3e-hq-with-score folder (no network).

    python benchmarks/bench_publish.py                 # 1M rows over 4 sources
    python benchmarks/bench_publish.py --rows 200000   # quicker

Each step runs in a fresh subprocess so its peak RSS is its own: staging (Parquet shards of the Hub
layout), the dataset card, the commercial-only check of the staged folder, and each export format.
Prints rows/s, MB/s of staged Parquet, peak RSS, and the load average (the machine may be shared).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

CHARS = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处理府研"
# (source, licence, commercial, negatives per row)
SOURCES = [("mlqa", "CC-BY-SA-3.0", True, 7), ("csl", "Apache-2.0", True, 7),
           ("lcqmc", "LicenseRef-research-only", False, 7), ("news2016zh", "LicenseRef-unstated", False, 7)]


def make_input(root: Path, rows: int) -> Path:
    from m3e_data.schema import UNIFIED_SCHEMA
    from m3e_data.stages.publish.hub_stage import MINING_KEY
    from m3e_data.storage.store import SUCCESS, PartWriter, atomic_write_json

    rng = random.Random(0)
    pool = ["".join(rng.choices(CHARS, k=rng.randint(8, 200))) for _ in range(50_000)]
    data = root / "m3e-hq-with-score"
    schema = UNIFIED_SCHEMA.with_metadata({MINING_KEY: json.dumps({"model": "bench", "revision": "0"}).encode()})
    per_source = rows // len(SOURCES)
    for name, spdx, commercial, k in SOURCES:
        folder = data / name
        folder.mkdir(parents=True)
        writer = PartWriter(folder, schema=schema)
        for start in range(0, per_source, 100_000):
            n = min(100_000, per_source - start)
            idx = [(start + i) * 13 % len(pool) for i in range(n)]
            writer.write(pa.table({
                "id": [f"{name}/train/{start + i}" for i in range(n)],
                "source": [name] * n,
                "split": ["train"] * n,
                "query": [pool[j][:30] for j in idx],
                "positive": [pool[(j + 1) % len(pool)] for j in idx],
                "negatives": [[pool[(j + 2 + m) % len(pool)] for m in range(k)] for j in idx],
                "positive_score": pa.array([0.8] * n, pa.float32()),
                "negative_scores": pa.array([[0.5] * k] * n, pa.list_(pa.float32())),
                "task": ["qa"] * n, "homogeneous": [False] * n, "domain": ["encyclopedia"] * n,
                "license": [spdx] * n, "commercial": [commercial] * n,
            }, schema=schema))
        writer.finish()
        atomic_write_json(folder / SUCCESS, {"rows": per_source})
    return data


STEPS = {
    "stage (all rows)": "from m3e_data.stages.publish.hub_stage import stage; stage(D, W / 'staged', shard_bytes=SB)",
    "stage (commercial only)": "from m3e_data.stages.publish.hub_stage import stage; "
                               "stage(D, W / 'staged-c', commercial_only=True, shard_bytes=SB)",
    "card": "from m3e_data.stages.publish.card import build_card, write_card; from m3e_data.stages.publish.hub_stage import scan_staged; "
            "from m3e_data.catalog import load_catalog; "
            "write_card(build_card(scan_staged(W / 'staged'), load_catalog(), {}, repo_id='a/b', mined=True, "
            "commercial_only=False), W / 'staged')",
    "commercial check": "from m3e_data.stages.publish.stage import commercial_problems; from m3e_data.stages.publish.card import build_card, "
                        "write_card; from m3e_data.stages.publish.hub_stage import scan_staged; from m3e_data.catalog import "
                        "load_catalog; write_card(build_card(scan_staged(W / 'staged-c'), load_catalog(), {}, "
                        "repo_id='a/b', mined=True, commercial_only=True), W / 'staged-c'); "
                        "assert commercial_problems(W / 'staged-c') == []",
    "export uniem": "from m3e_data.stages.publish.export import export; export(D, 'uniem', W / 'uniem')",
    "export sentence-transformers": "from m3e_data.stages.publish.export import export; "
                                    "export(D, 'sentence-transformers', W / 'st')",
    "export flagembedding": "from m3e_data.stages.publish.export import export; export(D, 'flagembedding', W / 'fe')",
}


def run_step(step: str, data: Path, work: Path, shard_bytes: int) -> tuple[float, float]:
    """Seconds (imports excluded) and peak RSS of one step in a fresh interpreter."""
    imports, code = step.split("; ", 1) if step.startswith("from ") else ("pass", step)
    # A step's leading `from … import …` clauses are setup, not work.
    while code.startswith("from "):
        more, code = code.split("; ", 1)
        imports += "; " + more
    prog = (
        "import resource, sys, time; from pathlib import Path; "
        f"D = Path({str(data)!r}); W = Path({str(work)!r}); SB = {shard_bytes}; "
        f"{imports}; t = time.perf_counter(); {code}; "
        "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
    )
    out = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, check=False)
    if out.returncode:
        raise SystemExit(f"step failed: {code}\n{out.stderr[-3000:]}")
    seconds, rss = out.stdout.split()[-2:]
    return float(seconds), float(rss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--shard-size-mb", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-publish-") as tmp:
        work = Path(tmp)
        t = time.perf_counter()
        data = make_input(work, args.rows)
        rows = sum(pq.read_metadata(p).num_rows for p in data.glob("*/part-*.parquet"))
        print(f"input: {rows:,} rows, {len(SOURCES)} sources, 7 scored negatives a row "
              f"(made in {time.perf_counter() - t:.1f}s)")
        print(f"load average before: {os.getloadavg()}")
        print(f"{'step':<30} {'seconds':>8} {'rows/s':>12} {'peak RSS MB':>12}")
        for name, code in STEPS.items():
            seconds, rss = run_step(code, data, work, args.shard_size_mb * 1024 * 1024)
            print(f"{name:<30} {seconds:>8.2f} {rows / seconds:>12,.0f} {rss:>12,.0f}")
        staged = sum(p.stat().st_size for p in (work / "staged").rglob("*.parquet"))
        shards = len(list((work / "staged").rglob("*.parquet")))
        print(f"staged: {shards} shards, {staged / 2**20:,.0f} MB of Parquet")
        print(f"load average after: {os.getloadavg()}; this process peak RSS "
              f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB")


if __name__ == "__main__":
    main()
