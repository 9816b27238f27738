"""What a person reads: tables that fit an 80-column terminal without cutting a number, the full width in
logs, `list`'s filters and entries, build's closing "where and next" lines, and Ctrl-C."""

from __future__ import annotations

import json
import shlex

import pytest
from click.testing import CliRunner
from rich.cells import cell_len

import m3e_data.stages.hq.stage as hq_module
import m3e_data.stages.normalize.stage as build_module
from m3e_data.catalog import how_to_get, load_catalog
from m3e_data.cli.main import main

AT_80 = {"COLUMNS": "80"}
LOG = {"COLUMNS": None}  # a pipe or a log file: no terminal, no COLUMNS


def _invoke(args: list[str], env: dict) -> object:
    result = CliRunner().invoke(main, args, env=env)
    assert "Traceback" not in result.output
    return result


def _fits(text: str, width: int = 80) -> None:
    long = [line for line in text.splitlines() if cell_len(line) > width]
    assert not long, "\n".join(long)
    assert "…" not in text  # rich's mark of a cut cell


def _row(stdout: str, name: str) -> list[str]:
    """The cells of the table line that starts with `name` (its first physical line)."""
    line = next(line for line in stdout.splitlines() if line.startswith(f"│ {name} "))
    return [cell.strip() for cell in line.strip("│").split("│")]


def test_list_fits_80_columns_and_says_which_columns_it_left_out():
    result = _invoke(["list"], AT_80)
    assert result.exit_code == 0, result.output
    _fits(result.stdout)
    for name, source in load_catalog().items():
        cells = _row(result.stdout, name)
        assert cells[0] == name  # names are never folded
        assert source.license.spdx.startswith(cells[1])  # a licence folds onto the next lines, never cut
    assert "left out at 80 columns:" in result.stdout and "card rows" in result.stdout
    for header in ("name", "license", "commercial", "access", "available"):
        assert f" {header} " in result.stdout.splitlines()[2]


def test_list_in_a_log_is_one_line_per_source_with_every_column_and_whole_numbers():
    result = _invoke(["list"], LOG)
    assert result.exit_code == 0, result.output
    catalog = load_catalog()
    for name, source in catalog.items():
        cells = _row(result.stdout, name)
        assert cells[:5] == [name, source.domain, source.task, f"{source.card_rows:,}", source.license.spdx]
    assert "left out" not in result.stdout
    assert max(cell_len(line) for line in result.stdout.splitlines()) > 80


def test_list_available_means_fetchable_now_and_access_says_how():
    rows = {r["name"]: r for r in json.loads(_invoke(["list", "--json"], LOG).stdout)}
    table = _invoke(["list"], LOG).stdout
    for name, source in load_catalog().items():
        want = "no" if not source.available else ("yes" if source.access.kind == "hub" else "by hand")
        assert rows[name]["fetch"] == want and rows[name]["access"] == source.access.kind
        cells = _row(table, name)
        assert cells[6:8] == [source.access.kind, want]
    assert rows["alpaca_gpt4"]["fetch"] == "yes"
    assert rows["baike2018qa"]["fetch"] == "by hand"
    assert rows["amazon_reviews_multi"]["fetch"] == "no"
    assert "by hand = download it yourself" in table


def test_list_commercial_only_keeps_exactly_the_commercial_sources():
    commercial = {n for n, s in load_catalog().items() if s.commercial}
    assert commercial and commercial != set(load_catalog())
    rows = json.loads(_invoke(["list", "--commercial-only", "--json"], LOG).stdout)
    assert {r["name"] for r in rows} == commercial
    table = _invoke(["list", "--commercial-only"], AT_80)
    assert table.exit_code == 0
    _fits(table.stdout)
    listed = {line.split("│")[1].strip() for line in table.stdout.splitlines() if line.startswith("│ ")}
    assert listed - {""} == commercial
    assert f"{len(commercial)} sources whose licence permits commercial use" in table.stdout


def test_list_wide_adds_the_licence_reason_and_still_fits_80_columns():
    result = _invoke(["list", "--wide"], AT_80)
    assert result.exit_code == 0, result.output
    _fits(result.stdout)
    assert " reason " in result.stdout.splitlines()[2]
    words = " ".join(load_catalog()["baike2018qa"].license.reason.split()).split()
    folded = " ".join(result.stdout.split())
    assert all(word in folded for word in words[:3])


