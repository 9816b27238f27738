"""`build --executor ray`: the same files, rows and manifest as the local executor, on the demo and on a
synthetic corpus, through a Ray worker killed mid-source and a driver killed mid-build.

One local Ray cluster (2 CPUs) serves the module; the data is tiny so each test is a few seconds of work.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from m3e_data.cli.main import main
from m3e_data.executors.normalize_ray import ray_executor
from m3e_data.stages.normalize import stage, units
from m3e_data.stages.normalize.stage import BuildOptions, build, build_unit, select_sources
from m3e_data.storage.fingerprint import CACHE_FILE
from m3e_data.storage.store import SUCCESS, TEMP_PREFIX
from tests.test_units import RANGE_SOURCES, split_bytes_cutting_the_bad_line, write_range_corpus

ray = pytest.importorskip("ray")  # users without the extra; CI installs it, so these tests run there

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ["news2016zh", "webtext2019zh", "zhihu_kol"]


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


# --- a synthetic corpus: invented rows in the exact upstream layouts of three sources, several files each

_CITIES = ["江城", "海州", "云山", "青川", "临溪", "北塘", "南浦", "石门", "柳岸", "松阳", "河口", "梅岭"]
_THINGS = ["地铁新线", "图书馆", "菜市场", "体育公园", "夜间公交", "社区医院", "老街改造", "垃圾分类", "共享单车",
           "河道治理", "旧厂房", "跨江大桥"]
_HOW = ["正式开通", "开始试运行", "完成验收", "向市民开放", "征求意见", "启动建设", "延长开放时间", "公布新方案"]
_TOPICS = ["做饭", "跑步", "读书", "养猫", "种花", "学琴", "旅行", "理财", "写字", "摄影"]
_ASKS = ["怎么入门", "有什么好处", "每天要花多久", "需要准备什么", "新手常犯什么错", "怎样坚持下去"]
_TIPS = ["先定一个小目标", "找一个同伴一起", "每天固定时间做", "记下每次的进步", "别一开始就买贵的东西",
         "看几本入门的书", "多向有经验的人请教"]


def _news(i: int) -> dict[str, str]:
    city, thing = _CITIES[i % 12], _THINGS[(i // 12) % 12]
    how = _HOW[(i // 144) % 8]
    return {"news_id": str(620000000 + i), "keywords": thing, "title": f"{city}{thing}{how}（{i}）",
            "desc": "", "source": "示例新闻网", "time": "04-01 08:00",
            "content": f"记者获悉，{city}的{thing}于本月{how}，这是该市今年第{i}项民生工程，市民反响良好。"}


def _reply(i: int, n: int) -> dict[str, Any]:
    topic, ask = _TOPICS[i % 10], _ASKS[(i // 10) % 6]
    return {"qid": 70000000 + i, "title": f"{topic}{ask}？（{i}）", "desc": "", "topic": topic, "star": n + i % 7,
            "content": f"{_TIPS[(i + n) % 7]}。<br>{_TIPS[(i + n + 3) % 7]}，这是第{n}条回答。",
            "answer_id": 800000000 + 3 * i + n, "answerer_tags": ""}


def _zhihu(i: int) -> dict[str, str]:
    topic, ask = _TOPICS[i % 10], _ASKS[(i // 10) % 6]
    meta = {"question_id": 9000 + i, "answer_id": 90000 + i, "url": f"https://www.zhihu.com/question/{9000 + i}",
            "upvotes": f"赞同 {i % 50}", "answer_creation_time": "2022-05-01T08:00:00.000Z"}
    return {"INSTRUCTION": f"{topic}到底{ask}（{i}）？", "RESPONSE": f"我的经验是{_TIPS[i % 7]}，再{_TIPS[(i + 2) % 7]}。",
            "SOURCE": "Zhihu", "METADATA": json.dumps(meta, ensure_ascii=False)}


def _jsonl(path: Path, rows: list[Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_corpus(root: Path, n: int = 600) -> int:
    """news2016zh (2 files), webtext2019zh (3 files, 2 replies per question), zhihu_kol (3 shards): about
    8n raw rows, with a few broken ones each source must count as drops. Returns the raw row count."""
    news = [_news(i) for i in range(2 * n)]
    news[7] = '{"news_id": "1", "title": "断了的一行'  # a truncated line
    _jsonl(root / "news2016zh/new2016zh/news2016zh_train.json", news[: 3 * n // 2])
    _jsonl(root / "news2016zh/new2016zh/news2016zh_valid.json", news[3 * n // 2:])
    replies = [_reply(i, k) for i in range(3 * n // 2) for k in (1, 2)]
    replies[11]["content"] = "   "  # a reply with no text
    for name, part in (("train", replies[: 2 * n]), ("valid", replies[2 * n: 5 * n // 2]),
                       ("testa", replies[5 * n // 2:])):
        _jsonl(root / f"webtext2019zh/webtext2019zh/web_text_zh_{name}.json", part)
    zhihu = [_zhihu(i) for i in range(3 * n)]
    zhihu[5]["RESPONSE"] = ""
    for k in range(3):
        folder = root / "zhihu_kol/data"
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(zhihu[k * n:(k + 1) * n]),
                       folder / f"train-{k:05d}-of-00005-{k:016x}.parquet")
    old = 1_600_000_000  # files older than the hash cache's racy window, so their hashes are cached
    for path in root.rglob("*.*"):
        os.utime(path, (old, old))
    return len(news) + len(replies) + len(zhihu)


# --- comparing two output folders


def tables(out: Path) -> dict[str, pa.Table]:
    """Each source's rows, sorted by id (the executors may write a source's batches in the same order,
    but the contract is the rows, not their order)."""
    return {
        folder.name: pq.read_table(folder).sort_by("id")
        for folder in sorted((out / "m3e").iterdir())
        if folder.is_dir() and not folder.name.startswith(".")
    }


def records(out: Path) -> dict[str, dict[str, Any]]:
    """Each source's completion record without its timings: the key, parts, counts, files (sha256)."""
    drop = ("finished", "seconds")
    return {
        folder.name: {k: v for k, v in json.loads((folder / SUCCESS).read_text()).items() if k not in drop}
        for folder in sorted((out / "m3e").iterdir())
        if (folder / SUCCESS).is_file()
    }


