"""Exact and near deduplication over global row numbers: pure functions on polars frames and numpy arrays.

Rows are numbered 0..n-1 across every source by the driver (`gidx`), so one pass finds duplicates inside
a source and across sources alike.

- Exact: rows sharing a normalised (query, positive) key (order-free for s2s rows, see quality.pair_keys).
- Near: MinHash LSH over the 3-grams of the whole pair. Each band's key is a column; a group-by per band
  turns buckets into candidate edges (every pair in a small bucket, a star to the bucket's first row in a
  large one); a candidate is verified exactly (`similarities`), by one of two rules:
  - questions: where either row is s2p and its query is no longer than its positive (`question_rows`,
    QUESTION_RATIO), the normalised queries must be equal (the exact-dedup normalisation: NFKC, lower case,
    no whitespace, punctuation or symbols) and the positives' Jaccard >= 0.8. Sibling questions about one
    passage differ in a word or a character (之前/之后, 参议院/众议院, 是/不是, 2018/2019): at that length no
    3-gram Jaccard and no edit distance tells such a change from a typo, while the normalisation removes
    exactly the noise a copy picks up (punctuation, spaces, full-/half-width forms, case), so anything
    left that differs is content. A missed near-copy costs one redundant row; a merged sibling loses a
    training example.
  - other rows (s2s; s2p rows whose query is longer than the positive, such as an instruction with a
    short answer): the united 3-gram sets' Jaccard >= 0.8 and each side's (query with query, positive
    with positive; either orientation for two s2s rows) >= 0.5.
  Connected components of the verified edges are the clusters. Nothing holds a per-row Python object,
  unlike datasketch's MinHashLSH (~3.4 KB a row).
- One rule decides which row of a cluster survives: `keep_order`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np
import polars as pl

from m3e_data.stages.hq import setsim
from m3e_data.stages.hq import sketch as kernels
from m3e_data.stages.hq.distinct import distinct
from m3e_data.stages.hq.minhash import codepoints, hash_keys, shingle_batch
from m3e_data.stages.hq.quality import normal_forms

QUALITY_RANK = {"excellent": 0, "good": 1}
ALL_PAIRS_BUCKET = 10  # buckets up to this size emit every pair; larger ones a star (they are near-copies)
# An s2p row whose normalised query has at most QUESTION_RATIO times its positive's characters is a question
# about the positive: the positive holds at least half of the pair's 3-grams, so the pair Jaccard cannot
# see a changed word in the query, and a changed word makes another question (see near_duplicates).
QUESTION_RATIO = 1.0


def keep_order(rows: pl.DataFrame) -> np.ndarray:
    """The survival rank of each row (0 = kept first): THE rule for which copy of a duplicate survives.

    1. source priority: the catalog's quality (excellent before good), then a licence that permits
       commercial use before one that does not — a copy from a better, more usable source is kept;
    2. rows with negatives before rows without — they carry more training signal;
    3. the smallest id — stable across rebuilds, so the same row survives every time.

    `rows` has gidx, id, quality (str), commercial (bool), n_neg (int); returns rank by gidx position.
    """
    ranked = (
        rows.with_columns(
            pl.col("quality").cast(pl.String).replace_strict(QUALITY_RANK, default=len(QUALITY_RANK)).alias("_q"),
            (~pl.col("commercial")).alias("_c"),
            (pl.col("n_neg") == 0).alias("_n"),
        )
        .with_row_index("_pos")
        .sort(["_q", "_c", "_n", "id"])
    )
    rank = np.empty(rows.height, dtype=np.int64)
    rank[ranked["_pos"].to_numpy()] = np.arange(rows.height)
    return rank


def components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Connected-component label (the smallest member) of each of n nodes, given undirected edges a-b.

    Min-label propagation with pointer jumping: a handful of vectorised passes, no per-node objects.
    """
    labels = np.arange(n, dtype=np.int64)
    if len(a) == 0:
        return labels
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    while True:
        m = np.minimum(labels[a], labels[b])
        before = labels.copy()
        np.minimum.at(labels, a, m)
        np.minimum.at(labels, b, m)
        while True:  # jump each label to its label's label until stable
            jumped = labels[labels]
            if np.array_equal(jumped, labels):
                break
            labels = jumped
        if np.array_equal(labels, before):
            return labels


