"""A realistic synthetic corpus of Chinese (query, positive) pairs with exact near-duplicate ground truth,
shared by the hq benchmarks: m3e-data reads it as OUT/m3e/<source>/part-00000.parquet, peers as plain lists.

- Lengths: queries 10-40 characters (uniform), positives 50-500 (log-uniform: many short, a long tail).
- Text: words of 1-4 Han characters drawn from a Zipf-weighted vocabulary (s = 1.1), whose characters are
  themselves Zipf-weighted over 3,500 code points, so unrelated texts share their common 3-grams as real
  Chinese does (的 / 是 / 一个 ...), which is what makes LSH buckets and verification work hard.
- 20% of the rows (`dup_fraction`) are planted copies of a background row, in events of 1-3 copies:
  - near copies (60% of events): the query picks up surface noise only (punctuation, a space) and the
    positive is edited at a controlled 3-gram Jaccard (LEVELS; k replaced characters, k chosen so that
    J = (S - 3k) / (S + 3k) for S distinct 3-grams), or copied as is (exact copies, level 1.0);
  - siblings (25%): another question over the same passage (a word of the query replaced, the positive
    identical): the whole-text Jaccard is high, but they are different training examples;
  - edited questions (15%): the query edited at a controlled level too, the positive kept.
- Ground truth, computed exactly after planting over every pair of rows inside a planted group (a base and
  its copies, copies among themselves too): two rows are duplicates when their normalised queries are equal
  and their positives' 3-gram Jaccard >= THRESHOLD (m3e-data's definition for a question about a passage);
  clusters are the connected components of those pairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from m3e_data.schema import UNIFIED_SCHEMA
from m3e_data.stages.hq.dedup import components, similarities
from m3e_data.stages.hq.quality import normalize
from m3e_data.storage.store import SUCCESS, atomic_write_json, list_files

THRESHOLD = 0.8
LEVELS = np.array([0.5, 0.6, 0.7, 0.75, 0.85, 0.9, 0.95])  # away from 0.8 itself: each side of the line
HAN = np.arange(0x4E00, 0x4E00 + 3500, dtype=np.uint32)
NOISE = ("。", " ", "！", "？", "?", "，", "、")
SOURCES = ("bench_a", "bench_b", "bench_c", "bench_d")


@dataclass
class Corpus:
    """Rows in order; `base` is the row a planted copy was made from (-1 for background rows), `kind`
    background / near / exact / sibling / edited_query, `level` the intended 3-gram Jaccard of the edited
    side; `pairs` the ground-truth duplicate pairs (copy, base) and `cluster` each row's ground-truth
    cluster (the smallest row of its component)."""

    queries: list[str]
    positives: list[str]
    source: list[str]
    base: np.ndarray
    kind: list[str]
    level: np.ndarray
    pairs: np.ndarray  # (k, 2) int64
    cluster: np.ndarray

    @property
    def ids(self) -> list[str]:
        return [f"{s}/train/{i:08d}" for i, s in enumerate(self.source)]

    def texts(self) -> list[str]:
        """What a peer deduplicates: query and positive as one document (a newline between)."""
        return [q + "\n" + p for q, p in zip(self.queries, self.positives, strict=True)]


class _Vocabulary:
    def __init__(self, rng: np.random.Generator, size: int = 30_000) -> None:
        char_w = 1.0 / np.arange(1, len(HAN) + 1) ** 1.0
        char_w /= char_w.sum()
        lengths = rng.choice([1, 2, 3, 4], size=size, p=[0.25, 0.55, 0.12, 0.08])
        cps = rng.choice(HAN, size=int(lengths.sum()), p=char_w).tobytes().decode("utf-32-le")
        ends = np.cumsum(lengths)
        self.words = np.array([cps[e - n : e] for e, n in zip(ends.tolist(), lengths.tolist(), strict=True)], dtype=object)
        w = 1.0 / np.arange(1, size + 1) ** 1.1
        self.cdf = np.cumsum(w / w.sum())
        self.mean_len = float(lengths @ (w / w.sum()))

    def texts(self, rng: np.random.Generator, lengths: np.ndarray) -> list[str]:
        """One text of exactly lengths[i] characters each, cut from one stream of Zipf-drawn words."""
        lengths = np.asarray(lengths, dtype=np.int64)
        k = int(lengths.sum() / self.mean_len * 1.1) + 16
        stream = "".join(self.words[np.minimum(np.searchsorted(self.cdf, rng.random(k)), len(self.words) - 1)])
        while len(stream) < lengths.sum():
            stream += "".join(self.words[np.minimum(np.searchsorted(self.cdf, rng.random(k)), len(self.words) - 1)])
        ends = np.cumsum(lengths)
        return [stream[e - n : e] for e, n in zip(ends.tolist(), lengths.tolist(), strict=True)]


def edit(rng: np.random.Generator, text: str, target: float) -> str:
    """Replace k characters at distinct random positions, k chosen so that the 3-gram Jaccard with the
    original is about `target` (each replacement removes up to 3 of the S 3-grams and adds as many)."""
    size = max(len(text) - 2, 1)
    k = max(1, round(size * (1 - target) / (3 * (1 + target))))
    chars = list(text)
    # Spaced positions: two replacements within 3 characters share 3-grams and overshoot the target.
    slots = rng.permutation((len(chars) + 2) // 3)[:k] * 3
    # Rare characters: a replacement makes 3-grams the text did not have.
    for pos, cp in zip(slots.tolist(), rng.integers(HAN[1000], HAN[-1] + 1, len(slots)).tolist(), strict=True):
        chars[pos] = chr(cp)
    return "".join(chars)


def noise(rng: np.random.Generator, text: str) -> str:
    """What a copy of a question picks up: a punctuation mark or space, at the end or inside."""
    mark = NOISE[int(rng.integers(0, len(NOISE)))]
    if rng.random() < 0.5:
        return text + mark
    at = int(rng.integers(1, len(text)))
    return text[:at] + mark + text[at:]


def generate(n: int, seed: int = 0, dup_fraction: float = 0.2) -> Corpus:
    """n rows, a `dup_fraction` share of them planted copies; ground truth computed exactly."""
    rng = np.random.default_rng(seed)
    vocab = _Vocabulary(rng)
    n_bg = n - int(round(n * dup_fraction))
    queries = vocab.texts(rng, rng.integers(10, 41, n_bg))
    positives = vocab.texts(rng, np.exp(rng.uniform(np.log(50), np.log(501), n_bg)).astype(np.int64))
    source = rng.integers(0, len(SOURCES), n_bg).tolist()
    base = [-1] * n_bg
    kind = ["background"] * n_bg
    level = [np.nan] * n_bg
    while len(queries) < n:
        b = int(rng.integers(0, n_bg))
        event = rng.random()
        for _ in range(min(int(rng.integers(1, 4)), n - len(queries))):
            q, p = queries[b], positives[b]
            if event < 0.6:
                exact = rng.random() < 0.2
                lv = 1.0 if exact else float(rng.choice(LEVELS))
                q, p, k = noise(rng, q), (p if exact else edit(rng, p, lv)), ("exact" if exact else "near")
            elif event < 0.85:
                words = vocab.words[int(rng.integers(0, len(vocab.words)))]
                at = int(rng.integers(0, len(q) - 2))
                sib = q[:at] + words + q[at + len(words) :]
                # A word replaced by itself leaves an exact copy.
                q, lv, k = sib, (np.nan if sib != q else 1.0), ("sibling" if sib != q else "exact")
            else:
                lv = float(rng.choice(LEVELS))
                q, k = edit(rng, q, lv), "edited_query"
            queries.append(q)
            positives.append(p)
            source.append(source[b] if rng.random() < 0.7 else int(rng.integers(0, len(SOURCES))))
            base.append(b)
            kind.append(k)
            level.append(lv)
    # Shuffled, so that any prefix of the rows holds planted copies too.
    order = rng.permutation(n)
    where = np.empty(n, dtype=np.int64)
    where[order] = np.arange(n)
    base_arr = np.array([base[i] for i in order], dtype=np.int64)
    base_arr = np.where(base_arr >= 0, where[np.maximum(base_arr, 0)], -1)
    corpus = Corpus([queries[i] for i in order], [positives[i] for i in order], [SOURCES[source[i]] for i in order],
                    base_arr, [kind[i] for i in order], np.array([level[i] for i in order]),
                    np.zeros((0, 2), np.int64), np.arange(n))
    a, b = group_pairs(base_arr)
    dup = duplicates(corpus.queries, corpus.positives, a, b)
    corpus.pairs = np.stack([a[dup], b[dup]], axis=1)
    corpus.cluster = components(n, corpus.pairs[:, 0], corpus.pairs[:, 1])
    return corpus


def group_pairs(base: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every pair of rows (a > b) inside one planted group (a background row and its copies): copies of one
    base can be duplicates of each other too. Rows of different groups are unrelated draws of thousands of
    Zipf words; they are never near duplicates."""
    copies = np.flatnonzero(base >= 0)
    group = np.concatenate([base[copies], np.unique(base[copies])])
    rows = np.concatenate([copies, np.unique(base[copies])])
    order = np.lexsort((rows, group))
    group, rows = group[order], rows[order]
    a_parts, b_parts = [], []
    lag = 1
    while lag < len(rows):  # a base drawn by several events has a group of more than 4 rows
        same = group[lag:] == group[:-lag]
        if not same.any():
            break
        a_parts.append(rows[lag:][same])
        b_parts.append(rows[:-lag][same])
        lag += 1
    if not a_parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(a_parts), np.concatenate(b_parts)


