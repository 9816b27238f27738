"""The ownership rule every command follows: replace a folder only if its marker says this command wrote
everything in it. The commands' own refusals are tested with each command (export, push, mine, train,
build); here the rule's edges."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from m3e_data.storage.ownership import (
    MARKER,
    ForeignFiles,
    check_replaceable,
    foreign_files,
    mark,
    read_marker,
)
from m3e_data.storage.store import staged_folder


def _write(folder: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text, encoding="utf-8")


def test_new_empty_and_own_folders_are_replaceable_and_nothing_else(tmp_path: Path):
    assert foreign_files(tmp_path / "new", "export") == []
    (tmp_path / "empty").mkdir()
    assert foreign_files(tmp_path / "empty", "export") == []
    own = tmp_path / "own"
    _write(own, {"a/train-pair.parquet": "x", "b.jsonl": "y"})
    mark(own, "export")
    assert foreign_files(own, "export") == []
    assert read_marker(own)["entries"] == {"a": None, "a/train-pair.parquet": 1, "b.jsonl": 1}
    # Another command's folder is not this one's, its marker included.
    assert foreign_files(own, "push") == [MARKER, "a/", "b.jsonl"]
    # Added, changed or linked files are foreign; a foreign folder is named once.
    _write(own, {"old/deep/my.parquet": "mine", "b.jsonl": "changed"})
    os.symlink(tmp_path / "elsewhere", own / "link")
    assert foreign_files(own, "export") == ["b.jsonl", "link", "old/"]
    assert foreign_files(own, "export", sizes=False) == ["link", "old/"]
    with pytest.raises(ForeignFiles, match=r"b.jsonl, link, old/"):
        check_replaceable(own, "export")
    (tmp_path / "file").write_text("x", encoding="utf-8")
    assert foreign_files(tmp_path / "file", "export") == ["file"]


def test_trees_are_owned_whole_and_a_damaged_marker_owns_nothing(tmp_path: Path):
    out = tmp_path / "model"
    _write(out, {"config.json": "{}"})
    mark(out, "train", trees=["checkpoints"])
    _write(out, {"checkpoints/checkpoint-4/optimizer.pt": "x"})  # transformers' files, whatever they are
    assert foreign_files(out, "train") == []
    (out / MARKER).write_text("{not json", encoding="utf-8")
    assert foreign_files(out, "train") == [MARKER, "checkpoints/", "config.json"]


def test_staged_folder_refuses_before_the_work_and_again_before_the_swap(tmp_path: Path):
    target = tmp_path / "m3e" / "src"
    with staged_folder(target) as tmp:
        (tmp / "part-00000.parquet").write_bytes(b"1")
    assert read_marker(target)["command"] == "build"
    (target / "notes.txt").write_text("mine", encoding="utf-8")
    ran = []
    with pytest.raises(ForeignFiles, match="notes.txt"), staged_folder(target):
        ran.append(True)
    assert ran == [] and (target / "notes.txt").exists()
    (target / "notes.txt").unlink()
    with pytest.raises(ForeignFiles, match="late.txt"), staged_folder(target) as tmp:
        (tmp / "part-00000.parquet").write_bytes(b"2")
        (target / "late.txt").write_text("written while the stage ran", encoding="utf-8")
    assert (target / "part-00000.parquet").read_bytes() == b"1" and (target / "late.txt").exists()
    assert [p.name for p in target.parent.iterdir()] == ["src"]  # the temp folder went


def test_a_stage_folder_from_before_markers_is_the_stages_if_it_holds_what_success_lists(tmp_path: Path):
    folder = tmp_path / "src"
    _write(folder, {"part-00000.parquet": "x", "_SUCCESS.json": json.dumps({"parts": ["part-00000.parquet"]})})
    assert foreign_files(folder, "build") == [] and foreign_files(folder, "mine") == []
    assert foreign_files(folder, "export") == ["_SUCCESS.json", "part-00000.parquet"]
    _write(folder, {"part-00001.parquet": "not listed"})
    assert foreign_files(folder, "build") == ["part-00001.parquet"]


def test_a_users_file_in_an_hq_source_folder_ends_the_build_with_one_line_and_stays(tmp_path: Path):
    import shutil

    from click.testing import CliRunner

    from m3e_data.cli.main import main
    from m3e_data.stages.normalize.locate import demo_root

    sources = tmp_path / "src"
    shutil.copytree(demo_root() / "hc3_chinese", sources / "hc3_chinese")
    out = tmp_path / "out"
    args = ["build", "--recipe", "hc3_chinese", "--sources", str(sources), "--out", str(out)]
    assert CliRunner().invoke(main, args).exit_code == 0
    _write(out / "m3e-hq" / "hc3_chinese", {"notes.txt": "keep me"})
    with (sources / "hc3_chinese" / "all.jsonl").open("a", encoding="utf-8") as fh:  # a change: hq reruns
        fh.write('{"question": "新问题", "human_answers": ["新回答"], "chatgpt_answers": []}\n')
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)  # a ClickException, no crash
    assert "notes.txt" in result.output and "Traceback" not in result.output
    assert (out / "m3e-hq" / "hc3_chinese" / "notes.txt").read_text(encoding="utf-8") == "keep me"


def test_remove_deletes_only_a_folder_the_command_wrote_whole(tmp_path: Path):
    from m3e_data.storage.ownership import remove

    folder = tmp_path / "rejects" / "quality" / "src"
    with staged_folder(folder) as tmp:
        (tmp / "part-00000.parquet").write_bytes(b"1")
    _write(folder, {"why.txt": "my analysis of the rejects"})
    with pytest.raises(ForeignFiles, match="why.txt"):
        remove(folder, "build")
    assert (folder / "why.txt").is_file()
    (folder / "why.txt").unlink()
    remove(folder, "build")
    remove(folder, "build")  # gone already: nothing to do
    assert not folder.exists()
