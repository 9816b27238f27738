"""`--out` and `--sources` on an object store, against a local S3 server (moto's, on 127.0.0.1).

The demo sources are uploaded to s3://BUCKET/raw/ as a local --sources folder holds them, and built into
s3://BUCKET/out: the rows must be those of a local build, the store must hold committed folders, and crashes
(simulated by editing the store) must be repaired without touching a user's file.
"""

from __future__ import annotations

import importlib.util
import json
import secrets
import shutil
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from m3e_data.cli.main import main
from m3e_data.stages.normalize.locate import demo_root

s3fs = pytest.importorskip("s3fs")
moto_server = pytest.importorskip("moto.server")

# simclue and zhuiyi_nl2sql read side files beside their main files (train_rank.json, *.tables.json): they
# must come down from the store with them. bq is a Parquet layout, webqa plain JSON.
SOURCES = ["bq", "simclue", "webqa", "zhuiyi_nl2sql"]


@pytest.fixture(scope="module")
def endpoint():
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def bucket(endpoint, monkeypatch, tmp_path):
    """A new bucket on the module's server, with fake credentials and the endpoint in the environment (as a
    user sets them for botocore), and the caches of this test under tmp_path."""
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing-key-id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing-secret-key")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    s3fs.S3FileSystem.clear_instance_cache()
    fs = s3fs.S3FileSystem()
    name = f"m3e-{secrets.token_hex(4)}"
    fs.mkdir(name)
    return fs, name


def upload_demo(fs, bucket: str) -> str:
    for name in SOURCES:
        fs.put(str(demo_root() / name), f"{bucket}/raw/{name}", recursive=True)
    return f"s3://{bucket}/raw"


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def remote_rows(fs, folder: str) -> list[dict]:
    rows = []
    for part in sorted(fs.glob(f"{folder}/part-*.parquet")):
        with fs.open(part, "rb") as fh:
            rows += pq.read_table(fh).to_pylist()
    return rows


def local_rows(folder: Path) -> list[dict]:
    return pq.read_table(folder).to_pylist()


def manifest(fs, bucket: str) -> dict:
    return json.loads(fs.cat_file(f"{bucket}/out/build-manifest.json"))


def statuses(fs, bucket: str) -> dict[str, str]:
    return {n: s["status"] for n, s in manifest(fs, bucket)["stages"]["normalize"]["sources"].items()}


def remote_build(bucket: str, raw: str, work: Path, *extra: str) -> tuple[int, str]:
    return run("build", "--recipe", ",".join(SOURCES), "--sources", raw, "--out", f"s3://{bucket}/out",
               "--work-dir", str(work), "--allow-empty", *extra)


def test_remote_build_equals_local_and_resumes_from_the_store(bucket, tmp_path):
    fs, name = bucket
    raw = upload_demo(fs, name)
    code, output = remote_build(name, raw, tmp_path / "work1")
    assert code == 0, output
    assert f"s3://{name}/out/m3e-hq" in output  # the summary names the store, not the mirror
    # ...except for the commands that read local folders only: they are pointed at the work dir.
    assert f"m3e-data export {(tmp_path / 'work1').resolve() / 'm3e-hq'} --format" in output
    code, output = run("build", "--recipe", ",".join(SOURCES), "--sources", "demo", "--out", str(tmp_path / "local"),
                       "--allow-empty")
    assert code == 0, output

    local_manifest = json.loads((tmp_path / "local" / "build-manifest.json").read_text())
    for source in SOURCES:
        for stage in ("m3e", "m3e-hq"):
            folder = f"{name}/out/{stage}/{source}"
            assert fs.exists(f"{folder}/_SUCCESS.json") and fs.glob(f"{folder}/part-*.parquet")
            got, want = remote_rows(fs, folder), local_rows(tmp_path / "local" / stage / source)
            assert [r["id"] for r in got] == [r["id"] for r in want] and got == want, (stage, source)
        remote_src = manifest(fs, name)["stages"]["normalize"]["sources"][source]
        local_src = local_manifest["stages"]["normalize"]["sources"][source]
        assert (remote_src["rows_read"], remote_src["rows_written"]) == (local_src["rows_read"], local_src["rows_written"])
        assert remote_src["origin"] == f"{raw}/{source}"
    # The record of each folder lists its files with their sizes, as the store holds them.
    record = json.loads(fs.cat_file(f"{name}/out/m3e/bq/_SUCCESS.json"))
    for rel, want in record["files"].items():
        assert fs.info(f"{name}/out/m3e/bq/{rel}")["size"] == want["bytes"]
    assert not fs.glob(f"{name}/out/**/.m3e-tmp.*") and not fs.exists(f"{name}/out/.m3e-lock")

    # A fresh machine (a new work dir): what the store holds is pulled, and nothing is rebuilt.
    code, output = remote_build(name, raw, tmp_path / "work2")
    assert code == 0, output
    assert statuses(fs, name) == dict.fromkeys(SOURCES, "unchanged")


