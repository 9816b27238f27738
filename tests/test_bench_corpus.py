"""benchmarks/corpus.py: lengths, the planted share, the Jaccard levels it promises, the ground truth, and
that m3e-data's hq stage reads the layout it writes."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import corpus as C  # noqa: E402

from m3e_data.stages.hq.minhash import shingles  # noqa: E402
from m3e_data.stages.hq.stage import find_sources  # noqa: E402


@pytest.fixture(scope="module")
def corpus() -> C.Corpus:
    return C.generate(4000, seed=3)


def test_lengths_and_planted_share(corpus: C.Corpus) -> None:
    kind = np.array(corpus.kind)
    bg = kind == "background"
    q = np.array([len(x) for x in corpus.queries])
    p = np.array([len(x) for x in corpus.positives])
    assert q[bg].min() >= 10 and q[bg].max() <= 40
    assert p[bg].min() >= 50 and p[bg].max() <= 500
    assert q.max() <= 41  # a copy's query may carry one noise character
    assert p.max() <= 500 and np.median(p[bg]) < 250  # log-uniform: most positives are short
    assert (corpus.base >= 0).sum() == 800 and (kind != "background").sum() == 800
    assert (corpus.base[bg] == -1).all() and (kind[corpus.base[~bg]] == "background").all()


def test_unrelated_texts_share_common_trigrams(corpus: C.Corpus) -> None:
    rng = np.random.default_rng(0)
    bg = np.flatnonzero(np.array(corpus.kind) == "background")
    a, b = rng.choice(bg, 300), rng.choice(bg, 300)
    shared = [len(set(shingles(corpus.positives[i])) & set(shingles(corpus.positives[j]))) > 0
              for i, j in zip(a, b, strict=True) if i != j]
    # A uniform draw over 3,500 code points shares a 3-gram between two 200-character texts almost never.
    assert np.mean(shared) > 0.5


def test_planted_jaccard_matches_the_level(corpus: C.Corpus) -> None:
    kind = np.array(corpus.kind)
    near = np.flatnonzero(kind == "near")
    query, positive = C.side_jaccards(corpus, near)
    assert (query == 1.0).mean() < 0.2  # the query carries noise in the 3-grams, removed by normalisation
    for level in C.LEVELS:
        at = positive[corpus.level[near] == level]
        assert len(at) >= 10
        assert abs(np.median(at) - level) < 0.03, level
        assert np.abs(at - level).mean() < 0.05, level
    exact = np.flatnonzero(kind == "exact")
    assert (C.side_jaccards(corpus, exact)[1] == 1.0).all()


def test_ground_truth(corpus: C.Corpus) -> None:
    kind = np.array(corpus.kind)
    pairs = {tuple(x) for x in corpus.pairs.tolist()}
    copies = np.flatnonzero(corpus.base >= 0)
    in_truth = np.array([(max(int(r), int(corpus.base[r])), min(int(r), int(corpus.base[r]))) in pairs for r in copies])
    k = kind[copies]
    # Exact copies always; siblings and edited questions never (another question over the passage).
    assert in_truth[k == "exact"].all()
    assert not in_truth[(k == "sibling") | (k == "edited_query")].any()
    near = k == "near"
    positive = C.side_jaccards(corpus, copies[near])[1]
    assert (in_truth[near] == (positive >= C.THRESHOLD)).all()
    # Copies of one base are checked against each other too: two near copies of one base, each a duplicate of it.
    a, b = C.group_pairs(corpus.base)
    expected = {(int(x), int(y)) for x, y in zip(a, b, strict=True)}
    for r in copies:
        assert (max(int(r), int(corpus.base[r])), min(int(r), int(corpus.base[r]))) in expected
        for s in np.flatnonzero(corpus.base == corpus.base[r]):
            assert (max(int(r), int(s)), min(int(r), int(s))) in expected or r == s
    assert pairs <= expected and all(x > y for x, y in pairs)
    # Clusters are the components of the pairs: both rows of a pair share one, and a lone row is its own.
    assert (corpus.cluster[corpus.pairs[:, 0]] == corpus.cluster[corpus.pairs[:, 1]]).all()
    alone = np.setdiff1d(np.arange(len(corpus.queries)), corpus.pairs.ravel())
    assert (corpus.cluster[alone] == alone).all()


def test_score_one_definition(corpus: C.Corpus) -> None:
    n = len(corpus.queries)
    truth = corpus.cluster.copy()
    perfect = C.score(corpus, truth)
    assert perfect["recall"] == 1.0 and perfect["precision"] == 1.0 and perfect["removed"] == perfect["truth_removed"]
    nothing = C.score(corpus, np.arange(n))
    assert nothing["recall"] == 0.0 and nothing["removed"] == 0
    # Merging every copy with its base (siblings too) finds every pair, but not precisely.
    greedy = np.where(corpus.base >= 0, corpus.base, np.arange(n))
    got = C.score(corpus, greedy)
    assert got["recall"] == 1.0 and got["precision"] < 0.95 and got["removed"] > got["truth_removed"]


def test_written_layout_is_read_by_hq(tmp_path: Path, corpus: C.Corpus) -> None:
    C.write_m3e(corpus, tmp_path)
    found = find_sources(tmp_path)
    assert sorted(s.name for s in found) == sorted(C.SOURCES)
    import pyarrow.parquet as pq

    rows = sum(pq.read_metadata(s.folder / "part-00000.parquet").num_rows for s in found)
    assert rows == len(corpus.queries)
    back = C.load_written(tmp_path)
    assert back.queries == corpus.queries and back.positives == corpus.positives
    assert (back.cluster == corpus.cluster).all() and (back.pairs == corpus.pairs).all()
