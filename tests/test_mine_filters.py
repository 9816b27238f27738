"""What mine does after mining: the consistency filter, teacher scores, semantic near-duplicates.

Pure functions are pinned on crafted vectors against brute force; the driver runs on a tiny random BERT
(and a tiny random cross-encoder) built here, offline.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import torch  # noqa: E402
from click.testing import CliRunner  # noqa: E402

import m3e_data.stages.mine.stage as mine_module  # noqa: E402
from m3e_data.cli.main import main  # noqa: E402
from m3e_data.stages.mine import semdedup  # noqa: E402
from m3e_data.stages.mine.encoder import Encoder  # noqa: E402
from m3e_data.stages.mine.mining import (  # noqa: E402
    INCONSISTENT,
    LOW_SCORE,
    MiningParams,
    filter_reasons,
    normalize_text,
    plan_source,
    positive_ranks,
)
from m3e_data.stages.mine.semdedup import kmeans, near_duplicates, pair_vectors  # noqa: E402
from m3e_data.stages.mine.stage import REJECT_SCHEMA, MineOptions, mine  # noqa: E402
from m3e_data.stages.mine.teacher import rescore  # noqa: E402
from m3e_data.stages.publish.card import _mining_section  # noqa: E402
from tests.test_encoder import SPECIALS, make_tiny_bert  # noqa: E402
from tests.test_mine_driver import PAIRS, write_source  # noqa: E402


def unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_positive_ranks_match_brute_force_and_ignore_the_groups_own_positives():
    rng = np.random.default_rng(0)
    queries, candidates = unit(rng, 9, 16), unit(rng, 30, 16)
    group_of_row = rng.integers(0, 9, size=40)
    positive_of_row = rng.integers(0, 30, size=40)
    own = [np.unique(positive_of_row[group_of_row == g]) for g in range(9)]
    scores = np.einsum("ij,ij->i", queries[group_of_row], candidates[positive_of_row])
    got = positive_ranks(queries, candidates, group_of_row, scores, own, chunk_size=4)
    for r in range(40):
        g = group_of_row[r]
        others = [c for c in range(30) if c not in set(own[g].tolist())]
        assert got[r] == 1 + sum(float(queries[g] @ candidates[c]) > scores[r] for c in others)
    assert got.min() >= 1 and got.max() > 1


def test_filter_reasons_rank_wins_over_score():
    reasons = filter_reasons(np.array([1, 5, 1, 5]), np.array([0.9, 0.9, 0.1, 0.1]), topk=3, min_score=0.5)
    assert reasons.tolist() == [None, INCONSISTENT, LOW_SCORE, INCONSISTENT]
    assert filter_reasons(np.array([9]), np.array([-1.0]), topk=None, min_score=None).tolist() == [None]


def test_plan_marks_the_groups_own_positives_and_query():
    plan = plan_source(["a", "A ", "b"], ["x", "y", "a"], [[], [], []], homogeneous=True, num_negatives=2)
    assert plan.n_positive_texts == 3 and plan.corpus[:3] == ["x", "y", "a"]
    # group "a" owns x, y and its query "a" (also a positive); group "b" owns only "a"
    assert plan.group_own[0].tolist() == [0, 1, 2] and plan.group_own[1].tolist() == [2]


def test_near_duplicates_within_and_across_batches_and_threshold():
    rng = np.random.default_rng(1)
    q, p = unit(rng, 50, 8), unit(rng, 50, 8)
    noise = unit(rng, 50, 8) * 0.02
    q2 = (q + noise) / np.linalg.norm(q + noise, axis=1, keepdims=True)
    vec = pair_vectors(q, p)
    assert np.allclose(np.einsum("ij,ij->i", vec, vec), 1, atol=1e-5)
    # rows 50..59 copy rows 0..9 almost exactly; rows 60..69 copy rows 0..9 but with other positives
    batch_q = np.concatenate([q, q2[:10], q[:10]])
    batch_p = np.concatenate([p, p[:10], p[10:20]])
    kept_of, sims = near_duplicates(pair_vectors(batch_q, batch_p), batch_q, 0.95)
    assert kept_of[:50].tolist() == [-1] * 50
    assert kept_of[50:60].tolist() == list(range(10)) and (sims[50:60] >= 0.95).all()
    assert kept_of[60:].tolist() == [-1] * 10  # same query, different positive: not a duplicate pair
    # Across sources: the batch's copies point to the prior (earlier source's) rows, which stay kept.
    kept_of, _ = near_duplicates(pair_vectors(q2[:10], p[:10]), q2[:10], 0.95, prior_vectors=vec,
                                 prior_cluster_on=q)
    assert kept_of.tolist() == list(range(10))
    # A threshold above every similarity keeps everything.
    assert (near_duplicates(pair_vectors(batch_q, batch_p), batch_q, 1.01)[0] == -1).all()


def test_near_duplicates_in_blocks_match_the_whole_cluster_at_once(monkeypatch):
    rng = np.random.default_rng(3)
    q = unit(rng, 80, 8)
    q = np.concatenate([q, q[:30] + 0.01 * unit(rng, 30, 8)])
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    p = np.concatenate([unit(rng, 80, 8), np.zeros((30, 8), np.float32)])
    p[80:] = p[:30]
    whole = near_duplicates(pair_vectors(q, p), q, 0.97)
    monkeypatch.setattr(semdedup, "SCORE_BLOCK_FLOATS", 7)  # one row per block
    blocks = near_duplicates(pair_vectors(q, p), q, 0.97)
    assert (whole[0] == blocks[0]).all() and (whole[0][80:] == np.arange(30)).all()


def test_kmeans_is_seeded_and_separates_clear_clusters():
    rng = np.random.default_rng(2)
    centres = unit(rng, 3, 16)
    points = np.concatenate([c + 0.05 * rng.normal(size=(40, 16)) for c in centres]).astype(np.float32)
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    labels = kmeans(points, 3, seed=0)
    assert (kmeans(points, 3, seed=0) == labels).all()
    assert sorted(len(set(labels[i * 40:(i + 1) * 40])) for i in range(3)) == [1, 1, 1]


def make_tiny_cross_encoder(folder: Path, texts: list[str], seed: int = 0) -> Path:
    """A random 2-layer BertForSequenceClassification with one label: a reranker's shape, offline."""
    chars = sorted(set("".join(texts)) - {" "})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join([*SPECIALS, *chars]) + "\n", encoding="utf-8")
    transformers.BertTokenizer(vocab=str(folder / "vocab.txt")).save_pretrained(folder)
    torch.manual_seed(seed)
    config = transformers.BertConfig(vocab_size=len(SPECIALS) + len(chars), hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=128,
                                     num_labels=1)
    transformers.BertForSequenceClassification(config).save_pretrained(folder)
    return folder


