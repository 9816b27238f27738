"""Quality statistics and rules on crafted rows, and language identification."""

from __future__ import annotations

import polars as pl
import pyarrow as pa
import pytest

from m3e_data.stages.hq import langid
from m3e_data.stages.hq.quality import (
    DEFAULTS,
    ThresholdError,
    apply_rules,
    compute_stats,
    resolve,
    text_keys,
)


def _rows(pairs, negatives=None, homogeneous=False) -> pa.Table:
    n = len(pairs)
    return pa.table(
        {
            "id": [f"r{i}" for i in range(n)],
            "query": [q for q, _ in pairs],
            "positive": [p for _, p in pairs],
            "negatives": pa.array(negatives or [[] for _ in range(n)], pa.list_(pa.string())),
            "homogeneous": [homogeneous] * n,
        }
    )


def _reasons(pairs, negatives=None, **overrides) -> list[str | None]:
    stats = pl.from_arrow(compute_stats(_rows(pairs, negatives)))
    return apply_rules(stats, resolve(overrides))["reason"].to_list()


GOOD = ("北京今天的天气怎么样", "北京今天晴，最高气温二十五度，适合出门。")


@pytest.mark.parametrize(
    ("pair", "reason"),
    [
        (GOOD, None),
        (("iPhone 15 Pro Max 256GB 价格", "苹果手机官方售价九千九百九十九元"), None),  # mixed zh/en
        (("台北今天的天氣怎麼樣", "台北今天多雲，午後有雷陣雨。"), None),  # Traditional Chinese
        (("用Python写一个快速排序", "def qsort(xs):\n    return sorted(xs)  # 快速排序的简写"), None),  # code
        (("今天好开心😀", "哈哈哈哈，我也很开心！"), None),  # emoji and a short laugh pass
        (("   ", "有内容的正文"), "empty_query"),
        (("有内容的问题", "\n\t "), "empty_positive"),
        (("你好呀", "你好呀！"), "query_equals_positive"),  # equal after normalisation
        (("明天北京的天气会怎么样呢", "明天北京的天气会怎么样呢吗"), "query_too_similar"),
        (("好", "这是一个完整的回答"), "query_too_short"),
        (("一个问题", "回答"), "positive_too_short"),
        (("问" * 1100, "正常的回答内容"), "query_too_long"),
        (("什么是机器学习", "作为一个AI语言模型，我认为机器学习是一门学科。"), "boilerplate"),
        (("What is the weather today", "今天天气很好，阳光明媚。"), "query_no_chinese"),
        (("翻译成英文：今天天气很好", "The weather is nice today."), "positive_no_chinese"),
        (("这个东西怎么样" + "啊" * 12, "还不错，值得购买。"), "query_repeated_chars"),
        (("好好学习天天向上", "好好学习天天向上" * 8), "positive_repeated_3grams"),
        (("这是什么表情", "😀😀😀🎉🎉!!!好"), "positive_special_chars"),
        (("東京の天気はどうですか", "晴れです、とても暑いです。"), "query_language"),
    ],
)
def test_each_rule_on_crafted_rows(pair, reason):
    assert _reasons([pair]) == [reason]


@pytest.mark.parametrize(
    ("pair", "reason"),
    [
        (("台北今天的天氣怎麼樣", "好" + "哈" * 11), "positive_repeated_chars"),  # Traditional query, a wall of 哈
        (("什麼什麼什麼什麼什麼什麼什麼", "這是一個正常的回答內容。"), "query_repeated_3grams"),  # Traditional
        (("😀😀😀🎉🎉🎉？！好", "今天很开心，和朋友出去玩了。"), "query_special_chars"),  # emoji are S*
        (("这句话用日语怎么说", "今日はとても暑いですね、水を飲みましょう。"), "positive_language"),
        (("写一个Python函数", "".join(f"def f{i}(a):\n    return a * {i}  # 乘以{i}\n" for i in range(600))),
         "positive_too_long"),  # code, over the 8,192-character cap
    ],
)
def test_more_rules_on_crafted_rows(pair, reason):
    assert _reasons([pair]) == [reason]