def test_a_crashed_push_is_rebuilt_and_a_users_files_survive(bucket, tmp_path):
    fs, name = bucket
    raw = upload_demo(fs, name)
    assert remote_build(name, raw, tmp_path / "work1", "--no-hq")[0] == 0
    out = f"{name}/out"
    parts_before = sorted(fs.glob(f"{out}/m3e/bq/part-*.parquet"))
    # A push killed after un-committing bq: its parts are there, its record is not, and a stray part of ours.
    fs.rm_file(f"{out}/m3e/bq/_SUCCESS.json")
    fs.pipe_file(f"{out}/m3e/bq/part-00099.parquet", b"half an upload")
    # A folder a crashed run began and never committed: a part and our marker naming a file we wrote.
    fs.pipe_file(f"{out}/m3e/gone/part-00000.parquet", b"x")
    fs.pipe_file(f"{out}/m3e/gone/stats.parquet", b"x")
    fs.pipe_file(f"{out}/m3e/gone/.m3e-owner.json",
                 json.dumps({"command": "build", "entries": {"stats.parquet": 1}}).encode())
    # In a committed folder, a part its record does not list (ours) and a user's file.
    fs.pipe_file(f"{out}/m3e/webqa/part-00042.parquet", b"stray")
    users = [f"{out}/m3e/webqa/NOTES.md", f"{out}/m3e/bq/README.txt", f"{out}/m3e/gone/keep.csv",
             f"{out}/team-notes.txt"]
    for path in users:
        fs.pipe_file(path, b"mine, not m3e-data's")

    code, output = remote_build(name, raw, tmp_path / "work2", "--no-hq")
    assert code == 0, output
    # bq: its part, the stray part and its marker; gone: three; webqa: the stray part
    assert "removed 7 uncommitted file(s)" in " ".join(output.split()), output  # rich wraps
    assert statuses(fs, name) == {"bq": "built", "simclue": "unchanged", "webqa": "unchanged",
                                  "zhuiyi_nl2sql": "unchanged"}
    assert sorted(fs.glob(f"{out}/m3e/bq/part-*.parquet")) == parts_before
    assert fs.exists(f"{out}/m3e/bq/_SUCCESS.json")
    for path in (f"{out}/m3e/webqa/part-00042.parquet", f"{out}/m3e/gone/part-00000.parquet",
                 f"{out}/m3e/gone/stats.parquet", f"{out}/m3e/gone/.m3e-owner.json"):
        assert not fs.exists(path), path
    for path in users:
        assert fs.cat_file(path) == b"mine, not m3e-data's", path
    # The rebuilt bq reads as the local build does.
    assert remote_rows(fs, f"{out}/m3e/bq") == local_rows(_local_build(tmp_path, "bq") / "m3e" / "bq")

    # The same crash seen from the machine that ran it: its mirror still holds webqa committed, so nothing is
    # rebuilt, and the push commits the folder on the store again.
    parts = sorted(fs.glob(f"{out}/m3e/webqa/part-*.parquet"))
    fs.rm_file(f"{out}/m3e/webqa/_SUCCESS.json")
    code, output = remote_build(name, raw, tmp_path / "work2", "--no-hq")
    assert code == 0, output
    assert statuses(fs, name)["webqa"] == "unchanged"
    assert fs.exists(f"{out}/m3e/webqa/_SUCCESS.json") and sorted(fs.glob(f"{out}/m3e/webqa/part-*.parquet")) == parts


def _local_build(tmp_path: Path, source: str) -> Path:
    out = tmp_path / f"local-{source}"
    code, output = run("build", "--recipe", source, "--sources", "demo", "--out", str(out), "--no-hq", "--allow-empty")
    assert code == 0, output
    return out


