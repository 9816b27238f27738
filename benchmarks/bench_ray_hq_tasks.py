"""Which hq task on Ray holds a worker's memory: each task logs its worker's RSS as it starts and ends and
the process's high-water mark (ru_maxrss) as it ends, so the task that raised a worker's peak shows, and so
does memory a worker keeps between tasks (object-store pages it touched stay mapped: hq_ray's docstring).

    python benchmarks/bench_ray_hq_tasks.py OUT            # OUT: a normalized output (bench_scale's
                                                           # /tmp/scale/n1000000/normalized); runs hq on it
    python benchmarks/bench_ray_hq_tasks.py OUT --keep-stats   # statistics from the cache (the shuffle only)

Runs hq in this process on a local Ray of --cpus CPUs (OUT's m3e-hq, rejects and, unless --keep-stats, the
statistics cache are removed first) and prints, per task kind: tasks, the largest RSS a worker had left when
one ended, how often one raised its worker's high-water mark and to what, and the largest rise.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

TASKS = ("_file_stats", "_shuffle_band", "_bucket_edges", "_verify", "_write")


def _rss_mb() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") >> 20


def _max_mb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10  # KiB on Linux


def logged(name: str, fn: Callable[..., Any], log: str) -> Callable[..., Any]:
    """fn, appending one JSON line per call to `log` (a worker's own process: pickled by value)."""

    def run(*args: Any, **kwargs: Any) -> Any:
        rss0, max0, t0 = _rss_mb(), _max_mb(), time.perf_counter()
        result = fn(*args, **kwargs)
        line = {"task": name, "pid": os.getpid(), "rss0": rss0, "rss1": _rss_mb(), "max0": max0, "max1": _max_mb(),
                "s": round(time.perf_counter() - t0, 2)}
        with open(log, "a") as fh:
            fh.write(json.dumps(line) + "\n")
        return result

    return run


def summary(lines: list[dict[str, Any]]) -> list[str]:
    by: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in lines:
        by[r["task"]].append(r)
    out = ["task            tasks  left-RSS-max MB  raised-peak  to MB  largest-rise MB  slowest s"]
    for task in TASKS:
        rs = by.get(task)
        if not rs:
            continue
        raised = [r for r in rs if r["max1"] > r["max0"]]
        rise = max(r["max1"] - max(r["max0"], r["rss0"]) for r in rs)
        out.append(f"{task:15s} {len(rs):5d}  {max(r['rss1'] for r in rs):15d}  {len(raised):11d}  "
                   f"{max((r['max1'] for r in raised), default=0):5d}  {max(rise, 0):15d}  {max(r['s'] for r in rs):9.2f}")
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--keep-stats", action="store_true")
    ap.add_argument("--log", type=Path, default=None, help="the per-task JSON lines (default: a temporary file)")
    args = ap.parse_args(argv)

    import ray

    from m3e_data.executors import hq_ray
    from m3e_data.stages.hq import stage as hq

    for sub in ("m3e-hq", "rejects", *(() if args.keep_stats else (".cache",))):
        shutil.rmtree(args.out / sub, ignore_errors=True)
    log = args.log or Path(tempfile.mkstemp(prefix="ray-hq-tasks-", suffix=".jsonl")[1])
    log.write_text("")
    for name in TASKS:
        setattr(hq_ray, name, logged(name, getattr(hq_ray, name), str(log)))
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    try:
        t0 = time.perf_counter()
        ex = hq_ray.RayExecutor()
        results = hq.run_hq(args.out, executor=ex)
        wall = time.perf_counter() - t0
    finally:
        ray.shutdown()
    lines = [json.loads(x) for x in log.read_text().splitlines() if x]
    print(f"# rows out {sum(r.rows_out for r in results.values()):,}, {wall:.1f} s, {ex.last_partitions} partitions, "
          f"{ex.last_verify_tasks} verification tasks; per-task lines in {log}")
    print("\n".join(summary(lines)))


if __name__ == "__main__":
    main()
