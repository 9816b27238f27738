"""Evaluation of a sentence-transformers model: retrieval, pair scoring and pair classification.

The sets, and the sentence-transformers evaluator that scores each kind:
- retrieval (InformationRetrievalEvaluator, cosine): nDCG@10, MRR@10, Recall@100 -
  the held-out rows of each training source (queries against the pool of their positives and hard negatives),
  T2Ranking-layout folders (train --eval), and C-MTEB / MTEB task folders (`load_task`);
- pair scoring (EmbeddingSimilarityEvaluator): Spearman of the cosine against the gold score;
- pair classification (BinaryClassificationEvaluator): average precision of the cosine for the 0/1 label.

Metric names are MTEB's (ndcg_at_10, mrr_at_10, recall_at_100, spearman, ap) so result files read alike.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import pyarrow as pa

RETRIEVAL = "retrieval"
PAIR_SCORING = "pair scoring"
PAIR_CLASSIFICATION = "pair classification"
METRICS = {
    RETRIEVAL: ("ndcg_at_10", "mrr_at_10", "recall_at_100"),
    PAIR_SCORING: ("spearman",),
    PAIR_CLASSIFICATION: ("ap",),
}
# The split an evaluation reads when a folder holds several: the one C-MTEB / MTEB score on. A train split
# alone is refused, never silently scored.
RETRIEVAL_SPLITS = ("dev", "test", "validation")
PAIR_SPLITS = ("test", "validation", "dev")


@dataclass
class IRSet:
    name: str
    queries: dict[str, str]
    corpus: dict[str, str]
    relevant: dict[str, set[str]]
    query_prompt: str | None = None
    dropped: Counter = field(default_factory=Counter)  # reason -> rows left out, said beside the figures
    kind: str = RETRIEVAL


@dataclass
class PairSet:
    name: str
    kind: str  # PAIR_SCORING or PAIR_CLASSIFICATION
    sentences1: list[str]
    sentences2: list[str]
    gold: list[float]  # the score, or the 0/1 label
    dropped: Counter = field(default_factory=Counter)


EvalSet = IRSet | PairSet


def heldout_set(name: str, heldout: pa.Table, query_prompt: str | None = None) -> IRSet | None:
    """Held-out rows as a retrieval task; identical texts share one corpus id so ties are not misses."""
    if heldout.num_rows == 0:
        return None
    corpus_ids: dict[str, str] = {}

    def doc_id(text: str) -> str:
        return corpus_ids.setdefault(text, f"d{len(corpus_ids)}")

    queries: dict[str, str] = {}
    relevant: dict[str, set[str]] = {}
    for i, (q, pos, negs) in enumerate(
        zip(heldout["query"].to_pylist(), heldout["positive"].to_pylist(), heldout["negatives"].to_pylist(), strict=True)
    ):
        qid = f"q{i}"
        queries[qid] = q
        relevant[qid] = {doc_id(pos)}
        for n in negs or []:
            doc_id(n)
    corpus = {i: t for t, i in corpus_ids.items()}
    return IRSet(name=name, queries=queries, corpus=corpus, relevant=relevant, query_prompt=query_prompt)


def _read_tsv(path: Path, names: list[str]) -> pl.DataFrame:
    with path.open(encoding="utf-8") as fh:
        first = fh.readline().split("\t", 1)[0].strip()
    return pl.read_csv(
        path, separator="\t", has_header=not first.isdigit(), new_columns=names, quote_char=None,
        schema_overrides={n: pl.String for n in names}, truncate_ragged_lines=True,
    )


def _pick(folder: Path, patterns: list[str]) -> Path | None:
    for pattern in patterns:
        hits = sorted(folder.glob(pattern))
        if hits:
            return hits[0]
    return None


def t2ranking_set(
    folder: Path,
    *,
    min_relevance: int = 2,
    max_queries: int | None = 1000,
    corpus_size: int | None = 100_000,
    seed: int = 42,
    query_prompt: str | None = None,
) -> IRSet:
    """A T2Ranking-layout folder as a retrieval task.

    Relevance 2 and 3 count as relevant (T2Ranking's own retrieval qrels are those). The full collection
    has 2.3M passages; by default the corpus is every relevant passage plus a seeded random sample up to
    `corpus_size`, which keeps evaluation minutes, not hours (state it with the figures).
    """
    collection = folder / "collection.tsv"
    for split in ("dev", "test", "train"):
        queries_file = _pick(folder, [f"queries.{split}.tsv"])
        qrels_file = _pick(folder, [f"qrels.retrieval.{split}.tsv", f"qrels.{split}.tsv"])
        if queries_file and qrels_file:
            break
    else:
        raise FileNotFoundError(f"{folder}: no queries.<split>.tsv with a matching qrels file")
    if not collection.exists():
        raise FileNotFoundError(f"{folder}: collection.tsv is missing")
    queries = _read_tsv(queries_file, ["qid", "text"])
    with qrels_file.open(encoding="utf-8") as fh:
        width = len(fh.readline().rstrip("\n").split("\t"))
    if width >= 4:
        qrels = _read_tsv(qrels_file, ["qid", "iter", "pid", "rel"])
        qrels = qrels.filter(pl.col("rel").cast(pl.Int64, strict=False) >= min_relevance)
    else:
        qrels = _read_tsv(qrels_file, ["qid", "pid"])
    qrels = qrels.filter(pl.col("qid").is_in(queries["qid"].implode()))
    qids = sorted(set(qrels["qid"].to_list()))
    rng = random.Random(seed)
    if max_queries is not None and len(qids) > max_queries:
        qids = sorted(rng.sample(qids, max_queries))
    qrels = qrels.filter(pl.col("qid").is_in(qids))
    passages = _read_tsv(collection, ["pid", "text"])
    wanted = set(qrels["pid"].to_list())
    if corpus_size is not None and passages.height > corpus_size:
        others = passages.filter(~pl.col("pid").is_in(list(wanted)))
        extra = max(0, corpus_size - len(wanted))
        passages = pl.concat(
            [passages.filter(pl.col("pid").is_in(list(wanted))), others.sample(min(extra, others.height), seed=seed)]
        )
    corpus = dict(zip(passages["pid"].to_list(), passages["text"].to_list(), strict=True))
    relevant: dict[str, set[str]] = {}
    for qid, pid in zip(qrels["qid"].to_list(), qrels["pid"].to_list(), strict=True):
        if pid in corpus:
            relevant.setdefault(qid, set()).add(pid)
    text = dict(zip(queries["qid"].to_list(), queries["text"].to_list(), strict=True))
    return IRSet(
        name=f"t2ranking:{folder.name}",
        queries={q: text[q] for q in relevant},
        corpus=corpus,
        relevant=relevant,
        query_prompt=query_prompt,
    )


class TaskError(ValueError):
    """A task folder that cannot be read as any of the layouts; the message says what was expected."""


def _split_of(path: Path) -> str:
    # Hub shards are named <split>-00000-of-00001.parquet (or <split>-00000-of-00001-<hash>.parquet).
    return path.name.split("-", 1)[0].removesuffix(".parquet")


def _choose_split(files: list[Path], preferred: tuple[str, ...], where: Path) -> list[Path]:
    splits = sorted({_split_of(f) for f in files})
    for split in preferred:
        if split in splits:
            return sorted(f for f in files if _split_of(f) == split)
    raise TaskError(f"{where}: no {'/'.join(preferred)} split (found: {', '.join(splits) or 'none'})")


def _read(files: list[Path]) -> pl.DataFrame:
    frames = []
    for f in files:
        try:
            frames.append(pl.read_parquet(f))
        except (pl.exceptions.PolarsError, OSError) as exc:  # a truncated download, an LFS pointer file
            raise TaskError(f"{f}: not a readable Parquet file ({type(exc).__name__}: {exc})") from None
    return pl.concat(frames, how="diagonal_relaxed")


def _need(frame: pl.DataFrame, columns: list[str], where: Path | str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise TaskError(f"{where}: missing column(s) {', '.join(missing)} (has {', '.join(frame.columns)})")


def _texts(frame: pl.DataFrame, id_col: str, where: Path, kind: str, dropped: Counter,
           title_col: str | None = None) -> dict[str, str]:
    """id -> text; an empty text or a repeated id is left out and counted (the first of a repeated id wins)."""
    _need(frame, [id_col, "text"], where)
    ids = frame[id_col].cast(pl.String).to_list()
    texts = frame["text"].to_list()
    titles = frame[title_col].to_list() if title_col and title_col in frame.columns else [None] * len(ids)
    out: dict[str, str] = {}
    for i, text, title in zip(ids, texts, titles, strict=True):
        # MTEB embeds a titled document as "title text".
        full = f"{title} {text}".strip() if title else (text or "").strip()
        if i is None or not full:
            dropped[f"{kind} without id or text"] += 1
        elif i in out:
            dropped[f"repeated {kind} id"] += 1
        else:
            out[i] = full
    return out


def _retrieval_set(name: str, folder: Path, corpus: dict[str, str], queries: dict[str, str],
                   qrels: pl.DataFrame, qid: str, pid: str, dropped: Counter, query_prompt: str | None) -> IRSet:
    relevant: dict[str, set[str]] = {}
    scores = qrels["score"].cast(pl.Float64, strict=False).to_list() if "score" in qrels.columns else None
    for n, (q, p) in enumerate(zip(qrels[qid].cast(pl.String).to_list(), qrels[pid].cast(pl.String).to_list(),
                                   strict=True)):
        if scores is not None and not (scores[n] or 0) > 0:
            continue  # a judged-irrelevant pair (score 0) is no relevant document
        if p not in corpus:
            dropped["qrels naming a passage missing from the corpus"] += 1
        elif q not in queries:
            dropped["qrels naming a query missing from the queries"] += 1
        else:
            relevant.setdefault(q, set()).add(p)
    if not relevant:
        raise TaskError(f"{folder}: no qrels row names both a known query and a known passage")
    # As MTEB does: queries without a relevant passage are not scored.
    unjudged = len(queries) - len(relevant)
    if unjudged:
        dropped["queries without a relevant passage (not scored)"] += unjudged
    return IRSet(name=name, queries={q: queries[q] for q in relevant}, corpus=corpus, relevant=relevant,
                 query_prompt=query_prompt, dropped=dropped)


def _parquets(folder: Path, pattern: str) -> list[Path]:
    return sorted(p for p in folder.glob(pattern) if p.is_file())


def load_task(folder: Path, *, query_prompt: str | None = None) -> EvalSet:
    """A task folder as the Hub lays it out, its kind told by its files:

    - retrieval, C-MTEB (`C-MTEB/<Task>`): data/corpus-*.parquet and data/queries-*.parquet (id, text), the
      qrels (qid, pid, score) of `C-MTEB/<Task>-qrels` in the sibling folder <folder>-qrels/data/<split>-*
      or in <folder>/qrels/[data/]<split>-*;
    - retrieval, MTEB 2 (`mteb/<Task>`): corpus/*.parquet (_id or id, [title], text), queries/*.parquet,
      qrels (query-id, corpus-id, score) in data/<split>-* or qrels/<split>-*;
    - pair tasks: data/<split>-*.parquet with sentence1, sentence2 (or sent1, sent2) and either `score`
      (pair scoring: LCQMC, BQ, PAWSX, ATEC, STSB) or a 0/1 `label` (pair classification: OCNLI, Cmnli).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise TaskError(f"{folder}: no such folder")
    name = folder.name
    dropped: Counter = Counter()
    mteb_corpus, mteb_queries = _parquets(folder, "corpus/*.parquet"), _parquets(folder, "queries/*.parquet")
    if mteb_corpus and mteb_queries:
        qrel_files = _parquets(folder, "data/*.parquet") or _parquets(folder, "qrels/*.parquet")
        if not qrel_files:
            raise TaskError(f"{folder}: MTEB layout (corpus/, queries/) without qrels in data/ or qrels/")
        qrels = _read(_choose_split(qrel_files, RETRIEVAL_SPLITS, folder))
        _need(qrels, ["query-id", "corpus-id"], folder / "data")
        corpus_frame, queries_frame = _read(mteb_corpus), _read(mteb_queries)
        cid = "_id" if "_id" in corpus_frame.columns else "id"
        qid_col = "_id" if "_id" in queries_frame.columns else "id"
        corpus = _texts(corpus_frame, cid, folder / "corpus", "passage", dropped, title_col="title")
        queries = _texts(queries_frame, qid_col, folder / "queries", "query", dropped)
        return _retrieval_set(name, folder, corpus, queries, qrels, "query-id", "corpus-id", dropped, query_prompt)

    cmteb_corpus = _parquets(folder, "data/corpus-*.parquet")
    cmteb_queries = _parquets(folder, "data/queries-*.parquet")
    if cmteb_corpus or cmteb_queries:
        if not (cmteb_corpus and cmteb_queries):
            raise TaskError(f"{folder}: data/ holds {'corpus' if cmteb_corpus else 'queries'}-*.parquet "
                            f"but no {'queries' if cmteb_corpus else 'corpus'}-*.parquet")
        sibling = folder.parent / f"{folder.name}-qrels"
        qrel_files = (_parquets(sibling, "data/*.parquet") or _parquets(folder, "qrels/*.parquet")
                      or _parquets(folder, "qrels/data/*.parquet"))
        if not qrel_files:
            raise TaskError(f"{folder}: no qrels: expected {sibling}/data/<split>-*.parquet (the "
                            f"C-MTEB/{name}-qrels repository) or {folder}/qrels/<split>-*.parquet")
        qrels = _read(_choose_split(qrel_files, RETRIEVAL_SPLITS, qrel_files[0].parent))
        qid, pid = ("qid", "pid") if "qid" in qrels.columns else ("query-id", "corpus-id")
        _need(qrels, [qid, pid], qrel_files[0].parent)
        corpus = _texts(_read(cmteb_corpus), "id", folder / "data", "passage", dropped)
        queries = _texts(_read(cmteb_queries), "id", folder / "data", "query", dropped)
        return _retrieval_set(name, folder, corpus, queries, qrels, qid, pid, dropped, query_prompt)

    pair_files = _parquets(folder, "data/*.parquet")
    if pair_files:
        frame = _read(_choose_split(pair_files, PAIR_SPLITS, folder / "data"))
        if {"qid", "pid"} <= set(frame.columns) or {"query-id", "corpus-id"} <= set(frame.columns):
            raise TaskError(f"{folder}: holds only qrels; pass the task folder beside it (with data/corpus-*)")
        s1, s2 = ("sentence1", "sentence2") if "sentence1" in frame.columns else ("sent1", "sent2")
        _need(frame, [s1, s2], folder / "data")
        if "score" in frame.columns:
            kind, gold_col = PAIR_SCORING, "score"
        elif "label" in frame.columns:
            kind, gold_col = PAIR_CLASSIFICATION, "label"
        else:
            raise TaskError(f"{folder}/data: pairs without a `score` (pair scoring) or `label` column "
                            f"(pair classification); has {', '.join(frame.columns)}")
        gold = frame[gold_col].cast(pl.Float64, strict=False).to_list()
        first, second, values = [], [], []
        for a, b, g in zip(frame[s1].to_list(), frame[s2].to_list(), gold, strict=True):
            if not a or not b or g is None:
                dropped["pairs without both sentences and a " + gold_col] += 1
                continue
            first.append(a)
            second.append(b)
            values.append(g)
        if kind == PAIR_CLASSIFICATION and not set(values) <= {0.0, 1.0}:
            raise TaskError(f"{folder}/data: labels {sorted(set(values))[:6]}: pair classification needs 0/1 "
                            "labels (C-MTEB's OCNLI / Cmnli are binarised)")
        if len(set(values)) < 2:
            raise TaskError(f"{folder}/data: every pair has the same {gold_col}: nothing to rank")
        return PairSet(name=name, kind=kind, sentences1=first, sentences2=second, gold=values, dropped=dropped)

    raise TaskError(
        f"{folder}: not a task folder: expected data/corpus-*.parquet + data/queries-*.parquet (C-MTEB "
        "retrieval), corpus/ + queries/ + data/ (MTEB retrieval), or data/<split>-*.parquet pairs"
    )


def evaluate(model, sets: list[EvalSet], *, batch_size: int = 64, progress: bool = False) -> dict[str, dict[str, float]]:
    """Per set, its kind's metrics (METRICS), cosine similarity throughout."""
    from sentence_transformers.sentence_transformer.evaluation import (
        BinaryClassificationEvaluator,
        EmbeddingSimilarityEvaluator,
        InformationRetrievalEvaluator,
    )
    from sentence_transformers.util import cos_sim

    results: dict[str, dict[str, float]] = {}
    for s in sets:
        if isinstance(s, IRSet):
            scores = InformationRetrievalEvaluator(
                queries=s.queries, corpus=s.corpus, relevant_docs=s.relevant, batch_size=batch_size,
                mrr_at_k=[10], ndcg_at_k=[10], accuracy_at_k=[1], precision_recall_at_k=[100], map_at_k=[10],
                write_csv=False, query_prompt=s.query_prompt, score_functions={"cosine": cos_sim},
                main_score_function="cosine", show_progress_bar=progress,
            )(model)
            results[s.name] = {
                "ndcg_at_10": float(scores["cosine_ndcg@10"]),
                "mrr_at_10": float(scores["cosine_mrr@10"]),
                "recall_at_100": float(scores["cosine_recall@100"]),
            }
        elif s.kind == PAIR_SCORING:
            scores = EmbeddingSimilarityEvaluator(
                s.sentences1, s.sentences2, s.gold, batch_size=batch_size, similarity_fn_names=["cosine"],
                show_progress_bar=progress, write_csv=False,
            )(model)
            results[s.name] = {"spearman": float(scores["spearman_cosine"])}
        else:
            scores = BinaryClassificationEvaluator(
                s.sentences1, s.sentences2, [int(g) for g in s.gold], batch_size=batch_size,
                similarity_fn_names=["cosine"], show_progress_bar=progress, write_csv=False,
            )(model)
            results[s.name] = {"ap": float(scores["cosine_ap"])}
    return results


def with_mean(results: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """The results plus "mean": each metric's unweighted mean over the sets that report it."""
    if not results:
        return results
    metrics = [m for kind in METRICS.values() for m in kind]
    mean = {}
    for m in metrics:
        values = [r[m] for r in results.values() if m in r]
        if values:
            mean[m] = sum(values) / len(values)
    return {**results, "mean": mean}