def survivors(labels: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """For each node, the node its cluster keeps: the member of lowest rank."""
    order = np.lexsort((rank, labels))  # by cluster, best rank first
    first = np.r_[True, labels[order][1:] != labels[order][:-1]]
    best = np.empty(labels.max() + 1 if len(labels) else 0, dtype=np.int64)
    best[labels[order][first]] = order[first]
    return best[labels]


def exact_duplicates(keys: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """For each row, the row kept for its exact key (itself when it survives)."""
    _, labels = np.unique(keys, return_inverse=True)
    return survivors(labels.astype(np.int64), rank)


def band_candidates(gidx: np.ndarray, band: np.ndarray) -> pl.DataFrame:
    """Candidate edges (a < b) from one band's bucket keys."""
    df = pl.DataFrame({"gidx": gidx, "key": band}).with_columns(pl.len().over("key").alias("size"))
    df = df.filter(pl.col("size") > 1)
    small = df.filter(pl.col("size") <= ALL_PAIRS_BUCKET).select("key", "gidx")
    pairs = (
        small.join(small, on="key", suffix="_b")
        .filter(pl.col("gidx") < pl.col("gidx_b"))
        .select(pl.col("gidx").alias("a"), pl.col("gidx_b").alias("b"))
    )
    big = df.filter(pl.col("size") > ALL_PAIRS_BUCKET)
    star = (
        big.with_columns(pl.col("gidx").min().over("key").alias("head"))
        .filter(pl.col("gidx") != pl.col("head"))
        .select(pl.col("head").alias("a"), pl.col("gidx").alias("b"))
    )
    return pl.concat([pairs, star]).with_columns(pl.col("a").cast(pl.Int64), pl.col("b").cast(pl.Int64))


def candidates(bands: Iterable[tuple[np.ndarray, np.ndarray]]) -> pl.DataFrame:
    """Unique candidate edges over every band; `bands` yields (gidx, band key) one band at a time.

    The repeats are dropped band by band: a near-copy pair collides in most of the bands, so holding every
    band's edges until the end would hold each candidate up to `bands` times."""
    edges = pl.DataFrame({"a": [], "b": []}, schema={"a": pl.Int64, "b": pl.Int64})
    for g, k in bands:
        edges = pl.concat([edges, band_candidates(g, k)]).unique()
    return edges


def clusters(n: int, a: np.ndarray, b: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """For each of n rows, the row its cluster (connected component of the edges a-b) keeps: the member of
    lowest rank. Only the rows in an edge are labelled, so the work follows the duplicates, not the corpus."""
    keep = np.arange(n, dtype=np.int64)
    if len(a) == 0:
        return keep
    nodes = distinct(np.concatenate([a, b]))
    labels = components(len(nodes), np.searchsorted(nodes, a), np.searchsorted(nodes, b))
    keep[nodes] = nodes[survivors(labels, rank[nodes])]
    return keep


PAIR_SET_ROWS = 1 << 13  # rows shingled at once: bounds the temporaries of shingle_batch (~100 MB at 300 chars)
EDGE_VALUES = 1 << 21  # set members gathered at once while verifying edges (16 MB of uint64 each array)


def pair_sets(queries: Sequence[str], positives: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Each pair's set of 3-grams — its query's and its positive's, united — as CSR (keys, ptr).

    Members are the 32-bit shingle hashes: two different 3-grams of one edge share a hash with odds
    ~|A||B| / 2^32, far below anything a 0.8 threshold can notice, at half the memory of 64-bit keys.
    """
    n = len(queries)
    keys_parts: list[np.ndarray] = []
    counts = np.zeros(n, dtype=np.int64)
    for lo in range(0, n, PAIR_SET_ROWS):
        hi = min(lo + PAIR_SET_ROWS, n)
        m = hi - lo
        sh = shingle_batch(list(queries[lo:hi]) + list(positives[lo:hi]))
        owner = np.repeat(np.arange(2 * m, dtype=np.int64), sh.counts)
        row = np.where(owner >= m, owner - m, owner).astype(np.uint64)
        values = np.sort((row << np.uint64(32)) | hash_keys(sh.keys).astype(np.uint64))
        if len(values):
            values = values[np.r_[True, values[1:] != values[:-1]]]  # np.unique's hash path is far slower
        counts[lo:hi] = np.bincount((values >> np.uint64(32)).astype(np.int64), minlength=m)
        keys_parts.append((values & np.uint64(0xFFFFFFFF)).astype(np.uint32))
    ptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=ptr[1:])
    keys = np.concatenate(keys_parts) if keys_parts else np.zeros(0, dtype=np.uint32)
    return keys, ptr


def _gather(ptr: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the CSR entries of rows idx, and which element of idx each belongs to."""
    lens = ptr[idx + 1] - ptr[idx]
    owner = np.repeat(np.arange(len(idx), dtype=np.int64), lens)
    offsets = np.zeros(len(idx) + 1, dtype=np.int64)
    np.cumsum(lens, out=offsets[1:])
    pos = np.repeat(ptr[idx], lens) + (np.arange(offsets[-1], dtype=np.int64) - offsets[owner])
    return pos, owner


def edge_jaccard(keys: np.ndarray, ptr: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Exact Jaccard of the key sets of rows a[i] and b[i] (local row numbers into the CSR), vectorised,
    in chunks of about EDGE_VALUES gathered members so that memory stays flat however many edges there are."""
    out = np.empty(len(a), dtype=np.float32)
    size = np.diff(ptr)
    work = np.cumsum(size[a] + size[b]) if len(a) else np.zeros(0, dtype=np.int64)
    lo = 0
    while lo < len(a):
        base = work[lo - 1] if lo else 0
        hi = max(int(np.searchsorted(work, base + EDGE_VALUES, side="right")), lo + 1)
        ea, eb = a[lo:hi], b[lo:hi]
        pa_, oa = _gather(ptr, ea)
        pb_, ob = _gather(ptr, eb)
        # edge << 33 | key << 1 | side: a key both sides hold appears as neighbours differing in the last bit.
        va = (oa.astype(np.uint64) << np.uint64(33)) | (keys[pa_].astype(np.uint64) << np.uint64(1))
        vb = (ob.astype(np.uint64) << np.uint64(33)) | (keys[pb_].astype(np.uint64) << np.uint64(1)) | np.uint64(1)
        v = np.sort(np.concatenate([va, vb]))
        shared = np.flatnonzero((v[1:] >> np.uint64(1)) == (v[:-1] >> np.uint64(1)))
        inter = np.bincount((v[shared] >> np.uint64(33)).astype(np.int64), minlength=len(ea))
        union = size[ea] + size[eb] - inter
        out[lo:hi] = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
        lo = hi
    return out


def similarities(
    queries: Sequence[str], positives: Sequence[str], a: np.ndarray, b: np.ndarray, swap: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact 3-gram Jaccards of pairs a[i] and b[i] (indices into queries/positives): of the united pair
    sets (what the LSH bands estimate), of query with query, and of positive with positive. Where swap[i]
    (both rows s2s) and the crossed orientation (query with positive) is the more alike, the two side
    figures are the crossed ones. Compiled (setsim) where numba is installed; this numpy path is the
    reference it is tested against."""
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    if kernels.USE_NUMBA:
        cp, cp_starts = codepoints(list(queries) + list(positives))
        return setsim.similarities(cp, cp_starts, len(queries), a, b,
                                   swap if swap is not None else np.zeros(len(a), dtype=bool))
    keys, ptr = pair_sets(queries, positives)
    pair = edge_jaccard(keys, ptr, a, b)
    del keys, ptr  # before the side sets are built: never both sets alive at once
    m = len(queries)
    keys, ptr = pair_sets(list(queries) + list(positives), [""] * (2 * m))  # rows: queries, then positives
    query, positive = edge_jaccard(keys, ptr, a, b), edge_jaccard(keys, ptr, a + m, b + m)
    if swap is not None and swap.any():
        s = np.flatnonzero(swap)
        cq, cp = edge_jaccard(keys, ptr, a[s], b[s] + m), edge_jaccard(keys, ptr, a[s] + m, b[s])
        crossed = np.minimum(cq, cp) > np.minimum(query[s], positive[s])
        query[s] = np.where(crossed, cq, query[s])
        positive[s] = np.where(crossed, cp, positive[s])
    return pair, query, positive


def pair_similarity(
    queries: Sequence[str], positives: Sequence[str], a: np.ndarray, b: np.ndarray, swap: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """How alike pairs a[i] and b[i] are, as two exact 3-gram Jaccards: of the united pair sets, and of the
    less alike side (query with query, positive with positive; where swap[i], either orientation).

    The pair Jaccard alone is dominated by the longer side: two questions about one 300-character passage
    score 0.95. The side Jaccard says whether both texts are the same text."""
    pair, query, positive = similarities(queries, positives, a, b, swap)
    return pair, np.minimum(query, positive)


def question_rows(queries: Sequence[str], positives: Sequence[str], homogeneous: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which rows are questions about their positive (s2p, normalised query no longer than the positive),
    and each row's normalised query as its exact-dedup key (quality.text_keys: NFKC, lower case, no
    whitespace, punctuation or symbols; equal keys are equal normal forms, as in exact dedup)."""
    q_key, q_len = normal_forms(queries)
    _, p_len = normal_forms(positives)
    question = ~np.asarray(homogeneous, dtype=bool) & (q_len <= QUESTION_RATIO * p_len)
    return question, q_key


VERIFY_ROWS = 1 << 14  # rows whose texts and 3-gram sets one verification chunk holds (~30 MB at 300 chars)

Verdicts = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]
MapChunks = Callable[[Callable[..., Verdicts], Iterator[tuple], tuple[float, float]], Iterator[Verdicts]]


def verify_chunk(chunk: tuple, thresholds: tuple[float, float]) -> Verdicts:
    """The verdicts on one chunk of candidate edges: (pair Jaccard, side Jaccard, positive Jaccard, question
    rule, duplicate) per edge. `chunk` is (texts, a, b, s2s) with a, b indices into the chunk's rows and
    texts either (queries, positives) or an object whose load() reads them (stage.SpilledRows: the worker
    reads its rows itself). Pure and picklable: it runs in a pool worker."""
    texts, a, b, s2s = chunk
    queries, positives = texts.load() if hasattr(texts, "load") else texts
    threshold, side_threshold = thresholds
    pair, query, positive = similarities(queries, positives, a, b, s2s[a] & s2s[b])
    question, norm_query = question_rows(queries, positives, s2s)
    strict = question[a] | question[b]
    side = np.minimum(query, positive)
    duplicate = np.where(
        strict, (norm_query[a] == norm_query[b]) & (positive >= threshold), (pair >= threshold) & (side >= side_threshold)
    )
    return pair, side, positive, strict, duplicate.astype(bool)


def _serial(fn: Callable[..., Verdicts], items: Iterator[tuple], thresholds: tuple[float, float]) -> Iterator[Verdicts]:
    return (fn(item, thresholds) for item in items)


def near_duplicates(
    n: int,
    bands: Iterable[tuple[np.ndarray, np.ndarray]],
    texts: Callable[[np.ndarray], tuple[Sequence[str], Sequence[str]]],
    rank: np.ndarray,
    threshold: float = 0.8,
    homogeneous: np.ndarray | None = None,
    side_threshold: float = 0.5,
    map_chunks: MapChunks | None = None,
) -> tuple[np.ndarray, pl.DataFrame]:
    """For each of n rows, the row its near-duplicate cluster keeps (itself when it survives), and the
    verified edges (a, b, jaccard, side_jaccard, positive_jaccard, question: see `similarities` and
    `question_rows`), sorted by (a, b).

    An edge where either row is a question about its positive (see QUESTION_RATIO) is a duplicate when the
    normalised queries are equal and the positives' Jaccard >= threshold; any other edge when the pair
    Jaccard >= threshold and each side's >= side_threshold.

    `texts(gidx)` returns the (queries, positives) of those rows; only rows in a candidate edge are read,
    one chunk of edges at a time (at most VERIFY_ROWS rows' texts and 3-gram sets per chunk), so memory
    does not grow with the corpus. `map_chunks(verify_chunk, chunks, thresholds)` runs the chunks, in order
    (a process pool's bounded map; serially when None). `homogeneous` (bool by row) marks s2s rows, whose
    pairs also match in swapped order.
    """
    verified = verify_edges(candidates(bands).sort("a", "b"), texts, threshold, homogeneous, side_threshold,
                            map_chunks)
    return clusters(n, verified["a"].to_numpy(), verified["b"].to_numpy(), rank), verified


def verify_edges(
    edges: pl.DataFrame,
    texts: Callable[[np.ndarray], tuple[Sequence[str], Sequence[str]]],
    threshold: float = 0.8,
    homogeneous: np.ndarray | None = None,
    side_threshold: float = 0.5,
    map_chunks: MapChunks | None = None,
) -> pl.DataFrame:
    """The candidate `edges` (a, b: unique, sorted) that are near duplicates, with their similarities
    (near_duplicates' rule and columns), in the same order. The Ray executor verifies its edge partitions
    with this very function."""
    ga, gb = edges["a"].to_numpy(), edges["b"].to_numpy()
    s2s_all = np.asarray(homogeneous, dtype=bool) if homogeneous is not None else None

    def chunks(read: Callable[[np.ndarray], tuple[Sequence[str], Sequence[str]]]) -> Iterator[tuple]:
        step = max(VERIFY_ROWS // 2, 1)  # an edge brings at most two new rows
        for lo in range(0, len(ga), step):
            ea, eb = ga[lo : lo + step], gb[lo : lo + step]
            rows = distinct(np.concatenate([ea, eb]))
            texts = read(rows)
            if not hasattr(texts, "load"):  # the texts themselves (else the worker loads them)
                texts = (list(texts[0]), list(texts[1]))
            s2s = s2s_all[rows] if s2s_all is not None else np.zeros(len(rows), dtype=bool)
            yield texts, np.searchsorted(rows, ea), np.searchsorted(rows, eb), s2s

    # A text source that can set the candidates' rows aside first (stage.SourceTexts.spilled) reads each
    # chunk from there instead of from its files' row groups again and again.
    spill = getattr(texts, "spilled", None)
    needed = distinct(np.concatenate([ga, gb])) if spill is not None else None
    with spill(needed) if spill is not None else contextlib.nullcontext(texts) as read:
        parts = list((map_chunks or _serial)(verify_chunk, chunks(read), (threshold, side_threshold)))
    pair, side, positive, strict, duplicate = (
        np.concatenate([p[k] for p in parts]) if parts else np.zeros(0, dtype=t)
        for k, t in enumerate((np.float32, np.float32, np.float32, bool, bool))
    )
    verified = edges.with_columns(
        pl.Series("jaccard", pair, pl.Float32), pl.Series("side_jaccard", side, pl.Float32),
        pl.Series("positive_jaccard", positive, pl.Float32), pl.Series("question", strict, pl.Boolean),
    ).filter(pl.Series(duplicate, dtype=pl.Boolean))
    return verified
