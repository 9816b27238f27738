"""Recipes of the download sources on their demo data (synthetic rows in each source's exact upstream
layout), their options, and their alternative layouts written into tmp_path."""

import hashlib
import json

import pytest
from m3e_recipes.lawzhidao import query as lawzhidao_query

from m3e_data.catalog import load_catalog
from m3e_data.stages.normalize.locate import SourceMissing, locate
from m3e_data.stages.normalize.stage import MISSING, BuildOptions, build_source
from tests.helpers import build_one, pairs


def ids(rows):
    return [r["id"] for r in rows]


# lawzhidao ------------------------------------------------------------------------------------------


def test_lawzhidao_every_reply_with_malformed_csv_rows_counted(tmp_path):
    rows, result = build_one("lawzhidao", tmp_path)
    assert pairs(rows) == [
        ("train", "房东不退押金怎么办", "可以先与房东协商，协商不成可向法院起诉要求返还押金。", []),
        ("train", "房东不退押金怎么办", "保留好租赁合同和付款凭证，必要时申请调解。", []),
        ("train", "交通事故对方全责但不赔偿怎么办\n对方车辆有保险，但一直拖着不处理。",
         "可以直接起诉对方和保险公司，要求在保险范围内先行赔付。", []),
        ("train", "公司拖欠工资可以去哪里投诉？", "可以向当地劳动监察大队投诉，或申请劳动仲裁。", []),
        ("train", "离婚后孩子抚养费怎么计算",
         "一般按月收入的20%至30%计算。\n有固定收入的按比例，没有的参照当地平均水平。", []),
    ]
    assert ids(rows) == [f"lawzhidao/train/{i}" for i in range(5)]
    assert result.counts.dropped == {"malformed_csv_row": 2, "empty_text": 1}
    assert result.counts.read == 8
    assert {r["task"] for r in rows} == {"qa"} and not any(r["commercial"] for r in rows)


def test_lawzhidao_best_answer_only_keeps_is_best_replies(tmp_path):
    rows, result = build_one("lawzhidao", tmp_path, options={"best_answer_only": "true"})
    assert ids(rows) == ["lawzhidao/train/0", "lawzhidao/train/2", "lawzhidao/train/4"]
    assert result.counts.dropped == {"malformed_csv_row": 2, "not_best_answer": 3}


def test_lawzhidao_question_joins_the_title_only_when_it_adds_something():
    assert lawzhidao_query("欠钱不还怎么办", "") == "欠钱不还怎么办"
    assert lawzhidao_query("欠钱不还怎么办？", " 欠钱不还，怎么办 ") == "欠钱不还怎么办？"
    assert lawzhidao_query("欠钱不还怎么办？", "不还") == "欠钱不还怎么办？"
    assert lawzhidao_query("欠钱不还怎么办", "欠钱不还怎么办，对方是亲戚") == "欠钱不还怎么办，对方是亲戚"
    assert lawzhidao_query("欠钱不还怎么办", "对方是亲戚。") == "欠钱不还怎么办\n对方是亲戚。"


# cinlid ---------------------------------------------------------------------------------------------


def test_cinlid_entailment_pairs_with_contradiction_partners_as_negatives(tmp_path):
    rows, result = build_one("cinlid", tmp_path)
    assert pairs(rows) == [
        ("train", "画蛇添足", "多此一举", ["恰到好处"]),
        ("train", "一心一意", "全神贯注", []),
    ]
    assert ids(rows) == ["cinlid/train/0", "cinlid/train/3"]
    assert result.layout == "jsonl"
    assert result.counts.dropped == {"label_not_entailment": 3, "malformed_json": 1, "unlabelled": 1}
    assert all(r["homogeneous"] for r in rows) and {r["task"] for r in rows} == {"similarity"}


def test_cinlid_luge_copy_is_one_gbk_object_found_when_the_jsonl_copy_is_absent(tmp_path):
    folder = tmp_path / "src" / "cinlid" / "CINLID"
    folder.mkdir(parents=True)
    data = {"data": [
        {"phrase1": "守株待兔", "phrase2": "坐享其成", "label": "entailment"},
        {"phrase1": "守株待兔", "phrase2": "积极进取", "label": "contradiction"},
        {"phrase1": "守株待兔", "phrase2": "刻舟求剑", "label": "neutral"},
    ]}
    (folder / "train.json").write_bytes(json.dumps(data, ensure_ascii=False).encode("gbk"))
    rows, result = build_one("cinlid", tmp_path / "out", sources=str(tmp_path / "src"))
    assert result.layout == "luge-gbk"
    assert pairs(rows) == [("train", "守株待兔", "坐享其成", ["积极进取"])]
    assert result.counts.dropped == {"label_not_entailment": 2}