def normalize_section(out: Path) -> dict[str, Any]:
    """The manifest's normalize section without timings and the output path."""
    section = json.loads((out / "build-manifest.json").read_text())["stages"]["normalize"]
    section.pop("finished")
    section["options"].pop("out")
    for record in section["sources"].values():
        record.pop("seconds", None)
    return section


def assert_same_output(got: Path, want: Path) -> None:
    want_tables = tables(want)
    got_tables = tables(got)
    assert list(got_tables) == list(want_tables)
    for name, table in want_tables.items():
        assert got_tables[name].num_rows == table.num_rows > 0, name
        assert got_tables[name].equals(table), f"{name}: rows differ"
    assert records(got) == records(want)  # same part files, byte for byte (their sha256)
    assert not list((got / "m3e").glob(TEMP_PREFIX + "*")), "a temp folder was left behind"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, Path]:
    """The synthetic corpus and its build by the local executor."""
    root = tmp_path_factory.mktemp("corpus")
    write_corpus(root / "src")
    out = root / "local"
    results = build(select_sources(",".join(CORPUS)), BuildOptions(out=out, sources=str(root / "src")))
    assert [r.status for r in results] == ["built"] * 3
    return root / "src", out


# --- the tests


def test_executor_ray_without_ray_is_a_usage_error_and_the_core_imports_without_it(tmp_path):
    out = tmp_path / "out"
    code = textwrap.dedent(f"""
        import sys
        sys.modules["ray"] = None  # what `import ray` meets where the extra is not installed
        from click.testing import CliRunner
        import m3e_data.executors.normalize_ray
        from m3e_data.cli.main import main
        r = CliRunner().invoke(main, ["build", "--executor", "ray", "--sources", "demo", "--out", {str(out)!r}])
        print(r.exit_code)
        print(r.output)
        local = CliRunner().invoke(main, ["build", "--ray-address", "auto", "--sources", "demo", "--out", {str(out)!r}])
        print(local.exit_code)
        print(local.output)
    """)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == "2", run.stdout
    assert "pip install 'm3e-data[ray]'" in run.stdout and "--executor" in run.stdout
    assert "Traceback" not in run.stdout + run.stderr
    assert "2" in lines[1:] and "--ray-address is for --executor ray" in run.stdout
    assert not out.exists()  # refused before any work


def test_a_ray_address_where_nothing_answers_is_a_usage_error_not_a_hang(tmp_path, monkeypatch):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "out"
    args = ["build", "--executor", "ray", "--sources", "demo", "--out", str(out)]
    refused = CliRunner().invoke(main, [*args, "--ray-address", f"127.0.0.1:{port}"])
    assert refused.exit_code == 2 and f"no Ray cluster answers at 127.0.0.1:{port}" in refused.output
    monkeypatch.setenv("RAY_ADDRESS", "head-node")
    bad = CliRunner().invoke(main, args)
    assert bad.exit_code == 2 and "RAY_ADDRESS: 'head-node' is not HOST:PORT" in bad.output, bad.output
    assert not out.exists()