ALL_TEXTS = [t for _, rows in PAIRS.values() for r in rows for t in (r[0], r[1], *r[2])] + ["今天天气好吗 "]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny"), ALL_TEXTS, seed=5)


@pytest.fixture(scope="module")
def reranker(tmp_path_factory) -> Path:
    return make_tiny_cross_encoder(tmp_path_factory.mktemp("reranker"), ALL_TEXTS)


def logits(folder: Path, pairs: list[tuple[str, str]]) -> list[float]:
    """The reference: the classifier's raw logit per pair, straight through transformers."""
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        batch = tok([a for a, _ in pairs], [b for _, b in pairs], padding=True, return_tensors="pt")
        return model(**batch).logits[:, 0].tolist()


@pytest.fixture
def layout(tmp_path) -> Path:
    for name, (homogeneous, rows) in PAIRS.items():
        write_source(tmp_path / "m3e-hq", name, homogeneous, rows)
    return tmp_path


def options(root: Path, model: Path, out: Path | None = None, **filters) -> MineOptions:
    return MineOptions(input=root / "m3e-hq", out=out or root / "m3e-hq-with-score", model=str(model),
                       device="cpu", cache_dir=None, params=MiningParams(num_negatives=2, relative_margin=None),
                       **filters)


def read(folder: Path) -> list[dict]:
    return [r for p in sorted(folder.glob("part-*.parquet")) for r in pq.read_table(p).to_pylist()]