def test_cinlid_missing_names_every_layout_tried(tmp_path):
    (tmp_path / "cinlid").mkdir()
    result = build_source(load_catalog()["cinlid"], BuildOptions(out=tmp_path / "out", sources=str(tmp_path)))
    assert result.status == MISSING
    assert "layout 'jsonl' (train: cinlid.json)" in result.reason
    assert "layout 'luge-gbk' (train: train.json)" in result.reason
    assert "luge.ai" in result.reason
    with pytest.raises(SourceMissing, match="layout 'jsonl'.*layout 'luge-gbk'"):
        locate(load_catalog()["cinlid"], str(tmp_path))


# dusql ----------------------------------------------------------------------------------------------


def test_dusql_question_to_sql_train_and_dev_skipping_empty_sql(tmp_path):
    rows, result = build_one("dusql", tmp_path)
    assert pairs(rows) == [
        ("train", "哪些城市的年降水量超过1000毫米？", "SELECT 城市 FROM 城市气候 WHERE 年降水量 > 1000", []),
        ("train", "年平均气温最高的城市是哪个？", "SELECT 城市 FROM 城市气候 ORDER BY 年平均气温 DESC LIMIT 1", []),
        ("validation", "销量前三的图书分别是哪些？", "SELECT 书名 FROM 图书 ORDER BY 销量 DESC LIMIT 3", []),
    ]
    assert ids(rows) == ["dusql/train/qid000001", "dusql/train/qid000002", "dusql/validation/qid100001"]
    assert result.counts.dropped == {"empty_sql": 1, "missing_field:question": 1}
    assert set(result.splits) == {"train", "validation"}  # test.json is not counted


def test_dusql_older_release_names_the_sql_string_sql_query(tmp_path):
    folder = tmp_path / "src" / "dusql"
    folder.mkdir(parents=True)
    rows_in = [{"question_id": "q1", "db_id": "d", "question": "有几个城市？", "sql_query": "SELECT count(*) FROM 城市"},
               {"question_id": "q2", "db_id": "d", "question": "空的", "sql_query": "  "}]
    (folder / "train.json").write_text(json.dumps(rows_in, ensure_ascii=False), encoding="utf-8")
    (folder / "dev.json").write_text("[]", encoding="utf-8")
    rows, result = build_one("dusql", tmp_path / "out", sources=str(tmp_path / "src"))
    assert pairs(rows) == [("train", "有几个城市？", "SELECT count(*) FROM 城市", [])]
    assert result.counts.dropped == {"empty_sql": 1}


# zhuiyi_nl2sql --------------------------------------------------------------------------------------

TABLE_1 = "Table_1a2b3c4d5e6f11e9aaaa000000000001"
TABLE_2 = "Table_1a2b3c4d5e6f11e9aaaa000000000002"


def test_zhuiyi_tableqa_sql_strings_are_built_from_sql_and_the_table_header(tmp_path):
    rows, result = build_one("zhuiyi_nl2sql", tmp_path)
    assert result.layout == "tableqa"
    assert pairs(rows) == [
        ("train", "杭州的航线票价最高是多少", f'SELECT MAX(票价) FROM {TABLE_1} WHERE 城市 == "杭州"', []),
        ("train", "飞杭州的最贵票价是多少钱", f'SELECT MAX(票价) FROM {TABLE_1} WHERE 城市 == "杭州"', []),
        ("train", "票价高于500且座位数少于200的是哪些城市和票价",
         f"SELECT 城市, 票价 FROM {TABLE_1} WHERE 票价 > 500 and 座位数 < 200", []),
        ("validation", "童书或者价格低于30元的书有几本",
         f'SELECT COUNT(书名) FROM {TABLE_2} WHERE 类别 == "童书" or 价格 < 30', []),
    ]
    assert result.counts.dropped == {"unknown_table": 1, "bad_value:IndexError": 1, "malformed_json": 1}
    assert set(result.splits) == {"train", "validation"}


