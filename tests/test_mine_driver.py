"""The mine stage over folders: output layout and metadata, resumption, cache reuse, the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402

import m3e_data.stages.mine.encoder as encoder_module  # noqa: E402
import m3e_data.stages.mine.stage as mine_module  # noqa: E402
from m3e_data.cli.main import main  # noqa: E402
from m3e_data.schema import UNIFIED_SCHEMA  # noqa: E402
from m3e_data.stages.mine.mining import MiningParams  # noqa: E402
from m3e_data.stages.mine.stage import METADATA_KEY, MineOptions, mine  # noqa: E402
from m3e_data.storage.store import SUCCESS, PartWriter  # noqa: E402
from tests.test_encoder import make_tiny_bert  # noqa: E402

PAIRS = {
    # s2s: anchors are candidates too
    "sim": (True, [("天气怎么样", "今天天气好吗", []), ("我想去图书馆", "我要去图书馆看书", ["我不想去图书馆"]),
                   ("北京是首都", "中国的首都是北京", []), ("牛肉面很实惠", "这家面馆的牛肉面便宜", []),
                   ("春天来了", "春天到了", []), ("他们在吃饭", "他们吃饭了", [])]),
    # s2p
    "qa": (False, [("什么是春天", "春夏秋冬的第一个季节", []), ("首都在哪里", "北京是中国的首都", []),
                   ("怎么写字", "用笔在纸上写", []), ("图书馆在哪", "图书馆在山下水边", [])]),
}


def write_source(root: Path, name: str, homogeneous: bool, rows: list[tuple[str, str, list[str]]]) -> None:
    folder = root / name
    folder.mkdir(parents=True)
    n = len(rows)
    table = pa.table({
        "id": [f"{name}/train/{i}" for i in range(n)], "source": [name] * n, "split": ["train"] * n,
        "query": [r[0] for r in rows], "positive": [r[1] for r in rows], "negatives": [r[2] for r in rows],
        "positive_score": pa.nulls(n, pa.float32()), "negative_scores": pa.nulls(n, pa.list_(pa.float32())),
        "task": ["similarity"] * n, "homogeneous": [homogeneous] * n, "domain": ["d"] * n,
        "license": ["mit"] * n, "commercial": [True] * n,
    }, schema=UNIFIED_SCHEMA)
    writer = PartWriter(folder)
    writer.write(table)
    writer.finish()
    (folder / SUCCESS).write_text(json.dumps({"rows": n}))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    texts = [t for _, rows in PAIRS.values() for r in rows for t in (r[0], r[1], *r[2])]
    return make_tiny_bert(tmp_path_factory.mktemp("tiny"), texts)


@pytest.fixture
def layout(tmp_path) -> Path:
    for name, (homogeneous, rows) in PAIRS.items():
        write_source(tmp_path / "m3e-hq", name, homogeneous, rows)
    return tmp_path


def options(root: Path, model: Path, **params) -> MineOptions:
    return MineOptions(input=root / "m3e-hq", out=root / "m3e-hq-with-score", model=str(model), device="cpu",
                       cache_dir=root / "cache", params=MiningParams(**{"num_negatives": 2, **params}))


def count_model_calls(monkeypatch) -> list[int]:
    calls = [0]
    original = encoder_module.Encoder._forward

    def counted(self, model, batch):
        calls[0] += 1
        return original(self, model, batch)

    monkeypatch.setattr(encoder_module.Encoder, "_forward", counted)
    return calls


def test_output_rows_metadata_and_manifest(layout, tiny):
    results = mine(options(layout, tiny, relative_margin=None))
    assert [(r.name, r.status) for r in results] == [("qa", "mined"), ("sim", "mined")]
    out = layout / "m3e-hq-with-score"
    table = pq.read_table(out / "sim" / "part-00000.parquet")
    assert table.schema.remove_metadata() == UNIFIED_SCHEMA
    record = json.loads(table.schema.metadata[METADATA_KEY])
    assert record["model"] == str(tiny) and record["revision"].startswith("local:")
    assert record["score"].startswith("cosine") and record["params"]["num_negatives"] == 2
    assert record["stats"]["rows"] == 6

    for row in table.to_pylist():
        assert len(row["negatives"]) == 2 == len(row["negative_scores"])
        assert row["positive_score"] is not None
        assert row["query"] not in row["negatives"] and row["positive"] not in row["negatives"]
    native = next(r for r in table.to_pylist() if r["query"] == "我想去图书馆")
    assert native["negatives"][0] == "我不想去图书馆"

    manifest = json.loads((layout / "build-manifest.json").read_text())
    section = manifest["stages"]["mine"]
    assert section["model"] == str(tiny) and section["options"]["num_negatives"] == 2
    assert section["sources"]["qa"]["status"] == "mined"
    assert set(section["sources"]["qa"]["removed"]) >= {"excluded", "relative_margin", "max_score"}
    assert "p50" in section["sources"]["sim"]["positive_scores"]


def test_rerun_skips_finished_sources_without_loading_the_model(layout, tiny, monkeypatch):
    mine(options(layout, tiny))

    def refuse(*args, **kwargs):
        raise AssertionError("the model must not load when every source is done")

    monkeypatch.setattr(encoder_module, "Encoder", refuse)
    assert [r.status for r in mine(options(layout, tiny))] == ["unchanged", "unchanged"]


def test_interrupted_run_resumes_at_the_unfinished_source(layout, tiny, monkeypatch):
    real = mine_module.mine_rows

    def dies_on_sim(table, *args, **kwargs):
        if table.column("source")[0].as_py() == "sim":
            raise KeyboardInterrupt
        return real(table, *args, **kwargs)

    monkeypatch.setattr(mine_module, "mine_rows", dies_on_sim)
    with pytest.raises(KeyboardInterrupt):
        mine(options(layout, tiny))
    out = layout / "m3e-hq-with-score"
    assert (out / "qa" / SUCCESS).is_file()
    assert not (out / "sim").exists() and not list(out.glob(".*.tmp"))

    monkeypatch.setattr(mine_module, "mine_rows", real)
    assert [(r.name, r.status) for r in mine(options(layout, tiny))] == [("qa", "unchanged"), ("sim", "mined")]


def test_changed_parameters_remine_from_the_embedding_cache(layout, tiny, monkeypatch):
    mine(options(layout, tiny))
    calls = count_model_calls(monkeypatch)
    results = mine(options(layout, tiny, num_negatives=3, sampling="random", seed=3))
    assert [r.status for r in results] == ["mined", "mined"]
    assert calls[0] == 0  # every text came from the cache


def test_cli(layout, tiny):
    result = CliRunner().invoke(main, [
        "mine", "--in", str(layout / "m3e-hq"), "--out", str(layout / "m3e-hq-with-score"), "--model", str(tiny),
        "--device", "cpu", "--num-negatives", "2", "--range", "0:10", "--sources", "qa",
    ])
    assert result.exit_code == 0, result.output
    assert (layout / "m3e-hq-with-score" / "qa" / SUCCESS).is_file()
    assert not (layout / "m3e-hq-with-score" / "sim").exists()
    assert (layout / "cache" / "embeddings").is_dir()  # the default cache sits beside the output

    bad = CliRunner().invoke(main, ["mine", "--in", str(layout / "m3e-hq"), "--out", str(layout / "o"),
                                    "--range", "9:3"])
    assert bad.exit_code != 0 and "MIN:MAX" in bad.output


def test_a_model_that_cannot_load_stops_mining_once_with_a_clear_message(layout, tiny, tmp_path):
    broken = tmp_path / "no-weights"
    shutil.copytree(tiny, broken)
    (broken / "model.safetensors").unlink()  # a half-copied model folder
    result = CliRunner().invoke(main, ["mine", "--in", str(layout / "m3e-hq"), "--out", str(layout / "o"),
                                       "--model", str(broken), "--device", "cpu"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    said = " ".join(result.output.split())
    assert said.count("cannot load the model") == 1, result.output
    assert not list((layout / "o").glob("*/_SUCCESS.json"))


def test_a_run_over_some_sources_keeps_the_manifest_record_of_the_others(layout, tiny):
    mine(options(layout, tiny))
    subset = options(layout, tiny)
    subset.sources = ["qa"]
    mine(subset)
    recorded = json.loads((layout / "build-manifest.json").read_text())["stages"]["mine"]["sources"]
    assert recorded["sim"]["status"] == "mined" and recorded["qa"]["status"] == "unchanged"
    # With other parameters the earlier record no longer describes the output: it is dropped.
    changed = options(layout, tiny, num_negatives=3)
    changed.sources = ["qa"]
    mine(changed)
    assert set(json.loads((layout / "build-manifest.json").read_text())["stages"]["mine"]["sources"]) == {"qa"}


def test_several_devices_and_encode_progress(layout, tiny):
    """A device list runs the search on its first device; encoding progress reaches the caller per source."""
    opts = options(layout, tiny)
    opts.device = "cpu,cpu"
    progress: dict[str, tuple[int, int]] = {}
    results = mine(opts, on_encode=lambda name, done, total: progress.__setitem__(name, (done, total)))
    assert [r.status for r in results] == ["mined", "mined"]
    assert set(progress) == {"qa", "sim"}
    assert all(done == total > 0 for done, total in progress.values())


def test_an_output_folder_with_the_users_files_keeps_them_and_nothing_lands_in_its_parent(layout, tiny, tmp_path):
    """The audit's cases: `mine --out D` deleted D/.viminfo.tmp and D/.session.tmp/, overwrote the
    build-manifest.json in D's parent and made D's parent/cache/embeddings."""
    work = tmp_path / "work"
    dest = work / "D"
    (dest / ".session.tmp").mkdir(parents=True)
    (dest / ".session.tmp" / "state").write_text("open tabs", encoding="utf-8")
    (dest / ".viminfo.tmp").write_text("vim history", encoding="utf-8")
    (work / "build-manifest.json").write_text('{"my": "own manifest"}', encoding="utf-8")
    # What a killed mine run leaves for one of its sources is its own to clean up.
    killed = dest / ".m3e-tmp.999999999.k1ll3d.qa"  # a temp of a run whose pid is gone
    killed.mkdir()
    (killed / "part-00000.parquet").write_bytes(b"half")
    args = ["mine", "--in", str(layout / "m3e-hq"), "--out", str(dest), "--model", str(tiny), "--device", "cpu",
            "--num-negatives", "2", "--range", "0:10"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert (dest / ".viminfo.tmp").read_text(encoding="utf-8") == "vim history"
    assert (dest / ".session.tmp" / "state").read_text(encoding="utf-8") == "open tabs"
    assert not killed.exists()
    assert sorted(p.name for p in work.iterdir()) == ["D", "build-manifest.json"]
    assert (work / "build-manifest.json").read_text(encoding="utf-8") == '{"my": "own manifest"}'
    assert set(json.loads((dest / "build-manifest.json").read_text())["stages"]["mine"]["sources"]) == {"qa", "sim"}
    assert (dest / ".cache" / "embeddings").is_dir()

    # A user's file in a mined source folder: a remine is refused for that source and the file stays.
    (dest / "qa" / "notes.txt").write_text("mine", encoding="utf-8")
    result = CliRunner().invoke(main, [*args[:-1], "0:5"])
    said = "".join(result.output.split())  # rich wraps long lines
    assert result.exit_code == 1 and "qa:holdsfilesthatm3e-dataminedidnotwrite(notes.txt)" in said
    assert "Traceback" not in result.output
    assert (dest / "qa" / "notes.txt").read_text(encoding="utf-8") == "mine"
    assert (dest / "qa" / SUCCESS).is_file()

    # A build-manifest.json in D that m3e-data did not write is refused before any work.
    other = work / "E"
    other.mkdir()
    (other / "build-manifest.json").write_text("[1, 2]", encoding="utf-8")
    result = CliRunner().invoke(main, [*args[:4], str(other), *args[5:]])
    assert result.exit_code == 1 and "not a manifest m3e-data wrote" in result.output
    assert sorted(p.name for p in other.iterdir()) == ["build-manifest.json"]