def brute_rank(vec: dict[str, np.ndarray], rows: list[tuple[str, str, list[str]]], r: int) -> int:
    """Rank of row r's positive among the source's distinct positives, its group's own and its query aside."""
    q, p, _ = rows[r]
    group = [i for i, row in enumerate(rows) if normalize_text(row[0]) == normalize_text(q)]
    own = {normalize_text(rows[i][1]) for i in group} | {normalize_text(q)}
    candidates = {normalize_text(row[1]): row[1] for row in rows}
    s = float(vec[q] @ vec[p])
    return 1 + sum(float(vec[q] @ vec[t]) > s for n, t in candidates.items() if n not in own)


def test_consistency_filter_rejects_beside_the_builds_others(layout, tiny):
    results = mine(options(layout, tiny, consistency_topk=1, min_positive_score=0.5))
    enc = Encoder(str(tiny), device="cpu")
    out, rejects = layout / "m3e-hq-with-score", layout / "rejects" / "mine"
    manifest = json.loads((layout / "build-manifest.json").read_text())["stages"]["mine"]
    assert manifest["rejects"] == "rejects/mine" and manifest["options"]["consistency_topk"] == 1
    for result in results:
        name, rows = result.name, PAIRS[result.name][1]
        vec = dict(zip(ALL_TEXTS, enc.encode(ALL_TEXTS), strict=True))
        kept, rejected = read(out / name), read(rejects / name)
        assert len(kept) + len(rejected) == len(rows) and {r["id"] for r in kept}.isdisjoint(r["id"] for r in rejected)
        expected: dict[str, str | None] = {}
        for i, (q, p, _) in enumerate(rows):
            rank, score = brute_rank(vec, rows, i), float(vec[q] @ vec[p])
            expected[f"{name}/train/{i}"] = INCONSISTENT if rank > 1 else LOW_SCORE if score < 0.5 else None
            rej = next((r for r in rejected if r["id"] == f"{name}/train/{i}"), None)
            if rej is not None:
                assert rej["positive_rank"] == rank and rej["positive_score"] == pytest.approx(score, abs=1e-4)
                assert len(rej["negatives"]) == len(rej["negative_scores"])
        assert {r["id"]: r["reason"] for r in rejected} == {k: v for k, v in expected.items() if v}
        assert pq.read_schema(next((rejects / name).glob("part-*.parquet"))).remove_metadata() == REJECT_SCHEMA \
            if rejected else True
        dropped = {reason: list(expected.values()).count(reason) for reason in (INCONSISTENT, LOW_SCORE)}
        assert manifest["sources"][name]["dropped"] == {k: v for k, v in dropped.items() if v}
        assert manifest["sources"][name]["rows_kept"] == len(kept)
    assert sum(len(read(rejects / n)) for n in PAIRS) > 0  # the tiny model disagrees with some pairs
    assert sum(manifest["dropped"].values()) == sum(len(read(rejects / n)) for n in PAIRS)

    # Filters off again: the same sources re-mine (the filters are part of their key), rejects go away.
    assert {r.status for r in mine(options(layout, tiny))} == {"mined"}
    assert not rejects.exists() or not any(rejects.iterdir())


