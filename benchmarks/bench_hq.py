"""Benchmark of the m3e-hq stage on a synthetic corpus of Chinese pairs with planted duplicates, and on a
set of sibling questions (different questions over one passage) that must not be merged.

    python benchmarks/bench_hq.py                     # siblings, 100k quality/speed/baseline, RSS at 1M and 4M
    python benchmarks/bench_hq.py --sizes 20000 --rss-sizes 100000 --baseline-rows 5000   # quick

Prints:
- siblings: --siblings pairs of questions over one passage each, from templates, one kind of change per
  pair — a content word (参议院/众议院, 特性/用途), a negation (为什么参加/为什么不参加), an entity, a
  before/after (之前/之后), a number (2018/2019) — run through the whole hq stage as one s2p source: the
  false-merge rate (pairs left in one cluster; target <= 1%), per kind, beside the share the pair rule
  alone (pair Jaccard >= 0.8, each side >= 0.5) would merge; and the recall of copies of those questions
  with surface noise (punctuation, spaces, full-width forms, case) over the same passage, which must merge;
- quality: recall of the planted duplicates that are near duplicates by dedup's definition (computed
  exactly after planting; target >= 0.95) and precision of the reported duplicates (the dropped row and the
  row kept for it come from the same planted group; and, stricter, they are near duplicates directly);
- speed: pairs/s of the whole hq stage (statistics in a 2-process pool, rules, dedup, writing) and texts/s
  of the signatures, total and per core, plus the re-run with cached statistics;
- baseline: datasketch's plain pipeline (MinHash.update per shingle, MinHashLSH at threshold 0.8) on the
  same pairs, its time and its recall (candidates, unverified), against our near dedup doing the same job
  (signatures, bands, grouping, verification, components) and against our whole hq stage;
- memory: peak RSS of the hq stage at each --rss-sizes, each run in a fresh subprocess (main process and
  largest pool worker).

The corpus: 4 sources, one of them s2s; 80% unrelated background pairs (s2p: query 8-24 and positive
16-96 Han characters, a quarter of the queries with a Latin/digit token; s2s: both 12-40); planted groups
of a base and 3 variants aimed at Jaccard 0.5-0.95 — a question (s2p, query no longer than its positive)
keeps its words with surface noise and its positive is edited, any other pair is edited anywhere; exact
copies with punctuation/space noise; copies of rows into another source (exact or one character edited).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from m3e_data.schema import UNIFIED_SCHEMA
from m3e_data.stages.hq.dedup import near_duplicates, pair_similarity, question_rows, similarities
from m3e_data.stages.hq.minhash import MinHashParams, band_keys, signatures
from m3e_data.storage.store import SUCCESS, atomic_write_json

SOURCES = ("bench_a", "bench_b", "bench_c", "bench_d")
S2S = ("bench_d",)  # a similarity source: query and positive alike in length, matched in either order
HAN = np.arange(0x4E00, 0x4E00 + 3500, dtype=np.uint32)
ASCII = np.array([ord(c) for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"], dtype=np.uint32)
LEVELS = np.array([0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.6, 0.5])
THRESHOLD = 0.8
SIDE_THRESHOLD = 0.5  # hq.HqConfig.side_jaccard
NOISE = ("。", " ", "！", "？", "?", "，", "、")


# ---------------------------------------------------------------------------------------------------------
# The corpus


def _texts(rng: np.random.Generator, lengths: np.ndarray, alphabet: np.ndarray = HAN) -> list[str]:
    cps = rng.choice(alphabet, size=int(lengths.sum()))
    big = cps.tobytes().decode("utf-32-le")
    ends = np.cumsum(lengths)
    starts = ends - lengths
    return [big[s:e] for s, e in zip(starts.tolist(), ends.tolist(), strict=True)]


def _edit_text(rng: np.random.Generator, text: str, target: float) -> str:
    """Replace k random characters, k chosen so that the text's 3-gram J ≈ (S - 3k) / (S + 3k)."""
    chars = list(text)
    size = max(len(text) - 2, 1)
    k = max(1, round(size * (1 - target) / (3 * (1 + target))))
    for pos in rng.choice(len(chars), size=min(k, len(chars)), replace=False):
        chars[pos] = chr(int(rng.choice(HAN)))
    return "".join(chars)