def duplicates(queries: list[str], positives: list[str], a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Whether rows a[i] and b[i] are duplicates by the ground truth's definition (see the module doc)."""
    if not len(a):
        return np.zeros(0, dtype=bool)
    rows = np.unique(np.concatenate([a, b]))  # only the rows involved are shingled
    la, lb = np.searchsorted(rows, a), np.searchsorted(rows, b)
    q, p = [queries[i] for i in rows], [positives[i] for i in rows]
    _, _, positive = similarities(q, p, la, lb)
    norm = np.array(normalize(pa.array(q, pa.string())).to_pylist(), dtype=object)
    return (norm[la] == norm[lb]) & (positive >= THRESHOLD)


def side_jaccards(corpus: Corpus, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The exact 3-gram Jaccards of each planted copy's query and positive with its base's."""
    a, b = np.asarray(rows), corpus.base[rows]
    involved = np.unique(np.concatenate([a, b]))
    q, p = [corpus.queries[i] for i in involved], [corpus.positives[i] for i in involved]
    _, query, positive = similarities(q, p, np.searchsorted(involved, a), np.searchsorted(involved, b))
    return query, positive


def write_m3e(corpus: Corpus, out: Path) -> None:
    """The corpus as m3e-data's normalize stage leaves a source: OUT/m3e/<source>/part-00000.parquet plus
    its completion record; OUT/truth.parquet (row, id, kind, base, level, cluster) and OUT/truth_pairs.parquet."""
    ids = corpus.ids
    src = np.asarray(corpus.source)
    for name in SOURCES:
        idx = np.flatnonzero(src == name).tolist()
        m = len(idx)
        folder = out / "m3e" / name
        folder.mkdir(parents=True, exist_ok=True)
        table = pa.table({
            "id": [ids[i] for i in idx], "source": [name] * m, "split": ["train"] * m,
            "query": [corpus.queries[i] for i in idx], "positive": [corpus.positives[i] for i in idx],
            "negatives": pa.array([[]] * m, pa.list_(pa.string())), "positive_score": pa.nulls(m, pa.float32()),
            "negative_scores": pa.nulls(m, pa.list_(pa.float32())), "task": ["qa"] * m,
            "homogeneous": [False] * m, "domain": ["colloquial"] * m, "license": ["synthetic"] * m,
            "commercial": [True] * m,
        }).cast(UNIFIED_SCHEMA)
        pq.write_table(table, folder / "part-00000.parquet", row_group_size=100_000)
        atomic_write_json(folder / SUCCESS, {"key": {"bench": len(corpus.queries), "source": name},
                                             "parts": ["part-00000.parquet"], "files": list_files(folder)})
    truth_frame(corpus).write_parquet(out / "truth.parquet")
    pl.DataFrame({"a": corpus.pairs[:, 0], "b": corpus.pairs[:, 1]}).write_parquet(out / "truth_pairs.parquet")


def truth_frame(corpus: Corpus) -> pl.DataFrame:
    return pl.DataFrame({"row": np.arange(len(corpus.queries)), "id": corpus.ids, "kind": corpus.kind,
                         "base": corpus.base, "level": corpus.level, "cluster": corpus.cluster})


def load_written(out: Path) -> Corpus:
    """The corpus back from what `write_m3e` wrote: texts from the m3e parts (what hq reads), truth beside."""
    truth = pl.read_parquet(out / "truth.parquet")
    parts = pl.concat([pl.read_parquet(out / "m3e" / s / "part-00000.parquet", columns=["id", "source", "query", "positive"])
                       for s in SOURCES if (out / "m3e" / s).is_dir()])
    df = truth.join(parts, on="id", how="left", maintain_order="left")
    if df["query"].null_count():
        raise ValueError(f"{out}: {df['query'].null_count()} truth rows have no text under m3e/")
    pairs = pl.read_parquet(out / "truth_pairs.parquet")
    return Corpus(df["query"].to_list(), df["positive"].to_list(), df["source"].to_list(), df["base"].to_numpy(),
                  df["kind"].to_list(), df["level"].to_numpy(),
                  np.stack([pairs["a"].to_numpy(), pairs["b"].to_numpy()], axis=1).astype(np.int64),
                  df["cluster"].to_numpy())


def score(corpus: Corpus, predicted: np.ndarray) -> dict[str, float]:
    """One definition for every method. `predicted[i]` is the row kept for row i (itself when kept).

    recall: the share of ground-truth pairs whose two rows end in one predicted cluster;
    precision (strict): the share of removed rows whose kept row is in their ground-truth cluster;
    removed / truth_removed: rows removed, against the rows the ground truth removes (n - clusters)."""
    predicted = np.asarray(predicted, dtype=np.int64)
    a, b = corpus.pairs[:, 0], corpus.pairs[:, 1]
    recall = float((predicted[a] == predicted[b]).mean()) if len(a) else 1.0
    removed = np.flatnonzero(predicted != np.arange(len(predicted)))
    precision = float((corpus.cluster[removed] == corpus.cluster[predicted[removed]]).mean()) if len(removed) else 1.0
    truth_removed = len(predicted) - len(np.unique(corpus.cluster))
    return {"recall": recall, "precision": precision, "removed": len(removed), "truth_removed": truth_removed}