def test_boilerplate_catches_the_model_talking_about_itself_not_people():
    generated = [
        "作为一个AI语言模型，我无法回答这个问题。", "作为AI语言模型我不能提供医疗建议。", "作为一个人工智能助手，我建议你多休息。",
        "我是一个AI语言模型，没有个人观点。", "As an AI language model, I cannot browse.", "抱歉，我无法访问互联网上的实时信息。",
    ]
    human = [
        "作为一个AI从业者，我认为这个方向很有前景。", "我是一个AI工程师，平时主要写代码。", "作为人工智能领域的专家，他发表了很多论文。",
        "这个项目 was an aim of the team，大家都很努力。",
    ]
    stats = compute_stats(_rows([("请回答这个问题", text) for text in generated + human]))
    assert stats.column("boilerplate").to_pylist() == [True] * len(generated) + [False] * len(human)


def test_cjk_ratio_rule_lets_mixed_text_through_at_a_sane_threshold():
    mixed = ("iPhone 15 Pro Max 256GB 价格", "苹果手机官方售价九千九百九十九元")  # 2 Han of 16 letters
    code = ("用Python写一个快速排序", "def qsort(xs):\n    return sorted(xs)  # 快速排序")
    english = ("What is the price of the new iPhone 手机", "九千九百九十九元")  # 2 Han of 27 letters
    pairs = [mixed, code, english]
    assert _reasons(pairs) == [None, None, None]  # off by default: mixed Chinese/English is allowed
    assert _reasons(pairs, min_query_cjk_ratio=0.1) == [None, None, "query_low_cjk_ratio"]
    assert _reasons(pairs, min_query_cjk_ratio=0.5) == ["query_low_cjk_ratio", None, "query_low_cjk_ratio"]
    assert _reasons([code], min_positive_cjk_ratio=0.5) == ["positive_low_cjk_ratio"]


def test_language_of_latin_and_other_scripts_without_han():
    stats = compute_stats(_rows([("It’s a café — naïve", "Привет, как дела"), ("안녕하세요 여러분", "ＨＥＬＬＯ world")]))
    assert stats.column("q_lang").to_pylist() == ["en", "other"]
    assert stats.column("p_lang").to_pylist() == ["other", "en"]


def test_negative_equal_to_the_query_or_positive():
    negatives = [["完全不同的负例", "北京今天的天气怎么样？"], ["完全不同的负例"]]
    assert _reasons([GOOD, GOOD], negatives) == ["negative_equals_pair", None]


def test_special_characters_are_counted_by_category_not_a_list():
    # 一, 上 and 士 are letters (Lo); data-juicer's character list counts them as special.
    stats = compute_stats(_rows([("一上士", "一上士一上士"), ("！？。", "@#$%")]))
    assert stats.column("q_special").to_pylist() == [0, 3]
    assert stats.column("p_special").to_pylist() == [0, 4]


def test_statistics_columns():
    stats = compute_stats(_rows([("哈哈哈哈 abc", "abcabcabcabc"), ("日本語のテキスト", "")])).to_pylist()
    first, second = stats
    assert first["q_len"] == 7 and first["q_han"] == 4 and first["q_letters"] == 7 and first["q_max_run"] == 4
    assert first["p_shingles"] == 10 and first["p_rep3"] == pytest.approx(1 - 3 / 10)
    # shared 3-grams of "哈哈哈哈 abc" and "abcabcabcabc": {abc} of {哈哈哈, 哈哈 , 哈 a, " ab", abc, bca, cab}
    assert first["qp_jaccard"] == pytest.approx(1 / 7)
    assert second["q_lang"] == "ja" and second["p_len"] == 0 and second["p_lang"] == "none"


def test_thresholds_change_the_outcome_and_none_turns_a_rule_off():
    pair = ("明天北京的天气会怎么样呢", "明天北京的天气会怎么样呢吗")
    assert _reasons([pair]) == ["query_too_similar"]
    assert _reasons([pair], max_query_positive_jaccard=None) == [None]
    assert _reasons([("好", "这是一个完整的回答")], min_query_chars=1) == [None]