def test_hq_and_report_take_the_store_url(bucket, tmp_path):
    fs, name = bucket
    code, output = run("build", "--recipe", "webqa", "--sources", "demo", "--out", f"s3://{name}/out", "--no-hq",
                       "--work-dir", str(tmp_path / "w1"))
    assert code == 0, output
    assert not fs.exists(f"{name}/out/m3e-hq")
    code, output = run("hq", f"s3://{name}/out", "--work-dir", str(tmp_path / "w2"))
    assert code == 0, output
    assert fs.exists(f"{name}/out/m3e-hq/webqa/_SUCCESS.json")
    assert remote_rows(fs, f"{name}/out/m3e-hq/webqa")
    code, output = run("report", f"s3://{name}/out")  # the default work dir: under XDG_CACHE_HOME
    assert code == 0, output
    assert b"<html" in fs.cat_file(f"{name}/out/report.html").lower()
    mirrors = list((tmp_path / "xdg" / "m3e-data" / "out").iterdir())
    assert len(mirrors) == 1 and (mirrors[0] / "report.html").is_file() and (mirrors[0] / "m3e-hq" / "webqa").is_dir()
    code, output = run("report", str(tmp_path / "w2"), "--work-dir", str(tmp_path / "w4"))
    assert code == 2 and "--work-dir is for an object store URL" in output


def test_ray_executor_with_sources_and_output_on_the_store(bucket, tmp_path):
    ray = pytest.importorskip("ray")
    fs, name = bucket
    raw = upload_demo(fs, name)
    # After the env is set: the workers inherit it (they fetch the sources and write the mirror; the driver
    # pushes).
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        code, output = run("build", "--recipe", "webqa", "--sources", raw, "--out", f"s3://{name}/out",
                           "--work-dir", str(tmp_path / "w"), "--executor", "ray", "--no-hq", "--allow-empty")
    finally:
        ray.shutdown()
    assert code == 0, output
    assert fs.exists(f"{name}/out/m3e/webqa/_SUCCESS.json")
    assert remote_rows(fs, f"{name}/out/m3e/webqa") == local_rows(_local_build(tmp_path, "webqa") / "m3e" / "webqa")


def test_hq_on_ray_with_the_output_on_the_store(bucket, tmp_path):
    """`hq s3://... --executor ray`: the workers write the mirror, the driver pushes what they committed;
    the store then holds the rows the local executor writes."""
    ray = pytest.importorskip("ray")
    fs, name = bucket
    url = f"s3://{name}/out"
    code, output = run("build", "--recipe", ",".join(SOURCES), "--sources", "demo", "--out", url, "--no-hq",
                       "--work-dir", str(tmp_path / "w1"), "--allow-empty")
    assert code == 0, output
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        code, output = run("hq", url, "--executor", "ray", "--work-dir", str(tmp_path / "w2"))
    finally:
        ray.shutdown()
    assert code == 0, output
    local = tmp_path / "local"
    code, output = run("build", "--recipe", ",".join(SOURCES), "--sources", "demo", "--out", str(local),
                       "--allow-empty")
    assert code == 0, output
    out = f"{name}/out"
    for source in SOURCES:
        assert fs.exists(f"{out}/m3e-hq/{source}/_SUCCESS.json"), source
        got, want = remote_rows(fs, f"{out}/m3e-hq/{source}"), local_rows(local / "m3e-hq" / source)
        assert [r["id"] for r in got] == [r["id"] for r in want], source
    rejects = sorted(p.parent.relative_to(local).as_posix() for p in (local / "rejects").rglob("_SUCCESS.json"))
    assert rejects and sorted(f.removeprefix(out + "/").rsplit("/", 1)[0]
                              for f in fs.glob(f"{out}/rejects/*/*/_SUCCESS.json")) == rejects
    hq_section = manifest(fs, name)["stages"]["hq"]["sources"]
    assert {s: v["rows_out"] for s, v in hq_section.items()} == {s: len(local_rows(local / "m3e-hq" / s))
                                                                 for s in SOURCES}


