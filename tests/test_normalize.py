"""The normalize stage's shared text repairs and per-negative cleaning, on crafted, real and look-alike rows."""

from __future__ import annotations

import json
from collections import Counter

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from m3e_data.catalog import load_catalog
from m3e_data.recipe import Context, load_recipe
from m3e_data.stages.hq.quality import apply_rules, compute_stats, resolve
from m3e_data.stages.normalize.normalize import Counts, normalize, to_batch
from m3e_data.stages.normalize.readers import BadRow
from m3e_data.stages.normalize.textclean import clean_text
from m3e_data.storage.store import read_success
from tests.helpers import SHARED, build_one


@pytest.mark.parametrize(
    ("text", "expected", "repairs"),
    [
        ("普通的一句话，没有问题。", "普通的一句话，没有问题。", ()),
        ("能增强心肺功能。<br>还能改善睡眠。<BR/>", "能增强心肺功能。\n还能改善睡眠。\n", ("html_tags",)),
        ('正文<div class="references-small">参考资料</div>结尾', "正文\n参考资料\n结尾", ("html_tags",)),
        ("<p>第一段</p><p>第二段</p>", "\n第一段\n\n第二段\n", ("html_tags",)),
        ('<span style="color:red">红</span><a href="x">链接</a><!-- 注释 -->字', "红链接字", ("html_tags",)),
        ("表格<td>甲</td><td>乙</td>", "表格 甲 乙 ", ("html_tags", "whitespace")),
        ("卵泡数据:&lt;1.0cm &amp; &quot;引号&quot; &#12290;&#x3002;", '卵泡数据:<1.0cm & "引号" 。。', ("html_entities",)),
        ("&lt;br&gt; 是换行标签", "<br> 是换行标签", ("html_entities",)),  # escaped markup is text
        ("\ufeff怎么\u200b办理护照", "怎么办理护照", ("invisible_chars",)),
        ("退格\x08符和\x00空字符\x7f", "退格符和空字符", ("control_chars",)),
        ("标题" + "\u3000" * 30 + "正文", "标题 正文", ("whitespace",)),
        ("甲\t\t乙  丙\u00a0\u00a0丁", "甲 乙 丙 丁", ("whitespace",)),
        ("第一行\r\n第二行\r第三行", "第一行\n第二行\n第三行", ("whitespace",)),
        ("段一\n\n段二\n  \n\n\n段三", "段一\n\n段二\n\n段三", ("whitespace",)),
        ("&nbsp;&nbsp;缩进", " 缩进", ("html_entities", "whitespace")),
        ("<b>粗体</b>\ufeff\x08", "粗体", ("html_tags", "invisible_chars", "control_chars")),
    ],
)
def test_each_repair(text, expected, repairs):
    assert clean_text(text) == (expected, repairs)


@pytest.mark.parametrize(
    "text",
    [
        "差异具有统计学意义(P<0.05).结论 修整氧化铝",  # csl abstracts
        "在寒地黑土长大的<公共管理学报>,既得伟岸地域之滋",
        "if a < b and c > d: return <Python> 与 <init>",
        "<s>问：\n人流已经有一个多月。\n答：\n",  # a tokenizer marker, not strike-through
        "AT&T 与 R&D 部门; a&b;",  # no entity without its `;` and a real name
        "段一\n\n段二\t列\u3000列",  # single breaks, one tab, one ideographic space, one paragraph break
        "SELECT name FROM t WHERE age < 30 AND score >= 60",
    ],
)
def test_text_that_is_not_debris_is_left_alone(text):
    assert clean_text(text) == (text, ())


@pytest.mark.skipif(not (SHARED / "fixtures/real").is_dir(), reason="needs ../shared/fixtures/real")
def test_real_rows_change_only_where_they_carry_debris():
    real = SHARED / "fixtures/real"
    rows = [json.loads(line) for line in (real / "cmrc2018/validation.hf_rows.jsonl").open(encoding="utf-8")]
    changed = [r["id"] for r in rows for t in (r["question"], r["context"]) if clean_text(t)[1]]
    assert len(rows) == 200 and changed == []
    csl = (real / "csl/benchmark_ts_dev.head200.tsv").read_text(encoding="utf-8")
    assert "P<0.05" in csl and clean_text(csl.split("\n", 1)[0])[0] == csl.split("\n", 1)[0]
    chatmed = [json.loads(line) for line in (real / "chatmed_consult/hf_like_rows.jsonl").open(encoding="utf-8")]
    fixed = [clean_text(r["query"]) for r in chatmed if "&lt;" in r["query"]]
    assert len(fixed) == 1 and "卵泡数据:<1.0cm" in fixed[0][0] and fixed[0][1] == ("html_entities",)
    # LLM answers' paragraph breaks before a numbered list survive.
    assert any("：\n\n1." in r["response"] and clean_text(r["response"])[0] == r["response"] for r in chatmed)


