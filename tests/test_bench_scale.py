"""benchmarks/bench_scale.py at a toy size, end to end through its own functions: the raw sources it writes
are read by the real recipes, a local and a Ray case (a head of its own, stopped after) give figures that
are present and sane, and the same-answer check holds (and would catch a difference)."""

from __future__ import annotations

import contextlib
import copy
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

psutil = pytest.importorskip("psutil")
pytest.importorskip("ray")  # the Ray case starts a head with `python -m ray.scripts.scripts start`

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_scale as B  # noqa: E402

N = 2000


HEADS: list[B.RayHead] = []


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    root = tmp_path_factory.mktemp("scale")
    start = B.ray_head

    @contextlib.contextmanager
    def recorded(num_cpus: int) -> Iterator[B.RayHead]:
        with start(num_cpus) as head:
            HEADS.append(head)
            yield head

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(B, "ray_head", recorded)
        results = B.run_size(N, root, ["normalize:local", "normalize:ray1", "hq:local"], say=lambda _: None)
    return root, B.with_overhead(results)


def test_raw_sources_are_in_upstream_layouts_and_reused(run: tuple[Path, list[dict]]) -> None:
    root, _ = run
    src = root / f"n{N}" / "src"
    for rel in ("news2016zh/new2016zh/news2016zh_train.json", "news2016zh/new2016zh/news2016zh_valid.json",
                "webtext2019zh/web_text_zh_train.json", "webtext2019zh/web_text_zh_testa.json",
                "cmrc2018/data/validation-00000-of-00001.parquet"):
        assert (src / rel).stat().st_size > 0, rel
    assert len(list((src / "zhihu_kol/data").glob("train-*-of-00005-*.parquet"))) == 5
    counts = B.make_sources(src, N)
    assert sum(counts.values()) == N and min(counts.values()) > N // 8  # four sources share the rows
    before = (src / "zhihu_kol").stat().st_mtime_ns
    assert B.make_sources(src, N) == counts and (src / "zhihu_kol").stat().st_mtime_ns == before


def test_figures_are_present_and_sane(run: tuple[Path, list[dict]]) -> None:
    _, results = run
    by = {(r["stage"], r["executor"]): r for r in results}
    local, ray1, hq = by["normalize", "local"], by["normalize", "ray1"], by["hq", "local"]
    # Every raw row is one pair through the real recipes; hq removes the planted copies, not everything.
    assert local["rows_out"] == ray1["rows_out"] == N
    assert N // 2 < hq["rows_out"] < N
    for r in results:
        assert r["wall_s"] > 0 and r["cpu_s"] > 0 and r["peak_pss_mb"] > 50 and r["rows_in"] == N
    assert local["ray_start_s"] is None and local["worker_peak_pss_mb"] is None
    assert ray1["ray_start_s"] > 0 and ray1["ray_workers"] >= 1
    # Ray's processes are not the driver's children: their CPU and memory are counted all the same.
    assert ray1["cpu_s"] > ray1["driver_cpu_s"]
    assert 0 < ray1["worker_peak_pss_mb"] < ray1["peak_pss_mb"]
    assert ray1["overhead_pct"] == pytest.approx(100 * (ray1["wall_s"] - local["wall_s"]) / local["wall_s"], abs=0.1)
    assert ray1["overhead_with_start_pct"] > ray1["overhead_pct"]
    table = B.table(results)
    assert table.count("\n") == len(results) + 1 and "Ray, 1 worker" in table and "| no |" not in table


def test_same_answer_holds_and_would_catch_a_difference(run: tuple[Path, list[dict]]) -> None:
    _, results = run
    assert B.same_answer(results) == []
    by = {(r["stage"], r["executor"]): r for r in results}
    assert by["normalize", "local"]["id_checksum"] == by["normalize", "ray1"]["id_checksum"] != 0
    changed = copy.deepcopy(results)
    next(r for r in changed if r["executor"] == "ray1")["id_checksum"] ^= 1
    assert B.same_answer(changed) == [f"normalize:ray1@{N}"]
    assert "| no |" in B.table(changed)


def test_the_ray_head_is_gone_after_its_case(run: tuple[Path, list[dict]]) -> None:
    """Ended by pid (not `ray stop`, which would end other clusters on the machine too)."""
    [head] = HEADS
    assert len(head.roots) >= 2  # gcs_server and raylet at least were found, and ended:
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in head.roots)
    assert not head.temp_dir.exists() and B._ray_roots(head.temp_dir) == []


def test_ray1_is_compared_with_one_local_process_where_that_ran() -> None:
    """hq's local executor is a pool of 2 processes; Ray with 1 worker's overhead is against `--workers 1`
    (local1) when that case ran, else against the pool; the same-answer check covers local1 too."""
    def case(executor: str, wall: float, cpu: float, checksum: int = 7) -> dict:
        return {"stage": "hq", "rows_in": 100, "executor": executor, "wall_s": wall, "cpu_s": cpu,
                "ray_start_s": None if executor.startswith("local") else 1.0, "rows_out": 90, "id_checksum": checksum,
                "peak_pss_mb": 1000, "worker_peak_pss_mb": None, "load_before": 1.0}

    results = B.with_overhead([case("local", 100, 150), case("local1", 150, 140), case("ray1", 165, 147),
                               case("ray2", 110, 160)])
    ray1, ray2 = results[2], results[3]
    assert (ray1["overhead_vs"], ray1["overhead_pct"], ray1["cpu_overhead_pct"]) == ("local1", 10.0, 5.0)
    assert (ray2["overhead_vs"], ray2["overhead_pct"]) == ("local", 10.0)
    assert "vs 1 process" in B.table(results).splitlines()[4]
    alone = B.with_overhead([case("local", 100, 150), case("ray1", 165, 147)])
    assert alone[1]["overhead_vs"] == "local" and alone[1]["overhead_pct"] == 65.0
    assert B.same_answer([case("local", 100, 150), case("local1", 150, 140, checksum=8)]) == ["hq:local1@100"]
    assert "hq:local1" in B.DEFAULT_CASES and "normalize:local1" not in B.DEFAULT_CASES