def _edit(rng: np.random.Generator, q: str, p: str, target: float) -> tuple[str, str]:
    """Replace k random characters of q + p, k chosen so that J ≈ (S - 3k) / (S + 3k)."""
    text = _edit_text(rng, q + p, target)
    return text[: len(q)], text[len(q) :]


def _width(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


def surface_noise(rng: np.random.Generator, text: str) -> str:
    """What a copy of a question picks up: punctuation, spaces, full-width forms, case — never content."""
    kind = int(rng.integers(0, 4))
    if kind == 0:
        return text + NOISE[int(rng.integers(0, len(NOISE)))]
    if kind == 1:
        at = int(rng.integers(0, len(text) + 1))
        return text[:at] + NOISE[int(rng.integers(0, len(NOISE)))] + text[at:]
    if kind == 2 and any(c.isascii() for c in text):
        return _width(text)
    return text.swapcase() + " " if any(c.isascii() and c.isalpha() for c in text) else " " + text


def _variant(rng: np.random.Generator, q: str, p: str, target: float, question: bool) -> tuple[str, str]:
    """A planted near copy of (q, p): a question keeps its words (surface noise only) and its positive is
    edited towards `target`; any other pair is edited anywhere."""
    if question:
        return surface_noise(rng, q), _edit_text(rng, p, target)
    return _edit(rng, q, p, target)


def generate(n: int, out: Path, seed: int = 0) -> pl.DataFrame:
    """Write n pairs as OUT/m3e/<source>/ and return the truth: id, group, original (planted copies), and
    whether each copy is a near duplicate of its original by dedup's definition."""
    rng = np.random.default_rng(seed)
    n_bg = int(n * 0.8)
    source = rng.integers(0, len(SOURCES), n_bg).tolist()
    s2s_bg = np.isin(np.asarray(SOURCES)[source], S2S)
    # s2p: query 8-24, positive 16-96 Han characters; s2s: both 12-40. A quarter of the queries carry a
    # Latin/digit token (NBA, iPhone 15, 2019), where width and case noise show.
    queries = _texts(rng, np.where(s2s_bg, rng.integers(12, 41, n_bg), rng.integers(8, 25, n_bg)))
    positives = _texts(rng, np.where(s2s_bg, rng.integers(12, 41, n_bg), rng.integers(16, 97, n_bg)))
    tokens = _texts(rng, rng.integers(2, 7, n_bg), ASCII)
    for i in np.flatnonzero(rng.random(n_bg) < 0.25):
        at = int(rng.integers(0, len(queries[i]) + 1))
        queries[i] = queries[i][:at] + tokens[i] + queries[i][at:]
    question = [not s and len(q) <= len(p) for s, q, p in zip(s2s_bg.tolist(), queries, positives, strict=True)]
    group = list(range(n_bg))
    original = [-1] * n_bg
    level = [np.nan] * n_bg
    while len(queries) < n:
        kind = rng.random()
        base = int(rng.integers(0, n_bg))
        q, p = queries[base], positives[base]
        if kind < 0.6:  # a near-duplicate group: 3 variants of the base
            for target in rng.choice(LEVELS, size=3):
                vq, vp = _variant(rng, q, p, float(target), question[base])
                queries.append(vq)
                positives.append(vp)
                source.append(source[base] if rng.random() < 0.7 else int(rng.integers(0, len(SOURCES))))
                group.append(base)
                original.append(base)
                level.append(float(target))
        elif kind < 0.8:  # an exact copy with punctuation/space noise
            queries.append(q + NOISE[int(rng.integers(0, len(NOISE)))])
            positives.append(p)
            source.append(source[base])
            group.append(base)
            original.append(base)
            level.append(1.0)
        else:  # a copy in another source, exact or with one character edited
            vq, vp = (q, p) if rng.random() < 0.5 else _variant(rng, q, p, 0.95, question[base])
            queries.append(vq)
            positives.append(vp)
            source.append((source[base] + 1 + int(rng.integers(0, len(SOURCES) - 1))) % len(SOURCES))
            group.append(base)
            original.append(base)
            level.append(0.95)
    # Shuffled, so that the first m rows (--baseline-rows) hold planted copies too, not background alone.
    order = rng.permutation(n)
    where = np.empty(n, dtype=np.int64)
    where[order] = np.arange(n)
    queries, positives = [queries[i] for i in order], [positives[i] for i in order]
    source, level = [source[i] for i in order], [level[i] for i in order]
    group = [int(where[group[i]]) for i in order]
    original = [int(where[original[i]]) if original[i] >= 0 else -1 for i in order]
    ids = [f"{SOURCES[s]}/train/{i:08d}" for i, s in enumerate(source)]
    truth = pl.DataFrame({"row": np.arange(n), "id": ids, "source": [SOURCES[s] for s in source],
                          "group": group, "original": original, "level": level})
    src = np.asarray(source)
    for s, name in enumerate(SOURCES):
        idx = np.flatnonzero(src == s)
        _write_source(out, name, [ids[i] for i in idx], [queries[i] for i in idx], [positives[i] for i in idx],
                      homogeneous=name in S2S, seed=seed, n=n)
    # Whether each planted (copy, original) pair is a near duplicate as dedup defines one.
    planted = truth.filter(pl.col("original") >= 0)
    a = planted["row"].to_numpy()
    b = planted["original"].to_numpy()
    j, dup = is_duplicate(queries, positives, truth["source"].is_in(list(S2S)).to_numpy(), a, b)
    truth = truth.join(planted.select("row", pl.Series("jaccard", j), pl.Series("duplicate", dup)), on="row", how="left")
    truth.write_parquet(out / "truth.parquet")
    return truth


def is_duplicate(queries: list[str], positives: list[str], s2s: np.ndarray, a: np.ndarray, b: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The pair Jaccard of rows a[i], b[i] and whether they are near duplicates by dedup's two rules."""
    rows = np.unique(np.concatenate([a, b]))
    if not len(rows):
        return np.zeros(0, np.float32), np.zeros(0, bool)
    la, lb = np.searchsorted(rows, a), np.searchsorted(rows, b)
    q, p, h = [queries[i] for i in rows], [positives[i] for i in rows], s2s[rows]
    pair, side_q, side_p = similarities(q, p, la, lb, h[la] & h[lb])
    question, norm = question_rows(q, p, h)
    strict = question[la] | question[lb]
    dup = np.where(strict, (norm[la] == norm[lb]) & (side_p >= THRESHOLD),
                   (pair >= THRESHOLD) & (np.minimum(side_q, side_p) >= SIDE_THRESHOLD))
    return pair, dup.astype(bool)


def _write_source(out: Path, name: str, ids: list[str], queries: list[str], positives: list[str], *,
                  homogeneous: bool, seed: int, n: int, task: str = "similarity") -> None:
    folder = out / "m3e" / name
    folder.mkdir(parents=True, exist_ok=True)
    m = len(ids)
    table = pa.table({
        "id": ids, "source": [name] * m, "split": ["train"] * m, "query": queries, "positive": positives,
        "negatives": pa.array([[]] * m, pa.list_(pa.string())), "positive_score": pa.nulls(m, pa.float32()),
        "negative_scores": pa.nulls(m, pa.list_(pa.float32())), "task": [task] * m,
        "homogeneous": [homogeneous] * m, "domain": ["colloquial"] * m, "license": ["synthetic"] * m,
        "commercial": [True] * m,
    }).cast(UNIFIED_SCHEMA)
    pq.write_table(table, folder / "part-00000.parquet", row_group_size=100_000)
    atomic_write_json(folder / SUCCESS, {"key": {"bench": n, "seed": seed, "source": name}, "parts": ["part-00000.parquet"]})


# ---------------------------------------------------------------------------------------------------------
# Sibling questions: different questions over one passage, which near dedup must keep apart

ENTITIES = (
    "张伯伦", "李鸿章", "爱因斯坦", "达尔文", "孔子", "李白", "杜甫", "苏轼", "牛顿", "居里夫人", "哥白尼", "曹操",
    "北京大学", "清华大学", "复旦大学", "浙江大学", "故宫博物院", "大英博物馆", "联合国", "世界卫生组织",
    "长江", "黄河", "珠江", "泰山", "黄山", "洞庭湖", "鄱阳湖", "上海", "广州", "深圳", "杭州", "南京", "武汉",
    "成都", "西安", "哈尔滨", "昆明", "拉萨", "乌鲁木齐", "底特律", "芝加哥", "维也纳", "佛罗伦萨", "京都",
    "微软公司", "华为公司", "丰田汽车", "波音公司", "民主党", "共和党", "工党", "保守党",
)
# Per kind: (template, the two fillers of {x}); {e} is an entity, {y} a year, shared by both siblings.
SIBLING_TEMPLATES: dict[str, list[tuple[str, list[tuple[str, str]]]]] = {
    "before_after": [
        ("{e}在{y}年{x}出现了什么建筑类型？", [("之前", "之后"), ("以前", "以后"), ("前", "后")]),
        ("{y}年战争{x}，{e}的主要收入来源是什么？", [("之前", "之后"), ("爆发前", "结束后"), ("开始前", "结束后")]),
        ("{e}在改革{x}采取了哪些经济政策？", [("之前", "之后"), ("早期", "晚期"), ("前期", "后期")]),
        ("在{y}年{x}，{e}的人口大约有多少？", [("上半年", "下半年"), ("年初", "年底"), ("以前", "以后")]),
    ],
    "content_word": [
        ("{y}年选举之后{e}在{x}有几个席位？", [("参议院", "众议院"), ("上议院", "下议院"), ("州议会", "市议会")]),
        ("{e}是什么理论的{x}？", [("创始人", "继承人"), ("创始人", "反对者"), ("提出者", "批评者")]),
        ("文中提到{e}的{x}是什么？", [("特性", "用途"), ("优点", "缺点"), ("原因", "影响"), ("面积", "人口"),
                                 ("首都", "最大城市"), ("父亲", "母亲"), ("作者", "译者"), ("出口", "进口")]),
        ("{e}在{y}年获得了哪一项比赛的{x}？", [("冠军", "亚军"), ("金牌", "银牌"), ("第一名", "第二名")]),
        ("{e}的{x}地区在{y}年发生了什么？", [("东部", "西部"), ("南部", "北部"), ("上游", "下游"), ("沿海", "内陆")]),
        ("{e}在哪一年{x}？", [("出生", "去世"), ("成立", "解散"), ("开业", "倒闭"), ("登基", "退位")]),
    ],
    "negation": [
        ("{e}为什么{x}参加{y}年的选举？", [("", "不"), ("", "没有"), ("会", "不会")]),
        ("{e}{x}同意这项改革的原因是什么？", [("", "不"), ("", "没有"), ("为何", "为何不")]),
        ("哪些城市{x}属于{e}的管辖范围？", [("", "不"), ("仍然", "不再")]),
        ("{e}在{y}年{x}被列入名录的理由是什么？", [("", "没有"), ("", "未")]),
        ("根据文章，{e}附近{x}适合在什么季节种植水稻？", [("", "不"), ("最", "最不")]),
    ],
    "entity": [
        ("{x}在{y}年获得了什么奖项？", []),
        ("{x}与{e}之间是什么关系？", []),
        ("{y}年{x}的负责人是谁？", []),
        ("文章中{x}位于哪个国家或地区？", []),
    ],
    "number": [
        ("{e}在{x}年的常住人口一共有多少万人？", []),
        ("{e}第{x}次代表大会在哪里召开？", []),
    ],
}
SIBLING_KINDS = tuple(SIBLING_TEMPLATES)


def _sibling_questions(rng: np.random.Generator, kind: str) -> tuple[str, str, str]:
    """Two questions about one passage that differ by one kind of change, and the entity they mention."""
    template, fillers = SIBLING_TEMPLATES[kind][int(rng.integers(0, len(SIBLING_TEMPLATES[kind])))]
    e1, e2 = (ENTITIES[int(i)] for i in rng.choice(len(ENTITIES), size=2, replace=False))
    year = int(rng.integers(1850, 2024))
    if kind == "entity":
        x1, x2 = e1, e2
        e1 = ENTITIES[int(rng.integers(0, len(ENTITIES)))]
    elif kind == "number":
        x1 = str(year) if "年" in template else str(int(rng.integers(1, 20)))
        x2 = str(int(x1) + int(rng.choice([-1, 1, 10])))
    else:
        x1, x2 = fillers[int(rng.integers(0, len(fillers)))]
        if rng.random() < 0.5:
            x1, x2 = x2, x1
    fill = {"e": e1, "y": year}
    return template.format(x=x1, **fill), template.format(x=x2, **fill), e1


def generate_siblings(n_pairs: int, out: Path, seed: int = 1) -> pl.DataFrame:
    """n_pairs sibling pairs, each over its own passage (150-400 Han characters with the entity in it),
    written as one s2p source; and for one question in five a copy with surface noise over the same
    passage, one character edited in one copy in two — a true duplicate, which must still merge.

    Returns the truth: id, row, kind, pair (the sibling pair), copy_of (row, or -1)."""
    rng = np.random.default_rng(seed)
    passages = _texts(rng, rng.integers(150, 401, n_pairs))
    queries: list[str] = []
    positives: list[str] = []
    kinds: list[str] = []
    pair: list[int] = []
    copy_of: list[int] = []
    for k in range(n_pairs):
        kind = SIBLING_KINDS[k % len(SIBLING_KINDS)]
        q1, q2, entity = _sibling_questions(rng, kind)
        at = int(rng.integers(0, len(passages[k])))
        passage = passages[k][:at] + entity + passages[k][at:]
        for q in (q1, q2):
            queries.append(q)
            positives.append(passage)
            kinds.append(kind)
            pair.append(k)
            copy_of.append(-1)
    for row in np.flatnonzero(rng.random(len(queries)) < 0.2).tolist():
        passage = positives[row]
        if rng.random() < 0.5:
            passage = _edit_text(rng, passage, 0.95)
        queries.append(surface_noise(rng, queries[row]))
        positives.append(passage)
        kinds.append(kinds[row])
        pair.append(pair[row])
        copy_of.append(row)
    n = len(queries)
    ids = [f"bench_qa/train/{i:08d}" for i in range(n)]
    _write_source(out, "bench_qa", ids, queries, positives, homogeneous=False, seed=seed, n=n, task="qa")
    truth = pl.DataFrame({"row": np.arange(n), "id": ids, "kind": kinds, "pair": pair, "copy_of": copy_of})
    truth.write_parquet(out / "truth.parquet")
    return truth


def sibling_figures(out: Path, truth: pl.DataFrame) -> dict[str, object]:
    """False merges among sibling questions (per kind and overall), what the pair rule alone would have
    merged, and the recall of the noisy copies."""
    quality = [p for stage in ("quality", "decontaminate") for p in (out / "rejects" / stage).glob("*/part-*.parquet")]
    gone = set(pl.concat([pl.read_parquet(p, columns=["id"]) for p in quality])["id"].to_list()) if quality else set()
    cluster = np.asarray(_clusters(truth, _dedup_rejects(out)), dtype=object)
    originals = truth.filter(pl.col("copy_of") < 0)
    first = originals.group_by("pair").agg(pl.col("row").min().alias("a"), pl.col("row").max().alias("b"), pl.col("kind").first())
    ids = truth["id"].to_list()
    first = first.filter(pl.col("a").map_elements(lambda r: ids[r] not in gone, return_dtype=pl.Boolean),
                         pl.col("b").map_elements(lambda r: ids[r] not in gone, return_dtype=pl.Boolean))
    a, b = first["a"].to_numpy(), first["b"].to_numpy()
    merged = cluster[a] == cluster[b]
    _, queries, positives = read_corpus(out, ["bench_qa"])
    pair_j, side = pair_similarity(queries, positives, a, b)
    pair_rule = (pair_j >= THRESHOLD) & (side >= SIDE_THRESHOLD)
    by_kind = {
        kind: {"pairs": int((first["kind"] == kind).sum()),
               "false_merge_rate": float(merged[(first["kind"] == kind).to_numpy()].mean()),
               "pair_rule_alone": float(pair_rule[(first["kind"] == kind).to_numpy()].mean())}
        for kind in SIBLING_KINDS
    }
    copies = truth.filter(pl.col("copy_of") >= 0)
    ca, cb = copies["row"].to_numpy(), copies["copy_of"].to_numpy()
    return {"sibling_pairs": len(a), "dropped_before_dedup": len(gone), "false_merge_rate": float(merged.mean()),
            "pair_rule_alone_would_merge": float(pair_rule.mean()), "by_kind": by_kind,
            "noisy_copies": len(ca), "copy_recall": float((cluster[ca] == cluster[cb]).mean())}


def read_corpus(out: Path, sources: tuple[str, ...] | list[str] = SOURCES) -> tuple[list[str], list[str], list[str]]:
    """ids, queries, positives in truth-row order."""
    truth = pl.read_parquet(out / "truth.parquet", columns=["id"])
    frames = [pl.read_parquet(out / "m3e" / s / "part-00000.parquet", columns=["id", "query", "positive"]) for s in sources]
    df = truth.join(pl.concat(frames), on="id", how="left", maintain_order="left")
    return df["id"].to_list(), df["query"].to_list(), df["positive"].to_list()


# ---------------------------------------------------------------------------------------------------------
# Measurements


def quality_figures(out: Path, truth: pl.DataFrame) -> dict[str, float]:
    """Recall of planted near duplicates and precision of the reported duplicates."""
    dropped = _dedup_rejects(out)
    cl = dict(zip(truth["row"].to_list(), _clusters(truth, dropped), strict=True))
    # In a subset (_subset) a copy's original may lie outside it.
    planted = truth.filter(pl.col("original") >= 0, pl.col("duplicate"), pl.col("original").is_in(truth["row"].implode()))
    found = sum(cl[a] == cl[b] for a, b in zip(planted["row"].to_list(), planted["original"].to_list(), strict=True))
    recall = found / max(planted.height, 1)
    by_id = truth.select("id", "row", "group")
    pairs = dropped.join(by_id, on="id").join(by_id.rename({"id": "kept_id", "row": "kept_row", "group": "kept_group"}), on="kept_id")
    precision = float((pairs["group"] == pairs["kept_group"]).mean()) if pairs.height else 1.0
    # Stricter: the dropped row is itself a near duplicate of the row kept for it.
    ids, queries, positives = read_corpus(out)
    strict = 1.0
    if pairs.height:
        s2s = truth["source"].is_in(list(S2S)).to_numpy()
        _, dup = is_duplicate(queries, positives, s2s, pairs["row"].to_numpy(), pairs["kept_row"].to_numpy())
        strict = float(dup.mean())
    return {"planted_duplicates": planted.height, "recall": recall, "reported": pairs.height,
            "precision_same_group": precision, "precision_direct": strict}


def _dedup_rejects(out: Path) -> pl.DataFrame:
    parts = list((out / "rejects" / "dedup").glob("*/part-*.parquet"))
    if not parts:
        return pl.DataFrame(schema={"id": pl.String, "reason": pl.String, "kept_id": pl.String})
    return pl.concat([pl.read_parquet(p, columns=["id", "reason", "kept_id"]) for p in parts])


def _clusters(truth: pl.DataFrame, dropped: pl.DataFrame) -> list[str]:
    """Each truth row's cluster: the id of the row kept for it (its own id when it survives)."""
    joined = truth.select("id").join(dropped.select("id", "kept_id"), on="id", how="left", maintain_order="left")
    return joined.select(pl.coalesce("kept_id", "id"))["kept_id"].to_list()


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children: per-core speed that contention does not hide."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _sig_chunk(texts: list[str]) -> int:
    signatures(texts, MinHashParams())
    return len(texts)


def signature_speed(texts: list[str], workers: int) -> dict[str, float]:
    chunks = [texts[i : i + 20_000] for i in range(0, len(texts), 20_000)]
    t0, c0 = time.perf_counter(), time.process_time()
    for c in chunks:
        _sig_chunk(c)
    one, one_cpu = time.perf_counter() - t0, time.process_time() - c0
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_sig_chunk, chunks[:workers]))  # warm the workers
        t0 = time.perf_counter()
        list(pool.map(_sig_chunk, chunks))
        many = time.perf_counter() - t0
    return {"texts": len(texts), "texts_per_s_1_process": len(texts) / one, "texts_per_cpu_s": len(texts) / one_cpu,
            f"texts_per_s_{workers}_processes": len(texts) / many, "texts_per_s_per_core": len(texts) / many / workers}


