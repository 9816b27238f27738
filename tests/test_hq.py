"""The m3e-hq stage end to end: outputs, rejects, manifest, eval splits, cross-source dedup, thresholds
re-applied from cached statistics, decontamination, resumption after a kill, the report and the CLI."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from m3e_data.catalog import load_catalog
from m3e_data.cli.main import main
from m3e_data.manifest import read_manifest
from m3e_data.schema import UNIFIED_SCHEMA
from m3e_data.stages.hq import quality, report
from m3e_data.stages.hq import stage as hq
from m3e_data.stages.hq.report import write_report
from m3e_data.stages.normalize.stage import BuildOptions, build, select_sources
from m3e_data.storage.store import SUCCESS, atomic_write_json


@pytest.fixture(scope="module")
def demo_base(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    build(select_sources("all"), BuildOptions(out=out, sources="demo"))
    return out


@pytest.fixture
def demo(demo_base, tmp_path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(demo_base, out)
    return out


def _rows(folder: Path) -> list[dict]:
    return pl.read_parquet(sorted(folder.glob("part-*.parquet"))).to_dicts()


def _write_source(out: Path, name: str, pairs: list[tuple[str, str]], split: str = "train", **const) -> None:
    """A finished normalize output for `name`, written directly in the unified schema."""
    folder = out / "m3e" / name
    folder.mkdir(parents=True)
    n = len(pairs)
    cols = {
        "id": [f"{name}/{split}/{i}" for i in range(n)], "source": [name] * n, "split": [split] * n,
        "query": [q for q, _ in pairs], "positive": [p for _, p in pairs], "negatives": [[] for _ in range(n)],
        "positive_score": [None] * n, "negative_scores": [None] * n, "task": [const.get("task", "similarity")] * n,
        "homogeneous": [const.get("homogeneous", True)] * n, "domain": ["colloquial"] * n,
        "license": ["x"] * n, "commercial": [const.get("commercial", False)] * n,
    }
    pq.write_table(pa.table(cols).cast(UNIFIED_SCHEMA), folder / "part-00000.parquet")
    atomic_write_json(folder / SUCCESS, {"key": {"fingerprint": name, "pairs": pairs}, "parts": ["part-00000.parquet"]})


def test_demo_outputs_rejects_and_manifest(demo):
    results = hq.run_hq(demo, workers=1)
    section = read_manifest(demo)["stages"]["hq"]
    built = sorted(p.name for p in (demo / "m3e").iterdir() if (p / SUCCESS).exists())
    assert sorted(results) == built == sorted(section["sources"])
    kept_ids: set[str] = set()
    all_kept: set[str] = set()
    for name, r in results.items():
        kept = _rows(demo / "m3e-hq" / name)
        assert pq.read_schema(next((demo / "m3e-hq" / name).glob("part-*.parquet"))) == UNIFIED_SCHEMA
        assert len(kept) == r.rows_out == section["sources"][name]["rows_out"]
        assert r.rows_in == r.rows_out + sum(r.dropped.values())
        assert all(row["split"] not in ("validation", "test") for row in kept)
        rejected = []
        for stage in hq.REJECT_STAGES:
            folder = demo / "rejects" / stage / name
            if folder.exists():
                rejected += _rows(folder)
        assert len(rejected) == r.rows_in - r.rows_out
        for row in rejected:
            assert row["reason"] in r.dropped
            assert (row["kept_id"] is not None) == row["reason"].endswith("duplicate")
        kept_ids.update(x["kept_id"] for x in rejected if x["kept_id"] is not None)
        all_kept.update(x["id"] for x in kept)
    assert kept_ids <= all_kept  # every kept_id names a row that is in m3e-hq
    for name, r in results.items():
        # The manifest's counts per stage per reason add up to the same drops.
        by_stage = section["sources"][name]["dropped_by_stage"]
        assert set(by_stage) <= set(hq.REJECT_STAGES)
        assert {k: v for reasons in by_stage.values() for k, v in reasons.items()} == r.dropped
        for stage, reasons in by_stage.items():
            assert sum(reasons.values()) == section["sources"][name]["through"][
                hq.REJECT_STAGES[hq.REJECT_STAGES.index(stage) - 1] if stage != "eval_split" else "input"
            ] - section["sources"][name]["through"][stage]
    evals = sum(r.dropped.get("eval_split", 0) for r in results.values())
    assert evals > 0
    # The belle_2m demo row whose answer is English is rejected with the rule's name.
    belle = _rows(demo / "rejects" / "quality" / "belle_2m")
    assert [r["reason"] for r in belle] == ["quality:positive_no_chinese"]


def test_keep_eval_splits(demo):
    results = hq.run_hq(demo, keep_eval_splits=True, workers=1)
    assert all("eval_split" not in r.dropped for r in results.values())
    splits = {row["split"] for row in _rows(demo / "m3e-hq" / "lcqmc")}
    assert {"validation", "test"} <= splits
    assert not (demo / "rejects" / "eval_split").exists() or not any((demo / "rejects" / "eval_split").iterdir())


def test_cross_source_duplicates_keep_the_better_source(tmp_path):
    out = tmp_path / "out"
    shared = ("蚂蚁花呗怎么提高额度呢", "花呗的额度怎样才能提升")
    near = ("我的花呗额度为什么降低了", "花呗额度被降低是什么原因呢，怎么恢复")
    near_copy = (near[0], near[1].replace("呢", ""))
    # paws_x: excellent + commercial in the catalog; lcqmc: good, research only.
    _write_source(out, "lcqmc", [shared, near_copy, ("今天天气怎么样", "今天的天气如何")])
    _write_source(out, "paws_x", [shared, near], commercial=True)
    results = hq.run_hq(out, workers=1)
    assert results["lcqmc"].dropped == {"exact_duplicate": 1, "near_duplicate": 1}
    assert results["paws_x"].dropped == {}
    rejected = {r["query"]: r for r in _rows(out / "rejects" / "dedup" / "lcqmc")}
    assert rejected[shared[0]]["kept_id"] == "paws_x/train/0"
    assert rejected[near[0]]["kept_id"] == "paws_x/train/1"
    assert read_manifest(out)["stages"]["hq"]["overlap"] == {"lcqmc": {"paws_x": 2}}
    # The report's cross-source chart shows it.
    page = write_report(out).read_text(encoding="utf-8")
    assert "lcqmc → paws_x: 2" in page and "No duplicate crosses sources" not in page


def test_kept_id_names_the_row_that_survives_exact_then_near(tmp_path):
    """An exact copy points to the row finally kept, even when its exact twin was then dropped as a near
    duplicate of a row of a better source."""
    out = tmp_path / "out"
    near = ("我的花呗额度为什么降低了", "花呗额度被降低是什么原因呢，怎么恢复")
    base = (near[0], near[1].replace("呢", ""))
    _write_source(out, "lcqmc", [base, (base[0] + "？", base[1])])  # row 1: an exact copy of row 0
    _write_source(out, "paws_x", [near], commercial=True)
    results = hq.run_hq(out, workers=1)
    assert results["lcqmc"].dropped == {"exact_duplicate": 1, "near_duplicate": 1}
    rejected = {r["id"]: r for r in _rows(out / "rejects" / "dedup" / "lcqmc")}
    assert rejected["lcqmc/train/0"]["kept_id"] == "paws_x/train/0"
    assert rejected["lcqmc/train/1"]["kept_id"] == "paws_x/train/0"
    assert read_manifest(out)["stages"]["hq"]["overlap"] == {"lcqmc": {"paws_x": 2}}


def read_stats_jaccard(out: Path, name: str) -> float:
    return hq.read_stats(hq.stats_path(out, name), ["qp_jaccard"])["qp_jaccard"][0]


def test_catalog_thresholds_per_source(tmp_path):
    """paws_x and wiki_atomic_edits are near-identical pairs by design: their catalog entries turn the
    "query too similar to positive" rule off; lcqmc keeps the global default."""
    out = tmp_path / "out"
    _write_source(out, "lcqmc", [("明天北京的天气会怎么样呢", "明天北京的天气会怎么样呢吗")])
    _write_source(out, "paws_x", [("后天上海的天气会怎么样呢", "后天上海的天气会怎么样呢吗")])
    edit = "他在北京大学读了四年书，毕业以后去了上海的一家互联网公司做软件工程师，后来又回到北京创业，开了一家小公司。"
    _write_source(out, "wiki_atomic_edits", [(edit, edit.replace("以后去了", "以后又去了"))],  # one word inserted
                  homogeneous=False, task="none")
    results = hq.run_hq(out, workers=1)
    jaccards = [read_stats_jaccard(out, name) for name in ("lcqmc", "paws_x", "wiki_atomic_edits")]
    assert min(jaccards) >= quality.DEFAULTS["max_query_positive_jaccard"]  # the rule would fire everywhere
    assert results["lcqmc"].dropped == {"quality:query_too_similar": 1}
    assert results["paws_x"].dropped == {} and results["wiki_atomic_edits"].dropped == {}
    # --config `sources:` overrides the catalog.
    config = tmp_path / "hq.yaml"
    config.write_text("sources:\n  paws_x:\n    max_query_positive_jaccard: 0.9\n", encoding="utf-8")
    results = hq.run_hq(out, config, workers=1)
    assert results["paws_x"].dropped == {"quality:query_too_similar": 1}
    assert results["wiki_atomic_edits"].dropped == {}


# Synthetic look-alikes of cinlid's entailment pairs: a four-character idiom and a short paraphrase.
IDIOMS = [("莺俦燕侣", "情侣"), ("一丝不苟", "认真"), ("胸有成竹", "有把握"), ("画蛇添足", "多此一举")]


def test_length_floors_layer_task_catalog_config_and_show_in_the_report(tmp_path, monkeypatch):
    """Floors: code default (positive >= 4) < the catalog's per-task floor (similarity: 2) < --config
    `defaults:` < the source's catalog `hq:` < --config `sources:`; the report shows each one's drops."""
    out = tmp_path / "out"
    _write_source(out, "cinlid", IDIOMS)
    _write_source(out, "webqa", [("长城有多长", "两万多"), ("长城在哪个国家", "长城位于中国北方。")],
                  task="qa", homogeneous=False)
    results = hq.run_hq(out, workers=1)
    assert results["cinlid"].dropped == {}  # every idiom pair is a real pair
    assert results["webqa"].dropped == {"quality:positive_too_short": 1}  # a qa answer keeps the 4 floor

    section = read_manifest(out)["stages"]["hq"]
    assert section["thresholds"]["cinlid"]["min_positive_chars"] == 2
    assert section["thresholds"]["webqa"]["min_positive_chars"] == 4
    rules = report.length_rules(section)
    assert rules["cinlid"]["positive_too_short"] == (2, 0)
    assert rules["webqa"]["positive_too_short"] == (4, 1) and rules["webqa"]["query_too_long"] == (1024, 0)
    page = write_report(out).read_text(encoding="utf-8")
    assert "Length floors and ceilings" in page and "<td>≥4 · 1</td>" in page

    def layered(config: str, catalog_hq: dict | None = None) -> dict:
        if catalog_hq is not None:
            entries = dict(load_catalog())
            entries["cinlid"] = dataclasses.replace(entries["cinlid"], hq=catalog_hq)
            monkeypatch.setattr(hq, "load_catalog", lambda: entries)
        path = tmp_path / "hq.yaml"
        path.write_text(config, encoding="utf-8")
        return dict(hq.run_hq(out, path, workers=1)["cinlid"].dropped)

    three = {"quality:positive_too_short": 2}  # 情侣, 认真
    assert layered("defaults:\n  min_positive_chars: 3\n") == three  # --config defaults over the task
    assert layered("defaults:\n  min_positive_chars: 3\n", {"min_positive_chars": 2}) == {}  # catalog over those
    assert layered("sources:\n  cinlid:\n    min_positive_chars: 3\n", {"min_positive_chars": 2}) == three


def test_thresholds_reapplied_without_recomputing(demo, tmp_path, monkeypatch):
    hq.run_hq(demo, workers=1)
    stats_files = sorted((demo / ".cache" / "hq").glob("*/stats.parquet"))
    mtimes = [p.stat().st_mtime_ns for p in stats_files]
    before = read_manifest(demo)["stages"]["hq"]["sources"]

    def boom(*args, **kwargs):
        raise AssertionError("statistics recomputed")

    monkeypatch.setattr(quality, "compute_stats", boom)
    config = tmp_path / "hq.yaml"
    config.write_text("defaults:\n  min_query_chars: 6\nsources:\n  lcqmc:\n    min_query_chars: 2\n", encoding="utf-8")
    results = hq.run_hq(demo, config, workers=1)
    assert all(r.stats_cached for r in results.values())
    assert [p.stat().st_mtime_ns for p in stats_files] == mtimes
    assert sum(r.dropped.get("quality:query_too_short", 0) for r in results.values()) > sum(
        s["dropped"].get("quality:query_too_short", 0) for s in before.values()
    )
    assert results["lcqmc"].dropped.get("quality:query_too_short", 0) == 0  # the per-source override wins


def test_process_pool_gives_the_same_statistics(tmp_path):
    out = tmp_path / "out"
    pairs = [(f"第{i}个问题是什么呢", f"这是第{i}个问题的回答内容") for i in range(120)]
    _write_source(out, "pool_src", pairs)
    src = hq.find_sources(out)[0]
    one, _ = hq.ensure_stats(out, src, quality.StatsParams(), 1, None)
    single = pl.read_parquet(one / "stats.parquet")
    shutil.rmtree(one)
    monkey_batch, monkey_task = hq.STATS_BATCH, hq.STATS_TASK_ROWS
    try:
        hq.STATS_BATCH, hq.STATS_TASK_ROWS = 10, 25  # several tasks of several batches through two workers
        seen = []
        two, cached = hq.ensure_stats(out, src, quality.StatsParams(), 2, lambda *a: seen.append(a[2]))
        assert seen == [25, 50, 75, 100, 120]
    finally:
        hq.STATS_BATCH, hq.STATS_TASK_ROWS = monkey_batch, monkey_task
    assert not cached
    assert pl.read_parquet(two / "stats.parquet").equals(single)


def test_decontamination_drops_matching_rows(demo, tmp_path):
    lcqmc = _rows(demo / "m3e" / "lcqmc")
    train = [r for r in lcqmc if r["split"] == "train"]
    evals = tmp_path / "dev.jsonl"
    evals.write_text(json.dumps({"query": train[0]["query"]}, ensure_ascii=False) + "\n", encoding="utf-8")
    unrelated = tmp_path / "other.txt"
    unrelated.write_text("一句与训练数据毫无关系的评测句子\n", encoding="utf-8")
    results = hq.run_hq(demo, decontaminate=[evals, unrelated], workers=1)
    assert results["lcqmc"].dropped["decontaminated"] >= 1
    rejected = _rows(demo / "rejects" / "decontaminate" / "lcqmc")
    assert train[0]["id"] in {r["id"] for r in rejected}
    assert {r["id"]: r["matched"] for r in rejected}[train[0]["id"]] == "dev.jsonl"  # which set, by file name
    assert read_manifest(demo)["stages"]["hq"]["decontamination"][str(evals)] >= 1
    assert read_manifest(demo)["stages"]["hq"]["decontamination"][str(unrelated)] == 0  # listed, with 0


def test_killed_stage_resumes_to_the_same_output(demo, demo_base, tmp_path, monkeypatch):
    clean = tmp_path / "clean"
    shutil.copytree(demo_base, clean)
    hq.run_hq(clean, workers=1)

    real = hq.write_source
    calls = []

    def dies_on_the_third(*args, **kwargs):
        calls.append(args[1].name)
        if len(calls) == 3:
            raise KeyboardInterrupt  # killed while writing
        return real(*args, **kwargs)

    monkeypatch.setattr(hq, "write_source", dies_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        hq.run_hq(demo, workers=1)
    monkeypatch.setattr(hq, "write_source", real)
    results = hq.run_hq(demo, workers=1)
    # The two finished sources are not rewritten; the rest are.
    assert sorted(n for n, r in results.items() if not r.written) == sorted(calls[:2])
    assert not list((demo / "m3e-hq").glob(".*"))
    for name in results:
        assert _rows(demo / "m3e-hq" / name) == _rows(clean / "m3e-hq" / name)


def test_report_and_cli(demo, tmp_path):
    runner = CliRunner()
    config = tmp_path / "hq.yaml"
    config.write_text("defaults:\n  max_char_run: 12\n", encoding="utf-8")
    result = runner.invoke(main, ["hq", str(demo), "--config", str(config), "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "lcqmc" in result.output
    result = runner.invoke(main, ["report", str(demo)])
    assert result.exit_code == 0, result.output
    page = (demo / "report.html").read_text(encoding="utf-8")
    for name in read_manifest(demo)["stages"]["hq"]["sources"]:
        assert f">{name}<" in page
    assert "<script" not in page and "http://" not in page and "https://" not in page
    assert page.count("<svg") >= 4
    custom = write_report(demo, tmp_path / "r.html")
    assert custom.read_text(encoding="utf-8") == page

    bad = tmp_path / "bad.yaml"
    bad.write_text("defaults:\n  max_len: 3\n", encoding="utf-8")
    result = runner.invoke(main, ["hq", str(demo), "--config", str(bad)])
    assert result.exit_code == 2 and "unknown threshold 'max_len'" in result.output


def test_a_changed_side_jaccard_reruns_the_written_outputs(tmp_path):
    """The dedup settings are part of the stage's key: changing one rewrites OUT/m3e-hq, not only the
    manifest (s2s pairs sharing one long sentence are duplicates only when the side check is off)."""
    out = tmp_path / "out"
    passage = "白石港位于香港新界，是香港著名的渔港之一，建于十九世纪末，后来成为游客喜爱的海鲜美食地点，每年吸引大量游客前来品尝。"
    _write_source(out, "lcqmc", [("谁管理白石港？", passage), ("白石港建于哪一年？", passage)])
    assert hq.run_hq(out, workers=1)["lcqmc"].rows_out == 2
    config = tmp_path / "off.yaml"
    config.write_text("dedup: {side_jaccard: 0.0}\n", encoding="utf-8")
    assert hq.run_hq(out, config, workers=1)["lcqmc"].rows_out == 1
    assert len(_rows(out / "m3e-hq" / "lcqmc")) == 1


def test_ids_that_repeat_are_counted_and_said(tmp_path):
    """A source whose own key repeats (news2016zh uses news_id) gives rows that share an id: the stage says so."""
    out = tmp_path / "out"
    _write_source(out, "news2016zh", [("新款手机发布", "一家厂商发布了新款旗舰手机，续航提升三成。"),
                                     ("本周末将迎来降雨", "气象台预计本周末江南地区将迎来一次明显降雨过程。")],
                  homogeneous=False, task="summary")
    part = out / "m3e" / "news2016zh" / "part-00000.parquet"
    table = pq.read_table(part)
    pq.write_table(table.set_column(0, "id", pa.array(["news2016zh/train/7"] * 2)), part)
    result = CliRunner().invoke(main, ["hq", str(out), "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "news2016zh: 1 rows repeat another row's id" in " ".join(result.output.split())
    assert read_manifest(out)["stages"]["hq"]["sources"]["news2016zh"]["duplicate_ids"] == 1