def test_a_missing_bucket_or_source_is_one_line(bucket, tmp_path):
    code, output = run("build", "--recipe", "webqa", "--sources", "demo", "--out", "s3://no-such-bucket-m3e/out",
                       "--work-dir", str(tmp_path / "w"))
    assert code != 0
    assert "no bucket 'no-such-bucket-m3e'" in output and "Traceback" not in output
    code, output = run("build", "--recipe", "webqa", "--sources", "s3://no-such-bucket-m3e/raw", "--out",
                       str(tmp_path / "o"))
    assert code != 0 and "no bucket 'no-such-bucket-m3e'" in output
    assert "testing-secret-key" not in output
    # A bucket without the source: the build says where it looked and how to get the data.
    fs, name = bucket
    code, output = run("build", "--recipe", "webqa", "--sources", f"s3://{name}/raw", "--out", str(tmp_path / "o2"))
    flat = " ".join(output.split())
    assert code == 1 and "missing" in flat and f"webqa: no data at s3://{name}/raw/webqa" in flat, output


def test_a_missing_protocol_package_names_the_extra(bucket, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "s3fs", None)  # import s3fs now fails, as when it is not installed
    # fsspec keeps the classes it imported: forget s3's (the module, not fsspec.registry, its mapping view).
    monkeypatch.delitem(sys.modules["fsspec.registry"]._registry, "s3", raising=False)
    code, output = run("build", "--recipe", "webqa", "--sources", "demo", "--out", "s3://b/out",
                       "--work-dir", str(tmp_path / "w"))
    assert code == 2
    assert "pip install 'm3e-data[s3]'" in output and "Traceback" not in output
    if importlib.util.find_spec("gcsfs") is None:
        code, output = run("hq", "gs://b/out")
        assert code == 2 and "gs:// URLs need gcsfs" in output and "pip install 'm3e-data[gcs]'" in output


def test_what_is_a_url():
    from m3e_data.storage.remote import is_url

    assert is_url("s3://b/p") and is_url("gs://b") and is_url("abfs://c/p") and is_url("S3://B")
    assert not is_url("file:///tmp/x") and not is_url("/tmp/s3://x") and not is_url("out") and not is_url("C:\\x")