def baseline(queries: list[str], positives: list[str], truth: pl.DataFrame) -> dict[str, float]:
    """datasketch's plain pipeline: MinHash.update per shingle (default sha1 hash), MinHashLSH(0.8)."""
    from datasketch import MinHash, MinHashLSH

    from m3e_data.stages.hq.minhash import shingles

    n = len(queries)
    t0, c0 = time.perf_counter(), time.process_time()
    lsh = MinHashLSH(threshold=THRESHOLD, num_perm=128)
    found: set[tuple[int, int]] = set()
    for i in range(n):
        m = MinHash(num_perm=128)
        for g in set(shingles(queries[i])) | set(shingles(positives[i])):
            m.update(g.encode("utf-8"))
        for j in lsh.query(m):
            found.add((min(i, j), max(i, j)))
        lsh.insert(i, m)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    planted = truth.filter(pl.col("row") < n, pl.col("original") >= 0, pl.col("original") < n, pl.col("duplicate"))
    hits = sum((min(a, b), max(a, b)) in found for a, b in zip(planted["row"].to_list(), planted["original"].to_list(), strict=True))
    return {"pairs": n, "seconds": seconds, "cpu_seconds": cpu, "pairs_per_s": n / seconds, "recall_candidates": hits / max(planted.height, 1),
            "params_bands_rows": list(lsh.b_r) if hasattr(lsh, "b_r") else [lsh.b, lsh.r]}


