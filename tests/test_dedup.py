"""Exact and near dedup: planted clusters found exactly, the keep rule, components; decontamination."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from m3e_data.stages.hq.decontaminate import EvalFileError, EvalIndex, contaminated, read_eval_texts
from m3e_data.stages.hq.dedup import (
    components,
    exact_duplicates,
    keep_order,
    near_duplicates,
    pair_similarity,
    question_rows,
    survivors,
)
from m3e_data.stages.hq.distinct import distinct
from m3e_data.stages.hq.minhash import band_keys, signatures
from m3e_data.stages.hq.quality import StatsParams, band_columns, compute_stats, text_keys

HAN = [chr(c) for c in range(0x4E00, 0x4E00 + 2000)]


def _sentence(rng: random.Random, n: int) -> str:
    return "".join(rng.choices(HAN, k=n))


def _edit(text: str, positions: list[int]) -> str:
    chars = list(text)
    for p in positions:
        chars[p] = "○"
    return "".join(chars)


def _near(queries, positives, rank=None, threshold=0.8, homogeneous=None):
    n = len(queries)
    pair_sig = np.minimum(signatures(queries), signatures(positives))
    bands = band_keys(pair_sig, 20, 6)
    rank = np.arange(n) if rank is None else rank
    return near_duplicates(
        n, ((np.arange(n), bands[:, i]) for i in range(20)),
        lambda g: ([queries[i] for i in g], [positives[i] for i in g]), rank, threshold,
        None if homogeneous is None else np.asarray(homogeneous, dtype=bool),
    )


def test_different_questions_about_one_passage_are_not_duplicates():
    """cmrc2018 / dureader / mlqa: several questions share a long context. The united pair sets are
    near-identical (the passage dominates), but the pairs are different training examples."""
    rng = random.Random(3)
    passage = _sentence(rng, 300)
    questions = [_sentence(rng, 10) for _ in range(5)]
    # The same question with a slightly different passage is still a duplicate.
    keep, verified = _near(questions + [questions[0]], [passage] * 5 + [_edit(passage, [100])])
    assert keep[:5].tolist() == [0, 1, 2, 3, 4]  # each question survives
    assert int(keep[5]) == 0
    assert verified.select("a", "b").rows() == [(0, 5)]


def test_s2s_pairs_match_in_swapped_order_only_when_both_rows_are_s2s():
    rng = random.Random(5)
    a, b = _sentence(rng, 20), _sentence(rng, 20)
    queries = [a, b + "吗", _sentence(rng, 20)]
    positives = [b, a, _sentence(rng, 20)]
    keep, _ = _near(queries, positives, homogeneous=[True, True, True])
    assert int(keep[1]) == 0
    keep, _ = _near(queries, positives, homogeneous=[True, False, True])
    assert keep.tolist() == [0, 1, 2]


def test_planted_clusters_are_found_exactly():
    rng = random.Random(7)
    queries, positives = [], []
    for _ in range(60):  # unrelated background pairs
        queries.append(_sentence(rng, 12))
        positives.append(_sentence(rng, 60))
    base_q, base_p = _sentence(rng, 12), _sentence(rng, 80)
    # Row 60 is the base; 61 and 62 change one character of the positive (Jaccard ~0.96), 63 changes many
    # (Jaccard ~0.5: not a duplicate); 64-65 are a second cluster.
    queries += [base_q, base_q, base_q, base_q]
    positives += [base_p, _edit(base_p, [40]), _edit(base_p, [10]), _edit(base_p, list(range(0, 80, 4)))]
    other_q, other_p = _sentence(rng, 15), _sentence(rng, 50)
    queries += [other_q, other_q[:7] + " " + other_q[7:] + "？"]  # the same question, spaced and punctuated
    positives += [other_p, other_p]
    keep, verified = _near(queries, positives)
    dropped = {i: int(keep[i]) for i in range(len(queries)) if keep[i] != i}
    assert dropped == {61: 60, 62: 60, 65: 64}
    assert verified["jaccard"].min() >= 0.8


def test_keep_rule_source_priority_then_negatives_then_id():
    rows = pl.DataFrame(
        {
            "gidx": [0, 1, 2, 3, 4],
            "id": ["e/1", "d/1", "c/1", "b/1", "a/1"],
            "quality": ["good", "good", "excellent", "excellent", "good"],
            "commercial": [True, True, False, True, False],
            "n_neg": [0, 2, 5, 0, 3],
        }
    )
    rank = keep_order(rows)
    # excellent+commercial (3) < excellent non-commercial (2) < good commercial with negatives (1)
    # < good commercial without (0) < good non-commercial (4)
    assert np.argsort(rank).tolist() == [3, 2, 1, 0, 4]
    # Ties on everything fall to the smallest id.
    same = rows.with_columns(quality=pl.lit("good"), commercial=pl.lit(True), n_neg=pl.lit(0))
    assert np.argsort(keep_order(same)).tolist() == [4, 3, 2, 1, 0]


def test_survivor_is_the_best_ranked_member():
    labels = components(6, np.array([0, 1, 4]), np.array([1, 2, 5]))
    assert labels.tolist() == [0, 0, 0, 3, 4, 4]
    keep = survivors(labels, np.array([5, 1, 9, 0, 3, 2]))
    assert keep.tolist() == [1, 1, 1, 3, 5, 5]


def test_components_follow_long_chains():
    n = 1000
    order = np.random.default_rng(0).permutation(n)
    labels = components(n, order[:-1], order[1:])
    assert set(labels.tolist()) == {0}


def test_exact_duplicates_keep_the_best_rank():
    keys = np.array([5, 7, 5, 5, 9], dtype=np.uint64)
    assert exact_duplicates(keys, np.array([3, 0, 1, 2, 4])).tolist() == [2, 1, 2, 2, 4]


def test_swapped_pairs_are_exact_duplicates_only_for_s2s_rows():
    import pyarrow as pa

    def keys(homogeneous: bool):
        t = pa.table({"id": ["a", "b"], "query": ["问题一", "问题二"], "positive": ["问题二", "问题一"],
                      "negatives": pa.array([[], []], pa.list_(pa.string())), "homogeneous": [homogeneous] * 2})
        return compute_stats(t).column("pair_key").to_pylist()

    s2s, s2p = keys(True), keys(False)
    assert s2s[0] == s2s[1]
    assert s2p[0] != s2p[1]


def test_near_dedup_compares_pairs_not_a_query_with_its_positive():
    # Near-identical pairs by design (wiki_atomic_edits): each query resembles its own positive, but two
    # different pairs are not duplicates of each other.
    rng = random.Random(1)
    queries = [_sentence(rng, 30) for _ in range(20)]
    positives = [q[:15] + "插入的短语" + q[15:] for q in queries]
    keep, verified = _near(queries, positives)
    assert verified.height == 0 and keep.tolist() == list(range(20))


# Sibling questions over one passage (issue 11.6): each differs from the other by what a reader must answer.
SIBLINGS = {
    "before_after": ("公元前五世纪的希腊在这一时期之前出现了什么建筑类型？", "公元前五世纪的希腊在这一时期之后出现了什么建筑类型？"),
    "content_word": ("奥地利学派的这位出生在维也纳的经济学家是什么理论的创始人？",
                     "奥地利学派的这位出生在维也纳的经济学家是哪国人？"),
    "chamber": ("二零一八年选举之后民主党在参议院有几个席位", "二零一八年选举之后民主党在众议院有几个席位"),
    "negation": ("东晋时期的宗室司马晏最后为什么被杀害？", "东晋时期的宗室司马晏最后为什么没被杀害？"),
    "entity": ("底特律第二浸信会教堂在一八六零年代由谁主持修建并且出资？", "底特律圣公会教堂在一八六零年代由谁主持修建并且出资？"),
    "number": ("这座城市在2018年的常住人口一共有多少万人？", "这座城市在2019年的常住人口一共有多少万人？"),
    "attribute": ("环氧氯丙烷这种有机化合物在工业上有什么特性？", "环氧氯丙烷这种有机化合物在工业上有什么用途？"),
}


@pytest.mark.parametrize("kind", sorted(SIBLINGS))
def test_sibling_questions_about_one_passage_are_not_merged(kind):
    rng = random.Random(11)
    passage = _sentence(rng, 300)
    q1, q2 = SIBLINGS[kind]
    # Under the pair rule alone these are duplicates: the passage carries the pair Jaccard, and one changed
    # word leaves each query's Jaccard at >= 0.5 — the case the question rule exists for.
    pair, side = pair_similarity([q1, q2], [passage, passage], np.array([0]), np.array([1]))
    assert pair[0] >= 0.8 and side[0] >= 0.5
    keep, verified = _near([q1, q2], [passage, passage])
    assert keep.tolist() == [0, 1] and verified.height == 0
    # The same passage copied with an edit changes nothing; the same question does merge.
    keep, _ = _near([q1, q2, q1], [passage, passage, _edit(passage, [150])])
    assert keep.tolist() == [0, 1, 0]


def test_copies_of_one_question_with_surface_noise_are_merged():
    """Punctuation, whitespace, full-/half-width forms and case: the noise copies pick up between sources."""
    rng = random.Random(12)
    passage = _sentence(rng, 300)
    variants = [
        "NBA在2019年的总决赛冠军是哪支球队？",
        "NBA在2019年的总决赛冠军是哪支球队?",  # half-width question mark
        "ＮＢＡ在２０１９年的总决赛冠军是哪支球队？",  # full-width Latin and digits
        "nba 在 2019 年的总决赛冠军是哪支球队",  # case, spaces, no punctuation
        "“NBA”在2019年的，总决赛冠军是哪支球队？！",  # quotes and stray punctuation
    ]
    positives = [passage, passage, _edit(passage, [20]), passage, _edit(passage, [200, 201])]
    unrelated = _sentence(rng, 12)
    keep, verified = _near([*variants, unrelated], [*positives, passage])
    assert keep.tolist() == [0, 0, 0, 0, 0, 5]
    assert verified["question"].all()
    # A positive that is not near-identical makes another pair, even with the same question.
    keep, _ = _near([variants[0], variants[1]], [passage, _edit(passage, list(range(0, 300, 5)))])
    assert keep.tolist() == [0, 1]


def test_s2s_rows_and_long_queries_keep_the_pair_rule():
    rng = random.Random(13)
    a, b = _sentence(rng, 30), _sentence(rng, 30)
    changed = _edit(a, [15])
    # s2s: one changed character in one of two 30-character sentences is still a near duplicate.
    keep, verified = _near([a, changed], [b, b], homogeneous=[True, True])
    assert keep.tolist() == [0, 0] and not verified["question"].any()
    # The same rows as s2p: the query is no longer than the positive, so they are two questions.
    keep, _ = _near([a, changed], [b, b])
    assert keep.tolist() == [0, 1]
    # s2p with a query longer than its positive (an instruction and a short answer): the pair rule.
    long_q, short_p = _sentence(rng, 60), _sentence(rng, 20)
    keep, _ = _near([long_q, _edit(long_q, [30])], [short_p, short_p])
    assert keep.tolist() == [0, 0]
    # An s2s row and a question row: the question rule, as the stricter of the two.
    keep, _ = _near([a, changed], [b, b], homogeneous=[True, False])
    assert keep.tolist() == [0, 1]


@pytest.mark.parametrize("compiled", [True, False])
def test_question_rows_compare_normalised_lengths(compiled, monkeypatch):
    from m3e_data.stages.hq import sketch

    monkeypatch.setattr(sketch, "USE_NUMBA", compiled and sketch.numba is not None)
    q, p = ["问题？？？", "一二三四五六", "ＡＢ", "甲乙"], ["答案是这样的", "一二三", "abc!", "丙丁"]
    question, norm = question_rows(q, p, np.array([False, False, False, True]))
    # 2 <= 6; 6 > 3; "ab" (2) <= "abc" (3); s2s never.
    assert question.tolist() == [True, False, True, False]
    assert norm.tolist() == text_keys(pa.array(["问题", "一二三四五六", "ab", "甲乙"])).tolist()


def test_real_cmrc2018_questions_over_one_passage_all_survive(shared_fixtures):
    """200 real cmrc2018 questions over 52 passages. The pair rule merged one sibling pair here
    (环氧氯丙烷有什么特性？ / 环氧氯丙烷有什么用途？); the question rule keeps every question, and still
    merges a copy of a question that differs only in punctuation, spacing and width, over a passage with
    an edited character."""
    path = shared_fixtures / "cmrc2018" / "validation.hf_rows.jsonl"
    raw = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    queries, positives = [r["question"] for r in raw], [r["context"] for r in raw]
    i, j = queries.index("环氧氯丙烷有什么特性？"), queries.index("环氧氯丙烷有什么用途？")
    pair, side = pair_similarity(queries, positives, np.array([i]), np.array([j]))
    assert pair[0] >= 0.8 and side[0] >= 0.5
    keep, _ = _near(queries, positives)
    assert keep.tolist() == list(range(len(raw)))

    def width(text: str) -> str:  # half-width ASCII to its full-width form, as some copies store it
        return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)

    copies = list(range(0, 200, 10))
    noisy_q = [" " + width(queries[k]).replace("？", "?") + "。" for k in copies]
    noisy_p = [positives[k][:50] + "○" + positives[k][51:] for k in copies]
    keep, _ = _near(queries + noisy_q, positives + noisy_p)
    assert keep[: len(raw)].tolist() == list(range(len(raw)))
    assert keep[len(raw):].tolist() == copies

# ---------------------------------------------------------------------------------------------------------
# Decontamination


def test_read_eval_texts_formats(tmp_path):
    (tmp_path / "q.txt").write_text("第一句\n\n第二句\n", encoding="utf-8")
    (tmp_path / "q.tsv").write_text("qid\ttext\n1\t检索问题一\n2\t检索问题二\n", encoding="utf-8")
    (tmp_path / "q.jsonl").write_text(
        json.dumps({"query": "问一", "pos": ["正一"], "sentence1": "句一", "label": 1}, ensure_ascii=False) + "\n"
        + json.dumps({"text": "文本", "id": 3}, ensure_ascii=False) + "\n",
        encoding="utf-8",
    )
    assert read_eval_texts(tmp_path / "q.txt") == ["第一句", "第二句"]
    # The header line of the Hub's T2Ranking files (`qid\ttext`) is not an evaluation sentence.
    assert read_eval_texts(tmp_path / "q.tsv") == ["检索问题一", "检索问题二"]
    (tmp_path / "noheader.tsv").write_text("1\ttext\n2\t检索问题二\n", encoding="utf-8")
    assert read_eval_texts(tmp_path / "noheader.tsv") == ["text", "检索问题二"]
    assert read_eval_texts(tmp_path / "q.jsonl") == ["问一", "句一", "文本"]
    # A .json file may be JSON lines or one array of objects (C-MTEB reranking: "positive" is a list).
    (tmp_path / "arr.json").write_text(
        json.dumps([{"query": "问一", "positive": ["正一", "正二"], "negative": ["负一"]}, {"sentence1": "句一"}],
                   ensure_ascii=False, indent=2),
        encoding="utf-8",
    )
    assert read_eval_texts(tmp_path / "arr.json") == ["问一", "正一", "正二", "句一"]
    (tmp_path / "bad.jsonl").write_text("[1, 2]\n", encoding="utf-8")
    with pytest.raises(EvalFileError, match="expected a JSON object"):
        read_eval_texts(tmp_path / "bad.jsonl")


def test_contaminated_rows_exact_and_near(tmp_path):
    import pyarrow as pa

    evals = tmp_path / "dev.txt"
    long_eval = "北京市今天的最高气温是多少度，明天会不会下雨呢"
    evals.write_text(f"如何办理护照？\n{long_eval}\n", encoding="utf-8")
    params = StatsParams(text_bands=True)
    index = EvalIndex.build([evals], params)
    queries = ["如何办理护照", "完全无关的训练问题", "一个问题", "北京的天气"]
    positives = ["去出入境管理局办理。", "无关的回答内容", long_eval.replace("呢", "啊"), "很好"]
    table = pa.table({"id": [str(i) for i in range(4)], "query": queries, "positive": positives,
                      "negatives": pa.array([[]] * 4, pa.list_(pa.string())), "homogeneous": [False] * 4})
    stats = pl.from_arrow(compute_stats(table, params)).with_columns(pl.int_range(4, dtype=pl.Int64).alias("gidx"))
    cols = ["gidx", "q_key", "p_key", *band_columns("q", params.bands), *band_columns("p", params.bands)]
    hit = contaminated(stats.select(cols), index, lambda g: ([queries[i] for i in g], [positives[i] for i in g]), params)
    # Row 0: the query equals an eval sentence after normalisation; row 2: its positive is a near copy.
    assert hit["gidx"].to_list() == [0, 2]
    assert set(hit["file"].to_list()) == {str(evals)}


def test_real_t2ranking_queries_decontaminate(shared_fixtures, tmp_path):
    """T2Ranking's queries TSV (`qid\tquery`, no header in these samples; with one on the Hub) as an eval set:
    an exact copy (after normalisation) and a near copy of a query are caught, an unrelated row is not."""
    import pyarrow as pa

    source = shared_fixtures / "t2ranking" / "queries.test.tsv"
    if not source.exists():
        pytest.skip("T2Ranking sample absent")
    queries_tsv = source.read_text(encoding="utf-8")
    evals = read_eval_texts(source)
    assert len(evals) == len(queries_tsv.splitlines()) and "\t" not in "".join(evals)
    with_header = tmp_path / "queries.dev.tsv"
    with_header.write_text("qid\ttext\n" + queries_tsv, encoding="utf-8")
    assert read_eval_texts(with_header) == evals

    params = StatsParams(text_bands=True)
    index = EvalIndex.build([with_header], params)
    long_query = next(q for q in evals if len(q) >= 16)
    queries = [evals[0] + "？", long_query[:-1] + "啊", "完全无关的训练问题一二三"]
    positives = ["一段关于它的回答内容", "另一段回答文本内容", "无关的回答内容"]
    table = pa.table({"id": ["0", "1", "2"], "query": queries, "positive": positives,
                      "negatives": pa.array([[]] * 3, pa.list_(pa.string())), "homogeneous": [False] * 3})
    stats = pl.from_arrow(compute_stats(table, params)).with_columns(pl.int_range(3, dtype=pl.Int64).alias("gidx"))
    cols = ["gidx", "q_key", "p_key", *band_columns("q", params.bands), *band_columns("p", params.bands)]
    hit = contaminated(stats.select(cols), index, lambda g: ([queries[i] for i in g], [positives[i] for i in g]), params)
    assert hit["gidx"].to_list() == [0, 1]
    assert set(hit["file"].to_list()) == {str(with_header)}


def test_exact_jaccard_is_right_across_chunk_boundaries(monkeypatch):
    from m3e_data.stages.hq import dedup
    from m3e_data.stages.hq.dedup import edge_jaccard, pair_sets
    from m3e_data.stages.hq.minhash import shingles

    rng = random.Random(0)
    chars = HAN[:40]  # a small alphabet: many shared 3-grams
    queries = ["".join(rng.choices(chars, k=rng.randint(1, 30))) for _ in range(200)]
    positives = ["".join(rng.choices(chars, k=rng.randint(0, 60))) for _ in range(200)]
    monkeypatch.setattr(dedup, "PAIR_SET_ROWS", 37)
    monkeypatch.setattr(dedup, "EDGE_VALUES", 500)
    keys, ptr = pair_sets(queries, positives)
    a = np.array([rng.randrange(200) for _ in range(800)])
    b = np.array([rng.randrange(200) for _ in range(800)])
    got = edge_jaccard(keys, ptr, a, b)
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        sx = set(shingles(queries[x])) | set(shingles(positives[x]))
        sy = set(shingles(queries[y])) | set(shingles(positives[y]))
        assert got[i] == pytest.approx(len(sx & sy) / len(sx | sy) if sx | sy else 1.0)


@pytest.mark.skipif(not __import__("m3e_data.stages.hq.sketch", fromlist=["numba"]).numba, reason="numba not installed")
def test_compiled_verification_equals_the_numpy_reference(monkeypatch):
    """setsim's merged sorted sets give the numpy path's Jaccards bit for bit: edges within and across
    rows, empty and 1-2 character texts, s2s rows in either orientation, a row with itself, emoji, and
    real cmrc2018 questions over their passages where ../shared has them."""
    from m3e_data.stages.hq import dedup, sketch

    rng = random.Random(4)
    chars = HAN[:40] + ["😀", " ", "，"]
    queries = ["".join(rng.choices(chars, k=rng.choice([0, 1, 2, 3, 8, 30]))) for _ in range(300)]
    positives = [q[: len(q) // 2] + "".join(rng.choices(chars, k=rng.choice([0, 1, 2, 60]))) for q in queries]
    real = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "real" / "cmrc2018"
    if real.is_dir():
        for path in sorted(real.rglob("*.json"))[:1]:
            data = json.loads(path.read_text(encoding="utf-8"))
            for article in data.get("data", [])[:20]:
                for para in article.get("paragraphs", []):
                    for qa in para.get("qas", [])[:5]:
                        queries.append(qa["question"])
                        positives.append(para["context"])
    n = len(queries)
    a = np.array([rng.randrange(n) for _ in range(3000)] + [0, 5])
    b = np.array([rng.randrange(n) for _ in range(3000)] + [0, 5])
    swap = np.array([rng.random() < 0.5 for _ in range(len(a))])
    monkeypatch.setattr(sketch, "USE_NUMBA", True)
    fast = dedup.similarities(queries, positives, a, b, swap)
    monkeypatch.setattr(sketch, "USE_NUMBA", False)
    slow = dedup.similarities(queries, positives, a, b, swap)
    for f, s in zip(fast, slow, strict=True):
        assert f.dtype == s.dtype == np.float32 and np.array_equal(f, s)
    assert (fast[1] != slow[1]).sum() == 0 and len(set(fast[0].tolist())) > 10  # not a constant answer


def test_hq_on_real_cmrc2018_keeps_siblings_and_drops_noisy_copies(tmp_path, shared_fixtures):
    """Through build and the whole hq stage: every real question survives, and a copy of a question with
    full-width/punctuation noise over its passage with one character edited is a near duplicate of it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from m3e_data.stages.hq.stage import run_hq
    from tests.helpers import build_one

    path = shared_fixtures / "cmrc2018" / "validation.hf_rows.jsonl"
    raw = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    copies = []
    for k in range(0, 200, 25):
        row = dict(raw[k])
        context = row["context"]
        row.update(id=f"COPY_{k}", question=row["question"].replace("？", "?") + " ",
                   context=context[:30] + "○" + context[31:])
        copies.append(row)
    snapshot = tmp_path / "src" / "cmrc2018" / "data"
    snapshot.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(raw + copies), snapshot / "train-00000-of-00001.parquet")
    build_one("cmrc2018", tmp_path / "out", sources=str(tmp_path / "src"), splits=["train"])
    result = run_hq(tmp_path / "out", workers=1)["cmrc2018"]
    assert result.rows_in == 200 + len(copies) and result.rows_out == 200, result.dropped
    rejects = pl.read_parquet(tmp_path / "out" / "rejects" / "dedup" / "cmrc2018" / "*.parquet")
    # Which of the two survives is keep_order's business (the smaller id: here the copy).
    assert set(rejects["reason"]) == {"near_duplicate"}
    assert {frozenset(r) for r in rejects.select("id", "kept_id").rows()} == {
        frozenset((f"cmrc2018/train/COPY_{k}", f"cmrc2018/train/{raw[k]['id']}")) for k in range(0, 200, 25)
    }