def test_commands_that_write_local_folders_refuse_a_url(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # click.Path makes s3://b/x a relative path, s3:/b/x: it must not be written
    code, output = run("export", str(tmp_path), "--format", "sentence-transformers", "--out", "s3://b/st")
    assert code == 2 and "object store URLs are taken by build, hq, report and mine only" in output
    code, output = run("export", "s3://b/out/m3e-hq", "--format", "sentence-transformers", "--out",
                       str(tmp_path / "st"))
    assert code == 2 and "object store URLs are taken by build, hq, report and mine only" in output
    # Before any work (no Hub check, no model load), in one line that names the URL as typed.
    for args, said in (
        (["train", "--in", str(tmp_path), "--model", "x", "--out", "s3://b/model"], "train writes a local folder"),
        (["train", "--in", "s3://b/out", "--model", "x", "--out", str(tmp_path / "m")],
         "train --in takes a local folder or a Hub id, not an object store URL"),
        (["train", "--in", str(tmp_path), "--model", "gs://b/base", "--out", str(tmp_path / "m")],
         "train --model takes a local folder or a Hub id"),
        (["eval", "--model", "x", "--task", str(tmp_path), "--out", "s3://b/r.json"], "eval writes a local file"),
        (["report", str(tmp_path), "--html", "s3://b/report.html"], "report writes a local file"),
        (["mine", "--in", str(tmp_path), "--out", str(tmp_path / "s"), "--model", "s3://b/m"],
         "mine --model takes a local folder or a Hub id"),
    ):
        result = CliRunner().invoke(main, args)
        flat = " ".join(result.output.split())
        assert result.exit_code == 2 and said in flat, (args, result.output)
        assert "Traceback" not in result.output and ("s3://" in flat or "gs://" in flat), (args, result.output)
    assert not (tmp_path / "s3:").exists() and not (tmp_path / "gs:").exists()


def test_each_committed_folder_is_pushed_as_it_commits(bucket, tmp_path):
    """A command killed after a source committed keeps that source on the store: staged_folder's hook pushes
    it before the next one starts (the end-of-command push is not needed for it)."""
    from m3e_data.storage.remote import RemoteOut
    from m3e_data.storage.store import SUCCESS, atomic_write_json, staged_folder

    fs, name = bucket
    session = RemoteOut(f"s3://{name}/out", tmp_path / "w")
    session.open()
    with session:
        with staged_folder(session.mirror / "m3e" / "one") as tmp:
            (tmp / "part-00000.parquet").write_bytes(b"rows")
            atomic_write_json(tmp / SUCCESS, {"key": 1, "parts": ["part-00000.parquet"]})
            assert not fs.exists(f"{name}/out/m3e/one")  # nothing goes up before the commit
        assert fs.cat_file(f"{name}/out/m3e/one/part-00000.parquet") == b"rows"
        record = json.loads(fs.cat_file(f"{name}/out/m3e/one/{SUCCESS}"))
        assert record["files"]["part-00000.parquet"]["bytes"] == 4
    # Outside the session nothing is pushed.
    with staged_folder(session.mirror / "m3e" / "two") as tmp:
        atomic_write_json(tmp / SUCCESS, {"key": 2, "parts": []})
    assert not fs.exists(f"{name}/out/m3e/two")


@pytest.mark.slow
def test_mine_reads_and_writes_the_store(bucket, tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from tests.test_encoder import make_tiny_bert

    fs, name = bucket
    local = tmp_path / "local"
    for out in (f"s3://{name}/out", str(local)):
        code, output = run("build", "--recipe", "webqa", "--sources", "demo", "--out", out, "--allow-empty",
                           "--work-dir", str(tmp_path / "w1")) if out.startswith("s3") else run(
            "build", "--recipe", "webqa", "--sources", "demo", "--out", out, "--allow-empty")
        assert code == 0, output
    rows = local_rows(local / "m3e-hq" / "webqa")
    model = make_tiny_bert(tmp_path / "tiny", [t for r in rows for t in (r["query"], r["positive"])])
    common = ["--model", str(model), "--device", "cpu", "--num-negatives", "2", "--range", "0:5"]
    code, output = run("mine", "--in", f"s3://{name}/out/m3e-hq", "--out", f"s3://{name}/out/m3e-hq-with-score",
                       "--work-dir", str(tmp_path / "w2"), *common)
    assert code == 0, output
    code, output = run("mine", "--in", str(local / "m3e-hq"), "--out", str(local / "m3e-hq-with-score"), *common)
    assert code == 0, output
    got = remote_rows(fs, f"{name}/out/m3e-hq-with-score/webqa")
    want = local_rows(local / "m3e-hq-with-score" / "webqa")
    assert got == want and got and all(r["positive_score"] is not None for r in got)  # scored
    assert fs.exists(f"{name}/out/m3e-hq-with-score/webqa/_SUCCESS.json")
    assert fs.glob(f"{name}/out/cache/embeddings/*")  # the embedding cache went up beside it
    # --in and --out must be side by side in one OUT on the store.
    code, output = run("mine", "--in", f"s3://{name}/out/m3e-hq", "--out", str(tmp_path / "scored"), *common)
    assert code == 2 and "in one build folder" in output


def test_folders_a_smaller_build_drops_are_removed_from_the_store(bucket, tmp_path):
    """hq removes the m3e-hq and rejects folders of sources a build no longer selects: the push removes them
    from the store as well (a fresh pull must not bring them back), our files only."""
    from m3e_data.storage.remote import RemoteOut

    fs, name = bucket
    raw = upload_demo(fs, name)
    out = f"{name}/out"
    code, output = remote_build(name, raw, tmp_path / "work1")
    assert code == 0, output
    dropped = ["webqa", "zhuiyi_nl2sql"]
    gone = sorted({f.rsplit("/", 1)[0].removeprefix(out + "/") for f in fs.glob(f"{out}/**/_SUCCESS.json")
                   if f.split("/")[-2] in dropped and f.split("/")[2] in ("m3e-hq", "rejects")})
    assert {"m3e-hq/webqa", "m3e-hq/zhuiyi_nl2sql"} < set(gone) and any(g.startswith("rejects/") for g in gone)
    users = [f"{out}/m3e-hq/webqa/NOTES.md", f"{out}/notes.txt"]
    for path in users:
        fs.pipe_file(path, b"mine, not m3e-data's")

    kept = [s for s in SOURCES if s not in dropped]
    code, output = run("build", "--recipe", ",".join(kept), "--sources", raw, "--out", f"s3://{name}/out",
                       "--work-dir", str(tmp_path / "work2"), "--allow-empty")
    assert code == 0, output
    assert f"removed {len(gone)} stage folder(s)" in " ".join(output.split()), output

    for folder in gone:
        assert not fs.exists(f"{out}/{folder}/_SUCCESS.json"), folder
        assert not fs.glob(f"{out}/{folder}/part-*.parquet") and not fs.exists(f"{out}/{folder}/.m3e-owner.json")
    for path in users:
        assert fs.cat_file(path) == b"mine, not m3e-data's", path
    for source in kept:
        assert fs.exists(f"{out}/m3e-hq/{source}/_SUCCESS.json")
    for source in dropped:  # normalize's output is a cache the build keeps, on the store as locally
        assert fs.exists(f"{out}/m3e/{source}/_SUCCESS.json")

    # A fresh work dir pulls what is left: the dropped sources' hq outputs do not come back.
    session = RemoteOut(f"s3://{name}/out", tmp_path / "work3")
    session.open()
    assert sorted(p.name for p in (session.mirror / "m3e-hq").iterdir()) == kept
    for folder in gone:
        assert not (session.mirror / folder).exists(), folder
    assert session.deleted == []  # nothing half-removed was left for the next command to clean
    # The first machine's mirror, behind the store, does not put them back either: hq on it runs the
    # smaller selection the manifest now records.
    code, output = run("hq", f"s3://{name}/out", "--work-dir", str(tmp_path / "work1"))
    assert code == 0, output
    assert sorted(p.split("/")[-2] for p in fs.glob(f"{out}/m3e-hq/*/_SUCCESS.json")) == kept


def test_a_folder_another_writer_committed_again_is_not_removed(bucket, tmp_path):
    """push removes a folder the mirror lost only while the store holds the record this session saw."""
    from m3e_data.storage.remote import RemoteOut
    from m3e_data.storage.store import SUCCESS, atomic_write_json, staged_folder

    fs, name = bucket
    first = RemoteOut(f"s3://{name}/out", tmp_path / "w1")
    first.open()
    with first:
        for folder, key in (("m3e-hq/a", 1), ("m3e-hq/b", 2)):
            with staged_folder(first.mirror / folder) as tmp:
                (tmp / "part-00000.parquet").write_bytes(b"rows")
                atomic_write_json(tmp / SUCCESS, {"key": key, "parts": ["part-00000.parquet"]})
    session = RemoteOut(f"s3://{name}/out", tmp_path / "w2")
    session.open()
    assert sorted(session.folders) == ["m3e-hq/a", "m3e-hq/b"]
    # Meanwhile the first machine rebuilt b: its record on the store is not the one this session pulled.
    with first, staged_folder(first.mirror / "m3e-hq" / "b") as tmp:
        (tmp / "part-00000.parquet").write_bytes(b"new rows")
        atomic_write_json(tmp / SUCCESS, {"key": 3, "parts": ["part-00000.parquet"]})
    for folder in ("a", "b"):
        shutil.rmtree(session.mirror / "m3e-hq" / folder)
    session.push()
    assert session.removed == ["m3e-hq/a"]
    fs.invalidate_cache()
    assert not fs.find(f"{name}/out/m3e-hq/a")  # the marker and the part too
    assert fs.cat_file(f"{name}/out/m3e-hq/b/part-00000.parquet") == b"new rows"
    assert json.loads(fs.cat_file(f"{name}/out/m3e-hq/b/{SUCCESS}"))["key"] == 3


def test_a_folder_being_swapped_in_is_not_taken_for_removed(tmp_path):
    """Between swap_in's renames a folder is briefly absent: a live process's temp beside it says so; a dead
    run's leftover temp does not keep a removed folder on the store."""
    import os
    import subprocess

    from m3e_data.storage.remote import RemoteOut

    session = RemoteOut("s3://b/out", tmp_path / "w")
    hq_dir = session.mirror / "m3e-hq"
    hq_dir.mkdir(parents=True)
    (hq_dir / "kept").mkdir()
    assert not session._removed_locally("m3e-hq/kept") and session._removed_locally("m3e-hq/gone")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    (hq_dir / f".m3e-tmp.{dead}.00ff.gone.old").mkdir()
    assert session._removed_locally("m3e-hq/gone")
    (hq_dir / f".m3e-tmp.{os.getpid()}.00ff.undergone").mkdir()  # a live temp of another folder
    assert session._removed_locally("m3e-hq/gone")
    (hq_dir / f".m3e-tmp.{os.getpid()}.00ff.gone").mkdir()
    assert not session._removed_locally("m3e-hq/gone")