def near_dedup_only(queries: list[str], positives: list[str], truth: pl.DataFrame) -> dict[str, float]:
    """The same job as the baseline with our pieces, in one process: signatures (numpy, datasketch-exact),
    20 x 6 band keys, candidate grouping in polars, exact verification, connected components."""
    n = len(queries)
    t0, c0 = time.perf_counter(), time.process_time()
    pair_sig = np.minimum(signatures(queries), signatures(positives))  # MinHash of the union of the sets
    bands = band_keys(pair_sig, 20, 6)
    keep, _ = near_duplicates(
        n, ((np.arange(n), bands[:, i]) for i in range(bands.shape[1])),
        lambda g: ([queries[i] for i in g], [positives[i] for i in g]), np.arange(n), THRESHOLD,
        truth["source"].is_in(list(S2S)).to_numpy()[:n], SIDE_THRESHOLD,
    )
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    planted = truth.filter(pl.col("row") < n, pl.col("original") >= 0, pl.col("original") < n, pl.col("duplicate"))
    hits = int((keep[planted["row"].to_numpy()] == keep[planted["original"].to_numpy()]).sum())
    return {"pairs": n, "seconds": seconds, "cpu_seconds": cpu, "pairs_per_s": n / seconds,
            "recall_clusters": hits / max(planted.height, 1)}