def test_zhuiyi_train_only_on_a_tableqa_copy_still_joins_its_tables(tmp_path):
    # With train alone, luge's layout (train.json) matches first; the tables file beside it is still used.
    rows, result = build_one("zhuiyi_nl2sql", tmp_path, splits=["train"])
    assert len(rows) == 3 and rows[0]["positive"].startswith("SELECT MAX(票价) FROM Table_")
    assert result.counts.dropped == {"unknown_table": 1, "bad_value:IndexError": 1, "malformed_json": 1}


def test_zhuiyi_luge_layout_read_directly(tmp_path):
    folder = tmp_path / "src" / "zhuiyi_nl2sql" / "NL2SQL"
    folder.mkdir(parents=True)
    train = [{"question_id": "qid1", "db_id": "t1", "question": "杭州票价最高多少",
              "sql": {"sel": [1]}, "query": "SELECT MAX(票价) FROM 航线 WHERE 城市 == '杭州'"}]
    dev = [{"question_id": "qid2", "db_id": "t1", "question": "有几条航线", "sql_query": "SELECT COUNT(城市) FROM 航线"}]
    (folder / "train.json").write_text(json.dumps(train, ensure_ascii=False, indent=2), encoding="utf-8")
    (folder / "dev.json").write_text(json.dumps(dev, ensure_ascii=False, indent=2), encoding="utf-8")
    rows, result = build_one("zhuiyi_nl2sql", tmp_path / "out", sources=str(tmp_path / "src"))
    assert result.layout == "luge"
    assert pairs(rows) == [
        ("train", "杭州票价最高多少", "SELECT MAX(票价) FROM 航线 WHERE 城市 == '杭州'", []),
        ("validation", "有几条航线", "SELECT COUNT(城市) FROM 航线", []),
    ]
    assert ids(rows) == ["zhuiyi_nl2sql/train/0", "zhuiyi_nl2sql/validation/0"]


def test_zhuiyi_missing_names_every_layout_tried(tmp_path):
    (tmp_path / "zhuiyi_nl2sql").mkdir()
    result = build_source(load_catalog()["zhuiyi_nl2sql"], BuildOptions(out=tmp_path / "o", sources=str(tmp_path)))
    assert result.status == MISSING
    assert "layout 'luge' (train: train.json; validation: dev.json)" in result.reason
    assert "layout 'tableqa' (train: train.json, train.tables.json; validation: val.json, val.tables.json)" in (
        result.reason
    )


# cspider --------------------------------------------------------------------------------------------


def test_cspider_chinese_question_to_english_schema_sql(tmp_path):
    rows, result = build_one("cspider", tmp_path)
    assert pairs(rows) == [
        ("train", "一共有多少位歌手？", "SELECT count(*) FROM singer", []),
        ("train", "列出所有年龄大于30岁的歌手的名字。", "SELECT name FROM singer WHERE age > 30", []),
        ("validation", "养狗的学生有几个？", "SELECT count(*) FROM has_pet JOIN pets WHERE pet_type = 'dog'", []),
    ]
    assert ids(rows) == ["cspider/train/0", "cspider/train/1", "cspider/validation/0"]
    assert result.counts.dropped == {"empty_sql": 1}
    assert {r["task"] for r in rows} == {"sql"}


def test_cspider_and_zhuiyi_versions_follow_the_dusql_code_they_borrow():
    import inspect

    from m3e_data.recipe import load_recipe

    for name in ("cspider", "zhuiyi_nl2sql"):
        recipe = load_recipe(name)
        alone = hashlib.blake2b(inspect.getsource(recipe.module).encode(), digest_size=8).hexdigest()
        assert recipe.version != alone, name  # dusql's source is part of it: editing sql_pair rebuilds both


# baike2018qa ----------------------------------------------------------------------------------------


def test_baike2018qa_desc_replaces_a_truncated_title_and_crlf_is_normalised(tmp_path):
    rows, result = build_one("baike2018qa", tmp_path)
    assert pairs(rows) == [
        ("train", "人为什么感觉不到地球在转", "因为人和地球一起转动，\n而且转动非常平稳，没有明显的加速度。", []),
        ("train", "最近总是失眠，晚上躺下两三个小时都睡不着，白天又没精神，应该怎么调理？",
         "建议规律作息，睡前不要看手机，必要时就医。", []),
        ("train", "红烧肉怎么做才不腻", "先焯水去油，再用冰糖炒糖色，小火慢炖一个小时。", []),
        ("validation", "电脑开机很慢怎么办", "可以关闭不需要的开机启动项。", []),
    ]
    assert ids(rows) == ["baike2018qa/train/0", "baike2018qa/train/1", "baike2018qa/train/2", "baike2018qa/validation/0"]
    assert result.counts.dropped == {"empty_text": 1, "missing_field:answer": 1}