def _old_path(queries, positives, bands, rank, homogeneous, threshold=0.8, side_threshold=0.5):
    """near_duplicates as it was before chunked verification: every involved row's texts and 3-gram sets
    at once, in one process. The reference the chunked, pooled path must equal exactly."""
    from m3e_data.stages.hq.dedup import candidates, similarities

    n = len(queries)
    edges = candidates(bands)
    involved = np.unique(np.concatenate([edges["a"].to_numpy(), edges["b"].to_numpy()]))
    q, p = [queries[i] for i in involved], [positives[i] for i in involved]
    la, lb = np.searchsorted(involved, edges["a"].to_numpy()), np.searchsorted(involved, edges["b"].to_numpy())
    s2s = homogeneous[involved]
    pair, query, positive = similarities(q, p, la, lb, s2s[la] & s2s[lb])
    question, norm = question_rows(q, p, s2s)
    strict = question[la] | question[lb]
    side = np.minimum(query, positive)
    dup = np.where(strict, (norm[la] == norm[lb]) & (positive >= threshold), (pair >= threshold) & (side >= side_threshold))
    verified = edges.filter(pl.Series(dup))
    return survivors(components(n, verified["a"].to_numpy(), verified["b"].to_numpy()), rank), verified


def _planted_corpus(n_base: int, seed: int) -> tuple[list[str], list[str], np.ndarray]:
    """Pairs at realistic lengths over a small alphabet (unrelated rows share 3-grams), with planted copies
    from Jaccard ~0.5 to exact, s2s and questions mixed."""
    rng = random.Random(seed)
    alphabet = HAN[:300]
    queries = ["".join(rng.choices(alphabet, k=rng.randint(10, 40))) for _ in range(n_base)]
    positives = ["".join(rng.choices(alphabet, k=rng.randint(50, 300))) for _ in range(n_base)]
    s2s = [rng.random() < 0.25 for _ in range(n_base)]
    for _ in range(n_base // 2):
        b = rng.randrange(n_base)
        edits = rng.choice([0, 1, 3, 8, 20])
        p = _edit(positives[b], rng.sample(range(len(positives[b])), edits))
        q = queries[b] + rng.choice(["", "？", " "])
        queries.append(q if rng.random() < 0.8 else positives[b][:30])
        positives.append(p)
        s2s.append(s2s[b] if rng.random() < 0.8 else not s2s[b])
    return queries, positives, np.array(s2s)


def _planted_bands(queries: list[str], positives: list[str]):
    """The 20 x 6 LSH bands of the rows' pair signatures (a fresh generator per call) and a fixed random
    rank: the inputs both verification paths below are compared on."""
    n = len(queries)
    keys = band_keys(np.minimum(signatures(queries), signatures(positives)), 20, 6)

    def bands():
        return ((np.arange(n), keys[:, i]) for i in range(20))

    return bands, np.random.default_rng(3).permutation(n)


def test_chunked_pooled_verification_equals_the_whole_at_once_path(monkeypatch):
    """Verification in chunks of a few rows, spread over a real process pool, gives exactly the survivors
    and verified edges of the old path (all involved rows at once, in the main process)."""
    from m3e_data.stages.hq import dedup
    from m3e_data.stages.hq.stage import _bounded_map

    queries, positives, s2s = _planted_corpus(1200, seed=11)
    n = len(queries)
    bands, rank = _planted_bands(queries, positives)
    want_keep, want_edges = _old_path(queries, positives, bands(), rank, s2s)
    assert (want_keep != np.arange(n)).sum() > 100 and want_edges["a"].n_unique() > 100  # a real workload

    texts_calls = []

    def texts(g):
        texts_calls.append(len(g))
        return [queries[i] for i in g], [positives[i] for i in g]

    monkeypatch.setattr(dedup, "VERIFY_ROWS", 200)
    keep, verified = near_duplicates(n, bands(), texts, rank, 0.8, s2s, 0.5,
                                     map_chunks=lambda fn, items, th: _bounded_map(fn, items, th, 2))
    assert keep.tolist() == want_keep.tolist()
    assert verified.select("a", "b").sort("a", "b").rows() == want_edges.select("a", "b").sort("a", "b").rows()
    assert max(texts_calls) <= 200 and len(texts_calls) > 5  # bounded: never more than a chunk's rows at once
    # Serially (no pool) too.
    keep, _ = near_duplicates(n, bands(), texts, rank, 0.8, s2s, 0.5)
    assert keep.tolist() == want_keep.tolist()


def test_source_texts_spill_the_candidates_once_and_give_the_same_verdicts(tmp_path, monkeypatch):
    """The stage's text source reads rows by global number from the sources' parquet (rows dropped before
    dedup skipped); near dedup sets the candidates' texts aside in one pass over the files, reads every
    chunk from there (the files are not read again), gives the in-memory path's verdicts, and leaves no
    scratch file behind; on the run's pool, several writers spill at once."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from m3e_data.stages.hq import dedup, spill, stage

    queries, positives, s2s = _planted_corpus(600, seed=4)
    n = len(queries)
    # Two sources; in each, every 7th row was dropped before dedup (not alive): gidx skips it.
    split = n // 2
    sources, local, offsets = [], [], [0]
    for s, (lo, hi) in enumerate(((0, split), (split, n))):
        folder = tmp_path / "m3e" / f"src{s}"
        folder.mkdir(parents=True)
        rows_q, rows_p, alive = [], [], []
        for i in range(lo, hi):
            if (i - lo) % 7 == 3:
                rows_q.append("dropped row")
                rows_p.append("dropped row")
            alive.append(len(rows_q))
            rows_q.append(queries[i])
            rows_p.append(positives[i])
        pq.write_table(pa.table({"query": rows_q, "positive": rows_p}), folder / "part-00000.parquet",
                       row_group_size=97)
        sources.append(stage.SourceInput(f"src{s}", folder, {}, "similarity", "good", {}))
        local.append(np.array(alive, dtype=np.int64))
        offsets.append(offsets[-1] + len(alive))
    scratch = tmp_path / "scratch"
    texts = stage.SourceTexts(sources, np.array(offsets), local, scratch)
    some = np.random.default_rng(0).choice(n, 300, replace=False)
    assert texts(some) == ([queries[i] for i in some], [positives[i] for i in some])

    bands, rank = _planted_bands(queries, positives)
    want_keep, want_edges = _old_path(queries, positives, bands(), rank, s2s)
    reads = []
    real_range = stage.row_range
    monkeypatch.setattr(stage, "row_range", lambda path, *a, **k: reads.append(path.parent.name) or real_range(path, *a, **k))
    monkeypatch.setattr(dedup, "VERIFY_ROWS", 150)
    keep, verified = near_duplicates(n, bands(), texts, rank, 0.8, s2s, 0.5)
    assert keep.tolist() == want_keep.tolist()
    assert verified.select("a", "b").rows() == want_edges.select("a", "b").sort("a", "b").rows()
    assert sorted(reads) == ["src0", "src1"]  # each source read once, for many chunks
    assert not scratch.exists()
    # On a pool, each worker reads its chunk's rows from the spill file itself: the same verdicts.
    reads.clear()
    keep, verified = near_duplicates(n, bands(), texts, rank, 0.8, s2s, 0.5,
                                     map_chunks=lambda fn, items, th: stage._bounded_map(fn, items, th, 2))
    assert keep.tolist() == want_keep.tolist()
    assert verified.select("a", "b").rows() == want_edges.select("a", "b").sort("a", "b").rows()
    assert sorted(reads) == ["src0", "src1"] and not scratch.exists()
    # In a run (its pool open), the spill itself is written by several writers on the pool.
    plans = []
    real_plan = spill.SharedSpill.plan
    monkeypatch.setattr(spill.SharedSpill, "plan", lambda *a: plans.append(real_plan(*a)) or plans[-1])
    monkeypatch.setattr(stage, "SPILL_ROWS", 100)
    with stage.worker_pool(2):
        keep, verified = near_duplicates(n, bands(), texts, rank, 0.8, s2s, 0.5, map_chunks=stage._pool_map)
    assert keep.tolist() == want_keep.tolist()
    assert verified.select("a", "b").rows() == want_edges.select("a", "b").sort("a", "b").rows()
    assert len(plans) == 1 and plans[0].writers >= 3 and not scratch.exists()


@pytest.mark.parametrize("dtype", [np.int64, np.uint64, np.int32])
def test_distinct_is_np_unique(dtype):
    rng = np.random.default_rng(7)
    for n in (0, 1, 2, 5, 1000, 100_000):
        values = rng.integers(0, max(n // 3, 1), n).astype(dtype)
        if dtype is np.int64 and n:
            values[::7] = -values[::7]
        got = distinct(values)
        assert got.dtype == values.dtype and got.tolist() == np.unique(values).tolist()