def run_stage(out: Path, workers: int) -> dict[str, float]:
    from m3e_data.stages.hq.stage import HqConfig, run_hq

    t0, c0 = time.perf_counter(), _cpu_seconds()
    results = run_hq(out, workers=workers)
    first, cpu = time.perf_counter() - t0, _cpu_seconds() - c0
    t0 = time.perf_counter()  # a threshold change: statistics come from the cache, outputs are rewritten
    run_hq(out, HqConfig(defaults={"max_char_run": 9}), workers=workers)
    rerun = time.perf_counter() - t0
    rows = sum(r.rows_in for r in results.values())
    return {"pairs": rows, "seconds": first, "pairs_per_s": rows / first, "pairs_per_s_per_core": rows / first / workers,
            "cpu_seconds": cpu, "pairs_per_cpu_s": rows / cpu,
            "rerun_cached_seconds": rerun}


def _rss_mb() -> tuple[float, float]:
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)


def child_hq(out: Path, workers: int) -> None:
    from m3e_data.stages.hq.stage import run_hq

    t0, c0 = time.perf_counter(), _cpu_seconds()
    results = run_hq(out, workers=workers)
    seconds, cpu = time.perf_counter() - t0, _cpu_seconds() - c0
    main_mb, worker_mb = _rss_mb()
    print(json.dumps({"pairs": sum(r.rows_in for r in results.values()), "seconds": seconds, "cpu_seconds": cpu,
                      "peak_rss_main_mb": main_mb, "peak_rss_worker_mb": worker_mb}))