def test_baike2018qa_title_only_keeps_the_truncated_title(tmp_path):
    rows, _ = build_one("baike2018qa", tmp_path, options={"title_only": "true"})
    assert rows[1]["query"] == "最近总是失眠，晚上躺下两三个小时都睡不着，白天又"


# webtext2019zh --------------------------------------------------------------------------------------

RUN = "每天跑步有什么好处？"


def test_webtext2019zh_every_reply_from_every_file_with_br_as_newlines(tmp_path):
    rows, result = build_one("webtext2019zh", tmp_path)
    assert pairs(rows) == [
        ("train", RUN, "能增强心肺功能。\n还能改善睡眠。", []),
        ("train", RUN, "坚持跑步能控制体重，也让人心情更好。", []),
        ("train", "绿茶和红茶有什么区别", "绿茶不发酵，红茶是全发酵茶。", []),
        ("train", RUN, "跑步还能结交朋友。", []),
        ("validation", "怎样才能早起", "晚上早点睡，闹钟放远一点。\n坚持一周就习惯了。", []),
        ("test", "为什么猫喜欢纸箱", "纸箱让猫有安全感，也很保暖。", []),
    ]
    assert ids(rows)[:2] == ["webtext2019zh/train/0", "webtext2019zh/train/1"]
    assert result.counts.dropped == {
        "malformed_json": 1, "missing_field:title": 1, "undecodable_bytes": 1, "empty_text": 1,
    }


def test_webtext2019zh_best_answer_only_keeps_the_first_most_starred_reply_per_question(tmp_path):
    rows, result = build_one("webtext2019zh", tmp_path, options={"best_answer_only": "true"})
    assert ids(rows) == [
        "webtext2019zh/train/1", "webtext2019zh/train/2", "webtext2019zh/validation/0", "webtext2019zh/test/0",
    ]
    assert result.counts.dropped == {
        "malformed_json": 1, "missing_field:title": 1, "undecodable_bytes": 1, "empty_text": 1,
        "not_best_answer": 2,
    }


# simclue --------------------------------------------------------------------------------------------


def test_simclue_positive_pairs_with_train_rank_negatives(tmp_path):
    rows, result = build_one("simclue", tmp_path)
    assert pairs(rows) == [
        ("train", "花呗怎么提前还款", "花呗可以提前还吗", ["花呗怎么开通", "借呗怎么提前还款"]),
        ("train", "今天天气怎么样", "今天的天气如何", []),
        ("train", "如何学好英语口语", "怎么提高英语口语水平", ["如何学好英语语法"]),
    ]
    assert result.counts.dropped == {"missing_field:title": 1}
    assert all(r["homogeneous"] for r in rows) and not any(r["commercial"] for r in rows)


def test_simclue_rank_negatives_off_gives_m3e_plain_pairs(tmp_path):
    rows, _ = build_one("simclue", tmp_path, options={"rank_negatives": "false"})
    assert [r["negatives"] for r in rows] == [[], [], []]
    assert len(rows) == 3


def test_simclue_without_train_rank_still_builds_its_pairs(tmp_path):
    folder = tmp_path / "src" / "simclue" / "simclue_public"
    folder.mkdir(parents=True)
    (folder / "train_pair_postive.json").write_text('{"query": "你好", "title": "您好"}\n', encoding="utf-8")
    rows, _ = build_one("simclue", tmp_path / "out", sources=str(tmp_path / "src"))
    assert pairs(rows) == [("train", "你好", "您好", [])]


@pytest.mark.parametrize("name", ["news2016zh", "baike2018qa", "webtext2019zh", "lawzhidao", "simclue"])
def test_large_download_sources_never_buffer_a_split(name):
    """GROUP_BY holds a whole split in memory: not for the multi-GB downloads. webtext2019zh's reader is a
    generator (its best_answer_only pass keeps ~24 bytes a row, not the rows)."""
    import inspect

    from m3e_data.recipe import load_recipe

    recipe = load_recipe(name)
    assert recipe.group_by is None, name
    assert recipe.read is None or inspect.isgeneratorfunction(recipe.read), name