def test_demo_built_on_ray_equals_the_local_build(cluster, tmp_path):
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    runs = {}
    for out, executor in ((local, ["local"]), (on_ray, ["ray", "--ray-address", cluster])):
        runs[executor[0]] = CliRunner().invoke(
            main, ["build", "--sources", "demo", "--out", str(out), "--no-hq", "--executor", *executor]
        )
    assert runs["local"].exit_code == 0, runs["local"].output
    assert runs["ray"].exit_code == runs["local"].exit_code, runs["ray"].output
    assert len(tables(local)) >= 25
    assert_same_output(on_ray, local)
    assert normalize_section(on_ray) == normalize_section(local)


def test_synthetic_corpus_on_ray_equals_local_and_a_rerun_is_unchanged(cluster, corpus, tmp_path):
    src, local = corpus
    options = BuildOptions(out=tmp_path / "ray", sources=str(src))
    chosen = select_sources(",".join(CORPUS))
    results = build(chosen, options, map_sources=ray_executor())
    assert [r.status for r in results] == ["built"] * 3
    assert sum(r.counts.read for r in results) > 4000
    # the broken rows are counted drops on Ray as locally
    assert all(sum(r.counts.dropped.values()) >= 1 for r in results)
    assert_same_output(options.out, local)
    assert normalize_section(options.out) == normalize_section(local)
    # The tasks' file hashes reached OUT's cache (the driver merges them): a rerun hashes nothing again.
    cached = json.loads((options.out / CACHE_FILE).read_text())
    inputs = {str(p.resolve()) for p in src.rglob("*.*")}
    assert inputs <= set(cached)
    again = build(chosen, options, map_sources=ray_executor())
    assert [r.status for r in again] == ["unchanged"] * 3
    assert [r.counts.as_dict() for r in again] == [r.counts.as_dict() for r in results]


def die_once(source, options, on_rows, cache, clean_temps, *, victim: str, marker: str):
    """build_unit, but the first worker to build `victim` is SIGKILLed mid-source: at its second split, when
    its temp folder holds the first split's rows; the marker file tells the retry to go on."""
    real = stage.to_batch
    seen: list[str] = []

    def to_batch(keyed, src, split):
        seen.append(split)
        if src.name == victim and seen[0] != split and not os.path.exists(marker):
            Path(marker).write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        return real(keyed, src, split)

    stage.to_batch = to_batch
    try:
        return build_unit(source, options, on_rows, cache, clean_temps)
    finally:
        stage.to_batch = real


def test_a_worker_killed_mid_source_is_retried_and_the_output_is_unchanged(cluster, corpus, tmp_path):
    src, local = corpus
    marker = tmp_path / "killed.pid"
    unit = functools.partial(die_once, victim="webtext2019zh", marker=str(marker))
    options = BuildOptions(out=tmp_path / "ray", sources=str(src))
    results = build(select_sources(",".join(CORPUS)), options, map_sources=ray_executor(unit=unit))
    assert marker.is_file(), "no worker was killed"
    with pytest.raises(ProcessLookupError):
        os.kill(int(marker.read_text()), 0)  # that worker is dead
    assert [r.status for r in results] == ["built"] * 3
    assert_same_output(options.out, local)  # its half-written temp folder is gone too
    assert normalize_section(options.out) == normalize_section(local)


def test_a_source_whose_workers_all_die_fails_alone_and_a_rerun_builds_it(cluster, corpus, tmp_path):
    src, local = corpus
    marker = tmp_path / "killed.pid"
    options = BuildOptions(out=tmp_path / "ray", sources=str(src))
    chosen = select_sources(",".join(CORPUS))
    unit = functools.partial(die_once, victim="webtext2019zh", marker=str(marker))
    results = build(chosen, options, map_sources=ray_executor(unit=unit, max_retries=0))
    assert [r.status for r in results] == ["built", "failed", "built"]
    assert "the Ray task failed 1 time (its worker or node died" in results[1].reason
    assert not (options.out / "m3e" / "webtext2019zh").exists()
    manifest = json.loads((options.out / "build-manifest.json").read_text())["stages"]["normalize"]
    assert manifest["selected"] == ["news2016zh", "zhihu_kol"]
    assert manifest["sources"]["webtext2019zh"]["status"] == "failed"
    again = build(chosen, options, map_sources=ray_executor())  # the marker is there: no more deaths
    assert [r.status for r in again] == ["unchanged", "built", "unchanged"]
    assert_same_output(options.out, local)


