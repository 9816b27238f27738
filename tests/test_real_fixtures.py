"""Real excerpts of permissively licensed sources (../shared/fixtures/real), read through the recipes.

They are not part of the project: each test skips when ../shared is absent.
"""

import json

import pyarrow as pa
import pyarrow.parquet as pq

from m3e_data.stages.normalize.readers import iter_squad
from tests.helpers import build_one


def test_cmrc2018_real_validation_rows_as_the_hub_serves_them(tmp_path, shared_fixtures):
    lines = (shared_fixtures / "cmrc2018" / "validation.hf_rows.jsonl").read_text(encoding="utf-8").splitlines()
    raw = [json.loads(line) for line in lines]
    snapshot = tmp_path / "src" / "cmrc2018" / "data"
    snapshot.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(raw), snapshot / "validation-00000-of-00001.parquet")

    rows, result = build_one("cmrc2018", tmp_path / "out", sources=str(tmp_path / "src"), splits=["validation"])
    assert result.counts.read == len(raw) == 200
    assert len(rows) + sum(result.counts.dropped.values()) == len(raw)
    assert [r["id"] for r in rows[:2]] == [f"cmrc2018/validation/{raw[0]['id']}", f"cmrc2018/validation/{raw[1]['id']}"]
    assert rows[0]["query"] == raw[0]["question"].strip() and rows[0]["positive"] == raw[0]["context"].strip()


def test_the_squad_reader_gives_the_same_questions_as_the_hub_rows(shared_fixtures):
    squad = list(iter_squad(shared_fixtures / "cmrc2018" / "cmrc2018_dev.squad_style.head.json"))
    hub = [
        json.loads(line)
        for line in (shared_fixtures / "cmrc2018" / "validation.hf_rows.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    by_id = {r["id"]: r for r in squad}
    for row in hub:
        assert by_id[row["id"]]["question"].strip() == row["question"]
        assert by_id[row["id"]]["answers"]["text"] == row["answers"]["text"]


def test_hq_keeps_the_different_questions_about_one_real_passage(tmp_path, shared_fixtures):
    """200 real cmrc2018 questions over 52 passages: near dedup must not collapse a passage's questions
    into one row (comparing only the united pair sets kept 52)."""
    from m3e_data.stages.hq.stage import run_hq

    raw = [json.loads(line) for line in
           (shared_fixtures / "cmrc2018" / "validation.hf_rows.jsonl").read_text(encoding="utf-8").splitlines()]
    snapshot = tmp_path / "src" / "cmrc2018" / "data"
    snapshot.mkdir(parents=True)
    # As a training split, so that the eval-split rule does not take them first.
    pq.write_table(pa.Table.from_pylist(raw), snapshot / "train-00000-of-00001.parquet")
    build_one("cmrc2018", tmp_path / "out", sources=str(tmp_path / "src"), splits=["train"])
    result = run_hq(tmp_path / "out", workers=1)["cmrc2018"]
    assert len({r["context"] for r in raw}) == 52
    assert result.rows_in == 200 and result.rows_out >= 195, result.dropped
