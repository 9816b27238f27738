"""Issue 14, item 3: one vocabulary across commands. `--only` says which sources (build keeps `--recipe`
as its documented name for the same option), `--in` names the input folder, `--commercial-only` is
everywhere rows flow, every option has a help line, and the old spellings still work for one release.
"""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from m3e_data.cli.main import main


def _commands() -> dict[str, click.Command]:
    return {name: main.get_command(click.Context(main), name) for name in main.list_commands(click.Context(main))}


def test_every_option_of_every_command_has_a_help_line():
    missing = [f"{name} {opt.opts[0]}" for name, command in {"m3e-data": main, **_commands()}.items()
               for opt in command.params if isinstance(opt, click.Option) and not (opt.help or "").strip()]
    assert missing == []


def test_the_same_words_mean_the_same_thing_on_every_command():
    commands = _commands()

    def opts(name: str, hidden: bool = False) -> set[str]:
        return {o for p in commands[name].params if isinstance(p, click.Option) and p.hidden == hidden
                for o in p.opts}

    for name in ("mine", "train", "push", "export", "hq", "report"):
        assert "--in" in opts(name), name
    for name in ("build", "mine", "train"):
        assert "--only" in opts(name), name
    assert {"--recipe", "--only"} <= opts("build")  # one option, two names
    for name in ("build", "push", "export", "train"):
        assert "--commercial-only" in opts(name), name
    # --sources means where, on build only; the old "which" spellings are hidden.
    assert "--sources" in opts("mine", hidden=True) and "--sources" in opts("train", hidden=True)
    assert "--data" in opts("train", hidden=True)
    assert "m3e-hq" in commands["build"].help


@pytest.fixture
def demo_build(tmp_path_factory):
    out = tmp_path_factory.mktemp("b")
    result = CliRunner().invoke(main, ["build", "--only", "cmrc2018", "--sources", "demo", "--out", str(out),
                                       "--no-hq"])
    assert result.exit_code == 0, result.output
    return out


def test_only_and_recipe_select_the_same_sources(demo_build):
    assert sorted(p.name for p in (demo_build / "m3e").iterdir() if p.is_dir()) == ["cmrc2018"]
    again = CliRunner().invoke(main, ["build", "--recipe", "cmrc2018", "--sources", "demo",
                                      "--out", str(demo_build), "--no-hq"])
    assert again.exit_code == 0 and "unchanged" in again.output  # the same selection, found unchanged


@pytest.mark.parametrize(("value", "said"), [
    ("lcqcm", "unknown source 'lcqcm': did you mean lcqmc?"),
    ("cmrc2018,zzzz", "unknown source 'zzzz': `m3e-data list` shows the catalog"),
    ("", "'' names no source"),
    (" , ", "' , ' names no source"),
])
def test_a_bad_selection_is_an_error_with_the_closest_names(value, said, tmp_path):
    result = CliRunner().invoke(main, ["build", "--recipe", value, "--sources", "demo", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and said in " ".join(result.output.split())
    assert not (tmp_path / "o").exists()


def test_an_option_for_a_source_not_being_built_is_an_error(tmp_path):
    for argv in (["--recipe", "cmrc2018", "--option", "webtext2019zh.best_answer_only=true"],
                 ["--recipe", "lcqmc,webtext2019zh", "--commercial-only", "--option", "lcqmc.x=1"]):
        result = CliRunner().invoke(main, ["build", *argv, "--sources", "demo", "--out", str(tmp_path / "o")])
        assert result.exit_code == 2 and "is not being built" in result.output, result.output
    assert not (tmp_path / "o").exists()


def test_old_spellings_still_work_with_a_note(tmp_path, monkeypatch):
    import m3e_data.cli.mine as mine_cli

    seen: list = []
    monkeypatch.setattr(mine_cli, "mine", lambda options, **kw: seen.append(options) or [])
    folder = tmp_path / "m3e-hq"
    folder.mkdir()
    base = ["mine", "--in", str(folder), "--out", str(tmp_path / "o"), "--model", str(folder)]
    new = CliRunner().invoke(main, [*base, "--only", "a,b"])
    old = CliRunner().invoke(main, [*base, "--sources", "a,b"])
    assert new.exit_code == 0 and old.exit_code == 0, old.output
    assert seen[0].sources == seen[1].sources == ["a", "b"]
    assert "--sources is now --only" in old.output and "now" not in new.output
    both = CliRunner().invoke(main, [*base, "--only", "a", "--sources", "b"])
    assert both.exit_code == 2 and "old spelling of --only" in both.output


def test_train_takes_in_and_its_old_data_spelling(tmp_path, monkeypatch):
    import m3e_train.run as run

    seen: list = []
    monkeypatch.setattr(run, "train", lambda config: seen.append(config) or {})
    folder = tmp_path / "build"
    folder.mkdir()
    tail = ["--model", str(folder), "--out", str(tmp_path / "m")]
    assert CliRunner().invoke(main, ["train", "--in", str(folder), "--only", "x", *tail]).exit_code == 0
    old = CliRunner().invoke(main, ["train", "--data", str(folder), "--sources", "x", *tail])
    assert old.exit_code == 0, old.output
    assert [(c.data, c.sources) for c in seen] == [(str(folder), ["x"])] * 2
    missing = CliRunner().invoke(main, ["train", *tail])
    assert missing.exit_code == 2 and "Missing option '--in'" in missing.output


def test_the_input_folder_is_in_or_the_old_positional(tmp_path, monkeypatch):
    import m3e_data.cli.publish as publish_cli

    seen: list[Path] = []

    def fake_export(data_dir, fmt, out, **kw):
        seen.append(data_dir)
        raise publish_cli.ExportError("stop here")

    monkeypatch.setattr(publish_cli, "export", fake_export)
    data = tmp_path / "m3e-hq"
    data.mkdir()
    tail = ["--format", "uniem", "--out", str(tmp_path / "e")]
    for argv in (["export", "--in", str(data), *tail], ["export", str(data), *tail]):
        result = CliRunner().invoke(main, argv)
        assert result.exit_code == 1 and "stop here" in result.output
    assert seen == [data, data]
    other = tmp_path / "other"
    other.mkdir()
    two = CliRunner().invoke(main, ["export", str(other), "--in", str(data), *tail])
    assert two.exit_code == 2 and "two input folders" in two.output
    none = CliRunner().invoke(main, ["export", *tail])
    assert none.exit_code == 2 and "Missing option '--in'" in none.output