def _subprocess(args: list[str]) -> dict:
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"child {args} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="*", default=[100_000], help="pairs for quality and speed")
    ap.add_argument("--baseline-rows", type=int, default=100_000, help="pairs the datasketch baseline runs on (0: skip)")
    ap.add_argument("--rss-sizes", type=int, nargs="*", default=[1_000_000, 4_000_000], help="pairs for peak RSS")
    ap.add_argument("--siblings", type=int, default=5_000, help="sibling question pairs (0: skip)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--tmp", type=Path, default=None, help="scratch folder (default: a temp dir)")
    ap.add_argument("--child-generate", nargs=2, metavar=("N", "OUT"), help=argparse.SUPPRESS)
    ap.add_argument("--child-hq", metavar="OUT", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_generate:
        generate(int(args.child_generate[0]), Path(args.child_generate[1]))
        print(json.dumps({"ok": True}))
        return
    if args.child_hq:
        child_hq(Path(args.child_hq), args.workers)
        return

    print(f"cpus {os.cpu_count()}, load average {os.getloadavg()}", flush=True)
    targets: list[str] = []
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        if args.siblings:
            from m3e_data.stages.hq.stage import run_hq

            out = Path(tmp) / "siblings"
            truth = generate_siblings(args.siblings, out)
            run_hq(out, workers=args.workers)
            fig = sibling_figures(out, truth)
            print(f"\n== sibling questions: {args.siblings:,} pairs over one passage each ==", flush=True)
            print("siblings:", json.dumps(fig, ensure_ascii=False), flush=True)
            targets.append(f"sibling false-merge rate {fig['false_merge_rate']:.4f} (target <= 0.01; the pair rule "
                           f"alone: {fig['pair_rule_alone_would_merge']:.4f}); noisy copies merged {fig['copy_recall']:.4f}")
        for n in args.sizes:
            out = Path(tmp) / f"q{n}"
            t0 = time.perf_counter()
            truth = generate(n, out)
            print(f"\n== {n:,} pairs (generated in {time.perf_counter() - t0:.1f}s) ==", flush=True)
            stage = run_stage(out, args.workers)
            print("hq stage:", json.dumps(stage, indent=None), flush=True)
            q = quality_figures(out, truth)
            print("quality:", json.dumps(q), flush=True)
            targets.append(f"planted-duplicate recall at {n:,} pairs {q['recall']:.4f} (target >= 0.95), "
                           f"precision {q['precision_same_group']:.4f} (same planted group; directly a near "
                           f"duplicate of the row kept for it: {q['precision_direct']:.4f})")
            ids, queries, positives = read_corpus(out)
            print("signatures:", json.dumps(signature_speed(queries + positives, args.workers)), flush=True)
            if args.baseline_rows:
                m = min(args.baseline_rows, n)
                base = baseline(queries[:m], positives[:m], truth)
                # Our stage on exactly those pairs, for the ratio.
                sub = Path(tmp) / f"sub{m}"
                sub_truth = _subset(out, sub, m, truth)
                ours = run_stage(sub, args.workers)
                q = quality_figures(sub, sub_truth)
                print("baseline datasketch:", json.dumps(base), flush=True)
                print(f"our whole hq stage (quality, exact + near dedup, writing) on the same {m:,} pairs: "
                      f"{ours['seconds']:.1f}s ({ours['cpu_seconds']:.1f} CPU-s), recall {q['recall']:.4f}; speed ratio "
                      f"{base['seconds'] / ours['seconds']:.1f}x wall, {base['cpu_seconds'] / ours['cpu_seconds']:.1f}x CPU",
                      flush=True)
                near = near_dedup_only(queries[:m], positives[:m], truth)
                print(f"our near dedup alone (the baseline's job) on the same {m:,} pairs: {near['seconds']:.1f}s "
                      f"({near['cpu_seconds']:.1f} CPU-s, one process), recall {near['recall_clusters']:.4f}; speed ratio "
                      f"{base['seconds'] / near['seconds']:.1f}x wall, {base['cpu_seconds'] / near['cpu_seconds']:.1f}x CPU",
                      flush=True)
            print(f"load average {os.getloadavg()}", flush=True)
        for n in args.rss_sizes:
            out = Path(tmp) / f"rss{n}"
            _subprocess(["--child-generate", str(n), str(out)])
            fig = _subprocess(["--child-hq", str(out), "--workers", str(args.workers)])
            fig["pairs_per_s"] = fig["pairs"] / fig["seconds"]
            print(f"\n== peak RSS at {n:,} pairs ==\n", json.dumps(fig), f"load average {os.getloadavg()}", flush=True)
    print("\n" + "\n".join(targets), flush=True)


def _subset(out: Path, sub: Path, m: int, truth: pl.DataFrame) -> pl.DataFrame:
    """The first m truth rows as their own corpus (same ids and texts)."""
    keep = truth.filter(pl.col("row") < m)
    for s in SOURCES:
        table = pq.read_table(out / "m3e" / s / "part-00000.parquet")
        ids = set(keep.filter(pl.col("source") == s)["id"].to_list())
        mask = pa.array([i in ids for i in table.column("id").to_pylist()])
        folder = sub / "m3e" / s
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(table.filter(mask), folder / "part-00000.parquet")
        atomic_write_json(folder / SUCCESS, {"key": {"subset": m, "source": s}, "parts": ["part-00000.parquet"]})
    keep.write_parquet(sub / "truth.parquet")
    return keep


if __name__ == "__main__":
    main()
