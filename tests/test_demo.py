"""The demo shows every stage at work: `build --sources demo` with the bundled evaluation file drops rows by
every quality rule, finds exact and near duplicates within and across sources, decontaminates, and leaves
sources big enough for `train` to hold rows out. The report on that build answers a curator's questions."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from m3e_data.cli.main import main
from m3e_data.stages.hq.quality import DEFAULTS, rules
from m3e_data.stages.hq.report import (
    EXAMPLE_CHARS,
    drop_examples,
    examples_html,
    mined_html,
    render_html,
    write_report,
)
from m3e_data.stages.normalize.locate import demo_root
from tests.make_demo._bulk import EVAL_ROWS

EVAL_FILE = demo_root() / "_eval" / "retrieval_dev.jsonl"
# Rules that cannot fire on rows normalize built (it drops empty texts and removes such negatives itself).
UNREACHABLE = {"empty_query", "empty_positive", "negative_equals_pair"}


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "out"
    result = CliRunner().invoke(
        main, ["build", "--recipe", "all", "--sources", "demo", "--out", str(out), "--decontaminate", str(EVAL_FILE)]
    )
    assert result.exit_code == 0, result.output
    return out


def _hq(out: Path) -> dict:
    return json.loads((out / "build-manifest.json").read_text(encoding="utf-8"))["stages"]["hq"]


def test_the_bundled_evaluation_file_is_not_a_source_and_reads_as_evaluation_texts():
    from m3e_data.catalog import load_catalog
    from m3e_data.stages.hq.decontaminate import read_eval_texts

    assert "_eval" not in load_catalog()
    texts = read_eval_texts(EVAL_FILE)
    assert len(texts) == sum(1 + len(r["positive"]) for r in EVAL_ROWS)


def test_every_quality_rule_that_built_rows_can_trip_fires_on_the_demo(demo_out):
    fired = {r.split(":", 1)[1] for s in _hq(demo_out)["sources"].values() for r in s["dropped"] if r.startswith("quality:")}
    # Every rule the default thresholds switch on, less those normalize makes unreachable.
    expected = {reason for reason, _ in rules(DEFAULTS)} - UNREACHABLE
    assert expected - fired == set()
    assert len(expected) >= 17


def test_the_demo_has_exact_and_near_duplicates_within_and_across_sources(demo_out):
    rejected = pq.read_table(demo_out / "rejects" / "dedup").to_pylist()
    kinds = {(r["reason"], r["source"] == r["kept_id"].split("/", 1)[0]) for r in rejected}
    assert {("exact_duplicate", True), ("near_duplicate", True), ("exact_duplicate", False),
            ("near_duplicate", False)} <= kinds
    assert _hq(demo_out)["overlap"]  # the report's cross-source chart has cells


def test_the_bundled_evaluation_file_decontaminates_an_exact_and_a_near_match(demo_out):
    hq = _hq(demo_out)
    assert hq["decontamination"] == {str(EVAL_FILE): 2}
    rows = pq.read_table(demo_out / "rejects" / "decontaminate").to_pylist()
    assert {r["matched"] for r in rows} == {EVAL_FILE.name}
    assert {r["query"] for r in rows} == {"如何提高英语听力？", "地球为什么会有四季？"}


def test_the_demo_leaves_sources_big_enough_for_train_to_hold_rows_out(demo_out):
    from m3e_train.data import select_rows

    kept = {name: s["rows_out"] for name, s in _hq(demo_out)["sources"].items()}
    big = [name for name, n in kept.items() if n >= 20]
    assert len(big) >= 3, kept
    table = pq.read_table(demo_out / "m3e-hq" / big[0])
    train, heldout, _ = select_rows(table, max_rows=None, heldout_rows=200, seed=0)
    assert heldout.num_rows >= 2 and train.num_rows > 4  # more than one batch of the walk-through's size


# The report ------------------------------------------------------------------------------------------


def test_report_shows_example_rows_per_drop_reason_with_what_they_matched(demo_out):
    examples = drop_examples(demo_out)
    reasons = {r for s in _hq(demo_out)["sources"].values() for r in s["dropped"]}
    assert set(examples) == reasons
    assert all(1 <= len(rows) <= 3 for rows in examples.values())
    near = next(r for r in examples["near_duplicate"] if r["source"] == "chatmed_consult")
    assert near["kept"]["query"] == near["query"] and near["kept"]["positive"] != near["positive"]
    page = render_html(_hq(demo_out), examples=examples)
    assert "quality:query_too_long" in page and "kept alpaca_gpt4/train/" in page
    assert f"evaluation file {EVAL_FILE.name}" in page
    # The 1,100-character query is cut, with its length.
    assert "… (1," in page and "characters)" in page


def test_report_escapes_every_text_and_cuts_long_ones(demo_out, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(demo_out, out)
    part = next((out / "rejects" / "quality" / "alpaca_gpt4").glob("part-*.parquet"))
    table = pq.read_table(part)
    rows = table.to_pylist()
    rows[0]["query"] = "<script>alert('x')</script>" + "长" * (EXAMPLE_CHARS + 50)
    rows[0]["positive"] = '"><img src=x onerror=alert(1)>'
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), part)
    page = write_report(out).read_text(encoding="utf-8")
    assert "<script" not in page and "<img" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in page
    assert examples_html({"r": [{"id": "a/b/1", "query": "x" * 500, "positive": "p", "reason": "r"}]}).count("x") < 200


def test_report_has_a_legend_for_the_heat_maps_and_says_when_nothing_is_mined(demo_out):
    page = render_html(_hq(demo_out), examples={}, scores=None)
    assert 'class="legend heat-legend"' in page and "share of the source" in page
    assert "Not mined yet" in page


def record_mining(out: Path, source: str = "csl") -> None:
    """What `mine` leaves for the report, written by hand over 4 of `source`'s kept rows (the real mining is
    in the walk-through test): scored rows under OUT/m3e-hq-with-score/ and the manifest's mine section."""
    from m3e_data.manifest import write_stage
    from m3e_data.schema import UNIFIED_SCHEMA

    scored = out / "m3e-hq-with-score" / source
    rows = pq.read_table(out / "m3e-hq" / source).to_pylist()[:4]
    for i, row in enumerate(rows):
        row["positive_score"] = 0.9 - 0.1 * i
        row["negatives"] = ["a", "b"] if i else ["a"]
        row["negative_scores"] = [0.95, 0.2] if i else [0.3]
    scored.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=UNIFIED_SCHEMA), scored / "part-00000.parquet")
    write_stage(out, "mine", {"model": "tiny", "options": {"out": str(out / "m3e-hq-with-score"), "num_negatives": 2},
                              "sources": {source: {"status": "mined", "rows": 4, "rows_short": 1}}})