def test_resolve_layers_and_errors():
    t = resolve({"max_char_run": 5}, {"max_char_run": 7, "min_query_chars": 3})
    assert t["max_char_run"] == 7 and t["min_query_chars"] == 3 and t["min_positive_chars"] == DEFAULTS["min_positive_chars"]
    with pytest.raises(ThresholdError, match="unknown threshold 'max_len'"):
        resolve({"max_len": 3})
    with pytest.raises(ThresholdError, match="must be int"):
        resolve({"min_query_chars": "two"})
    assert resolve({"max_special_ratio": 1})["max_special_ratio"] == 1  # an int where a float is expected


def test_sql_positive_is_not_checked_as_prose():
    from m3e_data.stages.hq.quality import task_defaults

    stats = pl.from_arrow(compute_stats(_rows([("查询价格最高的商品", "SELECT name FROM t ORDER BY price DESC")])))
    assert apply_rules(stats, resolve())["reason"].to_list() == ["positive_no_chinese"]
    assert apply_rules(stats, resolve(task_defaults("sql")))["reason"].to_list() == [None]


def test_length_floors_per_task_keep_short_paraphrases():
    """Synthetic cinlid-like idiom pairs: a two-character paraphrase is a real similarity pair; the same
    positive is too short for a qa answer; one character is too short for anything."""
    from m3e_data.stages.hq.quality import task_defaults

    pairs = [("莺俦燕侣", "情侣"), ("一丝不苟", "认真"), ("好好", "好")]
    stats = pl.from_arrow(compute_stats(_rows(pairs, homogeneous=True)))
    for task in ("similarity", "nli"):
        assert apply_rules(stats, resolve(task_defaults(task)))["reason"].to_list() == [
            None, None, "positive_too_short"]
    assert apply_rules(stats, resolve(task_defaults("qa")))["reason"].to_list() == ["positive_too_short"] * 3


def test_every_catalog_threshold_is_known():
    """The catalog's per-task and per-source thresholds name real rules with values of the right kind."""
    from m3e_data.catalog import load_catalog, load_task_hq
    from m3e_data.schema import TASKS

    assert set(load_task_hq()) <= set(TASKS) and load_task_hq()["similarity"]["min_positive_chars"] == 2
    for task, values in load_task_hq().items():
        resolve(values, where=f"_tasks.yaml: {task}")
    for source in load_catalog().values():
        resolve(source.hq, where=f"{source.name}.yaml: hq")


def test_a_malformed_task_file_is_a_catalog_error(tmp_path):
    from m3e_data.catalog import CatalogError, load_task_hq

    (tmp_path / "_tasks.yaml").write_text("paraphrase:\n  min_positive_chars: 2\n", encoding="utf-8")
    with pytest.raises(CatalogError, match="'paraphrase' is not a task"):
        load_task_hq(tmp_path)
    (tmp_path / "_tasks.yaml").write_text("nli: 2\n", encoding="utf-8")
    with pytest.raises(CatalogError, match="field 'nli' must be a mapping"):
        load_task_hq(tmp_path)


def test_normalised_keys_meet_across_width_case_and_punctuation():
    keys = text_keys(pa.array(["ＨＥＬＬＯ，世界！", "hello 世界", "hello世界?", "hello 世間"]))
    assert keys[0] == keys[1] == keys[2] != keys[3]


def test_langid_restricted_profiles_and_gate(monkeypatch):
    assert langid.detect("北京今天的天气怎么样") == "zh-cn"
    assert langid.detect("北京今天的天氣怎麼樣") == "zh-tw"
    assert langid.detect("東京の天気はどうですか") == "ja"
    calls = []
    monkeypatch.setattr(langid, "detect", lambda t: calls.append(t) or "en")
    # Conclusive from counts alone: mostly Han without kana, or no Han and no kana.
    assert langid.classify("北京今天的天气怎么样", 10, 0, 10) == "zh"
    assert langid.classify("hello world", 0, 0, 10) == "en"
    assert langid.classify("안녕하세요", 0, 0, 5) == "other"
    assert langid.classify("12345", 0, 0, 0) == "none"
    assert calls == []
    assert langid.classify("iPhone 价格", 2, 0, 8) == "en"  # ambiguous: asks langdetect
    assert calls == ["iPhone 价格"]


def test_langid_is_deterministic():
    text = "iPhone 15 Pro Max 256GB 价格 and more English words here"
    assert len({langid.detect(text) for _ in range(5)}) == 1