def _run(name: str, rows: list, split: str = "train") -> tuple[list, Counts]:
    recipe = load_recipe(name)
    assert recipe is not None
    counts = Counts()
    out = [p for batch in normalize(iter(rows), recipe, Context(name, split, {}), counts) for p in batch]
    return out, counts


@pytest.mark.skipif(not (SHARED / "fixtures/real/cmrc2018").is_dir(), reason="needs ../shared/fixtures/real")
def test_cmrc2018_rows_with_the_issues_debris_come_out_clean():
    real = SHARED / "fixtures/real/cmrc2018/validation.hf_rows.jsonl"
    rows = [json.loads(line) for line in real.open(encoding="utf-8")][:4]
    clean = [dict(r) for r in rows]
    # The debris real upstream rows carry, put into real rows: markup around a reference list, a BOM inside
    # the question, a backspace, and a run of 30 ideographic spaces.
    rows[0]["context"] = rows[0]["context"] + '<br><div class="references-small">参考&amp;资料</div>'
    rows[1]["question"] = rows[1]["question"][:3] + "\ufeff" + rows[1]["question"][3:]
    rows[2]["question"] = rows[2]["question"] + "\x08"
    rows[3]["context"] = rows[3]["context"][:10] + "\u3000" * 30 + rows[3]["context"][10:]
    out, counts = _run("cmrc2018", rows, "validation")
    by_key = {k: p for k, p in out}
    assert by_key[clean[0]["id"]].positive == clean[0]["context"] + "\n\n参考&资料"
    assert by_key[clean[1]["id"]].query == clean[1]["question"]
    assert by_key[clean[2]["id"]].query == clean[2]["question"]
    assert by_key[clean[3]["id"]].positive == clean[3]["context"][:10] + " " + clean[3]["context"][10:]
    assert counts.repairs == {"html_tags": 1, "html_entities": 1, "invisible_chars": 1, "control_chars": 1,
                              "whitespace": 1}
    assert counts.written == 4 and not counts.dropped
    # The run of ideographic spaces would have cost the row in m3e-hq (repeated characters); repaired, it stays.
    source = load_catalog()["cmrc2018"]
    repaired = pa.Table.from_batches([to_batch(out, source, "validation")])
    raw = repaired.set_column(repaired.schema.get_field_index("positive"), "positive",
                              pa.array([r["context"] for r in rows], pa.string()))
    assert _reasons(raw)[3] == "positive_repeated_chars"
    assert _reasons(repaired) == [None, None, None, None]


def _reasons(table: pa.Table) -> list[str | None]:
    return apply_rules(pl.from_arrow(compute_stats(table)), resolve())["reason"].to_list()


def _ocnli_rows() -> list[dict]:
    """Synthetic OCNLI look-alike (the Hub's clue/clue ocnli columns; 0 neutral, 1 entailment, 2 contradiction)."""
    p1, p2, p3 = "我们下午三点在学校门口集合，然后一起去图书馆", "他把旧自行车卖给了邻居", "会议推迟到下周一上午举行"
    return [
        {"sentence1": p1, "sentence2": "我们会去图书馆", "label": 1, "idx": 0},
        {"sentence1": p1, "sentence2": "我们会去图书馆。", "label": 2, "idx": 1},  # noisy sibling = positive
        {"sentence1": p1, "sentence2": "我们上午在学校门口集合", "label": 2, "idx": 2},
        {"sentence1": p2, "sentence2": "邻居买了他的旧自行车", "label": 1, "idx": 3},
        {"sentence1": p2, "sentence2": "他把旧自行车卖给了邻居！", "label": 2, "idx": 4},  # = the premise
        {"sentence1": p2, "sentence2": "他没有卖掉自行车", "label": 2, "idx": 5},
        {"sentence1": p2, "sentence2": "他没有卖掉 自行车", "label": 2, "idx": 6},  # = the sibling negative
        {"sentence1": p2, "sentence2": "——", "label": 2, "idx": 7},  # nothing left after normalisation
        {"sentence1": p3, "sentence2": "会议改期了", "label": 1, "idx": 8},
        {"sentence1": p3, "sentence2": "会议\u3000\u3000如期举行", "label": 2, "idx": 9},
    ]


