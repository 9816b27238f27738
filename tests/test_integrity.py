"""Integrity under reuse, concurrency and faults (issue 12 items 1, 2, 5): a commercial-only output holds no
non-commercial row whatever the folder held before; two runs on one folder cannot destroy each other's
data; a damaged stage is rebuilt, not trusted; hq's workers die with their parent."""

from __future__ import annotations

import dataclasses
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from m3e_data.catalog import load_catalog
from m3e_data.cli.main import main
from m3e_data.manifest import read_manifest
from m3e_data.stages.hq import stage as hq
from m3e_data.stages.normalize.stage import BuildOptions, build, build_source, select_sources
from m3e_data.storage.lock import LOCK_FILE, FolderBusy, hold
from m3e_data.storage.store import (
    SUCCESS,
    TEMP_PREFIX,
    atomic_write_json,
    clean_stale,
    damage,
    list_files,
    read_success,
    staged_folder,
)

COMMERCIAL = {s.name for s in select_sources("all", commercial_only=True)}
FORMATS = ("uniem", "sentence-transformers", "flagembedding")


def cli(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def build_cli(out: Path, commercial_only: bool, recipe: str = "all") -> None:
    cli("build", "--recipe", recipe, "--sources", "demo", "--out", str(out), "--workers", "1",
        *(["--commercial-only"] if commercial_only else []))


def hq_rows(out: Path) -> pa.Table:
    return pa.concat_tables(pq.read_table(p) for p in sorted((out / "m3e-hq").glob("*/part-*.parquet")))


def exported_sources(folder: Path, fmt: str) -> set[str]:
    if fmt == "flagembedding":  # <source>-<split>.jsonl at the top and in no_negatives/
        return {p.name.rsplit("-", 1)[0] for p in folder.rglob("*.jsonl")}
    return {p.parent.name for p in folder.rglob("*.parquet")}


def rewrite_first(part: Path, column: str, value: object) -> None:
    """Set `column` of the part's first row, and re-seal the folder's record: an output that is intact as
    far as its record goes but holds a row it must not (what an older version could leave)."""
    table, record = pq.read_table(part), read_success(part.parent)
    values = [value] + table[column].to_pylist()[1:]
    i = table.schema.get_field_index(column)
    pq.write_table(table.set_column(i, column, pa.array(values, table.schema.field(i).type)), part)
    atomic_write_json(part.parent / SUCCESS, {**record, "files": list_files(part.parent)})


def dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


# ---- item 1: commercial-only outputs, fresh and reused ------------------------------------------------


@pytest.mark.parametrize("order", [(False, True), (True, False)], ids=["full-then-commercial", "commercial-then-full"])
def test_commercial_only_outputs_hold_no_non_commercial_row_fresh_or_reused(tmp_path, order):
    """Every combination of (full, commercial-only) x (fresh, reused folder), exports included."""
    out = tmp_path / "out"
    for step, commercial_only in enumerate(order):
        build_cli(out, commercial_only)
        rows = hq_rows(out)
        sources = {p.name for p in (out / "m3e-hq").iterdir() if p.is_dir()}
        assert read_manifest(out)["stages"]["hq"]["commercial_only"] is commercial_only
        if commercial_only:
            assert sources == COMMERCIAL, f"step {step}"
            assert rows.filter(pa.compute.invert(rows["commercial"])).num_rows == 0
            assert set(rows["source"].to_pylist()) <= COMMERCIAL
            # Standalone hq re-reads the same selection, not every folder under OUT/m3e.
            cli("hq", str(out), "--workers", "1")
            assert {p.name for p in (out / "m3e-hq").iterdir() if p.is_dir()} == COMMERCIAL
            for fmt in FORMATS:  # no flag: the build's manifest says commercial-only
                cli("export", str(out / "m3e-hq"), "--format", fmt, "--out", str(tmp_path / f"e{step}-{fmt}"))
                assert exported_sources(tmp_path / f"e{step}-{fmt}", fmt) <= COMMERCIAL
        else:
            # A full build after a commercial-only one holds every built source again.
            assert len(sources) > len(COMMERCIAL) and sources >= COMMERCIAL
            assert rows.filter(pa.compute.invert(rows["commercial"])).num_rows > 0
            # --commercial-only on a full build's data exports the commercial rows only.
            dest = tmp_path / f"full-{step}"
            cli("export", str(out / "m3e-hq"), "--format", "uniem", "--out", str(dest), "--commercial-only")
            assert exported_sources(dest, "uniem") == COMMERCIAL & sources


def test_export_refuses_a_commercial_build_that_holds_a_non_commercial_row(tmp_path):
    out = tmp_path / "out"
    build_cli(out, commercial_only=True, recipe="paws_x,csl")
    # What an older version left: a non-commercial row inside a commercial-only build's m3e-hq.
    part = next((out / "m3e-hq" / "csl").glob("part-*.parquet"))
    rewrite_first(part, "commercial", False)
    result = CliRunner().invoke(main, ["export", str(out / "m3e-hq"), "--format", "uniem", "--out",
                                       str(tmp_path / "e")])
    assert result.exit_code == 1
    assert "refusing a commercial-only export" in result.output and "commercial=False" in result.output
    assert not (tmp_path / "e").exists()


def test_train_commercial_only_refuses_rows_whose_licence_disagrees_with_the_catalog(tmp_path):
    from m3e_train.data import read_local

    out = tmp_path / "out"
    build_cli(out, commercial_only=False, recipe="paws_x,lcqmc")
    tables, skipped, _ = read_local(out, commercial_only=True)
    assert set(tables) == {"paws_x"} and "lcqmc" in skipped
    # A row flagged commercial under a licence the catalog does not call commercial is refused.
    part = next((out / "m3e-hq" / "paws_x").glob("part-*.parquet"))
    rewrite_first(part, "license", "CC-BY-NC-4.0")
    with pytest.raises(ValueError, match="CC-BY-NC-4.0"):
        read_local(out, commercial_only=True)


def test_a_catalog_licence_change_rebuilds_the_cached_normalize_output(tmp_path):
    paws = load_catalog()["paws_x"]
    options = BuildOptions(out=tmp_path, sources="demo")
    assert build_source(paws, options).status == "built"
    assert build_source(paws, options).status == "unchanged"
    relicensed = dataclasses.replace(paws, license=dataclasses.replace(paws.license, commercial=False))
    assert build_source(relicensed, options).status == "built"
    assert not any(pq.read_table(tmp_path / "m3e" / "paws_x")["commercial"].to_pylist())


def test_a_source_that_fails_now_is_never_taken_from_an_older_output(tmp_path, monkeypatch):
    out = tmp_path / "out"
    build_cli(out, commercial_only=False, recipe="paws_x,csl,cmrc2018")
    assert (out / "m3e-hq" / "csl").is_dir()
    from m3e_data.stages.normalize import stage as build_module

    real = build_module.build_source

    def csl_breaks(source, options, *args):
        if source.name == "csl":
            raise OSError("disk read error")
        return real(source, options, *args)

    monkeypatch.setattr(build_module, "build_source", csl_breaks)
    result = CliRunner().invoke(main, ["build", "--recipe", "paws_x,csl,cmrc2018", "--sources", "demo", "--out",
                                       str(out), "--workers", "1"])
    assert result.exit_code == 1  # a failed source fails the build
    assert (out / "m3e" / "csl" / SUCCESS).is_file()  # the older output is still there ...
    assert sorted(p.name for p in (out / "m3e-hq").iterdir()) == ["cmrc2018", "paws_x"]  # ... but unused
    assert set(read_manifest(out)["stages"]["hq"]["sources"]) == {"cmrc2018", "paws_x"}
    assert not (out / "rejects" / "eval_split" / "csl").exists()


# ---- item 2: one run per folder, owned temps, sealed stages ------------------------------------------


HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from m3e_data.storage.lock import hold
    from m3e_data.storage.store import staged_folder
    out = Path(sys.argv[1])
    with hold(out), staged_folder(out / "m3e" / "big") as tmp:
        (tmp / "part-00000.parquet").write_bytes(b"rows of the first run")
        print(tmp.name, flush=True)
        sys.stdin.readline()  # the test says when to finish
""")


def test_a_second_run_on_a_folder_refuses_naming_the_holder_and_leaves_its_temp_alone(tmp_path):
    out = tmp_path / "out"
    first = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        temp = out / "m3e" / first.stdout.readline().strip()
        assert temp.name.startswith(f"{TEMP_PREFIX}{first.pid}.")
        result = CliRunner().invoke(main, ["build", "--recipe", "paws_x", "--sources", "demo", "--out", str(out)])
        assert result.exit_code == 1
        assert f"pid {first.pid}" in result.output and "Traceback" not in result.output
        result = CliRunner().invoke(main, ["hq", str(out)])
        assert result.exit_code == 1 and f"pid {first.pid}" in result.output
        with pytest.raises(FolderBusy), hold(out, wait=0.5):
            pass
        # Stale-temp cleanup spares a live owner's temp and files that are not ours.
        (out / "m3e" / ".notes.tmp").write_text("a user's file")
        stale = out / "m3e" / f"{TEMP_PREFIX}{dead_pid()}.ab12.lcqmc"
        stale.mkdir()
        clean_stale(out / "m3e")
        assert temp.is_dir() and (out / "m3e" / ".notes.tmp").is_file() and not stale.exists()
        first.stdin.write("\n")
        first.stdin.flush()
        assert first.wait(timeout=30) == 0
    finally:
        first.kill()
    # The first run committed its part; now the folder is free.
    assert (out / "m3e" / "big" / "part-00000.parquet").read_bytes() == b"rows of the first run"
    build_cli(out, commercial_only=False, recipe="paws_x")
    assert (out / "m3e" / "big" / "part-00000.parquet").is_file()


def test_a_killed_holder_frees_the_folder(tmp_path):
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    temp = out / "m3e" / holder.stdout.readline().strip()
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    assert (out / LOCK_FILE).exists() and temp.is_dir()  # what kill -9 leaves
    build_cli(out, commercial_only=False, recipe="paws_x")  # the kernel released the lock
    clean_stale(out / "m3e")
    assert not temp.exists()


def test_a_damaged_part_is_rebuilt_not_trusted(tmp_path):
    out = tmp_path / "out"
    build_cli(out, commercial_only=False, recipe="paws_x,csl")
    record = read_success(out / "m3e" / "csl")
    part = out / "m3e" / "csl" / "part-00000.parquet"
    assert record["files"]["part-00000.parquet"]["bytes"] == part.stat().st_size
    # Cut short: the size check sees it, so the build rebuilds instead of saying "unchanged".
    part.write_bytes(part.read_bytes()[:-7])
    assert read_success(out / "m3e" / "csl") is None
    results = {r.name: r.status for r in build(select_sources("paws_x,csl"), BuildOptions(out=out, sources="demo"))}
    assert results == {"paws_x": "unchanged", "csl": "built"}
    # A missing part too.
    part.unlink()
    assert read_success(out / "m3e" / "csl") is None
    # Same size, other bytes: only the checksum sees it (--verify).
    build(select_sources("csl"), BuildOptions(out=out, sources="demo"))
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0xFF
    part.write_bytes(bytes(data))
    assert read_success(out / "m3e" / "csl") is not None
    assert damage(out / "m3e" / "csl", read_success(out / "m3e" / "csl"), verify=True) == [
        "part-00000.parquet: checksum differs from the record"
    ]
    result = CliRunner().invoke(main, ["hq", str(out), "--workers", "1", "--verify"])
    assert result.exit_code == 1 and "csl" in result.output and "missing or damaged" in result.output
    # build --verify sees it and rebuilds the source; a plain build would have reused it.
    assert build(select_sources("csl"), BuildOptions(out=out, sources="demo"))[0].status == "unchanged"
    assert build(select_sources("csl"), BuildOptions(out=out, sources="demo", verify=True))[0].status == "built"
    cli("build", "--recipe", "csl", "--sources", "demo", "--out", str(out), "--workers", "1", "--verify")
    assert read_success(out / "m3e" / "csl", verify=True) is not None


def test_a_damaged_statistics_cache_is_recomputed(tmp_path):
    out = tmp_path / "out"
    build(select_sources("paws_x,csl"), BuildOptions(out=out, sources="demo"))
    hq.run_hq(out, workers=1)
    stats = hq.stats_path(out, "csl") / "stats.parquet"
    stats.write_bytes(stats.read_bytes()[:100])  # what the .cache/hq race left: every later run crashed
    results = hq.run_hq(out, workers=1)
    assert not results["csl"].stats_cached and results["paws_x"].stats_cached
    assert read_success(hq.stats_path(out, "csl")) is not None


# ---- item 5: workers die with their parent; ordinary permissions --------------------------------------


POOL = textwrap.dedent("""
    import os, sys, time
    from m3e_data.stages.hq.stage import _bounded_map

    def slow(item, params):
        open(os.path.join(sys.argv[1], str(os.getpid())), "w").close()
        time.sleep(120)
        return item

    if __name__ == "__main__":
        for _ in _bounded_map(slow, iter(range(8)), None, 2):
            pass
""")


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie holds no memory; it only waits for its reaper


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_hq_workers_die_when_the_parent_is_killed(tmp_path):
    script = tmp_path / "pool.py"
    script.write_text(POOL)
    parent = subprocess.Popen([sys.executable, str(script), str(tmp_path)], cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while len(workers := [int(p.name) for p in tmp_path.iterdir() if p.name.isdigit()]) < 2:
            assert time.monotonic() < deadline, "the workers never started"
            time.sleep(0.1)
        assert all(_running(w) for w in workers)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=30)
        deadline = time.monotonic() + 10
        while any(_running(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_running(w) for w in workers)
    finally:
        parent.kill()
        for w in [int(p.name) for p in tmp_path.iterdir() if p.name.isdigit()]:
            if _running(w):  # only when the test failed: do not leave them sleeping
                os.kill(w, signal.SIGKILL)


def test_staged_folders_and_their_files_get_ordinary_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        with staged_folder(tmp_path / "stage") as tmp:
            pq.write_table(pa.table({"a": [1]}), tmp / "part-00000.parquet")
            (tmp / SUCCESS).write_text("{}")
    finally:
        os.umask(old)
    assert (tmp_path / "stage").stat().st_mode & 0o777 == 0o755
    assert {p.stat().st_mode & 0o777 for p in (tmp_path / "stage").iterdir()} == {0o644}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_mined_data_of_an_earlier_full_run_does_not_survive_a_commercial_only_build(tmp_path):
    """m3e-hq-with-score beside m3e-hq: an earlier full run's mined sources must go with its hq sources."""
    import shutil

    from m3e_data.storage.ownership import mark

    out = tmp_path / "out"
    build_cli(out, commercial_only=False, recipe="paws_x,cmrc2018")
    mined = out / "m3e-hq-with-score"
    for name in ("paws_x", "cmrc2018"):  # what `mine` leaves: per-source folders under its marker
        shutil.copytree(out / "m3e-hq" / name, mined / name)
        (mined / name / ".m3e-owner.json").unlink()
        mark(mined / name, "mine")
    assert not load_catalog()["cmrc2018"].commercial and load_catalog()["paws_x"].commercial
    build_cli(out, commercial_only=True, recipe="paws_x,cmrc2018")
    assert sorted(p.name for p in mined.iterdir()) == ["paws_x"]
    assert sorted(p.name for p in (out / "m3e-hq").iterdir()) == ["paws_x"]


def test_a_users_file_in_an_unselected_output_stops_the_run_and_stays(tmp_path):
    out = tmp_path / "out"
    build_cli(out, commercial_only=False, recipe="paws_x,cmrc2018")
    notes = out / "m3e-hq" / "cmrc2018" / "notes.txt"
    notes.write_text("mine", encoding="utf-8")
    result = CliRunner().invoke(main, ["build", "--recipe", "paws_x,cmrc2018", "--sources", "demo", "--out",
                                       str(out), "--workers", "1", "--commercial-only"])
    assert result.exit_code == 1 and "notes.txt" in " ".join(result.output.split())
    assert "Traceback" not in result.output and notes.read_text(encoding="utf-8") == "mine"


def test_mine_commercial_only_mines_commercial_sources_and_rechecks_their_rows(tmp_path):
    pytest.importorskip("torch")
    from tests.test_encoder import make_tiny_bert

    out = tmp_path / "out"
    build_cli(out, commercial_only=False, recipe="paws_x,cmrc2018")
    texts = [t for p in (out / "m3e-hq").glob("*/part-*.parquet")
             for row in pq.read_table(p, columns=["query", "positive"]).to_pylist() for t in row.values()]
    model = make_tiny_bert(tmp_path / "tiny", texts)
    args = ["mine", "--in", str(out / "m3e-hq"), "--out", str(out / "m3e-hq-with-score"), "--model", str(model),
            "--device", "cpu", "--num-negatives", "2", "--commercial-only"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (out / "m3e-hq-with-score").iterdir() if not p.name.startswith(".")) == ["paws_x"]
    rewrite_first(next((out / "m3e-hq" / "paws_x").glob("part-*.parquet")), "license", "CC-BY-NC-4.0")
    refused = CliRunner().invoke(main, args)
    assert refused.exit_code == 1 and "paws_x" in refused.output and "CC-BY-NC-4.0" in refused.output


class _Picky(ValueError):
    """An error whose __init__ takes other arguments than its args: unpicklable as it stands."""

    def __init__(self, folder: str, count: int) -> None:
        super().__init__(f"{folder}: {count} files")


def _fails(item: int, _params: None) -> int:
    if item == 1:
        raise _Picky("out/x", 3)
    if item == 2:
        raise ValueError("plain")
    return item


def test_a_pool_task_error_comes_back_as_an_error_not_a_broken_pool():
    """A worker's error that cannot be pickled back as it is fails its task with its message (a broken pool
    was the answer before: the hq writer's ForeignFiles had such an __init__), and a plain one comes back as
    itself; the ForeignFiles error itself crosses whole."""
    from m3e_data.stages.hq.stage import _bounded_map
    from m3e_data.storage.ownership import ForeignFiles

    with pytest.raises(RuntimeError, match=r"_Picky: out/x: 3 files"):
        list(_bounded_map(_fails, iter([0, 1]), None, 2))
    with pytest.raises(ValueError, match="plain"):
        list(_bounded_map(_fails, iter([0, 2]), None, 2))
    assert list(_bounded_map(_fails, iter([0, 3]), None, 2)) == [0, 3]
    err = pickle.loads(pickle.dumps(ForeignFiles(Path("out/m3e-hq/a"), "build", ["notes.txt"])))
    assert isinstance(err, ForeignFiles) and err.foreign == ["notes.txt"] and "notes.txt" in str(err)
