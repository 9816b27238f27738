"""The m3e-hq stage on Ray (--executor ray) writes the same rows as the local executor: on the demo, on
planted near duplicates across sources, and after a worker is killed mid-stage; the CLI's executor options."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from m3e_data.cli.main import main
from m3e_data.manifest import read_manifest
from m3e_data.schema import UNIFIED_SCHEMA
from m3e_data.stages.hq import stage as hq
from m3e_data.stages.normalize.stage import BuildOptions, build, select_sources
from m3e_data.storage.store import SUCCESS, atomic_write_json

ray = pytest.importorskip("ray")
from m3e_data.executors import hq_ray  # noqa: E402
from m3e_data.executors.hq_ray import RayExecutor, TooManyEdges, partitions_for, verify_groups  # noqa: E402

PARTS = 3  # few shuffle partitions: tiny data, and each partition is a Ray task on a 2-CPU cluster


@pytest.fixture(scope="module", autouse=True)
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def demo_base(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    build(select_sources("all"), BuildOptions(out=out, sources="demo"))
    return out


@pytest.fixture(scope="module")
def demo_local(demo_base, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("local") / "out"
    shutil.copytree(demo_base, out)
    hq.run_hq(out, workers=1)
    return out


def _outputs(out: Path) -> dict[str, pl.DataFrame]:
    """Every parquet file the stage wrote (outputs, rejects, cached statistics), by path under OUT."""
    files = {}
    for sub in ("m3e-hq", "rejects", ".cache/hq"):
        for path in sorted((out / sub).rglob("*.parquet")):
            files[str(path.relative_to(out))] = pl.read_parquet(path)
    return files


def _hq_section(out: Path) -> dict:
    section = read_manifest(out)["stages"]["hq"]
    return {k: v for k, v in section.items() if k not in ("finished", "seconds")}


def assert_same(local: Path, other: Path) -> None:
    a, b = _outputs(local), _outputs(other)
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name].equals(b[name]), name
    assert _hq_section(local) == _hq_section(other)


def _copy(base: Path, tmp_path: Path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(base, out)
    return out


def test_demo_ray_equals_local(demo_base, demo_local, tmp_path):
    out = _copy(demo_base, tmp_path)
    hq.run_hq(out, executor=RayExecutor(partitions=PARTS))
    assert_same(demo_local, out)
    section = read_manifest(out)["stages"]["hq"]["sources"]
    dedup = {name: s["dropped_by_stage"].get("dedup", {}) for name, s in section.items()}
    assert any(dedup.values())  # the demo has duplicates: the comparison covers dedup's rows
    # Thresholds-only rerun on Ray reads the cached statistics (none recomputed).
    results = hq.run_hq(out, executor=RayExecutor(partitions=PARTS))
    assert all(r.stats_cached for r in results.values())


def _write_source(out: Path, name: str, pairs: list[tuple[str, str]], commercial: bool) -> None:
    """A finished normalize output, in the unified schema (two parts, so row order spans files)."""
    folder = out / "m3e" / name
    folder.mkdir(parents=True)
    half = len(pairs) // 2
    parts = []
    for k, chunk in enumerate((pairs[:half], pairs[half:])):
        n, base = len(chunk), k * half
        cols = {
            "id": [f"{name}/train/{base + i}" for i in range(n)], "source": [name] * n, "split": ["train"] * n,
            "query": [q for q, _ in chunk], "positive": [p for _, p in chunk], "negatives": [[] for _ in range(n)],
            "positive_score": [None] * n, "negative_scores": [None] * n, "task": ["qa"] * n,
            "homogeneous": [False] * n, "domain": ["web"] * n, "license": ["x"] * n, "commercial": [commercial] * n,
        }
        parts.append(f"part-{k:05d}.parquet")
        pq.write_table(pa.table(cols).cast(UNIFIED_SCHEMA), folder / parts[-1])
    atomic_write_json(folder / SUCCESS, {"key": {"fingerprint": name, "n": len(pairs)}, "parts": parts})


CITIES = ["北京", "上海", "广州", "深圳", "杭州", "成都", "武汉", "西安", "南京", "重庆", "天津", "苏州"]
TOPICS = ["地铁线路", "美食小吃", "历史古迹", "气候特点", "高校分布", "房价走势", "交通枢纽", "旅游景点"]


def _planted(out: Path) -> None:
    """Two sources of invented QA rows; every third row of `alpha` reappears in `beta` with a small change
    to the answer (a near duplicate across sources), and `beta` repeats one of its own rows."""
    alpha, beta = [], []
    for i, (city, topic) in enumerate((c, t) for c in CITIES for t in TOPICS):
        answer = f"{city}的{topic}很有特色，本地人常说值得花上整整一天慢慢体验，第{i}号条目记录了详细的介绍与建议。"
        alpha.append((f"请介绍一下{city}的{topic}情况", answer))
        if i % 3 == 0:
            beta.append((f"请介绍一下{city}的{topic}情况", answer.replace("慢慢", "细细")))
        else:
            beta.append((f"{city}{topic}有哪些值得关注的地方{i}", f"关于{city}{topic}的第{i}条说明：内容各不相同{i * 7}。"))
    beta.append(beta[1])
    _write_source(out, "alpha_src", alpha, commercial=False)
    _write_source(out, "beta_src", beta, commercial=True)


def _planted_pair(tmp_path: Path) -> tuple[Path, Path]:
    """Two OUTs holding the planted sources: the first already through the local executor, the second for
    the Ray run to compare with it."""
    local, other = tmp_path / "local", tmp_path / "ray"
    _planted(local)
    _planted(other)
    hq.run_hq(local, workers=1)
    return local, other


def test_planted_near_duplicates_across_sources(tmp_path):
    local, other = _planted_pair(tmp_path)
    hq.run_hq(other, executor=RayExecutor(partitions=PARTS))
    assert_same(local, other)
    near = pl.read_parquet(other / "rejects" / "dedup" / "alpha_src" / "part-*.parquet")
    # alpha's copies lose to beta's (a commercial licence ranks first) and name the row beta kept.
    assert set(near["reason"]) == {"near_duplicate"} and near.height == len(CITIES) * len(TOPICS) // 3
    assert all(k.startswith("beta_src/") for k in near["kept_id"])
    exact = pl.read_parquet(other / "rejects" / "dedup" / "beta_src" / "part-*.parquet")
    assert exact["reason"].to_list() == ["exact_duplicate"]


@pytest.mark.parametrize("step", ["stats", "spill", "verify", "write"])
def test_worker_killed_mid_stage_is_retried(step, tmp_path):
    local, other = _planted_pair(tmp_path)
    marker = tmp_path / "killed"
    hq.run_hq(other, executor=RayExecutor(partitions=PARTS, fault=(step, str(marker))))
    assert marker.exists()  # a worker was killed (SIGKILL) in that step, once
    assert_same(local, other)


def test_components_bound_is_a_clear_error(tmp_path):
    _planted(tmp_path)
    with pytest.raises(TooManyEdges, match="exceed the driver's bound of 5"):
        hq.run_hq(tmp_path, executor=RayExecutor(partitions=PARTS, max_edges=5))


def test_cli_executor_ray(tmp_path, monkeypatch):
    local, other = tmp_path / "local", tmp_path / "ray"
    _planted(local)
    _planted(other)
    runner = CliRunner()
    res = runner.invoke(main, ["hq", str(local)])
    assert res.exit_code == 0, res.output
    # The test's Ray session is joined (ray_session reuses an initialised one), whatever RAY_ADDRESS says.
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
    res = runner.invoke(main, ["hq", str(other), "--executor", "ray"])
    assert res.exit_code == 0, res.output
    assert_same(local, other)


def test_cli_executor_ray_without_ray(tmp_path, monkeypatch):
    _planted(tmp_path)
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` does where the extra is not installed
    res = CliRunner().invoke(main, ["hq", str(tmp_path), "--executor", "ray"])
    assert res.exit_code == 2
    assert "pip install 'm3e-data[ray]'" in res.output
    assert not (tmp_path / "m3e-hq").exists()


def test_statistics_tasks_cut_within_a_part_file(tmp_path):
    """Several statistics tasks per part file (a source of one big file keeps every CPU busy): a task reads
    only rows [start, stop), across row groups, and the cached statistics and output are the local ones."""
    from m3e_data.stages.hq.stage import row_range

    path = tmp_path / "groups.parquet"
    pq.write_table(pa.table({"x": list(range(23))}), path, row_group_size=5)
    for start, stop in ((0, 23), (3, 12), (10, 15), (22, 23), (7, 7)):
        rows = [x for b in row_range(path, start, stop) for x in b.column(0).to_pylist()]
        assert rows == list(range(start, stop)), (start, stop)
    local, other = _planted_pair(tmp_path)
    hq.run_hq(other, executor=RayExecutor(partitions=PARTS, stats_rows=7))  # 48-row parts: 7 tasks each
    assert_same(local, other)


def test_partitions_grow_with_the_input():
    """A bucket task holds about BUCKET_ENTRIES (band, key, gidx) entries whatever the corpus: the partition
    count is live rows x bands / BUCKET_ENTRIES, never fewer than the least asked for."""
    assert partitions_for(1_000, 20) == hq_ray.PARTITIONS
    sizes = [250_000, 1_000_000, 2_000_000, 4_000_000, 16_000_000]
    parts = [partitions_for(n, 20) for n in sizes]
    assert parts == sorted(parts) and parts[-1] > parts[0]
    for n, p in zip(sizes, parts, strict=True):
        assert n * 20 / p <= hq_ray.BUCKET_ENTRIES
    assert partitions_for(10, 2, least=1, entries=7) == 3
    assert partitions_for(0, 20, least=1) == 1


def test_verify_groups_bound_a_task_and_keep_every_partition():
    counts = np.array([5, 0, 9, 3, 3, 8, 1, 7, 4, 0])
    groups = verify_groups(counts, least=2, edges=10)
    assert sorted(p for g in groups for p in g) == list(range(len(counts)))  # each partition once
    assert all(g == list(range(g[0], g[-1] + 1)) for g in groups)  # runs in order
    assert len(groups) == 4  # 40 copies / 10
    assert max(int(counts[g].sum()) for g in groups) <= 2 * 10
    # The least asked for (CPUs kept busy) where partitions are even, as hashing makes them.
    assert len(verify_groups(np.full(10, 4), least=8, edges=1000)) == 8
    assert len(verify_groups(counts[:3], least=8, edges=1)) == 3  # never more tasks than partitions
    assert verify_groups(np.zeros(4, dtype=np.int64), least=2) == [[0, 1, 2, 3]]


def test_many_partitions_and_verify_tasks_give_the_local_rows(tmp_path):
    """Small bounds make the shuffle many partitions (map tasks cut within a band, verification tasks over
    groups of partitions): the same rows as local."""
    local, other = _planted_pair(tmp_path)
    stale = other / ".cache" / "hq-verify" / "shuffle-killed"  # a killed run's shuffle files
    stale.mkdir(parents=True)
    (stale / "map-0.arrow").write_bytes(b"x" * 100)
    ex = RayExecutor(partitions=1, bucket_entries=300, verify_edges=300, map_rows=50, spill_rows=40)
    hq.run_hq(other, executor=ex)
    assert_same(local, other)
    rows = read_manifest(other)["stages"]["hq"]["sources"]
    # The rows near dedup banded: those that reached dedup, less exact copies.
    live = sum(s["through"]["decontaminate"] - s["dropped"].get("exact_duplicate", 0) for s in rows.values())
    assert ex.last_partitions == partitions_for(live, 20, 1, 300) > 8
    assert 1 < ex.last_verify_tasks < ex.last_partitions, ex.last_verify_tasks
    assert ex.last_spill_writers > 2  # the candidates' texts spilled by several tasks, read by every verifier
    assert not (other / ".cache" / "hq-verify").exists()  # every task's scratch file removed, the stale ones too


def test_write_task_gets_only_the_ids_it_needs(tmp_path, monkeypatch):
    """A source's write task is sent the ids its duplicates point to, not the corpus's ids."""
    seen = tmp_path / "seen"
    seen.mkdir()
    original = hq_ray._write

    def recording(out, src, d, kept_ids, run_key, fault):
        (seen / src.name).write_text(json.dumps(kept_ids.ids.to_list()))
        return original(out, src, d, kept_ids, run_key, fault)

    monkeypatch.setattr(hq_ray, "_write", recording)
    local, other = _planted_pair(tmp_path)
    hq.run_hq(other, executor=RayExecutor(partitions=PARTS))
    assert_same(local, other)
    for name in ("alpha_src", "beta_src"):
        rejects = pl.read_parquet(other / "rejects" / "dedup" / name / "part-*.parquet")
        sent = json.loads((seen / name).read_text())
        assert len(sent) == len(set(sent)) and set(sent) == set(rejects["kept_id"])
    assert len(json.loads((seen / "beta_src").read_text())) == 1  # its one exact copy's kept row


def test_map_task_writes_its_pieces_once(tmp_path):
    """A map task splits its rows into one file of `parts` batches, each bucket whole in one batch, and
    removes its input; run again (Ray's retry of a task that died after writing) it finds its output."""
    gidx = np.arange(50, dtype=np.int64)
    key = (gidx % 7).astype(np.uint64)
    src, dst = tmp_path / "in.arrow", tmp_path / "map.arrow"
    rows = pa.table({"gidx": gidx, "key": key})
    with pa.OSFile(str(src), "wb") as sink, pa.ipc.new_file(sink, rows.schema) as writer:
        writer.write_table(rows)
    hq_ray._shuffle_band(str(src), str(dst), 3, 4)
    assert not src.exists()
    pieces = [hq_ray._load([(str(dst), p)], hq_ray.ENTRY_SCHEMA) for p in range(4)]
    assert sorted(x for t in pieces for x in t["gidx"].to_pylist()) == list(range(50))
    homes = [{k for k in t["key"].to_pylist()} for t in pieces]
    assert all(not (a & b) for i, a in enumerate(homes) for b in homes[i + 1:])  # a key in one piece only
    assert {b for t in pieces for b in t["band"].to_pylist()} == {3}
    before = dst.read_bytes()
    hq_ray._shuffle_band(str(src), str(dst), 3, 4)
    assert dst.read_bytes() == before