def _write_ocnli(root, rows) -> None:
    folder = root / "ocnli" / "ocnli"
    folder.mkdir(parents=True)
    schema = pa.schema([("sentence1", pa.string()), ("sentence2", pa.string()), ("label", pa.int32()),
                        ("idx", pa.int32())])
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), folder / "train-00000-of-00001.parquet")
    for split in ("validation", "test"):
        pq.write_table(schema.empty_table(), folder / f"{split}-00000-of-00001.parquet")


def test_a_bad_negative_costs_the_negative_not_the_row(tmp_path):
    _write_ocnli(tmp_path / "src", _ocnli_rows())
    rows, result = build_one("ocnli", tmp_path / "out", sources=str(tmp_path / "src"))
    assert [(r["query"][:4], r["positive"], r["negatives"]) for r in rows] == [
        ("我们下午", "我们会去图书馆", ["我们上午在学校门口集合"]),
        ("他把旧自", "邻居买了他的旧自行车", ["他没有卖掉自行车"]),
        ("会议推迟", "会议改期了", ["会议 如期举行"]),
    ]
    assert result.counts.negatives_removed == {"equals_positive": 1, "equals_query": 1, "equals_negative": 1,
                                               "empty": 1}
    assert result.counts.repairs == {"whitespace": 1}
    recorded = read_success(tmp_path / "out" / "m3e" / "ocnli")
    assert recorded is not None and recorded["counts"]["negatives_removed"] == result.counts.negatives_removed
    assert recorded["splits"]["train"]["repairs"] == {"whitespace": 1}
    assert result.as_dict()["negatives_removed"] == result.counts.negatives_removed  # the build manifest's
    # m3e-hq's negative_equals_pair uses the same keys: on rows built now it has nothing left to drop.
    table = pq.read_table(tmp_path / "out" / "m3e" / "ocnli")
    stats = pl.from_arrow(compute_stats(table))
    assert stats["neg_equal"].to_list() == [0, 0, 0]
    assert apply_rules(stats, resolve({"min_positive_chars": 2}))["reason"].to_list() == [None, None, None]
    # An unchanged rerun reports the same counts from the recorded manifest.
    _, again = build_one("ocnli", tmp_path / "out", sources=str(tmp_path / "src"))
    assert again.status == "unchanged" and again.counts.as_dict() == result.counts.as_dict()


def test_negatives_that_are_not_text_are_counted_and_bad_rows_still_dropped_whole():
    class Module:  # a recipe that passes negatives through as the source gives them
        @staticmethod
        def to_pairs(row, ctx):
            from m3e_data.recipe import Pair

            yield Pair(row["q"], row["p"], row["negs"])

    from m3e_data.recipe import Recipe

    recipe = Recipe("crafted", Module)  # type: ignore[arg-type]
    counts = Counts()
    items = [
        {"q": "问题一", "p": "回答一", "negs": ["  ", None, 3, "\ufeff", "回答二", "ＨＥＬＬＯ", "hello"]},
        {"q": "\u200b", "p": "回答", "negs": ["负例"]},  # the query is nothing but debris: the row goes
        BadRow("malformed_json"),
    ]
    out = [p for batch in normalize(iter(items), recipe, Context("crafted", "train", {}), counts) for p in batch]
    assert [(k, p.negatives) for k, p in out] == [("0", ["回答二", "ＨＥＬＬＯ"])]
    assert counts.negatives_removed == Counter({"empty": 3, "not_text": 1, "equals_negative": 1})
    assert counts.dropped == {"empty_text": 1, "malformed_json": 1}
    assert counts.repairs == {"invisible_chars": 1, "whitespace": 1}  # the row that was kept
    assert Counts.from_dict(counts.as_dict()).as_dict() == counts.as_dict()
    assert Counts.from_dict({"read": 1, "written": 1, "dropped": {}}).negatives_removed == {}
