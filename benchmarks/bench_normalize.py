"""Normalize-stage speed and memory: synthetic JSON-lines and Parquet sources through the real readers.

    python benchmarks/bench_normalize.py                  # 1M and 4M rows of each format
    python benchmarks/bench_normalize.py --sizes 200000   # quicker

For each (format, size) a fresh subprocess builds the source end to end (locate, read, recipe, validate,
write Parquet) and reports rows/s and its peak RSS, so that memory is measured per case. Targets: at least
50,000 rows/s per core, and the same peak memory at 1M and 4M rows (streaming).
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


def text(rng: random.Random, lo: int, hi: int) -> str:
    return "".join(rng.choices(CHARS, k=rng.randint(lo, hi)))


def make_jsonl(root: Path, rows: int) -> None:
    """news2016zh layout: new2016zh/news2016zh_{train,valid}.json."""
    folder = root / "news2016zh" / "new2016zh"
    folder.mkdir(parents=True)
    rng = random.Random(0)
    pool = [(text(rng, 8, 24), text(rng, 80, 300)) for _ in range(20_000)]
    with (folder / "news2016zh_train.json").open("w", encoding="utf-8") as fh:
        for i in range(rows):
            title, content = pool[i % len(pool)]
            fh.write(json.dumps({"news_id": str(i), "keywords": "", "title": title, "desc": "", "source": "s",
                                 "time": "03-22 12:00", "content": content}, ensure_ascii=False) + "\n")
    (folder / "news2016zh_valid.json").write_text("", encoding="utf-8")


def make_parquet(root: Path, rows: int) -> None:
    """cmrc2018 layout: data/{train,validation,test}-00000-of-00001.parquet."""
    folder = root / "cmrc2018" / "data"
    folder.mkdir(parents=True)
    rng = random.Random(0)
    pool = [(text(rng, 8, 24), text(rng, 80, 300)) for _ in range(20_000)]
    schema = pa.schema([("id", pa.string()), ("context", pa.string()), ("question", pa.string())])
    with pq.ParquetWriter(folder / "train-00000-of-00001.parquet", schema) as writer:
        step = 100_000
        for start in range(0, rows, step):
            n = min(step, rows - start)
            batch = [pool[(start + i) % len(pool)] for i in range(n)]
            writer.write_table(pa.table({
                "id": [f"TRAIN_{start + i}" for i in range(n)],
                "context": [c for _, c in batch],
                "question": [q for q, _ in batch],
            }, schema=schema))
    for split in ("validation", "test"):
        pq.write_table(schema.empty_table(), folder / f"{split}-00000-of-00001.parquet")


def run_case(source: str, sources_dir: str, out: str) -> None:
    """Child process: build one source and print a JSON line of figures."""
    from m3e_data.catalog import load_catalog
    from m3e_data.stages.normalize.stage import BuildOptions, build_source

    started = time.perf_counter()
    result = build_source(load_catalog()[source], BuildOptions(out=Path(out), sources=sources_dir))
    seconds = time.perf_counter() - started
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({
        "status": result.status, "rows": result.counts.read, "written": result.counts.written,
        "seconds": seconds, "cpu_seconds": cpu.ru_utime + cpu.ru_stime, "peak_rss_mb": cpu.ru_maxrss / 1024,
    }))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,4000000", help="comma-separated row counts")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_case(*args.child)
        return
    print(f"load average before: {os.getloadavg()}")
    print(f"{'format':8} {'rows':>9} {'seconds':>8} {'rows/s':>9} {'rows/cpu-s':>11} {'peak RSS MB':>12}")
    for size in (int(s) for s in args.sizes.split(",")):
        for fmt, source, make in (("jsonl", "news2016zh", make_jsonl), ("parquet", "cmrc2018", make_parquet)):
            with tempfile.TemporaryDirectory() as tmp:
                root = Path(tmp)
                make(root / "src", size)
                proc = subprocess.run(
                    [sys.executable, __file__, "--child", source, str(root / "src"), str(root / "out")],
                    capture_output=True, text=True, check=True,
                )
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                assert r["status"] == "built" and r["written"] == size, r
                print(f"{fmt:8} {size:>9,} {r['seconds']:>8.1f} {size / r['seconds']:>9,.0f} "
                      f"{size / r['cpu_seconds']:>11,.0f} {r['peak_rss_mb']:>12,.0f}", flush=True)
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