def test_list_name_prints_the_full_entry():
    source = load_catalog()["baike2018qa"]
    result = _invoke(["list", "baike2018qa"], AT_80)
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert " ".join(source.license.reason.split()) in text
    for layout in source.access.layouts:
        assert " ".join(how_to_get(source, layout).split()) in text
    assert source.homepage in text and "baike_qa_train.json" in text
    assert "@misc{bright_xu_2019_3402023," in result.stdout  # the citation, verbatim
    entry = json.loads(_invoke(["list", "baike2018qa", "--json"], LOG).stdout)
    assert entry["available"] == "by hand" and entry["layouts"][0]["files"] == ["baike_qa_train.json",
                                                                                  "baike_qa_valid.json"]


def test_list_unknown_name_suggests_the_closest():
    result = _invoke(["list", "lcqcm"], LOG)
    assert result.exit_code == 2 and "did you mean 'lcqmc'" in result.output


def test_demo_build_at_80_columns_shows_whole_numbers_and_ends_with_where_and_next(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = _invoke(["build", "--recipe", "all", "--sources", "demo", "--out", "out"], AT_80)
    assert result.exit_code == 0, result.output
    _fits(result.stdout)
    recorded = json.loads((tmp_path / "out" / "build-manifest.json").read_text())["stages"]["normalize"]["sources"]
    for name, entry in recorded.items():
        cells = _row(result.stdout, name)
        assert cells[:2] == [name, entry["status"]]
        if entry["status"] == "built":
            assert cells[2:4] == [f"{entry['rows_read']:,}", f"{entry['rows_written']:,}"]
    assert "amazon_reviews_multi: Defunct" in result.stdout  # a long reason, whole, below the table
    assert "one record can give several rows" in " ".join(result.stdout.split())
    hq = json.loads((tmp_path / "out" / "build-manifest.json").read_text())["stages"]["hq"]["sources"]
    for name, src in hq.items():
        cells = _row(result.stdout.split("  m3e-hq  ")[-1], name)
        assert cells[1] == f"{src['rows_in']:,}" and cells[6] == f"{src['rows_out']:,}"

    err = result.stderr
    for where in ("out/m3e/<source>/", "out/m3e-hq/<source>/", "out/rejects/<stage>/<source>/",
                  "out/build-manifest.json"):
        assert f"  {where}" in err
    commands = [line.split("#")[0].strip() for line in err.splitlines() if line.startswith("  m3e-data ")]
    assert [shlex.split(c)[1] for c in commands] == ["report", "mine", "push", "export", "train"]
    assert "m3e-data mine --in out/m3e-hq --out out/m3e-hq-with-score" in commands[1]
    # The printed commands run as printed (those that need no model), and their tables fit too.
    for command in (commands[0], commands[2], commands[3]):
        ran = CliRunner().invoke(main, shlex.split(command)[1:], env=AT_80)
        assert ran.exit_code == 0, ran.output
        _fits(ran.stdout)
    assert (tmp_path / "out" / "report.html").is_file() and (tmp_path / "out" / "st").is_dir()
    assert (tmp_path / "out" / "hub" / "README.md").is_file()


def test_unchanged_rows_show_no_seconds(tmp_path):
    args = ["build", "--recipe", "csl,cmrc2018", "--sources", "demo", "--out", str(tmp_path), "--no-hq"]
    first = _invoke(args, LOG)
    assert first.exit_code == 0, first.output
    assert _row(first.stdout, "csl")[1] == "built" and _row(first.stdout, "csl")[-1] != ""
    again = _invoke(args, LOG)
    for name in ("csl", "cmrc2018"):
        cells = _row(again.stdout, name)
        assert cells[1] == "unchanged" and cells[-1] == ""
    assert f"m3e-data hq {tmp_path}" in again.stderr  # --no-hq: the next step is the skipped stage


def test_ctrl_c_during_build_says_what_finished_and_a_rerun_resumes(tmp_path, monkeypatch):
    real = build_module.build_source

    def interrupted_on_mlqa(source, *args, **kwargs):
        if source.name == "mlqa":
            raise KeyboardInterrupt
        return real(source, *args, **kwargs)

    monkeypatch.setattr(build_module, "build_source", interrupted_on_mlqa)
    args = ["build", "--recipe", "csl,cmrc2018,mlqa", "--sources", "demo", "--out", str(tmp_path)]
    result = _invoke(args, LOG)
    assert result.exit_code == 130, result.output
    assert isinstance(result.exception, SystemExit)
    assert "interrupted (Ctrl-C) while mlqa was running" in result.stderr
    assert "build finished before that: csl, cmrc2018." in result.stderr
    assert "Rerun the same command to resume" in result.stderr

    monkeypatch.setattr(build_module, "build_source", real)
    again = _invoke(args, LOG)
    assert again.exit_code == 0, again.output
    assert [_row(again.stdout, n)[1] for n in ("csl", "cmrc2018", "mlqa")] == ["unchanged", "unchanged", "built"]


def test_ctrl_c_during_hq_says_which_statistics_are_cached(tmp_path, monkeypatch):
    build = ["build", "--recipe", "csl,cmrc2018", "--sources", "demo", "--out", str(tmp_path), "--no-hq"]
    assert _invoke(build, LOG).exit_code == 0
    real = hq_module.ensure_stats

    def interrupted_on_csl(out, src, params, workers, on_progress, *args):
        if src.name == "csl":
            on_progress("statistics", src.name, 0)
            raise KeyboardInterrupt
        return real(out, src, params, workers, on_progress, *args)

    monkeypatch.setattr(hq_module, "ensure_stats", interrupted_on_csl)
    result = _invoke(["hq", str(tmp_path)], LOG)
    assert result.exit_code == 130, result.output
    assert "while statistics of csl was running" in result.stderr
    assert "m3e-hq finished before that: statistics of cmrc2018." in result.stderr

    monkeypatch.setattr(hq_module, "ensure_stats", real)
    assert _invoke(["hq", str(tmp_path)], LOG).exit_code == 0
    hq = json.loads((tmp_path / "build-manifest.json").read_text())["stages"]["hq"]["sources"]
    assert hq["cmrc2018"]["stats_cached"] is True and hq["csl"]["stats_cached"] is False


@pytest.mark.parametrize("columns", ["80", "200"])
def test_the_width_rule_terminal_columns_or_full_width(columns):
    result = _invoke(["list", "--wide"], {"COLUMNS": columns})
    _fits(result.stdout, int(columns))


def test_ctrl_c_during_mine_then_the_rerun_table_at_80_columns(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    import m3e_data.stages.mine.stage as mine_module
    from tests.test_encoder import make_tiny_bert
    from tests.test_mine_driver import PAIRS, write_source

    for name, (homogeneous, rows) in PAIRS.items():
        write_source(tmp_path / "m3e-hq", name, homogeneous, rows)
    texts = [t for _, rows in PAIRS.values() for r in rows for t in (r[0], r[1], *r[2])]
    model = make_tiny_bert(tmp_path / "tiny", texts)
    real = mine_module.mine_rows

    def interrupted_on_sim(table, *args, **kwargs):
        if table.column("source")[0].as_py() == "sim":
            raise KeyboardInterrupt
        return real(table, *args, **kwargs)

    monkeypatch.setattr(mine_module, "mine_rows", interrupted_on_sim)
    args = ["mine", "--in", str(tmp_path / "m3e-hq"), "--out", str(tmp_path / "scored"), "--model", str(model),
            "--device", "cpu", "--num-negatives", "2"]
    result = _invoke(args, LOG)
    assert result.exit_code == 130, result.output
    assert "interrupted (Ctrl-C) while sim was running" in result.stderr
    assert "mine finished before that: qa." in result.stderr

    monkeypatch.setattr(mine_module, "mine_rows", real)
    again = _invoke(args, AT_80)
    assert again.exit_code == 0, again.output
    _fits(again.stdout)
    qa, sim = _row(again.stdout, "qa"), _row(again.stdout, "sim")
    assert qa[1] == "unchanged" and sim[1] == "mined"
    assert qa[2] == f"{len(PAIRS['qa'][1]):,}" and sim[2] == f"{len(PAIRS['sim'][1]):,}"


def test_ctrl_c_in_any_other_command_exits_130_in_one_line(tmp_path, monkeypatch):
    import m3e_data.cli.publish as publish_cli

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(publish_cli, "export", interrupted)
    result = _invoke(["export", str(tmp_path), "--format", "uniem", "--out", str(tmp_path / "x")], LOG)
    assert result.exit_code == 130 and isinstance(result.exception, SystemExit)
    assert result.stderr == "error: interrupted (Ctrl-C); export did not finish\n"


def test_table_width_terminal_then_columns_then_log(monkeypatch):
    import sys

    from m3e_data.cli.console import LOG_WIDTH, table_width

    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    assert table_width() == 80  # a terminal: its width (rich reads COLUMNS first)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False, raising=False)
    assert table_width() == 80  # a pipe with COLUMNS set: the user asked for that width
    monkeypatch.delenv("COLUMNS")
    assert table_width() == LOG_WIDTH  # a log: whole rows
