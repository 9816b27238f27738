"""The first five recipes on their demo data (synthetic rows in each source's exact upstream layout)."""

from tests.helpers import build_one, pairs

LAKE = "青梅湖位于江南省东部，是一座人工水库，建成于1978年。湖面面积约为二十平方公里，周边有多个自然村落。"
TOWER = "望江塔是一座七层砖木结构古塔，始建于明代万历年间，塔高四十二米，1996年被列为省级文物保护单位。"
BRIDGE = "长虹桥横跨清溪河，全长三百八十米，于2005年通车，是连接新城区与老城区的主要通道。"


def test_cmrc2018_question_to_context_over_every_split(tmp_path):
    rows, result = build_one("cmrc2018", tmp_path)
    assert pairs(rows) == [
        ("train", "青梅湖建成于哪一年？", LAKE, []),
        ("train", "青梅湖的湖面面积有多大？", LAKE, []),
        ("train", "望江塔始建于什么朝代？", TOWER, []),
        ("validation", "长虹桥全长多少米？", BRIDGE, []),
        ("test", "长虹桥是哪一年通车的？", BRIDGE, []),
    ]
    assert [r["id"] for r in rows][:2] == ["cmrc2018/train/TRAIN_1_QUERY_0", "cmrc2018/train/TRAIN_1_QUERY_1"]
    assert result.counts.dropped == {"empty_text": 1}
    assert {r["task"] for r in rows} == {"qa"} and not any(r["commercial"] for r in rows)


def test_ocnli_entailment_pairs_with_contradiction_negatives(tmp_path):
    rows, result = build_one("ocnli", tmp_path)
    assert pairs(rows) == [
        ("train", "我们下午三点在学校门口集合，然后一起去图书馆", "我们会去图书馆", ["我们上午在学校门口集合"]),
        ("train", "这家面馆的牛肉面分量很足，价格也不贵", "这家面馆的牛肉面很实惠", []),
        ("validation", "他每天早上骑自行车上班", "他上班不开车", []),
    ]
    assert [r["id"] for r in rows] == ["ocnli/train/0", "ocnli/train/3", "ocnli/validation/0"]
    # neutral (2) and contradiction (1) rows in train; the test row's -1 is no label
    assert result.counts.dropped == {"label_not_entailment": 3, "unlabelled": 1}
    assert all(r["homogeneous"] for r in rows)


def test_lcqmc_label_1_pairs_with_label_0_partners_as_negatives(tmp_path):
    rows, result = build_one("lcqmc", tmp_path)
    assert pairs(rows) == [
        ("train", "手机充电很慢怎么办", "手机充电速度慢如何解决", ["手机充电器多少钱一个", "手机电池不耐用怎么办"]),
        ("train", "哪里可以学习游泳", "去什么地方能学游泳", []),
        ("validation", "怎样煮出好吃的米饭", "米饭怎么煮才好吃", []),
        ("test", "北京到上海坐高铁要多久", "高铁从北京到上海需要几个小时", []),
    ]
    assert result.counts.dropped == {"label_not_1": 3}


def test_hc3_one_pair_per_answer_and_a_truncated_line_is_counted(tmp_path):
    rows, result = build_one("hc3_chinese", tmp_path)
    assert pairs(rows) == [
        ("train", "为什么冬天容易感冒", "冬天气温低，人体抵抗力下降，病毒也更容易传播。", []),
        ("train", "为什么冬天容易感冒", "冬季室内通风较差，人群聚集，病毒传播机会增加，因此更容易感冒。", []),
        ("train", "如何提高记忆力", "多复习，保证睡眠。", []),
        ("train", "如何提高记忆力", "可以试试把要记的内容讲给别人听。", []),
        ("train", "股票和基金有什么区别", "股票是公司所有权的凭证，基金则是把很多人的钱集中起来由专业人士投资。", []),
    ]
    assert [r["id"] for r in rows] == [
        "hc3_chinese/train/0-0", "hc3_chinese/train/0-1", "hc3_chinese/train/1-0", "hc3_chinese/train/1-1",
        "hc3_chinese/train/2",
    ]
    assert result.counts.dropped == {"malformed_json": 1}
    assert not any(r["commercial"] for r in rows)  # CC BY-SA, but conflicting with its source sets' licences


def test_news2016zh_title_to_content_from_the_nested_download_folder(tmp_path):
    rows, result = build_one("news2016zh", tmp_path)
    assert [(r["split"], r["query"]) for r in rows] == [
        ("train", "新款国产手机发布，续航提升三成"),
        ("train", "本周末江南地区将迎来降雨"),
        ("validation", "城市马拉松报名人数创新高"),
    ]
    assert rows[0]["positive"].startswith("本周二，一家国产手机厂商发布了新款旗舰手机。")
    assert rows[0]["id"] == "news2016zh/train/610130831"
    assert result.counts.dropped == {"empty_text": 1, "missing_field:title": 1}
    assert result.counts.read == 5 and result.counts.written == 3
