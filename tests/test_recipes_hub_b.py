"""Recipes for mlqa, xlsum, bq, paws_x, wiki_atomic_edits, dureader_robust, miracl_corpus, chinese_squad.

Each source: its exact rows on the demo data, its drop counts, its native negatives, each option's effect,
and, where the catalog lists several layouts, that a later layout is found when the earlier ones are absent
and that the error names every layout tried when none is there.
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from m3e_data.catalog import load_catalog
from m3e_data.stages.normalize.locate import SourceMissing, locate
from m3e_data.stages.normalize.stage import BuildOptions, build, build_source
from tests.helpers import build_one, pairs
from tests.make_demo import write_text


def build_dir(name: str, root: Path, out: Path, options: dict[str, str] | None = None):
    """Build `name` from a local directory `root` holding <name>/ (what --sources DIR reads)."""
    return build_one(name, out, sources=str(root), options=options)


def assert_names_every_layout(name: str, tmp_path: Path) -> None:
    """An empty source folder: locate names each layout, and the build reports the source missing."""
    (tmp_path / "src" / name).mkdir(parents=True)
    source = load_catalog()[name]
    with pytest.raises(SourceMissing) as err:
        locate(source, str(tmp_path / "src"))
    for layout in source.access.layouts:
        assert f"layout {layout.name!r}" in str(err.value)
    result = build_source(source, BuildOptions(out=tmp_path / "out", sources=str(tmp_path / "src")))
    assert result.status == "missing" and str(err.value) == result.reason


def squad_doc(title: str, context: str, qas: list[tuple[str, str, str | None]], version: bool = True) -> str:
    """A SQuAD v1.1-style document: (id, question, answer or None) per question."""
    doc = {
        "data": [
            {
                "title": title,
                "paragraphs": [
                    {
                        "context": context,
                        "qas": [
                            {
                                "id": qid,
                                "question": q,
                                "answers": [] if a is None else [{"text": a, "answer_start": context.index(a)}],
                            }
                            for qid, q, a in qas
                        ],
                    }
                ],
            }
        ]
    }
    if version:
        doc["version"] = "1.1"
    return json.dumps(doc, ensure_ascii=False)


# mlqa ------------------------------------------------------------------------------------------------

HARBOR = "白石港是一个位于东海沿岸的深水港, 建于1908年. 港口 由 白石 港务局 管理, 每年吞吐量超过两亿吨."
ORGAN = "管风琴是一种通过压缩空气使音管发声的键盘乐器, 最早出现在古希腊. 中世纪时, 它成为教堂音乐的主要乐器."
CANAL = "青河运河全长一百二十公里, 连接北部平原和南部港口, 于1870年完工."


def test_mlqa_question_to_context_from_the_parquet_pull_request(tmp_path):
    rows, result = build_one("mlqa", tmp_path)
    assert result.layout == "parquet-pr5"
    assert pairs(rows) == [
        ("train", "白石港建于哪一年?", HARBOR, []),
        ("train", "谁管理白石港?", HARBOR, []),
        ("train", "管风琴最早出现在哪里?", ORGAN, []),
        ("validation", "青河运河有多长?", CANAL, []),
    ]
    assert rows[0]["id"] == "mlqa/train/5a1f00c1d2e3f40012a00001"
    assert result.counts.dropped == {"empty_text": 1}
    assert all(r["commercial"] and r["task"] == "qa" and not r["homogeneous"] for r in rows)


def test_mlqa_falls_back_to_the_export_then_to_the_raw_squad_json(tmp_path):
    demo = Path(__file__).resolve().parents[1] / "m3e_data" / "demo" / "mlqa" / "mlqa-translate-train.zh"
    export = tmp_path / "export" / "mlqa" / "mlqa-translate-train.zh"
    for split in ("train", "validation"):
        (export / split).mkdir(parents=True)
        shutil.copy(demo / f"{split}-00000-of-00001.parquet", export / split / "0000.parquet")
    rows, result = build_dir("mlqa", tmp_path / "export", tmp_path / "out1")
    assert result.layout == "parquet-export" and len(rows) == 4

    raw = tmp_path / "raw" / "mlqa" / "mlqa-translate-train"
    write_text(raw / "zh_squad-translate-train-train-v1.1.json", squad_doc("港口", HARBOR, [("q1", "白石港建于哪一年?", "1908年")]))
    write_text(raw / "zh_squad-translate-train-dev-v1.1.json", squad_doc("运河", CANAL, [("q2", "青河运河有多长?", "一百二十公里")]))
    rows, result = build_dir("mlqa", tmp_path / "raw", tmp_path / "out2")
    assert result.layout == "squad-tarball"
    assert pairs(rows) == [("train", "白石港建于哪一年?", HARBOR, []), ("validation", "青河运河有多长?", CANAL, [])]
    assert [r["id"] for r in rows] == ["mlqa/train/q1", "mlqa/validation/q2"]


def test_mlqa_missing_names_every_layout(tmp_path):
    assert_names_every_layout("mlqa", tmp_path)


def test_mlqa_reads_the_real_translate_train_format(tmp_path, shared_fixtures):
    raw = tmp_path / "src" / "mlqa" / "mlqa-translate-train"
    raw.mkdir(parents=True)
    real = shared_fixtures / "mlqa" / "zh_squad-translate-train-train-v1.1.dummy.json"
    shutil.copy(real, raw / "zh_squad-translate-train-train-v1.1.json")
    shutil.copy(real, raw / "zh_squad-translate-train-dev-v1.1.json")
    rows, result = build_dir("mlqa", tmp_path / "src", tmp_path / "out")
    assert result.layout == "squad-tarball" and result.counts.dropped == {}
    assert rows[0]["id"] == "mlqa/train/56be4db0acb8001400a502ec"
    assert rows[0]["query"] == "哪个nfl队代表亚足联在超级碗50?" and rows[0]["positive"].startswith("第50届超级碗")


# xlsum -----------------------------------------------------------------------------------------------

ICE_TEXT = "卫星数据显示，九月北极海冰面积只有三百多万平方公里。研究人员说，这与持续升温有关。他们警告，北极可能在本世纪中叶出现无冰的夏季。"
COFFEE_TEXT = "研究跟踪了五十万名成年人十年。结果显示，每天喝两到三杯咖啡的人死亡风险较低！但研究人员提醒，这只是相关性。"


def test_xlsum_title_to_summary_and_title_to_text_over_every_split(tmp_path):
    rows, result = build_one("xlsum", tmp_path)
    assert pairs(rows) == [
        ("train", "北极海冰面积创下新低", "科学家说，今年夏天北极海冰面积降到有记录以来的最低水平。", []),
        ("train", "北极海冰面积创下新低", ICE_TEXT, []),
        ("train", "高铁新线路开通运营", "一条连接两座省会城市的高铁线路周一开通，全程运行时间缩短到两个小时。", []),
        ("validation", "研究发现咖啡或有助长寿", "一项大型研究发现，每天适量饮用咖啡的人寿命略长。", []),
        ("validation", "研究发现咖啡或有助长寿", COFFEE_TEXT, []),
        ("test", "全球芯片短缺有所缓解", "分析人士说，芯片供应紧张的局面正在好转。", []),
        ("test", "全球芯片短缺有所缓解", "多家制造商表示，芯片交货时间已经缩短。汽车厂商的生产也逐步恢复。", []),
    ]
    assert [r["id"] for r in rows[:3]] == [
        "xlsum/train/world-12345678-summary", "xlsum/train/world-12345678-text",
        "xlsum/train/chinese-news-23456789-text",
    ]
    # the article without a summary keeps its title -> text pair
    assert result.counts.dropped == {"empty_text": 1}
    assert result.counts.read == 4 and result.counts.written == 7


def test_xlsum_options_pick_the_pairs_and_cut_the_text_at_a_sentence_end(tmp_path):
    rows, _ = build_one("xlsum", tmp_path / "a", options={"positives": "summary"})
    assert [r["id"].rsplit("-", 1)[1] for r in rows] == ["summary"] * 3

    rows, _ = build_one("xlsum", tmp_path / "b", options={"positives": "text", "max_text_chars": "40"})
    by_title = {r["query"]: r["positive"] for r in rows}
    # 40 characters end inside the second sentence: cut after the first sentence end in the second half
    assert by_title["北极海冰面积创下新低"] == "卫星数据显示，九月北极海冰面积只有三百多万平方公里。"
    assert by_title["研究发现咖啡或有助长寿"] == "研究跟踪了五十万名成年人十年。结果显示，每天喝两到三杯咖啡的人死亡风险较低！"
    assert by_title["全球芯片短缺有所缓解"] == "多家制造商表示，芯片交货时间已经缩短。汽车厂商的生产也逐步恢复。"  # 32 chars: kept

    rows, _ = build_one("xlsum", tmp_path / "c", options={"positives": "text", "max_text_chars": "0"})
    assert {r["query"]: r["positive"] for r in rows}["北极海冰面积创下新低"] == ICE_TEXT


def test_xlsum_truncate_cuts_hard_without_a_late_sentence_end():
    from m3e_recipes.xlsum import truncate

    assert truncate("一二三四五。六七八九十", 8) == "一二三四五。"  # a sentence end in the second half
    assert truncate("一二。三四五六七八九十", 8) == "一二。三四五六七"  # only one in the first half: hard cut
    assert truncate("短文本", 8) == "短文本"


def test_xlsum_an_unknown_positive_field_fails_the_source_with_a_clear_message(tmp_path):
    source = load_catalog()["xlsum"]
    options = BuildOptions(out=tmp_path, sources="demo", recipe_options={"xlsum": {"positives": "summary,body"}})
    (result,) = build([source], options)
    assert result.status == "failed" and "xlsum.positives takes summary and/or text, not body" in result.reason


def test_xlsum_missing_names_its_layout(tmp_path):
    assert_names_every_layout("xlsum", tmp_path)


# bq --------------------------------------------------------------------------------------------------


def test_bq_label_1_pairs_with_label_0_partners_as_negatives(tmp_path):
    rows, result = build_one("bq", tmp_path)
    assert pairs(rows) == [
        ("train", "信用卡额度怎么提高", "怎样才能提升我的信用卡额度", ["信用卡年费怎么收取", "信用卡额度为什么被降低了"]),
        ("train", "借款可以提前还吗", "能不能提前还清借款", []),
        ("validation", "转账多久能到账", "转账一般什么时候到账", []),
        ("test", "如何开通手机银行", "手机银行怎么开通", ["手机银行转账限额是多少"]),
    ]
    assert [r["id"] for r in rows] == ["bq/train/0", "bq/train/3", "bq/validation/0", "bq/test/0"]
    assert result.counts.dropped == {"label_not_1": 4}
    assert all(r["homogeneous"] and not r["commercial"] for r in rows)


def test_bq_reads_the_c_mteb_mirror_with_its_score_column(tmp_path):
    data = tmp_path / "src" / "bq" / "data"
    schema = pa.schema([("sentence1", pa.string()), ("sentence2", pa.string()), ("score", pa.int64())])
    for split in ("train", "validation", "test"):
        data.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pylist(
            [
                {"sentence1": "账单日可以改吗", "sentence2": f"怎么修改账单日（{split}）", "score": 1},
                {"sentence1": "账单日可以改吗", "sentence2": "账单怎么查询", "score": 0},
            ],
            schema=schema,
        )
        pq.write_table(table, data / f"{split}-00000-of-00001.parquet")
    rows, result = build_dir("bq", tmp_path / "src", tmp_path / "out")
    assert result.layout == "c-mteb"
    assert pairs(rows)[0] == ("train", "账单日可以改吗", "怎么修改账单日（train）", ["账单怎么查询"])
    assert len(rows) == 3 and result.counts.dropped == {"label_not_1": 3}


def test_bq_reads_the_qianyan_tsv_whose_test_file_is_unlabelled(tmp_path):
    folder = tmp_path / "src" / "bq" / "bq_corpus"
    write_text(folder / "train.tsv", "账单日可以改吗\t怎么修改账单日\t1\n账单日可以改吗\t账单怎么查询\t0\n")
    write_text(folder / "dev.tsv", "积分怎么兑换\t积分能换什么\t1\n")
    write_text(folder / "test.tsv", "密码忘了怎么办\t怎么重置密码\n")
    rows, result = build_dir("bq", tmp_path / "src", tmp_path / "out")
    assert result.layout == "qianyan-tsv"
    assert pairs(rows) == [
        ("train", "账单日可以改吗", "怎么修改账单日", ["账单怎么查询"]),
        ("validation", "积分怎么兑换", "积分能换什么", []),
    ]
    assert result.counts.dropped == {"label_not_1": 1, "unlabelled": 1}


def test_bq_malformed_tsv_rows_are_counted_and_never_fail_their_siblings(tmp_path):
    folder = tmp_path / "src" / "bq" / "bq_corpus"
    folder.mkdir(parents=True)
    (folder / "train.tsv").write_bytes(
        "账单日可以改吗\t怎么修改账单日\t1\n"
        "账单日可以改吗\t账单怎么查询\t0\n"
        "账单日可以改吗\n"  # cut short: no partner, no label
        "积分怎么兑换\t\t1\n"  # an empty partner
        "积分怎么兑换\t积分能换什么\t1\t多余\n".encode()  # a stray tab
        + b"\xff\xfe\t\xe4\xb9\t1\n"  # undecodable bytes
    )
    write_text(folder / "dev.tsv", "")
    write_text(folder / "test.tsv", "")
    rows, result = build_dir("bq", tmp_path / "src", tmp_path / "out")
    assert pairs(rows) == [("train", "账单日可以改吗", "怎么修改账单日", ["账单怎么查询"])]
    assert result.counts.dropped == {
        "label_not_1": 1, "unlabelled": 1, "empty_text": 1, "malformed_tsv_row": 1, "undecodable_bytes": 1,
    }


def test_bq_missing_names_every_layout(tmp_path):
    assert_names_every_layout("bq", tmp_path)


# paws_x ----------------------------------------------------------------------------------------------

S1 = "1998 年，Marco Ferri 从米兰搬到都灵，并在那里创办了一家出版社。"


def test_paws_x_label_1_pairs_with_word_swap_negatives_and_ns_rows_dropped(tmp_path):
    rows, result = build_one("paws_x", tmp_path)
    assert result.layout == "parquet"
    assert pairs(rows) == [
        ("train", S1, "1998 年，Marco Ferri 从米兰搬到都灵，在那里创立了一家出版社。",
         ["1998 年，Marco Ferri 从都灵搬到米兰，并在那里创办了一家出版社。"]),
        # its label-0 partner is the same text as the paraphrase: not a negative
        ("train", "这座教堂由建筑师 Anna Berg 设计，于 1902 年完工。", "这座教堂于 1902 年完工，由建筑师 Anna Berg 设计。", []),
        # its label-0 partner is "NS": never a negative
        ("validation", "他出生于里斯本，后来在巴黎学习绘画。", "他出生于里斯本，后来去巴黎学习绘画。", []),
        ("test", "该球队在 2005 年赢得了联赛冠军。", "2005 年，该球队赢得了联赛冠军。", []),
    ]
    assert [r["id"] for r in rows] == ["paws_x/train/1", "paws_x/train/3", "paws_x/validation/1", "paws_x/test/1"]
    assert result.counts.dropped == {"label_not_1": 3, "ns_placeholder": 2}
    assert all(r["commercial"] for r in rows)


def test_paws_x_falls_back_to_the_parquet_export(tmp_path):
    demo = Path(__file__).resolve().parents[1] / "m3e_data" / "demo" / "paws_x" / "zh"
    for split in ("train", "validation", "test"):
        folder = tmp_path / "src" / "paws_x" / "zh" / split
        folder.mkdir(parents=True)
        shutil.copy(demo / f"{split}-00000-of-00001.parquet", folder / "0000.parquet")
    rows, result = build_dir("paws_x", tmp_path / "src", tmp_path / "out")
    assert result.layout == "parquet-export" and len(rows) == 4


def test_paws_x_reads_the_nli_zh_export_without_ids(tmp_path):
    schema = pa.schema([("sentence1", pa.string()), ("sentence2", pa.string()), ("label", pa.int32())])
    for split in ("train", "validation", "test"):
        folder = tmp_path / "src" / "paws_x" / "PAWSX" / split
        folder.mkdir(parents=True)
        rows = [
            {"sentence1": "该河向南流。", "sentence2": f"该河流向南方（{split}）。", "label": 1},
            {"sentence1": "该河向南流。", "sentence2": "该河向北流。", "label": 0},
        ]
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), folder / "0000.parquet")
    rows, result = build_dir("paws_x", tmp_path / "src", tmp_path / "out")
    assert result.layout == "nli-zh-export"
    assert pairs(rows)[0] == ("train", "该河向南流。", "该河流向南方（train）。", ["该河向北流。"])
    assert [r["id"] for r in rows] == ["paws_x/train/0", "paws_x/validation/0", "paws_x/test/0"]


def test_paws_x_reads_the_upstream_tsv_with_its_ns_placeholders(tmp_path):
    folder = tmp_path / "src" / "paws_x" / "x-final" / "zh"
    header = "id\tsentence1\tsentence2\tlabel\n"
    write_text(folder / "translated_train.tsv", header + '1\t他说"你好"。\t他说："你好"。\t1\n2\t他说"你好"。\t她说"你好"。\t0\n')
    write_text(folder / "dev_2k.tsv", header + "7\tNS\t该镇位于河边。\t1\n")
    write_text(folder / "test_2k.tsv", header + "9\t该镇位于河边。\tNS\t0\n")
    rows, result = build_dir("paws_x", tmp_path / "src", tmp_path / "out")
    assert result.layout == "x-final-tsv"
    assert pairs(rows) == [("train", '他说"你好"。', '他说："你好"。', ['她说"你好"。'])]
    assert rows[0]["id"] == "paws_x/train/1"
    assert result.counts.dropped == {"label_not_1": 1, "ns_placeholder": 2}


def test_paws_x_malformed_rows_are_counted_and_a_malformed_sibling_is_no_negative(tmp_path):
    folder = tmp_path / "src" / "paws_x" / "x-final" / "zh"
    header = "id\tsentence1\tsentence2\tlabel\n"
    s1 = '他说"你好"。'
    write_text(
        folder / "translated_train.tsv",
        header
        + f"1\t{s1}\t他说：\"你好\"。\t1\n"
        + f"2\t{s1}\t她说\"你好\"。\t0\n"
        + f"3\t{s1}\n"  # cut short: no sentence2, no label
        + f"4\t{s1}\t他说了\"再见\"。\n"  # no label
        + f"5\t{s1}\t\t1\n"  # an empty paraphrase
        + "6\t甲\t乙\t1\t多余\n",  # a stray tab
    )
    write_text(folder / "dev_2k.tsv", header)
    write_text(folder / "test_2k.tsv", header)
    rows, result = build_dir("paws_x", tmp_path / "src", tmp_path / "out")
    assert pairs(rows) == [("train", s1, '他说："你好"。', ['她说"你好"。'])]
    assert [r["id"] for r in rows] == ["paws_x/train/1"]
    assert result.counts.dropped == {
        "label_not_1": 1, "missing_field:sentence2": 1, "unlabelled": 1, "empty_text": 1,
        "malformed_tsv_row": 1,
    }


def test_paws_x_real_dev_rows_drop_exactly_the_ns_placeholders(tmp_path, shared_fixtures):
    real = shared_fixtures / "paws_x_dev_real" / "dev_2k.head300.tsv"
    lines = real.read_text(encoding="utf-8").splitlines()[1:]
    fields = [line.split("\t") for line in lines]
    placeholders = sum("NS" in (f[1], f[2]) for f in fields)
    positives = sum(f[3] == "1" and "NS" not in (f[1], f[2]) for f in fields)
    folder = tmp_path / "src" / "paws_x" / "x-final" / "zh"
    folder.mkdir(parents=True)
    for name in ("translated_train.tsv", "dev_2k.tsv", "test_2k.tsv"):
        shutil.copy(real, folder / name)
    _, result = build_dir("paws_x", tmp_path / "src", tmp_path / "out")
    dev = result.splits["validation"]
    assert placeholders > 0 and dev.dropped["ns_placeholder"] == placeholders
    assert dev.written == positives and dev.read == len(lines)


def test_paws_x_missing_names_every_layout(tmp_path):
    assert_names_every_layout("paws_x", tmp_path)


# wiki_atomic_edits -----------------------------------------------------------------------------------


def test_wiki_atomic_edits_rejoins_the_tokenised_chinese_of_both_configs(tmp_path):
    rows, result = build_one("wiki_atomic_edits", tmp_path)
    assert result.layout == "parquet-export"
    assert pairs(rows) == [
        ("train", "青石镇位于江南省北部,为县级市.", "青石镇位于江南省北部,为历史文化县级市.", []),
        ("train", "该乐队于 2008 年发行首张专辑.", "该乐队于 2008 年在北京发行首张专辑.", []),
        ("train", "他曾在 NASA 担任工程师,后来回国任教.", "他曾在 NASA 担任工程师.", []),
    ]
    # ids are positions over both configs, so they never collide although the Parquet ids restart
    assert [r["id"] for r in rows] == ["wiki_atomic_edits/train/0", "wiki_atomic_edits/train/1", "wiki_atomic_edits/train/2"]
    assert result.counts.dropped == {"empty_text": 1}


@pytest.mark.parametrize(
    ("tokenised", "text"),
    [
        ("日本 以往 的 AV 男优 普遍 上 是 其貌不扬 .\n", "日本以往的 AV 男优普遍上是其貌不扬."),
        ("艾佛瑞 · 纽曼 , ( March 17 , 1900 ) , 美国 作曲 家 .", "艾佛瑞·纽曼,( March 17 , 1900 ),美国作曲家."),
        ("2016 年 8 月 31 日 赖素如", "2016 年 8 月 31 日赖素如"),
        ("Image: Chandra-crab.jpg |thumb |蟹 状 星云 .", "Image: Chandra-crab.jpg |thumb |蟹状星云."),
        ("Ελλάδα 的 首都 是 Αθήνα", "Ελλάδα 的首都是 Αθήνα"),
    ],
)
def test_wiki_atomic_edits_detokenize(tokenised, text):
    from m3e_recipes.wiki_atomic_edits import detokenize

    assert detokenize(tokenised) == text


def test_wiki_atomic_edits_falls_back_to_the_downloaded_tsv_gz(tmp_path):
    folder = tmp_path / "src" / "wiki_atomic_edits"
    folder.mkdir(parents=True)
    header = "base_sentence\tphrase\tedited_sentence\n"
    (folder / "insertions.tsv.gz").write_bytes(
        gzip.compress((header + "该 镇 位 于 河 边 .\t东\t该 镇 位 于 河 东 边 .\n").encode())
    )
    (folder / "deletions.tsv.gz").write_bytes(
        gzip.compress((header + "他 在 2001 年 去世 .\t在 2001 年\t他 去世 .\n一\t二\n三\t四\t五\t六\n").encode())
    )
    rows, result = build_dir("wiki_atomic_edits", tmp_path / "src", tmp_path / "out")
    assert result.layout == "tsv"
    assert pairs(rows) == [
        ("train", "该镇位于河边.", "该镇位于河东边.", []),
        ("train", "他在 2001 年去世.", "他去世.", []),
    ]
    # a row cut short misses edited_sentence; a row with a stray tab has too many fields
    assert result.counts.dropped == {"missing_field:edited_sentence": 1, "malformed_tsv_row": 1}


def test_wiki_atomic_edits_real_tsv_rows(tmp_path, shared_fixtures):
    folder = tmp_path / "src" / "wiki_atomic_edits"
    folder.mkdir(parents=True)
    for config in ("insertions", "deletions"):
        raw = (shared_fixtures / "wiki_atomic_edits" / f"chinese_{config}.dummy.tsv").read_bytes()
        (folder / f"{config}.tsv.gz").write_bytes(gzip.compress(raw))
    rows, result = build_dir("wiki_atomic_edits", tmp_path / "src", tmp_path / "out")
    assert result.counts.read == 8 and result.counts.written == 8 and not result.counts.dropped
    assert rows[1]["positive"] == "汕头市(官方音译:,传统外文:)位于广东省东部,为地级市,拥有经济特区地位."
    assert all("\n" not in r["positive"] for r in rows)


def test_wiki_atomic_edits_missing_names_every_layout(tmp_path):
    assert_names_every_layout("wiki_atomic_edits", tmp_path)


# dureader_robust -------------------------------------------------------------------------------------

TEA = "绿茶的冲泡水温一般在80度左右，水温过高会破坏茶叶中的维生素，使茶汤变黄、味道变苦。"
PHONE = "手机电池一般充电到百分之八十左右就可以拔掉，长期充满电并不利于电池寿命。"
STATION = "南站至机场的地铁全程约四十分钟，首班车六点发车，末班车晚上十一点发车。"


def test_dureader_robust_question_to_context_test_split_included(tmp_path):
    rows, result = build_one("dureader_robust", tmp_path)
    assert result.layout == "parquet-export"
    assert pairs(rows) == [
        ("train", "泡绿茶的水温多少度", TEA, []),
        ("train", "手机充电充到多少拔掉", PHONE, []),
        ("validation", "南站到机场地铁要多久", STATION, []),
        ("test", "机场地铁末班车几点", STATION, []),  # no answers, still a pair
    ]
    assert rows[0]["id"] == "dureader_robust/train/a1b2c3d4e5f60718293a4b5c6d7e8f90"
    assert result.counts.dropped == {"empty_text": 1}
    assert not any(r["commercial"] for r in rows)


def test_dureader_robust_falls_back_to_the_upstream_tarball(tmp_path):
    folder = tmp_path / "src" / "dureader_robust" / "dureader_robust-data"
    write_text(folder / "train.json", squad_doc("", TEA, [("t1", "泡绿茶的水温多少度", "80度左右")]))
    write_text(folder / "dev.json", squad_doc("", PHONE, [("d1", "手机充电充到多少拔掉", "百分之八十左右")]))
    # the test file's questions carry no answers
    write_text(folder / "test.json", squad_doc("", STATION, [("e1", "机场地铁末班车几点", None)], version=False))
    rows, result = build_dir("dureader_robust", tmp_path / "src", tmp_path / "out")
    assert result.layout == "squad-tarball"
    assert pairs(rows) == [
        ("train", "泡绿茶的水温多少度", TEA, []),
        ("validation", "手机充电充到多少拔掉", PHONE, []),
        ("test", "机场地铁末班车几点", STATION, []),
    ]
    assert [r["id"] for r in rows] == ["dureader_robust/train/t1", "dureader_robust/validation/d1", "dureader_robust/test/e1"]


def test_dureader_robust_missing_names_every_layout(tmp_path):
    assert_names_every_layout("dureader_robust", tmp_path)


# miracl_corpus ---------------------------------------------------------------------------------------


def test_miracl_title_to_passage_converted_to_simplified(tmp_path):
    rows, result = build_one("miracl_corpus", tmp_path)
    assert pairs(rows) == [
        ("train", "台湾大学", "国立台湾大学是位于台北市的一所综合大学，创立于1928年。", []),
        ("train", "台湾大学", "该校设有文学院、理学院、医学院等十一个学院。", []),
        ("train", "台湾大学", "校园内的椰林大道是著名的景点。", []),
        ("train", "长江", "长江是中国第一长河，全长约六千三百公里。", []),
        # tw2sp also maps regional words: 軟體 -> 软件, not 软体
        ("train", "软件工程", "软件工程是研究软件开发与维护的学科。", []),
    ]
    assert [r["id"] for r in rows][:2] == ["miracl_corpus/train/1001#0", "miracl_corpus/train/1001#1"]
    assert result.counts.dropped == {"truncated_line": 1, "missing_field:text": 1}


def test_miracl_options_keep_the_script_and_cap_passages_per_title(tmp_path):
    rows, _ = build_one("miracl_corpus", tmp_path / "a", options={"conversion": ""})
    assert rows[0]["query"] == "臺灣大學" and rows[-1]["positive"] == "軟體工程是研究軟體開發與維護的學科。"

    rows, result = build_one("miracl_corpus", tmp_path / "b", options={"max_passages_per_title": "2"})
    assert [r["id"].rsplit("/", 1)[1] for r in rows] == ["1001#0", "1001#1", "1002#0", "1003#0"]
    assert result.counts.dropped == {"truncated_line": 1, "missing_field:text": 1, "over_passages_per_title": 1}


def test_miracl_characters_only_conversion_and_an_unknown_one(tmp_path):
    rows, _ = build_one("miracl_corpus", tmp_path / "a", options={"conversion": "t2s"})
    assert rows[-1]["positive"] == "软体工程是研究软体开发与维护的学科。"
    options = BuildOptions(out=tmp_path, sources="demo", recipe_options={"miracl_corpus": {"conversion": "zh-xx"}})
    (result,) = build([load_catalog()["miracl_corpus"]], options)
    assert result.status == "failed" and "miracl_corpus.conversion must be one of" in result.reason


def test_miracl_missing_names_its_layout(tmp_path):
    assert_names_every_layout("miracl_corpus", tmp_path)


# chinese_squad ---------------------------------------------------------------------------------------

NORMANS = "诺曼人是在10世纪和11世纪把名字给了法国诺曼底的人。他们是北欧海盗的后裔，首领名叫罗洛。"


def test_chinese_squad_answerable_questions_from_the_github_zip(tmp_path):
    rows, result = build_one("chinese_squad", tmp_path)
    assert result.layout == "squad-zen"
    assert pairs(rows) == [
        ("train", "诺曼底在哪个国家？", NORMANS, []),
        ("train", "诺曼人的首领叫什么名字？", NORMANS, []),
        ("train", "城堡建于哪一年？", "这座城堡建于1120年，位于河流北岸，曾是当地领主的住所，现在是一座博物馆。", []),
        ("validation", "地球自转一周要多久？", "地球绕太阳公转一周约需365天，自转一周约需24小时。", []),
    ]
    # positions over the flattened questions (the paragraph without qas counts as one read)
    assert [r["id"] for r in rows] == [
        "chinese_squad/train/0", "chinese_squad/train/1", "chinese_squad/train/3", "chinese_squad/validation/0",
    ]
    assert result.counts.dropped == {"unanswerable": 2, "missing_field:qas": 1}
    assert not any(r["commercial"] for r in rows)


def test_chinese_squad_falls_back_to_squad_2_0_real_rows(tmp_path, shared_fixtures):
    real = shared_fixtures / "chinese_squad" / "dev-v2.0-zh.sample.json"
    qas = [q for a in json.loads(real.read_text(encoding="utf-8"))["data"] for p in a["paragraphs"] for q in p["qas"]]
    folder = tmp_path / "src" / "chinese_squad" / "ChineseSquad-master" / "squad_2.0"
    folder.mkdir(parents=True)
    shutil.copy(real, folder / "dev-v2.0-zh.json")
    shutil.copy(real, folder / "train-v2.0-zh.json")
    rows, result = build_dir("chinese_squad", tmp_path / "src", tmp_path / "out")
    assert result.layout == "squad-2.0"
    answerable = [q for q in qas if not q["is_impossible"]]
    assert result.splits["validation"].written == len(answerable)
    assert result.splits["validation"].dropped == {"unanswerable": len(qas) - len(answerable)}
    assert rows[0]["query"] == answerable[0]["question"]


def test_chinese_squad_missing_names_every_layout(tmp_path):
    assert_names_every_layout("chinese_squad", tmp_path)



@pytest.mark.parametrize("name", ["miracl_corpus", "wiki_atomic_edits", "xlsum", "mlqa", "dureader_robust"])
def test_large_sources_stream_without_grouping(name):
    from m3e_data.recipe import load_recipe

    # GROUP_BY buffers a whole split in memory; only the small pair-classification sources may use it
    assert load_recipe(name).group_by is None