def test_report_on_a_mined_folder_shows_score_distributions_and_rows_short(demo_out, tmp_path):
    from m3e_data.stages.hq.report import mined_scores

    out = tmp_path / "out"
    shutil.copytree(demo_out, out)
    record_mining(out)
    scores = mined_scores(out)
    csl = scores["sources"]["csl"]
    assert csl["rows"] == 4 and csl["rows_short"] == 1
    assert sum(csl["positive"]) == 4 and sum(csl["negative"]) == 7 and sum(csl["margin"]) == 4
    assert csl["mean"]["margin"] == pytest.approx((0.6 + (-0.15) + (-0.25) + (-0.35)) / 4)
    html = mined_html(scores)
    for chart in ("positive-scores", "negative-scores", "margin-scores"):
        assert f'data-chart="{chart}"' in html
    assert "fewer than 2 negatives" in html and "<td>1</td>" in html


def test_report_given_the_mined_folder_reports_its_build_beside_it(demo_out, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(demo_out, out)
    record_mining(out)
    result = CliRunner().invoke(main, ["report", str(out / "m3e-hq-with-score")])
    assert result.exit_code == 0, result.output
    assert not (out / "m3e-hq-with-score" / "report.html").exists()  # mine's folder stays mine's
    page = (out / "report.html").read_text(encoding="utf-8")
    assert 'data-chart="margin-scores"' in page and "Not mined yet" not in page
    nowhere = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert nowhere.exit_code == 1 and "no hq stage" in nowhere.output