def test_a_killed_driver_reruns_to_the_same_output(cluster, corpus, tmp_path):
    src, local = corpus
    out = tmp_path / "ray"
    # A driver that joins the cluster, gathers the first source and is SIGKILLed on the way to the second.
    code = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from m3e_data.executors.normalize_ray import ray_executor
        from m3e_data.stages.normalize.stage import BuildOptions, build, select_sources

        def on_start(name):
            if name == {CORPUS[1]!r}:
                os.kill(os.getpid(), signal.SIGKILL)

        build(select_sources({",".join(CORPUS)!r}), BuildOptions(out=Path({str(out)!r}), sources={str(src)!r}),
              on_start=on_start, map_sources=ray_executor({cluster!r}))
    """)
    killed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert (out / "m3e" / CORPUS[0] / SUCCESS).is_file()
    assert not (out / "build-manifest.json").exists()  # the stage never finished

    results = build(select_sources(",".join(CORPUS)), BuildOptions(out=out, sources=str(src)),
                    map_sources=ray_executor())
    statuses = {r.name: r.status for r in results}
    assert statuses[CORPUS[0]] == "unchanged"  # resumed, not rebuilt
    assert set(statuses.values()) <= {"built", "unchanged"}
    assert_same_output(out, local)



# --- large JSON-lines files cut into byte ranges (units), each range a Ray task


@pytest.fixture(scope="module")
def range_corpus(tmp_path_factory) -> tuple[Path, Path, int]:
    """JSON-lines sources with every quirk a range must keep, their local build, and a --split-bytes that
    cuts them into several ranges, one budget ending inside a malformed line, mid-character."""
    root = tmp_path_factory.mktemp("ranges")
    write_range_corpus(root / "src")
    results = build(select_sources(",".join(RANGE_SOURCES)), BuildOptions(out=root / "local", sources=str(root / "src")))
    assert [r.status for r in results] == ["built"] * 3
    return root / "src", root / "local", split_bytes_cutting_the_bad_line(root / "src")


def counting_units(plan, i, *, log: str):
    """run_unit, noting (source, unit) in `log`: which units ran, on any worker."""
    with open(log, "a") as fh:
        fh.write(f"{plan.prepared.source.name} {i}\n")
    return units.run_unit(plan, i)


def test_json_lines_cut_into_ranges_on_ray_equal_the_local_build(cluster, range_corpus, tmp_path):
    src, local, split_bytes = range_corpus
    log = tmp_path / "units.log"
    options = BuildOptions(out=tmp_path / "ray", sources=str(src))
    results = build(select_sources(",".join(RANGE_SOURCES)), options, map_sources=ray_executor(
        split_bytes=split_bytes, range_unit=functools.partial(counting_units, log=str(log))))
    assert [r.status for r in results] == ["built"] * 3
    ran = Counter(line.split()[0] for line in log.read_text().splitlines())
    assert set(ran) == set(RANGE_SOURCES) and min(ran.values()) >= 3  # every source was cut
    baike = results[0].splits["train"]
    assert baike.dropped == {"malformed_json": 1, "empty_text": 1}  # the line cut by a budget: once
    assert baike.notes == {"decoded_gb18030": 1}
    assert_same_output(options.out, local)  # ids, rows, parts byte for byte, counts per split
    assert normalize_section(options.out) == normalize_section(local)
    assert not list((options.out / "m3e").glob(TEMP_PREFIX + "*"))  # the units' folders are gone


def die_in_unit(plan, i, *, victim: int, marker: str, log: str):
    """counting_units, but the first worker to run unit `victim` of baike2018qa is SIGKILLed half-way
    through its IPC file; the marker file tells the retry to go on."""
    with open(log, "a") as fh:
        fh.write(f"{plan.prepared.source.name} {i}\n")
    if plan.prepared.source.name == "baike2018qa" and i == victim and not os.path.exists(marker):
        real = units._unit_batch

        def die(*args):
            Path(marker).write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)

        units._unit_batch = die
        try:
            return units.run_unit(plan, i)
        finally:
            units._unit_batch = real
    return units.run_unit(plan, i)


def test_a_worker_killed_in_one_range_is_retried_alone_and_the_output_is_identical(cluster, range_corpus, tmp_path):
    src, local, split_bytes = range_corpus
    marker = tmp_path / "killed.pid"
    options = BuildOptions(out=tmp_path / "ray", sources=str(src))
    log = tmp_path / "units.log"
    unit = functools.partial(die_in_unit, victim=2, marker=str(marker), log=str(log))
    results = build(select_sources(",".join(RANGE_SOURCES)), options,
                    map_sources=ray_executor(split_bytes=split_bytes, range_unit=unit))
    assert marker.is_file(), "no worker was killed"
    with pytest.raises(ProcessLookupError):
        os.kill(int(marker.read_text()), 0)
    runs = Counter(line for line in log.read_text().splitlines() if line.startswith("baike2018qa"))
    assert runs.pop("baike2018qa 2") == 2 and set(runs.values()) == {1}  # only the killed range ran again
    assert [r.status for r in results] == ["built"] * 3
    assert_same_output(options.out, local)
    assert normalize_section(options.out) == normalize_section(local)


def test_a_range_lost_on_every_attempt_fails_its_source_alone(cluster, range_corpus, tmp_path):
    src, local, split_bytes = range_corpus
    marker = tmp_path / "killed.pid"
    options = BuildOptions(out=tmp_path / "ray", sources=str(src))
    chosen = select_sources(",".join(RANGE_SOURCES))
    unit = functools.partial(die_in_unit, victim=2, marker=str(marker), log=str(tmp_path / "units.log"))
    results = build(chosen, options, map_sources=ray_executor(split_bytes=split_bytes, range_unit=unit,
                                                              max_retries=0))
    assert [r.status for r in results] == ["failed", "built", "built"]
    assert "the Ray task failed 1 time (its worker or node died" in results[0].reason
    assert not (options.out / "m3e" / "baike2018qa").exists()  # nothing of it was committed
    assert not list((options.out / "m3e").glob(TEMP_PREFIX + "*"))
    again = build(chosen, options, map_sources=ray_executor(split_bytes=split_bytes))
    assert [r.status for r in again] == ["built", "unchanged", "unchanged"]
    assert_same_output(options.out, local)


def test_split_bytes_on_the_command_line(cluster, range_corpus, tmp_path):
    src, local, split_bytes = range_corpus
    args = ["build", "--recipe", ",".join(RANGE_SOURCES), "--sources", str(src), "--no-hq"]
    refused = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "l"), "--split-bytes", "64M"])
    assert refused.exit_code == 2 and "--split-bytes is for --executor ray" in refused.output
    bad = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "b"), "--executor", "ray", "--split-bytes", "1T"])
    assert bad.exit_code == 2 and "'1T' is not a size such as 134217728, 128M or 1G" in bad.output
    assert not (tmp_path / "l").exists() and not (tmp_path / "b").exists()
    out = tmp_path / "ray"
    run = CliRunner().invoke(main, [*args, "--out", str(out), "--executor", "ray", "--ray-address", cluster,
                                    "--split-bytes", f"{split_bytes // 1024}K"])
    assert run.exit_code == 0, run.output
    assert_same_output(out, local)


def same_answer_corpus(root: Path, n: int = 16_500) -> list[str]:
    """About 6.3n raw rows over five sources: the three JSON-lines sources of the range corpus (baike's
    train file alone ~3n rows) and webtext2019zh (its train file over 1 MiB: cut too) and zhihu_kol (Parquet)
    of the synthetic corpus; the names of the sources."""
    write_range_corpus(root, n)
    write_corpus(root / "more", n // 6)
    for name in ("webtext2019zh", "zhihu_kol"):
        (root / "more" / name).rename(root / name)
    return [*RANGE_SOURCES, "webtext2019zh", "zhihu_kol"]


def test_same_answer_for_a_100k_row_corpus(cluster, tmp_path):
    """Issue 15's "same answer" at 100k raw rows: several batches per split, the biggest file in 6+ ranges."""
    chosen = select_sources(",".join(same_answer_corpus(tmp_path / "src", 16_500)))
    assert (tmp_path / "src/baike2018qa/baike2018qa/baike_qa_train.json").stat().st_size > 6 << 20
    assert (tmp_path / "src/webtext2019zh/webtext2019zh/web_text_zh_train.json").stat().st_size > 1 << 20
    local = build(chosen, BuildOptions(out=tmp_path / "local", sources=str(tmp_path / "src")))
    assert sum(r.counts.read for r in local) > 100_000
    on_ray = build(chosen, BuildOptions(out=tmp_path / "ray", sources=str(tmp_path / "src")),
                   map_sources=ray_executor(split_bytes=1 << 20))
    assert [r.status for r in on_ray] == [r.status for r in local] == ["built"] * 5
    assert_same_output(tmp_path / "ray", tmp_path / "local")
    assert normalize_section(tmp_path / "ray") == normalize_section(tmp_path / "local")
