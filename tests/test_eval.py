"""`m3e-data eval`: tiny task folders in each Hub layout, a tiny random BERT built here, figures checked by hand.

The folders imitate the Hub repositories file for file: C-MTEB/<Task> (data/corpus-*, data/queries-*) with
its C-MTEB/<Task>-qrels sibling (data/dev-*: qid, pid, score), the qrels inside the task folder, mteb/<Task>
(corpus/, queries/, data/: _id / query-id / corpus-id), C-MTEB/LCQMC (sentence1, sentence2, score) and
C-MTEB/OCNLI (sent1, sent2, label). Every text is invented.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytest.importorskip("sentence_transformers")
os.environ["HF_HUB_OFFLINE"] = "1"

import torch  # noqa: E402
from click.testing import CliRunner  # noqa: E402
from m3e_train.evaluate import PAIR_CLASSIFICATION, PAIR_SCORING, IRSet, TaskError, load_task  # noqa: E402
from m3e_train.synthetic import charset, tiny_bert  # noqa: E402

from m3e_data.cli.main import main  # noqa: E402

torch.set_num_threads(1)

VOCAB = charset(60)
SHARD = "00000-of-00001-5f1c2a9e0b7d4c13.parquet"


def _text(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(VOCAB) for _ in range(n))


def _write(path: Path, columns: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return tiny_bert(tmp_path_factory.mktemp("tiny") / "model", VOCAB, seed=7)


@pytest.fixture(scope="module")
def retrieval() -> dict:
    """150 passages, 20 queries with 1-3 relevant passages each, one judged-irrelevant pair, one stray qrel."""
    rng = random.Random(5)
    corpus = {f"p{i}": _text(rng, rng.randint(6, 14)) for i in range(150)}
    queries = {f"q{i}": _text(rng, rng.randint(3, 6)) for i in range(22)}  # q20, q21: never judged
    qrels = [(f"q{i}", p, 1) for i in range(20) for p in rng.sample(sorted(corpus), rng.randint(1, 3))]
    extra = [("q0", "p149", 0), ("q1", "p-missing", 1)]
    return {"corpus": corpus, "queries": queries, "qrels": qrels, "extra": extra}


def cmteb_layout(root: Path, name: str, data: dict, qrels_inside: bool = False) -> Path:
    task = root / name
    _write(task / "data" / f"corpus-{SHARD}", {"id": list(data["corpus"]), "text": list(data["corpus"].values())})
    _write(task / "data" / f"queries-{SHARD}", {"id": list(data["queries"]), "text": list(data["queries"].values())})
    rows = data["qrels"] + data["extra"]
    qrels = {"qid": [r[0] for r in rows], "pid": [r[1] for r in rows], "score": [r[2] for r in rows]}
    where = task / "qrels" if qrels_inside else root / f"{name}-qrels" / "data"
    _write(where / f"dev-{SHARD}", qrels)
    return task


def mteb_layout(root: Path, name: str, data: dict) -> Path:
    task = root / name
    ids = list(data["corpus"])
    _write(task / "corpus" / f"dev-{SHARD}",
           {"_id": ids, "title": [""] * len(ids), "text": list(data["corpus"].values())})
    _write(task / "queries" / f"dev-{SHARD}", {"_id": list(data["queries"]), "text": list(data["queries"].values())})
    rows = data["qrels"] + data["extra"]
    _write(task / "data" / f"dev-{SHARD}",
           {"query-id": [r[0] for r in rows], "corpus-id": [r[1] for r in rows], "score": [r[2] for r in rows]})
    return task


def brute_force_retrieval(model_dir: Path, data: dict) -> dict[str, float]:
    """nDCG@10, MRR@10 and Recall@100 from a full cosine ranking, binary relevance."""
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(model_dir), device="cpu")
    pids = list(data["corpus"])
    relevant: dict[str, set[str]] = {}
    for q, p, _ in data["qrels"]:
        relevant.setdefault(q, set()).add(p)
    qids = sorted(relevant)
    d = st.encode([data["corpus"][p] for p in pids], normalize_embeddings=True)
    q = st.encode([data["queries"][i] for i in qids], normalize_embeddings=True)
    ndcg, mrr, recall = [], [], []
    for row, qid in zip(q @ d.T, qids, strict=True):
        ranked = [pids[j] for j in np.argsort(-row, kind="stable")]
        rel = relevant[qid]
        hits = [1.0 if p in rel else 0.0 for p in ranked]
        dcg = sum(h / np.log2(r + 2) for r, h in enumerate(hits[:10]))
        idcg = sum(1 / np.log2(r + 2) for r in range(min(len(rel), 10)))
        ndcg.append(dcg / idcg)
        first = next((r for r, h in enumerate(hits[:10]) if h), None)
        mrr.append(0.0 if first is None else 1 / (first + 1))
        recall.append(sum(hits[:100]) / len(rel))
    return {"ndcg_at_10": float(np.mean(ndcg)), "mrr_at_10": float(np.mean(mrr)),
            "recall_at_100": float(np.mean(recall))}


def run_eval(*args: str):
    return CliRunner().invoke(main, ["eval", *args], catch_exceptions=False)


def test_retrieval_in_every_layout_matches_brute_force(tmp_path, model, retrieval):
    sibling = cmteb_layout(tmp_path / "a", "T2Retrieval", retrieval)
    inside = cmteb_layout(tmp_path / "b", "DuRetrieval", retrieval, qrels_inside=True)
    mteb = mteb_layout(tmp_path / "c", "CmedqaRetrieval", retrieval)
    out = tmp_path / "res" / "results.json"
    result = run_eval("--model", str(model), "--task", str(sibling), "--task", str(inside), "--task", str(mteb),
                      "--out", str(out), "--device", "cpu", "--batch-size", "16")
    assert result.exit_code == 0, result.output
    figures = json.loads(out.read_text())
    assert list(figures) == ["T2Retrieval", "DuRetrieval", "CmedqaRetrieval"]
    expected = brute_force_retrieval(model, retrieval)
    assert 0.0 < expected["recall_at_100"] < 1.0 and 0.0 < expected["ndcg_at_10"] < 1.0  # the checks can bite
    for name, got in figures.items():
        assert list(got) == ["ndcg_at_10", "mrr_at_10", "recall_at_100"]
        for metric, value in expected.items():
            assert got[metric] == pytest.approx(value, abs=1e-5), (name, metric)
    # The table on stdout carries the same figures; the reasoned drops are said on stderr.
    assert f"{figures['T2Retrieval']['ndcg_at_10']:.4f}" in result.stdout
    assert "1 qrels naming a passage missing from the corpus" in result.stderr
    assert "2 queries without a relevant passage" in result.stderr


def test_load_task_reads_the_details_of_each_layout(tmp_path, retrieval):
    task = load_task(cmteb_layout(tmp_path, "T2Retrieval", retrieval))
    assert isinstance(task, IRSet) and len(task.queries) == 20 and len(task.corpus) == 150
    # The score-0 pair (q0, p149) is a judged-irrelevant one, not a relevant document.
    assert task.relevant["q0"] == {p for q, p, _ in retrieval["qrels"] if q == "q0"}
    # MTEB embeds a titled document as "title text".
    root = tmp_path / "titled"
    _write(root / "corpus" / f"test-{SHARD}", {"_id": [1, 2], "title": ["标题", None], "text": ["正文一", "正文二"]})
    _write(root / "queries" / f"test-{SHARD}", {"_id": [7], "text": ["问"]})
    _write(root / "data" / f"test-{SHARD}", {"query-id": [7], "corpus-id": [2], "score": [1]})
    titled = load_task(root)
    assert titled.corpus == {"1": "标题 正文一", "2": "正文二"} and titled.relevant == {"7": {"2"}}


def test_pair_tasks_spearman_and_average_precision(tmp_path, model):
    from scipy.stats import spearmanr
    from sentence_transformers import SentenceTransformer
    from sklearn.metrics import average_precision_score

    rng = random.Random(9)
    n = 60
    s1, s2 = [_text(rng, 8) for _ in range(n)], [_text(rng, 8) for _ in range(n)]
    labels = [rng.randint(0, 1) for _ in range(n)]
    lcqmc = tmp_path / "LCQMC"
    _write(lcqmc / "data" / f"test-{SHARD}", {"sentence1": s1, "sentence2": s2, "score": labels})
    # A train split beside it must not be the one scored.
    _write(lcqmc / "data" / f"train-{SHARD}", {"sentence1": s2, "sentence2": s1, "score": labels[::-1]})
    ocnli = tmp_path / "OCNLI"
    _write(ocnli / "data" / f"validation-{SHARD}", {"sent1": s1, "sent2": s2, "label": labels, "idx": list(range(n))})
    assert load_task(lcqmc).kind == PAIR_SCORING and load_task(ocnli).kind == PAIR_CLASSIFICATION

    out = tmp_path / "pairs.json"
    result = run_eval("--model", str(model), "--task", str(lcqmc), "--task", str(ocnli), "--out", str(out),
                      "--device", "cpu")
    assert result.exit_code == 0, result.output
    figures = json.loads(out.read_text())
    st = SentenceTransformer(str(model), device="cpu")
    a, b = st.encode(s1, normalize_embeddings=True), st.encode(s2, normalize_embeddings=True)
    cosine = (a * b).sum(axis=1)
    assert figures["LCQMC"] == {"spearman": pytest.approx(spearmanr(cosine, labels).statistic, abs=1e-5)}
    assert figures["OCNLI"] == {"ap": pytest.approx(average_precision_score(labels, cosine), abs=1e-5)}


def test_bad_input_gets_one_clear_line(tmp_path, model):
    result = run_eval("--model", "./no-such-model", "--task", str(tmp_path))
    assert result.exit_code == 2 and "no such folder" in result.output
    result = run_eval("--model", str(model), "--task", str(tmp_path / "missing"))
    assert result.exit_code == 1 and "missing: no such folder" in result.output
    (tmp_path / "empty").mkdir()
    result = run_eval("--model", str(model), "--task", str(tmp_path / "empty"))
    assert result.exit_code == 1 and "not a task folder" in result.output

    nli = tmp_path / "CMNLI"
    _write(nli / "data" / f"validation-{SHARD}", {"sent1": ["甲", "乙", "丙"], "sent2": ["丁", "戊", "己"],
                                                   "label": [0, 1, 2]})
    with pytest.raises(TaskError, match="needs 0/1"):
        load_task(nli)
    only_train = tmp_path / "BQ"
    _write(only_train / "data" / f"train-{SHARD}", {"sentence1": ["甲", "乙"], "sentence2": ["丙", "丁"], "score": [0, 1]})
    with pytest.raises(TaskError, match="no test/validation/dev split"):
        load_task(only_train)
    broken = tmp_path / "ATEC"
    (broken / "data").mkdir(parents=True)
    (broken / "data" / f"test-{SHARD}").write_text("version https://git-lfs.github.com/spec/v1\n")
    result = run_eval("--model", str(model), "--task", str(broken))
    assert result.exit_code == 1 and "not a readable Parquet file" in result.output
    if not torch.cuda.is_available():
        stsb = tmp_path / "STSB"
        _write(stsb / "data" / f"test-{SHARD}", {"sentence1": ["甲", "乙"], "sentence2": ["丙", "丁"], "score": [0.5, 4.0]})
        result = run_eval("--model", str(model), "--task", str(stsb), "--device", "cuda:0")
        assert result.exit_code == 2 and "no CUDA device" in result.output
    lonely = tmp_path / "T2Retrieval"
    _write(lonely / "data" / f"corpus-{SHARD}", {"id": ["p1"], "text": ["文"]})
    _write(lonely / "data" / f"queries-{SHARD}", {"id": ["q1"], "text": ["问"]})
    with pytest.raises(TaskError, match="T2Retrieval-qrels"):
        load_task(lonely)
    qrels_only = tmp_path / "T2Retrieval-qrels"
    _write(qrels_only / "data" / f"dev-{SHARD}", {"qid": ["q1"], "pid": ["p1"], "score": [1]})
    with pytest.raises(TaskError, match="holds only qrels"):
        load_task(qrels_only)
