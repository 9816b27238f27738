"""Normalize of one large JSON-lines file: the local executor against Ray cutting it into byte ranges.

    python benchmarks/bench_normalize_ranges.py                          # 1M rows, 128 MiB ranges
    python benchmarks/bench_normalize_ranges.py --rows 200000 --split-bytes 16M

The file is bench_normalize.py's news2016zh-style train file. Each executor builds it in a fresh
subprocess (Ray: a local cluster of --cpus CPUs started there), and the outputs are compared (parts'
sha256, counts). "units" runs Ray's units one after another in one process, without Ray: the cost of
cutting the file and re-assembling the parts, apart from Ray's own. CPU seconds are the process's own plus, for Ray, every process of the cluster it started
(raylet, GCS, workers), read just before the cluster is shut down.
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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_normalize import make_jsonl  # noqa: E402


def _cluster_cpu() -> float:
    """CPU seconds of this process's descendants that are still alive (the Ray cluster it started)."""
    import psutil

    total = 0.0
    for child in psutil.Process().children(recursive=True):
        try:
            times = child.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def run_case(executor: str, sources: str, out: str, split_bytes: int, cpus: int) -> None:
    """Child process: build news2016zh with one executor; print a JSON line of figures."""
    from m3e_data.stages.normalize.stage import BuildOptions, build, select_sources

    options = BuildOptions(out=Path(out), sources=sources)
    extra = 0.0
    if executor == "ray":
        import ray

        from m3e_data.executors.normalize_ray import ray_executor

        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
        started = time.perf_counter()
        results = build(select_sources("news2016zh"), options, map_sources=ray_executor(split_bytes=split_bytes))
        seconds = time.perf_counter() - started
        extra = _cluster_cpu()
        ray.shutdown()
    elif executor == "units":
        # Ray's units run one after another in this process: what cutting and re-assembling cost alone.
        from m3e_data.stages.normalize import units
        from m3e_data.stages.normalize.stage import prepare

        started = time.perf_counter()
        plan = units.new_plan(prepare(select_sources("news2016zh")[0], options), split_bytes, options.out / "m3e")
        assert plan is not None
        outcomes = [units.run_unit(plan, i) for i in range(len(plan.units))]
        ran = time.perf_counter() - started
        results = [units.commit(plan, outcomes, options.out)]
        seconds = time.perf_counter() - started
        print(f"units {ran:.1f} s, commit {seconds - ran:.1f} s", file=sys.stderr)
    else:
        started = time.perf_counter()
        results = build(select_sources("news2016zh"), options)
        seconds = time.perf_counter() - started
    own = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"status": results[0].status, "rows": results[0].counts.read, "seconds": seconds,
                      "cpu_seconds": own.ru_utime + own.ru_stime + extra, "peak_rss_mb": own.ru_maxrss / 1024}))


def _record(out: Path) -> dict:
    record = json.loads((out / "m3e" / "news2016zh" / "_SUCCESS.json").read_text())
    return {k: v for k, v in record.items() if k not in ("finished", "seconds")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--split-bytes", default=str(128 << 20), help="bytes per range (suffixes K, M, G)")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray cluster")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        executor, sources, out, split_bytes, cpus = args.child
        run_case(executor, sources, out, int(split_bytes), int(cpus))
        return
    text = args.split_bytes.strip().upper().removesuffix("B").removesuffix("I")
    shift = {"K": 10, "M": 20, "G": 30}.get(text[-1:], 0)
    split_bytes = int(text[:-1] if shift else text) << shift
    print(f"load average before: {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_jsonl(root / "src", args.rows)
        size = (root / "src/news2016zh/new2016zh/news2016zh_train.json").stat().st_size
        print(f"{args.rows:,} rows, {size / 2**20:,.0f} MiB; ranges of {split_bytes / 2**20:,.0f} MiB "
              f"({-(-size // split_bytes)}), Ray on {args.cpus} CPUs")
        print(f"{'executor':9} {'seconds':>8} {'rows/s':>9} {'cpu-s':>7} {'driver RSS MB':>14}")
        for executor in ("local", "units", "ray"):
            proc = subprocess.run(
                [sys.executable, __file__, "--child", executor, str(root / "src"), str(root / executor),
                 str(split_bytes), str(args.cpus)],
                capture_output=True, text=True, check=True,
            )
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            phases = [line for line in proc.stderr.splitlines() if line.startswith("units ")]
            if phases:
                print(f"  ({phases[0]})")
            assert r["status"] == "built" and r["rows"] == args.rows, r
            print(f"{executor:9} {r['seconds']:>8.1f} {args.rows / r['seconds']:>9,.0f} {r['cpu_seconds']:>7.1f} "
                  f"{r['peak_rss_mb']:>14,.0f}", flush=True)
        same = _record(root / "ray") == _record(root / "local") == _record(root / "units")
        print(f"same parts (sha256), counts and ids: {same}")
    print(f"load average after: {os.getloadavg()}")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
