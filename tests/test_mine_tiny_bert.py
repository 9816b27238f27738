"""Mining mechanics end to end through the bundled encoder on a tiny random BERT built here (no download).

tests/test_mining.py pins each rule on crafted vectors; this file checks the same rules on a real
transformer's embeddings against a brute-force reference written independently: every candidate of every
query scored, sorted, filtered by normalised text, windowed, guarded and taken, in plain Python.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from m3e_data.schema import UNIFIED_SCHEMA  # noqa: E402
from m3e_data.stages.mine.encoder import Encoder  # noqa: E402
from m3e_data.stages.mine.mining import MiningParams, mine_table, normalize_text  # noqa: E402
from tests.test_encoder import make_tiny_bert  # noqa: E402

# A symmetric source (queries are candidates too): a query repeated after normalisation with a second
# positive, texts that differ from a positive only by width/case/spacing, and native negatives.
ROWS = [
    ("天气怎么样", "今天天气好吗", []),
    (" 天气怎么样\u3000", "今天天气不错", ["天气不好"]),  # same normalised query: both positives are its positives
    ("我想去图书馆", "我要去图书馆看书", ["我不想去图书馆"]),
    ("北京是首都", "中国的首都是北京", []),
    ("牛肉面很实惠", "这家面馆的牛肉面便宜", []),
    ("春天来了", "春天到了", ["秋天来了", "冬天来了"]),
    ("他们在吃饭", "他们吃饭了", []),
    ("我们去看书", "我们看书去", []),
    ("今天天气好吗 ", "天气怎么样", []),  # its positive is another row's query; its query another's positive
    ("山上有水", "山下有火", []),
    ("你说什么", "你写什么", []),
    ("他来了", "他们来了", []),
    ("ABC 读书", "abc 读书报", []),
    ("春夏秋冬", "一二三四", []),
    ("左右上下", "上下左右人", []),
    ("吃喝看听", "说写读书", []),
]
DIM = 32


@pytest.fixture(scope="module")
def encoder(tmp_path_factory) -> Encoder:
    texts = [t for q, p, n in ROWS for t in (q, p, *n)]
    return Encoder(str(make_tiny_bert(tmp_path_factory.mktemp("tiny"), texts, seed=3)), device="cpu")


def table(rows=ROWS) -> pa.Table:
    n = len(rows)
    return pa.table({
        "id": [f"s/train/{i}" for i in range(n)], "source": ["s"] * n, "split": ["train"] * n,
        "query": [r[0] for r in rows], "positive": [r[1] for r in rows], "negatives": [r[2] for r in rows],
        "positive_score": pa.nulls(n, pa.float32()), "negative_scores": pa.nulls(n, pa.list_(pa.float32())),
        "task": ["similarity"] * n, "homogeneous": [True] * n, "domain": ["d"] * n, "license": ["mit"] * n,
        "commercial": [True] * n,
    }, schema=UNIFIED_SCHEMA)


class Recorder:
    """The encoder as mine_table sees it, keeping every vector it handed out (the reference uses the same)."""

    def __init__(self, encoder: Encoder) -> None:
        self.encoder, self.vectors = encoder, {}

    def __call__(self, texts: list[str]) -> np.ndarray:
        out = self.encoder.encode(texts)
        self.vectors.update(zip(texts, out, strict=True))
        return out


def reference(vectors: dict[str, np.ndarray], params: MiningParams) -> tuple[list[list[str]], int]:
    """Negatives per row, by brute force; and how many candidates the relative margin removed in the window."""
    corpus: dict[str, str] = {}  # normalised -> first raw text
    for text in [r[1] for r in ROWS] + [r[0] for r in ROWS]:
        corpus.setdefault(normalize_text(text), text)
    groups: dict[str, list[int]] = {}
    for i, (q, _, _) in enumerate(ROWS):
        groups.setdefault(normalize_text(q), []).append(i)
    out: list[list[str]] = [[] for _ in ROWS]
    margin_removed = 0
    for rows in groups.values():
        q_raw = ROWS[rows[0]][0]
        q = vectors[q_raw]
        banned = {normalize_text(t) for i in rows for t in (ROWS[i][0], ROWS[i][1], *ROWS[i][2])}
        pos_floor = min(float(q @ vectors[ROWS[i][1]]) for i in rows)
        ranked = sorted(((float(q @ vectors[raw]), raw) for norm, raw in corpus.items() if norm not in banned),
                        key=lambda x: -x[0])
        window = ranked[params.range_min:params.range_max]
        allowed = window
        if params.relative_margin is not None:
            ceiling = pos_floor - abs(pos_floor) * params.relative_margin
            allowed = [c for c in window if c[0] <= ceiling]
            margin_removed += len(window) - len(allowed)
        if params.max_score is not None:
            allowed = [c for c in allowed if c[0] <= params.max_score]
        fewest = min(len(ROWS[i][2]) for i in rows)
        picked = [raw for _, raw in allowed[: max(params.num_negatives - fewest, 0)]]
        for i in rows:
            natives = ROWS[i][2]
            out[i] = [*natives, *picked[: max(params.num_negatives - len(natives), 0)]]
    return out, margin_removed


@pytest.mark.parametrize("params", [
    MiningParams(num_negatives=3, relative_margin=None),
    MiningParams(num_negatives=4, range_min=2, range_max=9, relative_margin=None),
    MiningParams(num_negatives=3, relative_margin=0.002),
    MiningParams(num_negatives=5, range_min=1, range_max=20, relative_margin=0.001, max_score=0.999),
], ids=["top", "window", "margin", "window+margin+max"])
def test_top_first_mining_matches_brute_force(encoder, params):
    encode = Recorder(encoder)
    out, stats = mine_table(table(), encode, params, chunk_size=3)
    expected, margin_removed = reference(encode.vectors, params)
    rows = out.to_pylist()
    assert [r["negatives"] for r in rows] == expected
    assert stats.removed.relative_margin == margin_removed
    for row, (q, p, natives) in zip(rows, ROWS, strict=True):
        # Never the query, never a positive of the normalised query, natives kept first and scored; scores
        # are against the group's query (its first row's text: one search per normalised query).
        group = [r for r in ROWS if normalize_text(r[0]) == normalize_text(q)]
        same = {normalize_text(r[1]) for r in group}
        q = group[0][0]
        mined = row["negatives"][len(natives):]
        assert not {normalize_text(t) for t in mined} & (same | {normalize_text(q)})
        assert row["negatives"][: len(natives)] == natives
        assert row["negative_scores"] == pytest.approx(
            [float(encode.vectors[q] @ encode.vectors[t]) for t in row["negatives"]], abs=1e-5)
        assert row["positive_score"] == pytest.approx(float(encode.vectors[q] @ encode.vectors[p]), abs=1e-5)
    assert stats.rows_short == sum(len(n) < params.num_negatives for n in expected)


def test_the_margin_guard_bites_on_this_model(encoder):
    """The margin cases above are not vacuous: the guard removes candidates and changes the result."""
    encode = Recorder(encoder)
    guarded, stats = mine_table(table(), encode, MiningParams(num_negatives=3, relative_margin=0.002))
    plain, _ = mine_table(table(), encode, MiningParams(num_negatives=3, relative_margin=None))
    assert stats.removed.relative_margin > 0
    assert guarded.column("negatives").to_pylist() != plain.column("negatives").to_pylist()


def test_seeded_sampling_is_reproducible_in_window_and_chunking_free(encoder):
    encode = Recorder(encoder)
    params = dict(num_negatives=3, range_min=1, range_max=12, relative_margin=None, sampling="random")
    a = mine_table(table(), encode, MiningParams(seed=7, **params))[0].column("negatives").to_pylist()
    b = mine_table(table(), encode, MiningParams(seed=7, **params), chunk_size=1)[0].column("negatives").to_pylist()
    c = mine_table(table(), encode, MiningParams(seed=8, **params))[0].column("negatives").to_pylist()
    assert a == b
    assert a != c
    window = reference(encode.vectors, MiningParams(num_negatives=11, range_min=1, range_max=12,
                                                    relative_margin=None))[0]
    for got, allowed, (_, _, natives) in zip(a, window, ROWS, strict=True):
        assert got[: len(natives)] == natives
        assert set(got[len(natives):]) <= set(allowed[len(natives):])
