"""Recipes for belle_2m, firefly, alpaca_gpt4, zhihu_kol, amazon_reviews_multi, chatmed_consult, webqa and csl.

Each source is built through the real locate/read/recipe/write path from its demo data (synthetic rows in
the exact upstream layout), or from files written here for layouts the demo does not hold.
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from m3e_data.catalog import load_catalog
from m3e_data.cli.main import main
from m3e_data.recipe import load_recipe
from m3e_data.stages.normalize.locate import SourceMissing, locate
from m3e_data.stages.normalize.stage import BuildOptions, build_source
from tests.helpers import build_one, pairs
from tests.make_demo._bulk import medical_pairs, paper_pairs
from tests.make_demo.alpaca_gpt4 import bulk as alpaca_bulk

FIXTURES = Path(__file__).parent / "fixtures" / "sources"
SOURCES = (
    "belle_2m", "firefly", "alpaca_gpt4", "zhihu_kol", "amazon_reviews_multi", "chatmed_consult", "webqa", "csl",
)


def ids(rows):
    return [r["id"] for r in rows]


def test_belle_2m_instruction_to_output(tmp_path):
    rows, result = build_one("belle_2m", tmp_path)
    assert pairs(rows) == [
        ("train", "给出三个保持健康的小建议。",
         "1. 每天保证七到八小时睡眠。\n2. 饮食均衡，多吃蔬菜水果。\n3. 每周至少运动三次。", []),
        ("train", "把这句话翻译成英文：今天的天气很好。", "The weather is nice today.", []),
        ("train", "解释什么是光合作用。", "光合作用是绿色植物利用光能，把二氧化碳和水合成有机物并释放氧气的过程。", []),
    ]
    assert ids(rows) == ["belle_2m/train/0", "belle_2m/train/1", "belle_2m/train/3"]
    assert result.counts.dropped == {
        "empty_text": 1, "missing_field:output": 1, "malformed_json": 1, "undecodable_bytes": 1,
    }
    assert result.counts.read == 7
    assert {r["task"] for r in rows} == {"none"} and not any(r["commercial"] for r in rows)


FIREFLY_ALL = [
    ("train", "对联：春风送暖千山秀", "瑞雪迎春万户欢", []),
    ("train", "阅读下面的文字，回答问题。\n青梅湖建成于1978年，湖面约二十平方公里。\n问题：青梅湖建成于哪一年？", "1978年", []),
    ("train", "翻译成文言文：我喜欢读书。", "吾好读书。", []),
    ("train", "为什么天空是蓝色的？", "阳光穿过大气时，波长较短的蓝光被散射得更多，所以天空看起来是蓝色的。", []),
]


def test_firefly_every_kind_by_default(tmp_path):
    rows, result = build_one("firefly", tmp_path)
    assert pairs(rows) == FIREFLY_ALL
    assert ids(rows) == [f"firefly/train/{i}" for i in range(4)]
    assert result.counts.dropped == {"empty_text": 1, "missing_field:target": 1, "truncated_line": 1}


def test_firefly_kinds_allow_list_keeps_only_those_task_types(tmp_path):
    rows, result = build_one("firefly", tmp_path, options={"kinds": "MRC, OpenQA"})
    assert pairs(rows) == [FIREFLY_ALL[1], FIREFLY_ALL[3]]
    assert ids(rows) == ["firefly/train/1", "firefly/train/3"]
    # The truncated line is still a malformed row; the row without `target` is not of a chosen kind.
    assert result.counts.dropped == {"kind_not_selected": 4, "truncated_line": 1}


def test_firefly_kinds_through_the_cli(tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main,
        ["build", "--recipe", "firefly", "--sources", "demo", "--out", str(out), "--option", "firefly.kinds=Couplet"],
    )
    assert result.exit_code == 0, result.output
    rows = pq.read_table(out / "m3e" / "firefly").to_pylist()
    assert pairs(rows) == [FIREFLY_ALL[0]]


def test_alpaca_gpt4_joins_instruction_and_input_without_a_dangling_space(tmp_path):
    rows, result = build_one("alpaca_gpt4", tmp_path)
    # The demo's bulk (tests/make_demo/_bulk.py) follows these rows, one pair each.
    assert len(rows) == 3 + len(alpaca_bulk())
    assert pairs(rows)[:3] == [
        ("train", "写一首关于秋天的短诗。", "秋风轻拂过山岗，\n金黄的稻田泛起波浪。", []),
        ("train", "把下面的句子改写成被动语态。 小明打碎了花瓶。", "花瓶被小明打碎了。", []),
        ("train", "计算下列数字的平均值。 3, 5, 7", "平均值是5。", []),
    ]
    assert result.counts.dropped == {"missing_field:output": 1, "empty_text": 1}
    assert result.layout == "json"


def test_zhihu_kol_one_pair_per_answer_and_no_sibling_answer_as_negative(tmp_path):
    rows, result = build_one("zhihu_kol", tmp_path)
    assert pairs(rows) == [
        ("train", "怎样才能坚持每天跑步？", "先从每天十分钟开始，把跑步和固定的时间绑定，比如早饭前。", []),
        ("train", "怎样才能坚持每天跑步？", "找一个跑友互相监督，比一个人跑容易坚持得多。", []),
        ("train", "第一次养猫需要准备什么？", "猫砂盆、猫粮、水碗、猫抓板，再提前找好附近的宠物医院。", []),
    ]
    # Positions run across the shards of a split, so ids stay unique.
    assert ids(rows) == ["zhihu_kol/train/0", "zhihu_kol/train/1", "zhihu_kol/train/3"]
    assert result.counts.dropped == {"bad_value:text_not_string": 1}


def test_amazon_reviews_multi_builds_only_from_a_local_copy(tmp_path):
    rows, result = build_one("amazon_reviews_multi", tmp_path / "a", sources=str(FIXTURES))
    assert pairs(rows) == [
        ("train", "续航很满意", "包装很好，电池续航比宣传的还长，充一次电能用三天。", []),
        ("train", "质量太差", "用了两天就坏了，客服也不回复，非常失望。", []),
        ("validation", "孩子喜欢", "书的纸张不错，印刷清晰，孩子很喜欢。", []),
        ("test", "尺码偏小", "尺码偏小，建议买大一号。", []),
    ]
    assert ids(rows) == [
        "amazon_reviews_multi/train/zh_0000001", "amazon_reviews_multi/train/zh_0000002",
        "amazon_reviews_multi/validation/zh_0000004", "amazon_reviews_multi/test/zh_0000005",
    ]
    # The English file beside the Chinese ones, an empty title, a row without review_title.
    assert result.counts.dropped == {"language_not_zh": 1, "empty_text": 1, "missing_field:review_title": 1}
    assert {r["task"] for r in rows} == {"summary"} and not any(r["commercial"] for r in rows)

    demo = build_source(load_catalog()["amazon_reviews_multi"], BuildOptions(out=tmp_path / "b", sources="demo"))
    assert demo.status == "unavailable" and "DefunctDatasetError" in demo.reason


AMAZON_SCHEMA = pa.schema(
    [("review_id", pa.string()), ("product_id", pa.string()), ("reviewer_id", pa.string()), ("stars", pa.int32()),
     ("review_body", pa.string()), ("review_title", pa.string()), ("language", pa.string()),
     ("product_category", pa.string())]
)


def test_amazon_reviews_multi_reads_the_old_parquet_export_when_no_json_copy_is_there(tmp_path):
    for n, split in enumerate(("train", "validation", "test")):
        folder = tmp_path / "src" / "amazon_reviews_multi" / "zh" / split
        folder.mkdir(parents=True)
        row = {"review_id": f"zh_000000{n}", "product_id": "product_zh_0000001", "reviewer_id": "reviewer_zh_0000001",
               "stars": 4, "review_body": f"第{n}条评论正文", "review_title": f"第{n}条标题", "language": "zh",
               "product_category": "home"}
        pq.write_table(pa.Table.from_pylist([row], schema=AMAZON_SCHEMA), folder / "0000.parquet")
    rows, result = build_one("amazon_reviews_multi", tmp_path / "out", sources=str(tmp_path / "src"))
    assert result.layout == "parquet-export"
    assert pairs(rows) == [
        ("train", "第0条标题", "第0条评论正文", []),
        ("validation", "第1条标题", "第1条评论正文", []),
        ("test", "第2条标题", "第2条评论正文", []),
    ]


def test_amazon_reviews_multi_missing_names_both_layouts(tmp_path):
    (tmp_path / "amazon_reviews_multi").mkdir()
    result = build_source(load_catalog()["amazon_reviews_multi"], BuildOptions(out=tmp_path / "out", sources=str(tmp_path)))
    assert result.status == "missing"
    assert "'json'" in result.reason and "'parquet-export'" in result.reason


def test_chatmed_consult_query_to_response(tmp_path):
    rows, result = build_one("chatmed_consult", tmp_path)
    assert len(rows) == 2 + len(medical_pairs())  # the demo's bulk follows
    assert pairs(rows)[:2] == [
        ("train", "最近总是失眠，晚上一点多才能睡着，怎么办？",
         "建议保持规律作息，睡前一小时不看手机，避免下午喝咖啡和浓茶；若持续超过一个月，请到睡眠门诊就诊。", []),
        ("train", "孩子发烧38.5度，需要马上吃退烧药吗？",
         "体温超过38.5度且孩子明显不适时可以服用儿童退烧药，同时注意补充水分；若持续高热或精神差，请及时就医。", []),
    ]
    assert result.counts.dropped == {"bad_value:text_not_string": 1, "malformed_json": 1, "undecodable_bytes": 1}
    assert {r["domain"] for r in rows} == {"medicine"}


def test_csl_title_to_abstract_never_reads_the_english_translation(tmp_path):
    rows, result = build_one("csl", tmp_path)
    assert len(rows) == 2 + len(paper_pairs())  # the demo's bulk follows
    assert pairs(rows)[:2] == [
        ("train", "基于深度学习的水稻病害图像识别方法",
         "针对水稻病害识别准确率低的问题，提出一种基于卷积神经网络的识别方法，在自建数据集上准确率达到95%。", []),
        ("train", "城市轨道交通客流预测研究", "以某市地铁刷卡数据为基础，建立时间序列模型预测短时客流，为运营调度提供依据。", []),
    ]
    assert result.counts.read == 3 + len(paper_pairs()) and result.counts.dropped == {"empty_text": 1}
    assert all(r["commercial"] for r in rows)


# webqa: the Hub's JSON files (demo), the Hub's Parquet export, or Baidu's raw WebQA v1.0 files.


def test_webqa_input_to_output_over_every_split(tmp_path):
    rows, result = build_one("webqa", tmp_path)
    assert pairs(rows) == [
        ("train", "中国最长的河流是哪条？", "长江是中国第一长河，全长约6300公里，流经11个省级行政区。", []),
        ("train", "珠穆朗玛峰有多高？", "珠穆朗玛峰是世界最高峰，2020年测定的高程为8848.86米。", []),
        ("validation", "一年有多少天？", "平年有365天，闰年有366天。", []),
        ("test", "水的沸点是多少度？", "在标准大气压下，水的沸点是100摄氏度。", []),
    ]
    assert ids(rows) == ["webqa/train/0", "webqa/train/1", "webqa/validation/0", "webqa/test/0"]
    assert result.counts.read == 6
    assert result.counts.dropped == {"empty_text": 1, "missing_field:output": 1}
    assert result.layout == "json"


def test_webqa_parquet_export_is_found_when_the_json_files_are_absent(tmp_path):
    schema = pa.schema([("id", pa.int64()), ("input", pa.string()), ("output", pa.string())])
    for split, text in (("train", "甲"), ("validation", "乙"), ("test", "丙")):
        folder = tmp_path / "src" / "webqa" / "default" / split
        folder.mkdir(parents=True)
        row = {"id": 7, "input": f"问题{text}", "output": f"证据{text}"}
        pq.write_table(pa.Table.from_pylist([row], schema=schema), folder / "0000.parquet")
    rows, result = build_one("webqa", tmp_path / "out", sources=str(tmp_path / "src"))
    assert result.layout == "parquet-export"
    assert pairs(rows) == [
        ("train", "问题甲", "证据甲", []), ("validation", "问题乙", "证据乙", []), ("test", "问题丙", "证据丙", []),
    ]
    assert ids(rows) == ["webqa/train/0", "webqa/validation/0", "webqa/test/0"]


BEIJING = "北京是中华人民共和国的首都，也是全国的政治和文化中心。"
BEIJING_2 = "中国的首都北京有三千多年的建城史。"
SHANGHAI = "上海是中国最大的经济中心城市，位于长江入海口。"


def write_webqa_v1(root: Path) -> None:
    """Baidu's WebQA v1.0 files as the spaces.ac.cn copy holds them: one JSON object per file, keyed by
    question id (me_train.json on one line, the annotated dev/test files indented)."""
    train = {
        "Q_TRN_000001": {"question": "中国的首都是哪里", "evidences": {
            "Q_TRN_000001#00": {"answer": ["no_answer"], "evidence": SHANGHAI},
            "Q_TRN_000001#01": {"answer": ["北京"], "evidence": BEIJING},
            "Q_TRN_000001#02": {"answer": ["北京"], "evidence": BEIJING_2},
        }},
        # No evidence holds an answer: no_answered_evidence.
        "Q_TRN_000002": {"question": "月球上有没有水", "evidences": {
            "Q_TRN_000002#00": {"answer": ["no_answer"], "evidence": "月球是地球唯一的天然卫星。"},
        }},
        # An evidence without its answer list: missing_field:answer.
        "Q_TRN_000003": {"question": "长城有多长", "evidences": {"Q_TRN_000003#00": {"evidence": "长城全长两万多公里。"}}},
    }
    dev = {"Q_IR_VAL_000001": {"question": "一年有几个季节", "evidences": {
        "Q_IR_VAL_000001#00": {"answer": ["四个"], "evidence": "一年分为春夏秋冬四个季节。"},
        # An evidence with an empty answer list is neither positive nor negative.
        "Q_IR_VAL_000001#01": {"answer": [], "evidence": "季节的变化与地球公转有关。"},
    }}}
    test = {"Q_IR_TST_000001": {"question": "水的化学式是什么", "evidences": {
        "Q_IR_TST_000001#00": {"answer": ["H2O"], "evidence": "水的化学式是H2O，由氢和氧组成。"},
    }}}
    folder = root / "WebQA.v1.0"
    folder.mkdir(parents=True)
    (folder / "me_train.json").write_text(json.dumps(train, ensure_ascii=False), encoding="utf-8")
    (folder / "me_validation.ann.json").write_text(json.dumps(dev, ensure_ascii=False, indent=2), encoding="utf-8")
    (folder / "me_test.ann.json").write_text(json.dumps(test, ensure_ascii=False, indent=2), encoding="utf-8")
    # The retrieved-evidence (.ir) files sit beside them and are not read.
    (folder / "me_test.ir.json").write_text(json.dumps(test, ensure_ascii=False), encoding="utf-8")


def test_webqa_raw_files_give_no_answer_evidences_as_native_negatives(tmp_path):
    write_webqa_v1(tmp_path / "src" / "webqa")
    rows, result = build_one("webqa", tmp_path / "out", sources=str(tmp_path / "src"))
    assert result.layout == "webqa-v1"
    assert pairs(rows) == [
        ("train", "中国的首都是哪里", BEIJING, [SHANGHAI]),
        ("validation", "一年有几个季节", "一年分为春夏秋冬四个季节。", []),
        ("test", "水的化学式是什么", "水的化学式是H2O，由氢和氧组成。", []),
    ]
    assert ids(rows) == ["webqa/train/Q_TRN_000001", "webqa/validation/Q_IR_VAL_000001", "webqa/test/Q_IR_TST_000001"]
    assert result.counts.dropped == {"no_answered_evidence": 1, "missing_field:answer": 1}


def test_webqa_every_evidence_option_gives_one_pair_per_answered_evidence(tmp_path):
    write_webqa_v1(tmp_path / "src" / "webqa")
    rows, _ = build_one(
        "webqa", tmp_path / "out", sources=str(tmp_path / "src"), options={"every_evidence": "true"}, splits=["train"]
    )
    assert pairs(rows) == [
        ("train", "中国的首都是哪里", BEIJING, [SHANGHAI]),
        ("train", "中国的首都是哪里", BEIJING_2, [SHANGHAI]),
    ]
    assert ids(rows) == ["webqa/train/Q_TRN_000001-0", "webqa/train/Q_TRN_000001-1"]


def test_webqa_missing_names_every_layout_tried(tmp_path):
    (tmp_path / "webqa").mkdir()
    (tmp_path / "webqa" / "README.md").write_text("not the data\n", encoding="utf-8")
    source = load_catalog()["webqa"]
    with pytest.raises(SourceMissing) as err:
        locate(source, str(tmp_path))
    for layout in ("'json'", "'parquet-export'", "'webqa-v1'"):
        assert layout in str(err.value)
    result = build_source(source, BuildOptions(out=tmp_path / "out", sources=str(tmp_path)))
    assert result.status == "missing" and "'webqa-v1'" in result.reason


# Real excerpts (../shared/fixtures/real), read through the same recipes; skipped where ../shared is absent.


def test_chatmed_consult_reads_real_rows(tmp_path, shared_fixtures):
    real = shared_fixtures / "chatmed_consult" / "hf_like_rows.jsonl"
    (tmp_path / "src" / "chatmed_consult").mkdir(parents=True)
    shutil.copy(real, tmp_path / "src" / "chatmed_consult" / "ChatMed_Consult-v0.3.json")
    rows, result = build_one("chatmed_consult", tmp_path / "out", sources=str(tmp_path / "src"))
    first = json.loads(real.read_text(encoding="utf-8").splitlines()[0])
    assert (rows[0]["query"], rows[0]["positive"]) == (first["query"].strip(), first["response"].strip())
    assert result.counts.read == 200 and result.counts.written + sum(result.counts.dropped.values()) == 200
    assert result.counts.written >= 195


def test_csl_reads_real_rows_gzipped_as_the_hub_holds_them(tmp_path, shared_fixtures):
    real = shared_fixtures / "csl" / "neuclir_like_rows.jsonl"
    target = tmp_path / "src" / "csl" / "data" / "csl.jsonl.gz"
    target.parent.mkdir(parents=True)
    target.write_bytes(gzip.compress(real.read_bytes()))
    rows, result = build_one("csl", tmp_path / "out", sources=str(tmp_path / "src"))
    first = json.loads(real.read_text(encoding="utf-8").splitlines()[0])
    assert (rows[0]["query"], rows[0]["positive"]) == (first["title"].strip(), first["abstract"].strip())
    assert result.counts.read == 200 and result.counts.written == 200


# The catalog entries and the recipes' shape.


def test_catalog_states_each_rule_with_the_card_count_and_a_conservative_licence():
    catalog = load_catalog()
    for name in SOURCES:
        source = catalog[name]
        assert f"{source.card_rows:,}" in source.counting_rule, name
        assert source.license.reason and source.license.card_commercial in ("yes", "no", "unstated"), name
        if source.license.card_commercial != "yes" or "unstated" in source.license.spdx:
            assert not source.commercial, name
    assert [n for n in SOURCES if catalog[n].commercial] == ["csl"]
    assert not catalog["amazon_reviews_multi"].available


@pytest.mark.parametrize("name", ["belle_2m", "firefly", "zhihu_kol", "chatmed_consult", "csl"])
def test_large_sources_stream_row_by_row(name):
    """No grouping and no whole-file reader: the framework streams them in bounded batches."""
    recipe = load_recipe(name)
    assert recipe.group_by is None and recipe.read is None