def test_rejects_stay_inside_an_out_that_is_no_build(layout, tiny, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere") / "mined"
    mine(options(layout, tiny, out=elsewhere, min_positive_score=2.0))  # every cosine is below 2
    assert not (layout / "rejects").exists() and not (elsewhere.parent / "rejects").exists()
    hidden = elsewhere / ".rejects" / "mine"
    assert sorted(p.name for p in hidden.iterdir()) == ["qa", "sim"]
    assert {r["reason"] for n in PAIRS for r in read(hidden / n)} == {LOW_SCORE}
    assert not any(read(elsewhere / n) for n in PAIRS)


def test_teacher_scores_replace_the_cosines_and_are_described(layout, tiny, reranker):
    mine(options(layout, tiny, score_model=str(reranker)))
    out = layout / "m3e-hq-with-score"
    rows = read(out / "sim")
    pairs = [(r["query"], r["positive"]) for r in rows] + [(r["query"], n) for r in rows for n in r["negatives"]]
    want = logits(reranker, pairs)
    got = [r["positive_score"] for r in rows] + [s for r in rows for s in r["negative_scores"]]
    assert got == pytest.approx(want, abs=1e-4)
    assert sum(len(r["negatives"]) for r in rows) > 0
    meta = json.loads(pq.read_schema(out / "sim" / "part-00000.parquet").metadata[b"m3e_data.stages.mine.mining"])
    local = f"{reranker.name} (a local model folder)"
    assert meta["score"].startswith(f"cross-encoder {local}") and "logit" in meta["score"]
    assert meta["filters"]["score_model"] == local and str(reranker) not in json.dumps(meta)
    manifest = json.loads((layout / "build-manifest.json").read_text())
    stage = manifest["stages"]["mine"]
    assert stage["score_model"] == str(reranker) and stage["mining_score"].startswith("cosine")
    assert stage["score"] == meta["score"]
    # The Hub card says which teacher and scale, never the local path.
    section = _mining_section(SimpleNamespace(mining={}), manifest)
    assert f"cross-encoder `{local}` (raw logits)" in section and "**score model**" in section
    assert str(reranker) not in section


def test_semantic_dedup_across_sources_names_the_kept_row(layout, tiny):
    # A third source re-packaging two of "qa"'s pairs (as SimCLUE re-packages LCQMC) plus one of its own.
    copied = [PAIRS["qa"][1][0], PAIRS["qa"][1][2], ("完全不同的问题", "一个新的回答", [])]
    write_source(layout / "m3e-hq", "zz_copy", False, copied)
    results = mine(options(layout, tiny, semantic_dedup=0.999))
    assert [r.name for r in results] == ["qa", "sim", "zz_copy"]
    rejected = read(layout / "rejects" / "mine" / "zz_copy")
    assert [(r["id"], r["reason"], r["kept_id"]) for r in rejected] == [
        ("zz_copy/train/0", "semantic_duplicate", "qa/train/0"),
        ("zz_copy/train/1", "semantic_duplicate", "qa/train/2"),
    ]
    assert all(r["similarity"] >= 0.999 for r in rejected)
    assert [r["id"] for r in read(layout / "m3e-hq-with-score" / "zz_copy")] == ["zz_copy/train/2"]
    assert len(read(layout / "m3e-hq-with-score" / "qa")) == 4
    # Rerun: nothing changed, nothing re-mined; a change to an earlier source re-mines the later ones.
    assert {r.status for r in mine(options(layout, tiny, semantic_dedup=0.999))} == {"unchanged"}
    (layout / "m3e-hq" / "qa" / "_SUCCESS.json").write_text(json.dumps({"rows": 4, "touched": 1}))
    statuses = {r.name: r.status for r in mine(options(layout, tiny, semantic_dedup=0.999))}
    assert statuses == {"qa": "mined", "sim": "mined", "zz_copy": "mined"}
    assert len(read(layout / "rejects" / "mine" / "zz_copy")) == 2


def test_semantic_dedup_reads_skipped_sources_when_a_later_one_needs_them(layout, tiny):
    write_source(layout / "m3e-hq", "zz_copy", False, [PAIRS["qa"][1][1]])
    mine(options(layout, tiny, semantic_dedup=0.999, sources=["qa"]))
    results = mine(options(layout, tiny, semantic_dedup=0.999, sources=["qa", "zz_copy"]))
    assert [(r.name, r.status) for r in results] == [("qa", "unchanged"), ("zz_copy", "mined")]
    assert [r["kept_id"] for r in read(layout / "rejects" / "mine" / "zz_copy")] == ["qa/train/1"]


def test_a_failed_sources_rows_are_nobodys_kept_rows(layout, tiny, monkeypatch):
    write_source(layout / "m3e-hq", "zz_copy", True, [PAIRS["sim"][1][0]])
    real = mine_module.write_rejects

    def fails_for_sim(folder, rejected, key):
        if folder.name == "sim":
            raise OSError("disk full")
        return real(folder, rejected, key)

    monkeypatch.setattr(mine_module, "write_rejects", fails_for_sim)
    results = mine(options(layout, tiny, semantic_dedup=0.999))
    assert [(r.name, r.status) for r in results] == [("qa", "mined"), ("sim", "failed"), ("zz_copy", "mined")]
    assert [r["id"] for r in read(layout / "m3e-hq-with-score" / "zz_copy")] == ["zz_copy/train/0"]


def test_cli_options(layout, tiny, reranker):
    result = CliRunner().invoke(main, ["mine", "--in", str(layout / "m3e-hq"), "--out",
                                       str(layout / "m3e-hq-with-score"), "--model", str(tiny), "--device", "cpu",
                                       "--no-cache", "--num-negatives", "2", "--consistency-topk", "1",
                                       "--semantic-dedup", "0.99", "--score-model", str(reranker),
                                       "--min-positive-score", "-100"])
    assert result.exit_code == 0, result.output
    stage = json.loads((layout / "build-manifest.json").read_text())["stages"]["mine"]
    assert stage["options"]["consistency_topk"] == 1 and stage["options"]["semantic_dedup"] == 0.99
    assert stage["options"]["min_positive_score"] == -100 and stage["score_model"] == str(reranker)
    assert sum(stage["dropped"].values()) == len(
        [r for n in PAIRS for r in read(layout / "rejects" / "mine" / n)])
    bad = CliRunner().invoke(main, ["mine", "--in", "x", "--out", "y", "--consistency-topk", "0"])
    assert bad.exit_code == 2 and "consistency-topk" in bad.output


def test_rejected_rows_table_layout():
    from m3e_data.stages.hq.stage import REJECT_SCHEMA as HQ_REJECT_SCHEMA

    # The build's other rejects' columns first (one reader for every stage's rejects), then mine's own.
    assert pa.schema(list(REJECT_SCHEMA)[: len(HQ_REJECT_SCHEMA)]) == HQ_REJECT_SCHEMA.remove_metadata()
    assert REJECT_SCHEMA.names[-2:] == ["positive_rank", "similarity"]
    assert REJECT_SCHEMA.field("positive_rank").type == pa.int32()


def test_rescore_lines_scores_up_with_negatives():
    rows = pa.table({"query": ["a", "b"], "positive": ["p", "q"], "negatives": [["n1", "n2"], []],
                     "positive_score": pa.array([0.0, 0.0], pa.float32()),
                     "negative_scores": pa.array([[0.0, 0.0], []], pa.list_(pa.float32()))})
    seen: list[tuple[str, str]] = []

    def score(pairs):
        seen.extend(pairs)
        return np.arange(len(pairs), dtype=np.float32)

    out = rescore(rows, score)
    assert seen == [("a", "p"), ("b", "q"), ("a", "n1"), ("a", "n2")]
    assert out["positive_score"].to_pylist() == [0.0, 1.0] and out["negative_scores"].to_pylist() == [[2.0, 3.0], []]
