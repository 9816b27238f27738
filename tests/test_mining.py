"""Mining mechanics on crafted embeddings: every score is chosen, so every expected negative is known."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from m3e_data.schema import UNIFIED_SCHEMA
from m3e_data.stages.mine.halfsearch import half_by_default, margin
from m3e_data.stages.mine.mining import (
    MiningParams,
    mine_table,
    normalize_text,
    parse_range,
    plan_source,
    search_topk,
)

pytest.importorskip("torch")  # search_topk runs on torch

DIM = 16
E0 = np.eye(DIM, dtype=np.float32)[0]


def at_score(score: float, salt: int) -> np.ndarray:
    """A unit vector whose cosine with E0 is exactly `score`."""
    rest = np.random.default_rng(salt).normal(size=DIM).astype(np.float32)
    rest[0] = 0
    rest /= np.linalg.norm(rest)
    return score * E0 + np.sqrt(1 - score**2) * rest


def table(rows: list[tuple[str, str, list[str]]], homogeneous: bool = True) -> pa.Table:
    n = len(rows)
    return pa.table(
        {
            "id": [f"s/train/{i}" for i in range(n)],
            "source": ["s"] * n,
            "split": ["train"] * n,
            "query": [r[0] for r in rows],
            "positive": [r[1] for r in rows],
            "negatives": [r[2] for r in rows],
            "positive_score": pa.nulls(n, pa.float32()),
            "negative_scores": pa.nulls(n, pa.list_(pa.float32())),
            "task": ["similarity"] * n,
            "homogeneous": [homogeneous] * n,
            "domain": ["d"] * n,
            "license": ["l"] * n,
            "commercial": [True] * n,
        },
        schema=UNIFIED_SCHEMA,
    )


# The anchor query, its two positives (one through a second row with the same normalised query), twelve
# candidates c00..c11 at known cosines, and filler rows whose texts score -0.5 against the anchor.
CANDIDATE_SCORES = [0.85, 0.84, 0.80, 0.70, 0.69, 0.68, 0.60, 0.59, 0.50, 0.49, 0.40, 0.39]
VECTORS = {"天气怎么样": E0, "  天气怎么样 ": E0, "今天天气很好": at_score(0.9, 1), "今天天气不错": at_score(0.8, 2),
           "原生负例": at_score(0.3, 3)}
VECTORS.update({f"c{i:02d}": at_score(s, 100 + i) for i, s in enumerate(CANDIDATE_SCORES)})
ROWS = [
    ("天气怎么样", "今天天气很好", []),
    ("  天气怎么样 ", "今天天气不错", []),  # the same query after normalisation: its positive is a positive too
    *[(f"x{i:02d}", f"c{i:02d}", []) for i in range(len(CANDIDATE_SCORES))],
]


def encode(texts: list[str]) -> np.ndarray:
    out = []
    for t in texts:
        v = VECTORS.get(t)
        if v is None:  # filler: far from the anchor, deterministic
            v = at_score(-0.5, sum(map(ord, t)))
        out.append(v / np.linalg.norm(v))
    return np.stack(out).astype(np.float32)


def mined(rows=ROWS, homogeneous=True, row=0, **params):
    out, stats = mine_table(table(rows, homogeneous), encode, MiningParams(**params))
    r = out.to_pylist()[row]
    return r, stats


def test_normalize_text_folds_width_case_and_spaces():
    assert normalize_text("  ＡＢＣ\u3000 def\n") == "abc def"
    assert normalize_text("天气  怎么样") == normalize_text("天气 怎么样")


def test_parse_range():
    assert parse_range("10:100") == (10, 100)
    assert parse_range(":50") == (0, 50)
    for bad in ("100:10", "5", "a:b", "-1:3"):
        with pytest.raises(ValueError):
            parse_range(bad)


def test_plan_groups_rows_by_normalised_query_and_excludes_positives_and_query():
    plan = plan_source([r[0] for r in ROWS], [r[1] for r in ROWS], [r[2] for r in ROWS], True, 3)
    assert plan.group_of_row[0] == plan.group_of_row[1]
    excluded = {plan.corpus[i] for i in plan.group_excluded[plan.group_of_row[0]]}
    assert excluded == {"今天天气很好", "今天天气不错", "天气怎么样"}
    # s2p: queries are not candidates, so only the positives are in the corpus to exclude
    plan = plan_source([r[0] for r in ROWS], [r[1] for r in ROWS], [r[2] for r in ROWS], False, 3)
    assert "天气怎么样" not in plan.corpus
    assert {plan.corpus[i] for i in plan.group_excluded[0]} == {"今天天气很好", "今天天气不错"}


def test_top_negatives_skip_the_query_and_every_positive_of_the_query():
    r, stats = mined(num_negatives=3, relative_margin=None)
    # The query itself (cosine 1.0) and both positives (0.9, 0.8) outrank every candidate.
    assert r["negatives"] == ["c00", "c01", "c02"]
    assert r["negative_scores"] == pytest.approx([0.85, 0.84, 0.80], abs=1e-5)
    assert r["positive_score"] == pytest.approx(0.9, abs=1e-5)
    assert stats.removed.excluded >= 3


def test_relative_margin_drops_candidates_near_the_weakest_positive():
    r, stats = mined(num_negatives=3, relative_margin=0.05)
    # The group's weakest positive scores 0.80: the ceiling is 0.80 - 0.04 = 0.76.
    assert r["negatives"] == ["c03", "c04", "c05"]
    assert stats.removed.relative_margin >= 3


def test_max_score_guard():
    r, stats = mined(num_negatives=2, relative_margin=None, max_score=0.65)
    assert r["negatives"] == ["c06", "c07"]
    assert stats.removed.max_score >= 6


def test_rank_window_counts_ranks_after_exclusion():
    r, _ = mined(num_negatives=3, relative_margin=None, range_min=2, range_max=5)
    assert r["negatives"] == ["c02", "c03", "c04"]
    # A window narrower than N leaves the row short, and it is kept and counted.
    r, stats = mined(num_negatives=3, relative_margin=None, range_min=10, range_max=12)
    assert r["negatives"] == ["c10", "c11"]
    assert stats.rows_short >= 1


def test_random_sampling_is_seeded_stays_in_window_and_ignores_chunking():
    params = dict(num_negatives=4, relative_margin=None, range_min=0, range_max=12, sampling="random")
    a, _ = mined(seed=1, **params)
    b, _ = mined(seed=1, **params)
    c, _ = mined(seed=2, **params)
    assert a["negatives"] == b["negatives"]
    assert a["negatives"] != c["negatives"]
    for r in (a, c):
        assert set(r["negatives"]) <= {f"c{i:02d}" for i in range(12)}
        assert r["negative_scores"] == sorted(r["negative_scores"], reverse=True)
    one_by_one, _ = mine_table(table(ROWS), encode, MiningParams(seed=1, **params), chunk_size=1)
    assert one_by_one.to_pylist()[0]["negatives"] == a["negatives"]


def test_native_negatives_are_kept_scored_and_count_toward_n():
    rows = [("天气怎么样", "今天天气很好", ["原生负例"]), *ROWS[2:], ("y", "原生负例", [])]
    r, stats = mined(rows=rows, num_negatives=3, relative_margin=None)
    assert r["negatives"] == ["原生负例", "c00", "c01"]  # native first, then two mined
    assert r["negative_scores"][0] == pytest.approx(0.3, abs=1e-5)
    assert stats.native_negatives == 1
    # The native text is also in the corpus (another row's positive): it is not mined a second time.
    assert r["negatives"].count("原生负例") == 1


def test_rows_short_when_the_corpus_is_small():
    rows = [("a", "b", []), ("c", "d", [])]
    out, stats = mine_table(table(rows, homogeneous=False), encode, MiningParams(num_negatives=3, relative_margin=None))
    assert [r["negatives"] for r in out.to_pylist()] == [["d"], ["b"]]
    assert stats.rows_short == 2
    assert stats.mined_scores["count"] == 2


def test_search_topk_is_exact_and_chunked():
    rng = np.random.default_rng(0)
    q = rng.normal(size=(37, 8)).astype(np.float32)
    c = rng.normal(size=(101, 8)).astype(np.float32)
    ks = np.full(37, 5)
    chunks = list(search_topk(q, c, ks, chunk_size=10))
    assert [len(s) for _, s, _ in chunks] == [10, 10, 10, 7]
    indices = np.concatenate([i for _, _, i in chunks])
    expected = np.argsort(-(q @ c.T), axis=1)[:, :5]
    np.testing.assert_array_equal(indices, expected)


def collect(chunks) -> tuple[list[int], np.ndarray, np.ndarray]:
    chunks = list(chunks)
    return [s for s, _, _ in chunks], np.concatenate([c[1] for c in chunks]), np.concatenate([c[2] for c in chunks])


def fp16_order(q: np.ndarray, c: np.ndarray, k: int) -> np.ndarray:
    """Plain fp16 top-k, no rescoring: what a GPU search in fp16 alone would return."""
    import torch

    sims = torch.from_numpy(q).half() @ torch.from_numpy(c).half().T
    return torch.topk(sims, k, dim=1).indices.numpy()


def near_ties(rng: np.random.Generator, queries: int, per_query: int, gap: float, dim: int = 64):
    """Unit queries and a corpus where each query has `per_query` rows at cosines 0.8, 0.8 - gap, ... (a gap
    fp16 cannot resolve, fp32 can), among random rows."""
    q = rng.normal(size=(queries, dim))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    rows = [rng.normal(size=(200, dim))]
    for v in q:
        r = rng.normal(size=(per_query, dim))
        r -= (r @ v)[:, None] * v  # orthogonal to v: the cosine is exactly the chosen one
        r /= np.linalg.norm(r, axis=1, keepdims=True)
        cos = 0.8 - gap * rng.permutation(per_query)
        rows.append(cos[:, None] * v + np.sqrt(1 - cos**2)[:, None] * r)
    c = np.concatenate(rows)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    return q.astype(np.float32), c[rng.permutation(len(c))].astype(np.float32)


def test_fp16_search_with_rescoring_returns_the_fp32_answer_on_near_ties():
    q, c = near_ties(np.random.default_rng(0), queries=23, per_query=40, gap=3e-5)
    ks = np.full(len(q), 25)  # the k-th row sits inside a run of near-ties
    starts, scores, indices = collect(search_topk(q, c, ks, chunk_size=7))
    half_starts, half_scores, half_indices = collect(search_topk(q, c, ks, chunk_size=7, half=True))
    assert half_starts == starts == [0, 7, 14, 21]
    np.testing.assert_array_equal(half_indices, indices)
    np.testing.assert_allclose(half_scores, scores, atol=1e-5)
    # The rescoring is what makes it so: fp16 alone orders these rows differently.
    assert (fp16_order(q, c, 25) != indices).any(axis=1).mean() > 0.5


@pytest.mark.parametrize("decoys", [8, 40])  # within the margin of k=1, and beyond it
def test_fp16_candidates_that_bury_the_best_row_are_widened_until_the_answer_is_exact(decoys):
    # q . c rounds in fp16 so that every decoy outscores the best row (0.375 + u/2 against 0.375, u = 2**-11),
    # while in fp32 the best row (0.375 + 0.37u) beats them all (0.375 + 0.255u .. 0.35u).
    u, base, dim = 2.0**-11, 0.75, 16
    rng = np.random.default_rng(1)
    q = np.zeros((1, dim), np.float32)
    q[0, :4] = 0.5
    c = np.zeros((decoys + 1 + 50, dim), np.float32)
    c[:decoys, 1] = base + (0.51 + 0.005 * np.arange(decoys)) * u  # each rounds up to base + u
    c[decoys, 2], c[decoys, 3] = base + 0.49 * u, 0.25 * u  # rounds down to base, plus u/4
    c[decoys + 1:] = rng.normal(size=(50, dim)) * 0.1  # far rows
    c[:decoys + 1, 4:] = rng.normal(size=(decoys + 1, dim - 4)) * 0.01  # q ignores these dims
    assert decoys not in fp16_order(q, c, decoys)[0]  # fp16 alone ranks the best row below every decoy
    # With 40 decoys the first candidates (k + margin) hold no best row: only the widening finds it.
    assert (decoys >= 3 + margin(3)) == (decoys == 40)

    for k in (1, 3):
        _, scores, indices = collect(search_topk(q, c, np.array([k]), half=True))
        expected = np.argsort(-(c @ q[0]), kind="stable")[:k]
        np.testing.assert_array_equal(indices[0], expected)
        assert indices[0, 0] == decoys
        np.testing.assert_allclose(scores[0], (c @ q[0])[expected], atol=1e-6)


def test_fp16_search_at_the_corpus_size_edge():
    # k + margin beyond the corpus: every row is a candidate; k beyond it: the whole corpus, sorted.
    q, c = near_ties(np.random.default_rng(2), queries=5, per_query=4, gap=3e-5, dim=8)
    c = c[:10]
    for k in (1, 5, 10, 12):
        assert k + margin(k) > len(c)
        ks = np.full(len(q), k)
        _, scores, indices = collect(search_topk(q, c, ks, half=True))
        assert scores.shape == indices.shape == (len(q), min(k, len(c)))
        expected = np.argsort(-(q @ c.T), axis=1, kind="stable")[:, :min(k, len(c))]
        np.testing.assert_array_equal(indices, expected)
        np.testing.assert_allclose(scores, np.take_along_axis(q @ c.T, expected, 1), atol=1e-6)
    _, scores, indices = collect(search_topk(q, c[:1], np.full(len(q), 3), half=True))
    assert indices.tolist() == [[0]] * len(q)


def test_the_fp16_path_is_the_gpu_default_only():
    assert half_by_default("cuda") and half_by_default("cuda:1")
    assert not half_by_default("cpu")


def test_params_are_validated():
    with pytest.raises(ValueError):
        MiningParams(num_negatives=0)
    with pytest.raises(ValueError):
        MiningParams(range_min=5, range_max=5)
    with pytest.raises(ValueError):
        MiningParams(sampling="best")  # type: ignore[arg-type]
