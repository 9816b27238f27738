"""Issue 15's "same answer" at 100k raw rows, build and m3e-hq: local executor against Ray on one local
cluster, with the wall time of each step.

    python benchmarks/same_answer_100k.py            # ~104k raw rows, 1 MiB ranges
    python benchmarks/same_answer_100k.py --n 5000   # ~32k

CI asserts the normalize half (tests/test_ray_build.py::test_same_answer_for_a_100k_row_corpus); the hq
half takes minutes on a 2-core machine, so it is this script's. The corpus is the test's: five sources,
the three JSON-lines ones cut into ranges. Exits 1 when an output differs.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=16_500, help="corpus scale: about 6.3n raw rows")
    parser.add_argument("--split-bytes", type=int, default=1 << 20)
    parser.add_argument("--cpus", type=int, default=2)
    args = parser.parse_args()

    import ray

    from m3e_data.executors.hq_ray import RayExecutor
    from m3e_data.executors.normalize_ray import ray_executor
    from m3e_data.stages.hq import stage as hq
    from m3e_data.stages.normalize.stage import BuildOptions, build, select_sources
    from tests.test_ray_build import assert_same_output, normalize_section, same_answer_corpus
    from tests.test_ray_hq import assert_same

    def timed(label: str, step):
        started = time.perf_counter()
        value = step()
        print(f"{label:24} {time.perf_counter() - started:7.1f} s", flush=True)
        return value

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        chosen = select_sources(",".join(same_answer_corpus(root / "src", args.n)))
        local, on_ray = root / "local", root / "ray"
        results = timed("build, local", lambda: build(chosen, BuildOptions(out=local, sources=str(root / "src"))))
        print(f"{sum(r.counts.read for r in results):,} raw rows, {sum(r.counts.written for r in results):,} "
              f"written, {len(results)} sources")
        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
        try:
            timed("build, ray", lambda: build(chosen, BuildOptions(out=on_ray, sources=str(root / "src")),
                                              map_sources=ray_executor(split_bytes=args.split_bytes)))
            assert_same_output(on_ray, local)
            assert normalize_section(on_ray) == normalize_section(local)
            print("build: same ids, rows, parts (sha256), counts and manifest")
            timed("m3e-hq, local", lambda: hq.run_hq(local, workers=1))
            timed("m3e-hq, ray", lambda: hq.run_hq(on_ray, executor=RayExecutor()))
            assert_same(local, on_ray)
            print("m3e-hq: same survivors, rejects, statistics and manifest section")
        finally:
            ray.shutdown()


if __name__ == "__main__":
    main()
