"""The build driver and CLI: selection, resumption, atomic output, failures that stay local."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from m3e_data.catalog import load_catalog
from m3e_data.cli.main import main
from m3e_data.recipe import Recipe, load_recipe, recipe_names
from m3e_data.schema import UNIFIED_SCHEMA
from m3e_data.stages.normalize import stage as build_module
from m3e_data.stages.normalize.locate import demo_root
from m3e_data.stages.normalize.stage import BuildOptions, build, select_sources
from m3e_data.storage.store import SUCCESS, TEMP_PREFIX

FIVE = ["cmrc2018", "ocnli", "lcqmc", "hc3_chinese", "news2016zh"]


def read_all(out: Path) -> dict[str, list[dict]]:
    return {
        folder.name: pq.read_table(folder).to_pylist()
        for folder in sorted((out / "m3e").iterdir())
        if not folder.name.startswith(".")
    }


def test_list_shows_all_29_sources_with_the_agreed_json_keys():
    result = CliRunner().invoke(main, ["list", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert len(rows) == 29
    for key in ("name", "domain", "task", "card_rows", "license", "commercial", "homogeneous", "available", "recipe"):
        assert key in rows[0]
    by_name = {r["name"]: r for r in rows}
    assert all(by_name[n]["recipe"] for n in FIVE)
    table = CliRunner().invoke(main, ["list"])
    assert table.exit_code == 0 and "29 sources" in table.output and "news2016zh" in table.output


def test_demo_build_of_all_sources_reports_every_catalog_entry(tmp_path):
    result = CliRunner().invoke(main, ["build", "--recipe", "all", "--sources", "demo", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "build-manifest.json").read_text())
    recorded = manifest["stages"]["normalize"]["sources"]
    assert set(recorded) == set(load_catalog())
    for name, entry in recorded.items():
        if name == "amazon_reviews_multi":
            assert entry["status"] == "unavailable" and "defunct" in entry["reason"].lower()
        elif name in recipe_names() and (demo_root() / name).is_dir():
            assert entry["status"] == "built", (name, entry)
            assert entry["rows_written"] > 0
            table = pq.read_table(tmp_path / "m3e" / name)
            assert table.schema.equals(UNIFIED_SCHEMA)
            assert len(set(table.column("id").to_pylist())) == table.num_rows, f"{name}: ids not unique"
        else:
            assert entry["status"] in ("no recipe", "missing"), (name, entry)
    assert manifest["versions"]["pyarrow"] and manifest["stages"]["normalize"]["options"]["sources"] == "demo"
    assert "m3e build" in result.output  # the summary table


def test_commercial_only_builds_no_non_commercial_source(tmp_path):
    result = CliRunner().invoke(
        main, ["build", "--recipe", "all", "--sources", "demo", "--out", str(tmp_path), "--commercial-only"]
    )
    assert result.exit_code == 0, result.output
    built = read_all(tmp_path)
    catalog = load_catalog()
    assert {"csl", "paws_x"} <= set(built) and "hc3_chinese" not in built
    assert all(catalog[name].commercial for name in built)
    assert all(row["commercial"] for rows in built.values() for row in rows)
    assert {s.name for s in select_sources("all", commercial_only=True)} == {
        n for n, s in catalog.items() if s.commercial
    }


def test_rerun_skips_unchanged_sources_and_rebuilds_a_changed_one(tmp_path):
    sources = tmp_path / "src"
    for name in ("cmrc2018", "hc3_chinese"):
        shutil.copytree(demo_root() / name, sources / name)
    options = BuildOptions(out=tmp_path / "out", sources=str(sources))
    chosen = select_sources("cmrc2018,hc3_chinese")
    assert [r.status for r in build(chosen, options)] == ["built", "built"]
    assert [r.status for r in build(chosen, options)] == ["unchanged", "unchanged"]
    with (sources / "hc3_chinese" / "all.jsonl").open("a", encoding="utf-8") as fh:
        fh.write('{"question": "新问题", "human_answers": ["新回答"], "chatgpt_answers": []}\n')
    results = {r.name: r for r in build(chosen, options)}
    assert results["cmrc2018"].status == "unchanged" and results["hc3_chinese"].status == "built"
    assert results["hc3_chinese"].counts.written == 6
    # the unchanged source keeps its statistics in the manifest
    manifest = json.loads((tmp_path / "out" / "build-manifest.json").read_text())
    assert manifest["stages"]["normalize"]["sources"]["cmrc2018"]["rows_written"] == 5


def test_a_killed_build_reruns_to_the_same_output_as_an_uninterrupted_one(tmp_path, monkeypatch):
    chosen = select_sources(",".join(FIVE))
    clean = BuildOptions(out=tmp_path / "clean", sources="demo")
    build(chosen, clean)

    killed = BuildOptions(out=tmp_path / "killed", sources="demo")
    real_batch = build_module.to_batch
    calls = {"n": 0}

    def dying_batch(keyed, source, split):
        calls["n"] += 1
        if source.name == "hc3_chinese":
            raise KeyboardInterrupt  # the user pressed Ctrl-C in the middle of a source
        return real_batch(keyed, source, split)

    monkeypatch.setattr(build_module, "to_batch", dying_batch)
    with pytest.raises(KeyboardInterrupt):
        build(chosen, killed)
    monkeypatch.setattr(build_module, "to_batch", real_batch)
    assert not (killed.out / "m3e" / "hc3_chinese").exists()
    # What a SIGKILL leaves behind: a temp folder with a half-written part, never trusted.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = killed.out / "m3e" / f"{TEMP_PREFIX}{int(dead.stdout)}.abc.lcqmc"
    stale.mkdir(parents=True)
    (stale / "part-00000.parquet").write_bytes(b"PAR1 half")
    # And a finished folder from an older run whose completion record is gone.
    (killed.out / "m3e" / "cmrc2018" / SUCCESS).unlink()

    results = {r.name: r.status for r in build(chosen, killed)}
    assert results["cmrc2018"] == "built" and results["hc3_chinese"] == "built"
    assert read_all(killed.out) == read_all(clean.out)
    assert not list((killed.out / "m3e").glob(".*"))


def test_missing_data_is_one_clear_line_and_does_not_stop_the_others(tmp_path):
    sources = tmp_path / "src"
    shutil.copytree(demo_root() / "cmrc2018", sources / "cmrc2018")
    (sources / "news2016zh").mkdir()
    results = {r.name: r for r in build(select_sources("cmrc2018,news2016zh,ocnli"), BuildOptions(tmp_path / "o", str(sources)))}
    assert results["cmrc2018"].status == "built"
    news = results["news2016zh"]
    assert news.status == "missing"
    assert "news2016zh_train.json" in news.reason and "github.com/brightmart" in news.reason
    assert results["ocnli"].status == "missing" and "hf download --repo-type dataset clue/clue" in results["ocnli"].reason


def test_a_broken_file_fails_its_source_only(tmp_path):
    sources = tmp_path / "src"
    shutil.copytree(demo_root() / "cmrc2018", sources / "cmrc2018")
    # A JSON-lines file loses only its bad lines; a one-document file that does not parse fails its source.
    (sources / "cinlid").mkdir(parents=True)
    (sources / "cinlid" / "train.json").write_text('{"data": [{"phrase1": "画蛇', encoding="utf-8")
    runner = CliRunner()
    result = runner.invoke(
        main, ["build", "--recipe", "cmrc2018,cinlid", "--sources", str(sources), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 1
    recorded = json.loads((tmp_path / "o" / "build-manifest.json").read_text())["stages"]["normalize"]["sources"]
    assert recorded["cmrc2018"]["status"] == "built"
    assert recorded["cinlid"]["status"] == "failed" and "train.json" in recorded["cinlid"]["reason"]


def test_splits_option_reads_only_the_named_splits(tmp_path):
    options = BuildOptions(out=tmp_path, sources="demo", splits=["train"])
    [result] = build(select_sources("cmrc2018"), options)
    assert list(result.splits) == ["train"]
    assert {r["split"] for r in pq.read_table(tmp_path / "m3e" / "cmrc2018").to_pylist()} == {"train"}


def test_unknown_source_and_malformed_option_are_usage_errors(tmp_path):
    runner = CliRunner()
    bad = runner.invoke(main, ["build", "--recipe", "nosuch", "--sources", "demo", "--out", str(tmp_path)])
    assert bad.exit_code == 2 and "unknown source 'nosuch'" in bad.output
    opt = runner.invoke(main, ["build", "--recipe", "cmrc2018", "--sources", "demo", "--out", str(tmp_path), "--option", "x"])
    assert opt.exit_code == 2 and "SOURCE.KEY=VALUE" in opt.output
    typo = runner.invoke(main, ["build", "--recipe", "all", "--sources", "demo", "--out", str(tmp_path),
                                "--option", "webtxt2019zh.best_answer_only=true"])
    assert typo.exit_code == 2 and "no recipe named 'webtxt2019zh' (did you mean webtext2019zh?)" in typo.output
    assert not (tmp_path / "m3e").exists()  # nothing was built with the defaults


def test_recipe_options_are_typed_by_their_defaults(tmp_path):
    module = ModuleType("fake")
    module.OPTIONS = {"best_answer_only": False, "max_per_title": 0, "kinds": []}
    module.to_pairs = lambda row, ctx: []
    recipe = Recipe("fake", module)
    assert recipe.resolve_options({"best_answer_only": "true", "max_per_title": "3", "kinds": "OpenQA, MRC"}) == {
        "best_answer_only": True, "max_per_title": 3, "kinds": ["OpenQA", "MRC"],
    }
    with pytest.raises(ValueError, match="has no option 'nope'"):
        recipe.resolve_options({"nope": "1"})
    with pytest.raises(ValueError, match="wants true/false"):
        recipe.resolve_options({"best_answer_only": "perhaps"})
    # an unknown option given on the command line fails that source with the message
    results = build(select_sources("cmrc2018"), BuildOptions(tmp_path, "demo", recipe_options={"cmrc2018": {"x": "1"}}))
    assert results[0].status == "failed" and "has no option 'x'" in results[0].reason
    assert load_recipe("no_such_recipe") is None


def test_atomic_writes_leave_ordinary_permissions(tmp_path):
    from m3e_data.storage.store import atomic_write_text

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "report.html", "<html></html>")
    finally:
        os.umask(old)
    assert (tmp_path / "report.html").stat().st_mode & 0o777 == 0o644
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_build_that_finds_no_data_says_so_and_fails_without_a_traceback(tmp_path):
    (tmp_path / "src" / "cmrc2018").mkdir(parents=True)
    result = CliRunner().invoke(main, ["build", "--recipe", "cmrc2018", "--sources", str(tmp_path / "src"),
                                       "--out", str(tmp_path / "out")])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)  # a message, not a traceback
    assert "no data at" in result.output and "nothing was built" in result.output
    hq = CliRunner().invoke(main, ["hq", str(tmp_path / "out")])
    assert hq.exit_code == 1 and "no finished source" in hq.output


def test_a_source_missing_a_split_builds_the_others_and_names_the_files_looked_for(tmp_path):
    # The user: bq's Hub snapshot with only validation and test downloaded.
    src = tmp_path / "src"
    shutil.copytree(demo_root() / "bq", src / "bq")
    shutil.rmtree(src / "bq" / "BQ" / "train")
    shutil.copytree(demo_root() / "news2016zh", src / "news2016zh")
    (src / "news2016zh" / "new2016zh" / "news2016zh_valid.json").unlink()
    result = CliRunner().invoke(
        main,
        ["build", "--recipe", "bq,news2016zh", "--sources", str(src), "--out", str(tmp_path / "o"), "--no-hq"],
    )
    assert result.exit_code == 0, result.output
    recorded = json.loads((tmp_path / "o" / "build-manifest.json").read_text())["stages"]["normalize"]["sources"]
    bq = recorded["bq"]
    assert bq["status"] == "built" and set(bq["splits"]) == {"validation", "test"}
    assert bq["missing_splits"] == {"train": ["BQ/train/*.parquet"]}
    [warning] = bq["warnings"]
    assert "BQ/train/*.parquet" in warning and "--splits validation,test" in warning
    news = recorded["news2016zh"]
    assert news["missing_splits"] == {"validation": ["news2016zh_valid.json"]}
    assert "news2016zh_valid.json" in news["warnings"][0] and "--splits train" in news["warnings"][0]
    assert "--splits validation,test" in " ".join(result.output.split())  # printed, not only recorded
    assert "()" not in result.output
    # the missing split is named on an unchanged rerun too, and --splits silences it
    options = BuildOptions(out=tmp_path / "o", sources=str(src))
    [again] = build(select_sources("bq"), options)
    assert again.status == "unchanged" and again.missing_splits == {"train": ["BQ/train/*.parquet"]}
    options.splits = ["validation", "test"]
    [silenced] = build(select_sources("bq"), options)
    assert silenced.status == "unchanged" and not silenced.warnings and not silenced.missing_splits
    # adding the file later builds it
    shutil.copytree(demo_root() / "bq" / "BQ" / "train", src / "bq" / "BQ" / "train")
    options.splits = None
    [complete] = build(select_sources("bq"), options)
    assert complete.status == "built" and set(complete.splits) == {"train", "validation", "test"}


def test_a_split_a_source_does_not_have_is_named_with_the_ones_it_has(tmp_path):
    [result] = build(select_sources("hc3_chinese"), BuildOptions(tmp_path / "o", "demo", splits=["test"]))
    assert result.status == "missing"
    assert result.reason == (
        "hc3_chinese: no split test in any layout; it has train (build with --splits train, or without --splits)"
    )
    options = BuildOptions(tmp_path / "o", "demo", splits=["train", "test"])
    [both] = build(select_sources("hc3_chinese"), options)
    assert both.status == "built" and list(both.splits) == ["train"]
    assert both.warnings == ["split test not built: layout 'json' has only train"]


def test_no_data_names_every_file_looked_for(tmp_path):
    (tmp_path / "src" / "news2016zh").mkdir(parents=True)
    [result] = build(select_sources("news2016zh"), BuildOptions(tmp_path / "o", str(tmp_path / "src")))
    assert result.status == "missing"
    assert "train: news2016zh_train.json; validation: news2016zh_valid.json), each name looked for at any depth" in result.reason


def write_news(folder: Path, rows: list[dict]) -> None:
    folder.mkdir(parents=True)
    for name in ("news2016zh_train.json", "news2016zh_valid.json"):
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        (folder / name).write_text(text, encoding="utf-8")


def test_a_source_that_one_reason_empties_is_flagged_and_fails_unless_allow_empty(tmp_path):
    src = tmp_path / "src"
    # a copy whose title column is named otherwise: every row drops as missing_field:title
    write_news(src / "news2016zh" / "new2016zh",
               [{"news_id": str(i), "headline": f"标题{i}", "content": f"正文{i}。"} for i in range(200)])
    shutil.copytree(demo_root() / "cmrc2018", src / "cmrc2018")
    args = ["build", "--recipe", "news2016zh,cmrc2018", "--sources", str(src), "--out", str(tmp_path / "o")]
    args.append("--no-hq")
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    text = " ".join(result.output.split())
    assert "! 100.0% of rows dropped as missing_field:title" in text and "--allow-empty" in text
    recorded = json.loads((tmp_path / "o" / "build-manifest.json").read_text())["stages"]["normalize"]["sources"]
    assert recorded["news2016zh"]["flag"] == "100.0% of rows dropped as missing_field:title"
    assert "flag" not in recorded["cmrc2018"]
    accepted = CliRunner().invoke(main, [*args, "--allow-empty"])
    assert accepted.exit_code == 0, accepted.output
    assert "accepted with --allow-empty" in " ".join(accepted.output.split())


def test_the_flag_threshold_and_an_empty_source(tmp_path):
    src = tmp_path / "src"
    # 1 good row in 100: 99% dropped, flagged; 2 good rows in 100: 98%, not flagged
    rows = [{"news_id": str(i), "content": f"正文{i}。"} for i in range(100)]
    rows[0]["title"] = "标题"
    write_news(src / "news2016zh" / "new2016zh", rows)
    options = BuildOptions(tmp_path / "o", str(src))
    [result] = build(select_sources("news2016zh"), options)
    assert result.flag == "99.0% of rows dropped as missing_field:title"
    shutil.rmtree(src / "news2016zh")
    rows[1]["title"] = "标题二"
    write_news(src / "news2016zh" / "new2016zh", rows)
    [result] = build(select_sources("news2016zh"), options)
    assert result.status == "built" and result.flag == ""
    shutil.rmtree(src / "news2016zh")
    write_news(src / "news2016zh" / "new2016zh", [])
    [result] = build(select_sources("news2016zh"), options)
    assert result.status == "built" and result.flag == "no rows read"


def test_a_users_file_in_a_source_folder_is_refused_not_deleted(tmp_path):
    """The audit's case: a rebuild deleted a user's file in OUT/m3e/<source>/ with the folder it replaced."""
    from m3e_data.storage.ownership import MARKER

    sources = tmp_path / "src"
    shutil.copytree(demo_root() / "hc3_chinese", sources / "hc3_chinese")
    out = tmp_path / "out"
    args = ["build", "--recipe", "hc3_chinese", "--sources", str(sources), "--out", str(out), "--no-hq"]
    assert CliRunner().invoke(main, args).exit_code == 0
    folder = out / "m3e" / "hc3_chinese"
    assert (folder / MARKER).is_file()
    (folder / "my-notes.txt").write_text("keep me", encoding="utf-8")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with (sources / "hc3_chinese" / "all.jsonl").open("a", encoding="utf-8") as fh:  # a change: it rebuilds
        fh.write('{"question": "新问题", "human_answers": ["新回答"], "chatgpt_answers": []}\n')
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and "my-notes.txt" in "".join(result.output.split())
    assert "Traceback" not in result.output
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert not [p for p in (out / "m3e").iterdir() if p.name.endswith(".tmp")]

    (folder / "my-notes.txt").unlink()  # moved out: the source is the build's again and rebuilds
    assert CliRunner().invoke(main, args).exit_code == 0
    assert json.loads((folder / SUCCESS).read_text())["counts"]["written"] == 6


def test_a_source_folder_built_before_markers_is_still_rebuilt(tmp_path):
    """A folder with just what its _SUCCESS.json lists (an older build, no marker) stays the build's."""
    from m3e_data.storage.ownership import MARKER

    sources = tmp_path / "src"
    shutil.copytree(demo_root() / "hc3_chinese", sources / "hc3_chinese")
    options = BuildOptions(out=tmp_path / "out", sources=str(sources))
    chosen = select_sources("hc3_chinese")
    build(chosen, options)
    (tmp_path / "out" / "m3e" / "hc3_chinese" / MARKER).unlink()
    with (sources / "hc3_chinese" / "all.jsonl").open("a", encoding="utf-8") as fh:
        fh.write('{"question": "新问题", "human_answers": ["新回答"], "chatgpt_answers": []}\n')
    assert [r.status for r in build(chosen, options)] == ["built"]
