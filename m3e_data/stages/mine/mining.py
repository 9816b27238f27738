"""Hard-negative mining as pure functions over texts and embeddings (no files, no model).

One source at a time: `plan_source` groups rows by normalised query and builds the corpus (the source's
positives, plus its queries for homogeneous sources) and what each group must never get back (its
positives, its query, its native negatives); `search_topk` runs exact top-k in chunks of queries;
`select_negatives` applies the rank window, the false-negative guards and top-first or seeded sampling;
`assemble` writes negatives and scores into the rows. Scores are cosine similarities of L2-normalised
embeddings.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

SCORE_MEANING = "cosine similarity of L2-normalised mean-pooled embeddings"
# Bytes one chunk of query x corpus scores may take: bounds memory whatever the corpus size.
SCORE_BLOCK_BYTES = 128 * 2**20


@dataclass(frozen=True)
class MiningParams:
    """What decides which candidates become negatives; recorded verbatim in the manifest."""

    num_negatives: int = 7
    range_min: int = 0
    range_max: int = 100
    relative_margin: float | None = 0.05
    max_score: float | None = None
    sampling: Literal["top", "random"] = "top"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.num_negatives < 1:
            raise ValueError(f"num_negatives must be >= 1, got {self.num_negatives}")
        if not 0 <= self.range_min < self.range_max:
            raise ValueError(f"rank window must satisfy 0 <= min < max, got {self.range_min}:{self.range_max}")
        if self.relative_margin is not None and not 0 <= self.relative_margin < 1:
            raise ValueError(f"relative_margin must be in [0, 1), got {self.relative_margin}")
        if self.sampling not in ("top", "random"):
            raise ValueError(f"sampling must be 'top' or 'random', got {self.sampling!r}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_range(text: str) -> tuple[int, int]:
    """'10:100' -> (10, 100): ranks 10..99 of the candidates left after exclusion, 0-based."""
    lo, sep, hi = text.partition(":")
    try:
        parsed = (int(lo or 0), int(hi))
    except ValueError:
        raise ValueError(f"{text!r}: expected MIN:MAX, e.g. 10:100") from None
    if not sep or not 0 <= parsed[0] < parsed[1]:
        raise ValueError(f"{text!r}: expected MIN:MAX with 0 <= MIN < MAX")
    return parsed


def normalize_text(text: str) -> str:
    """The identity used for exclusion: NFKC, lowercase, whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


def text_keys(normalized: Sequence[str]) -> np.ndarray:
    return np.fromiter((xxhash.xxh3_64_intdigest(t.encode("utf-8")) for t in normalized), dtype=np.uint64, count=len(normalized))


@dataclass
class SourcePlan:
    """Rows grouped by normalised query, the corpus, and what each group excludes."""

    corpus: list[str]  # raw texts, one per normalised text
    corpus_keys: np.ndarray  # uint64 hash of each corpus text's normalised form (seeds sampling)
    group_of_row: np.ndarray  # (rows,) index of each row's group
    group_query: list[str]  # raw query of each group (its first row's)
    group_keys: np.ndarray  # uint64 hash of each group's normalised query
    group_excluded: list[np.ndarray]  # corpus indices a group must not get: positives, query, natives
    group_wanted: np.ndarray  # negatives to mine per group: N minus the fewest natives of its rows
    # The consistency filter ranks a row's positive among the source's positives (corpus[:n_positive_texts],
    # added first) other than its group's own positives and its query (group_own).
    n_positive_texts: int = 0
    group_own: list[np.ndarray] = field(default_factory=list)


def plan_source(
    queries: Sequence[str],
    positives: Sequence[str],
    negatives: Sequence[Sequence[str]],
    homogeneous: bool,
    num_negatives: int,
) -> SourcePlan:
    corpus_index: dict[str, int] = {}
    corpus: list[str] = []
    norms: dict[str, str] = {}

    def norm_of(raw: str) -> str:  # each distinct text is normalised once, whatever its roles
        found = norms.get(raw)
        if found is None:
            found = norms[raw] = normalize_text(raw)
        return found

    def add(raw: str) -> int:
        norm = norm_of(raw)
        idx = corpus_index.get(norm)
        if idx is None:
            idx = corpus_index[norm] = len(corpus)
            corpus.append(raw)
        return idx

    # Symmetric sources: any anchor is also a fine negative for another anchor.
    for raw in positives:
        add(raw)
    n_positive_texts = len(corpus)
    if homogeneous:
        for raw in queries:
            add(raw)

    group_index: dict[str, int] = {}
    group_query: list[str] = []
    group_norm: list[str] = []
    excluded: list[set[int]] = []
    own: list[set[int]] = []
    fewest_natives: list[int] = []
    group_of_row = np.empty(len(queries), dtype=np.int64)
    for row, (q, p, natives) in enumerate(zip(queries, positives, negatives, strict=True)):
        qn = norm_of(q)
        g = group_index.get(qn)
        if g is None:
            g = group_index[qn] = len(group_query)
            group_query.append(q)
            group_norm.append(qn)
            excluded.append(set())
            own.append(set())
            fewest_natives.append(len(natives))
        group_of_row[row] = g
        fewest_natives[g] = min(fewest_natives[g], len(natives))
        # Texts outside the corpus cannot be returned by the search; only those inside need excluding.
        for text in (q, p, *natives):
            idx = corpus_index.get(norm_of(text))
            if idx is not None:
                excluded[g].add(idx)
        for text in (q, p):
            idx = corpus_index.get(norm_of(text))
            if idx is not None and idx < n_positive_texts:
                own[g].add(idx)
    return SourcePlan(
        corpus=corpus,
        corpus_keys=text_keys([norm_of(t) for t in corpus]),
        group_of_row=group_of_row,
        group_query=group_query,
        group_keys=text_keys(group_norm),
        group_excluded=[np.fromiter(sorted(s), dtype=np.int64, count=len(s)) for s in excluded],
        group_wanted=np.maximum(num_negatives - np.asarray(fewest_natives, dtype=np.int64), 0),
        n_positive_texts=n_positive_texts,
        group_own=[np.fromiter(sorted(s), dtype=np.int64, count=len(s)) for s in own],
    )


def chunk_rows(n_corpus: int, chunk_size: int | None = None) -> int:
    """Queries per search chunk: the caller's choice, or as many as SCORE_BLOCK_BYTES of scores allow."""
    if chunk_size:
        return chunk_size
    return max(1, min(8192, SCORE_BLOCK_BYTES // (4 * max(n_corpus, 1))))


def search_topk(
    queries: np.ndarray,
    corpus: np.ndarray,
    ks: np.ndarray,
    *,
    chunk_size: int | None = None,
    device: str = "cpu",
    half: bool | None = None,
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Exact inner-product top-k, chunk by chunk: yields (first query row, scores, corpus indices).

    Each chunk keeps max(ks) of its own queries (capped at the corpus size), sorted by descending score;
    only one (chunk, corpus) block of scores exists at a time, so memory grows with N, not N².

    `half` (default: on a GPU, or when `corpus` is already a HalfCorpus) holds the corpus in fp16 on the
    device and rescores fp16 candidates in fp32 on the host (halfsearch): the same indices, fp32 scores, ties
    to the lower corpus index. Without it the corpus stays fp32 on the device.
    """
    import torch

    from m3e_data.stages.mine.halfsearch import HalfCorpus, half_by_default, search_half

    if len(corpus) == 0 or len(queries) == 0:
        for start in range(0, len(queries), max(1, chunk_size or 1)):
            stop = min(len(queries), start + max(1, chunk_size or 1))
            yield start, np.empty((stop - start, 0), np.float32), np.empty((stop - start, 0), np.int64)
        return
    step = chunk_rows(len(corpus), chunk_size)
    if half is None:  # a tensor already on the device was uploaded in the dtype it is to be searched in
        half = half_by_default(device) and not isinstance(corpus, torch.Tensor)
    if half or isinstance(corpus, HalfCorpus):
        held = corpus if isinstance(corpus, HalfCorpus) else HalfCorpus.upload(
            corpus.cpu().numpy() if isinstance(corpus, torch.Tensor) else corpus, device)
        yield from search_half(queries, held, ks, step, SCORE_BLOCK_BYTES)
        return
    with torch.inference_mode():
        # A tensor already on the device (a Ray search actor's shard, uploaded once) is used in place.
        corpus_t = (corpus if isinstance(corpus, torch.Tensor)
                    else torch.from_numpy(np.ascontiguousarray(corpus, dtype=np.float32))).to(device)
        # One score block, reused: a fresh allocation per chunk costs page faults on the CPU.
        block = torch.empty((min(step, len(queries)), len(corpus)), dtype=torch.float32, device=device)
        for start in range(0, len(queries), step):
            stop = min(len(queries), start + step)
            k = int(min(len(corpus), max(1, ks[start:stop].max())))
            q = torch.from_numpy(np.ascontiguousarray(queries[start:stop], dtype=np.float32)).to(device)
            sims = torch.mm(q, corpus_t.T, out=block[: stop - start])
            scores, indices = torch.topk(sims, k, dim=1, sorted=True)
            yield start, scores.cpu().numpy(), indices.cpu().numpy()


def positive_ranks(
    queries: np.ndarray,
    candidates: np.ndarray,
    group_of_row: np.ndarray,
    positive_scores: np.ndarray,
    own: Sequence[np.ndarray],
    *,
    chunk_size: int | None = None,
    device: str = "cpu",
) -> np.ndarray:
    """1-based rank of each row's positive among the candidate positives, for its group's query.

    A candidate counts when it scores strictly above the row's positive; the group's own positives and its
    query (`own`) never count. Exact, in chunks of groups, so memory grows with N, not N².
    """
    import torch

    ranks = np.ones(len(group_of_row), dtype=np.int64)
    if len(candidates) == 0 or len(group_of_row) == 0:
        return ranks
    order = np.argsort(group_of_row, kind="stable")
    sorted_groups = group_of_row[order]
    step = chunk_rows(len(candidates), chunk_size)
    with torch.inference_mode():
        cand = torch.from_numpy(np.ascontiguousarray(candidates, dtype=np.float32)).to(device)
        for start in range(0, len(queries), step):
            stop = min(len(queries), start + step)
            q = torch.from_numpy(np.ascontiguousarray(queries[start:stop], dtype=np.float32)).to(device)
            sims = q @ cand.T
            own_rows = np.concatenate([np.full(len(own[g]), g - start) for g in range(start, stop)])
            own_cols = np.concatenate([own[g] for g in range(start, stop)])
            sims[torch.from_numpy(own_rows.astype(np.int64)), torch.from_numpy(own_cols.astype(np.int64))] = -np.inf
            lo, hi = np.searchsorted(sorted_groups, [start, stop])
            rows = order[lo:hi]
            if len(rows) == stop - start:  # one row per group, the usual case: no gathered copy of sims
                r = rows[np.argsort(group_of_row[rows], kind="stable")]
                pos = torch.from_numpy(np.ascontiguousarray(positive_scores[r], dtype=np.float32)).to(device)
                ranks[r] = 1 + (sims > pos[:, None]).sum(dim=1).cpu().numpy()
                continue
            for s in range(0, len(rows), step):
                r = rows[s:s + step]
                local = torch.from_numpy(group_of_row[r] - start).to(device)
                pos = torch.from_numpy(np.ascontiguousarray(positive_scores[r], dtype=np.float32)).to(device)
                ranks[r] = 1 + (sims[local] > pos[:, None]).sum(dim=1).cpu().numpy()
    return ranks


INCONSISTENT, LOW_SCORE = "inconsistent_pair", "low_positive_score"


def filter_reasons(
    ranks: np.ndarray, positive_scores: np.ndarray, *, topk: int | None, min_score: float | None
) -> np.ndarray:
    """Why each row is dropped (None: kept): its positive ranks below `topk`, or scores below `min_score`.

    A row failing both is `inconsistent_pair` (the rank is the stronger evidence of a wrong pair).
    """
    reasons = np.full(len(ranks), None, dtype=object)
    if min_score is not None:
        reasons[np.asarray(positive_scores) < min_score] = LOW_SCORE
    if topk is not None:
        reasons[np.asarray(ranks) > topk] = INCONSISTENT
    return reasons


@dataclass
class GuardCounts:
    """Candidates each rule removed (within the searched top-k), and rows left short."""

    excluded: int = 0  # a positive, the query itself or a native negative of the group
    relative_margin: int = 0
    max_score: int = 0
    groups_short: int = 0

    def add(self, other: GuardCounts) -> None:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a counter-based hash, so sampling ignores chunking and row order."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


@dataclass
class Selection:
    """Mined negatives of a chunk of groups, hardest first: (groups, width) arrays padded past `counts`."""

    indices: np.ndarray
    scores: np.ndarray
    counts: np.ndarray


def select_negatives(
    scores: np.ndarray,
    indices: np.ndarray,
    excluded: Sequence[np.ndarray],
    positive_floor: np.ndarray,
    wanted: np.ndarray,
    params: MiningParams,
    group_keys: np.ndarray,
    corpus_keys: np.ndarray,
) -> tuple[Selection, GuardCounts]:
    """Choose negatives for a chunk of groups from their top-k (sorted) candidates.

    Ranks of the window count only candidates left after exclusion. Guards apply inside the window:
    the relative margin drops candidates scoring above `pos - |pos| * margin` (pos: the group's lowest
    positive score, the safe side), then max_score drops those above it.
    """
    c, k = scores.shape
    counts = GuardCounts()
    # Exclusion as one sorted-set membership test over (row, corpus index) pairs.
    n_corpus = np.int64(len(corpus_keys))
    rows = np.arange(c, dtype=np.int64)
    pairs = rows[:, None] * n_corpus + indices.astype(np.int64)
    banned = np.concatenate([r * n_corpus + e for r, e in zip(rows, excluded, strict=True)] or [np.empty(0, np.int64)])
    is_excluded = np.isin(pairs, banned)
    counts.excluded = int(is_excluded.sum())

    rank = np.cumsum(~is_excluded, axis=1) - 1
    in_window = ~is_excluded & (rank >= params.range_min) & (rank < params.range_max)
    ok = in_window
    if params.relative_margin is not None:
        ceiling = positive_floor - np.abs(positive_floor) * params.relative_margin
        dropped = ok & (scores > ceiling[:, None])
        counts.relative_margin = int(dropped.sum())
        ok = ok & ~dropped
    if params.max_score is not None:
        dropped = ok & (scores > params.max_score)
        counts.max_score = int(dropped.sum())
        ok = ok & ~dropped

    if params.sampling == "top":
        # Candidates are sorted by score: the first `wanted` allowed ones are the hardest.
        picked = ok & (np.cumsum(ok, axis=1) <= wanted[:, None])
    else:
        seed = _mix64(np.uint64(params.seed & 0xFFFFFFFFFFFFFFFF) + np.zeros(1, np.uint64))
        keys = _mix64(group_keys[:, None] ^ _mix64(corpus_keys[indices] ^ seed))
        keys = np.where(ok, keys, np.uint64(np.iinfo(np.uint64).max))
        order = np.argsort(keys, axis=1, kind="stable")
        slot = np.empty_like(order)
        np.put_along_axis(slot, order, np.arange(k)[None, :].repeat(c, 0), axis=1)
        picked = ok & (slot < wanted[:, None])

    # Picked positions first, in top-k order: negatives come best (hardest) first.
    width = int(wanted.max()) if c else 0
    order = np.argsort(~picked, axis=1, kind="stable")[:, :width]
    taken = picked.sum(1)
    counts.groups_short = int((taken < wanted).sum())
    return Selection(np.take_along_axis(indices, order, 1), np.take_along_axis(scores, order, 1), taken), counts


def distribution(values: np.ndarray) -> dict[str, float | int]:
    """Summary of a score sample for the manifest (empty sample: count only)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return {"count": 0}
    q = np.quantile(values, [0.05, 0.25, 0.5, 0.75, 0.95])
    return {
        "count": int(values.size),
        "mean": round(float(values.mean()), 4),
        "std": round(float(values.std()), 4),
        "min": round(float(values.min()), 4),
        "p05": round(float(q[0]), 4),
        "p25": round(float(q[1]), 4),
        "p50": round(float(q[2]), 4),
        "p75": round(float(q[3]), 4),
        "p95": round(float(q[4]), 4),
        "max": round(float(values.max()), 4),
    }


def assemble(
    table: pa.Table,
    positive_scores: np.ndarray,
    native_scores: np.ndarray,
    mined: pa.Array,
    mined_scores: np.ndarray,
    mined_counts: np.ndarray,
) -> pa.Table:
    """The rows with negatives = natives + mined (in that order) and their scores filled.

    Natives and their scores come flat in row order (as the `negatives` column holds them); mined ones
    flat in row order with `mined_counts` per row.
    """
    column = table.column("negatives").combine_chunks()
    native_values = column.flatten()
    native_counts = pc.fill_null(pc.list_value_length(column), 0).to_numpy().astype(np.int64)
    n_native = len(native_values)
    out_counts = native_counts + mined_counts
    offsets = np.zeros(len(out_counts) + 1, dtype=np.int32)
    np.cumsum(out_counts, out=offsets[1:])
    # Where each output item comes from in [natives..., mined...]: one gather, no per-row Python.
    row = np.repeat(np.arange(len(out_counts)), out_counts)
    j = np.arange(int(offsets[-1])) - offsets[:-1][row]
    native_start = np.concatenate([[0], np.cumsum(native_counts)[:-1]]).astype(np.int64)
    mined_start = np.concatenate([[0], np.cumsum(mined_counts)[:-1]]).astype(np.int64)
    source = np.where(j < native_counts[row], native_start[row] + j,
                      n_native + mined_start[row] + j - native_counts[row])
    texts = pa.concat_arrays([native_values.cast(pa.string()), mined.cast(pa.string())]).take(pa.array(source))
    scores = np.concatenate([native_scores, mined_scores]).astype(np.float32)[source]
    pa_offsets = pa.array(offsets, type=pa.int32())
    columns = {
        "negatives": pa.ListArray.from_arrays(pa_offsets, texts),
        "positive_score": pa.array(positive_scores.astype(np.float32), type=pa.float32()),
        "negative_scores": pa.ListArray.from_arrays(pa_offsets, pa.array(scores, type=pa.float32())),
    }
    for name, values in columns.items():
        i = table.schema.get_field_index(name)
        table = table.set_column(i, table.schema.field(name), values.cast(table.schema.field(name).type))
    return table


@dataclass
class SourceStats:
    """What mining did to one source; goes to _SUCCESS.json, the manifest and the Parquet metadata."""

    rows: int = 0
    query_groups: int = 0
    corpus_size: int = 0
    native_negatives: int = 0
    mined_negatives: int = 0
    rows_short: int = 0  # rows left with fewer than num_negatives negatives (kept as they are)
    removed: GuardCounts = field(default_factory=GuardCounts)
    positive_scores: dict[str, Any] = field(default_factory=dict)
    mined_scores: dict[str, Any] = field(default_factory=dict)
    native_scores: dict[str, Any] = field(default_factory=dict)
    # After mining: rows each filter dropped (reason -> rows), the rows written, and the positive ranks.
    dropped: dict[str, int] = field(default_factory=dict)
    rows_kept: int = 0
    positive_ranks: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _pair_scores(a: np.ndarray, a_rows: np.ndarray, b: np.ndarray, b_rows: np.ndarray) -> np.ndarray:
    """Row-wise dot products of a[a_rows] and b[b_rows], in blocks so no (n, dim) gather is huge."""
    out = np.empty(len(a_rows), dtype=np.float32)
    for s in range(0, len(a_rows), 8192):
        out[s:s + 8192] = np.einsum("ij,ij->i", a[a_rows[s:s + 8192]], b[b_rows[s:s + 8192]])
    return out


@dataclass
class Mined:
    """One source's mined rows, with what the filters after mining need (no second encoding)."""

    table: pa.Table
    stats: SourceStats
    positive_rank: np.ndarray | None  # (rows,) 1-based rank of the positive among the source's positives
    query_emb: np.ndarray  # (rows, dim) each row's query embedding
    positive_emb: np.ndarray  # (rows, dim)


def mine_table(
    table: pa.Table,
    encode: Any,
    params: MiningParams,
    *,
    device: str = "cpu",
    chunk_size: int | None = None,
    on_search: Any = None,
) -> tuple[pa.Table, SourceStats]:
    """Mine one source's rows. `encode(list[str]) -> float32 (n, dim)` L2-normalised embeddings."""
    mined = mine_rows(table, encode, params, device=device, chunk_size=chunk_size, on_search=on_search)
    return mined.table, mined.stats


def mine_rows(
    table: pa.Table,
    encode: Any,
    params: MiningParams,
    *,
    device: str = "cpu",
    chunk_size: int | None = None,
    on_search: Any = None,
    ranks: bool = False,
    search: Any = search_topk,
) -> Mined:
    """mine_table, keeping each row's query and positive embeddings, and with `ranks` the rank of its
    positive (a second pass over the source's positives, as costly as the search: only when asked).
    `search` has search_topk's signature and answer (m3e_data.executors.mine_ray runs it on a cluster)."""
    queries = table.column("query").to_pylist()
    positives = table.column("positive").to_pylist()
    natives = table.column("negatives").to_pylist()
    homogeneous = bool(pc.any(table.column("homogeneous")).as_py()) if table.num_rows else False
    plan = plan_source(queries, positives, natives, homogeneous, params.num_negatives)

    # Every distinct text is encoded once, whatever role it plays. The corpus comes first (its raw texts
    # are distinct), so its embeddings are a view of the encoder's output rather than a copy.
    unique = list(dict.fromkeys([*plan.corpus, *plan.group_query, *positives, *(t for n in natives for t in n)]))
    position = {t: i for i, t in enumerate(unique)}
    emb = encode(unique) if unique else np.empty((0, 0), np.float32)
    q_rows = np.fromiter((position[t] for t in plan.group_query), np.int64, len(plan.group_query))
    p_rows = np.fromiter((position[t] for t in positives), np.int64, len(positives))
    query_of_row = q_rows[plan.group_of_row]

    positive_scores = _pair_scores(emb, query_of_row, emb, p_rows)
    floor = np.full(len(plan.group_query), np.inf, dtype=np.float32)
    np.minimum.at(floor, plan.group_of_row, positive_scores)

    lengths = np.fromiter((len(n) for n in natives), np.int64, len(natives))
    n_rows = np.fromiter((position[t] for n in natives for t in n), np.int64, int(lengths.sum()))
    flat_native = _pair_scores(emb, np.repeat(query_of_row, lengths), emb, n_rows)

    # Search only groups that still need negatives; depth covers the window after exclusion.
    stats = SourceStats(rows=table.num_rows, query_groups=len(plan.group_query), corpus_size=len(plan.corpus))
    active = np.flatnonzero(plan.group_wanted > 0)
    depth = params.range_max + np.fromiter((len(plan.group_excluded[g]) for g in active), np.int64, len(active))
    width = int(plan.group_wanted.max()) if len(plan.group_wanted) else 0
    group_idx = np.zeros((len(plan.group_query), width), dtype=np.int64)
    group_scores = np.zeros((len(plan.group_query), width), dtype=np.float32)
    group_count = np.zeros(len(plan.group_query), dtype=np.int64)
    corpus_emb = emb[: len(plan.corpus)]
    for start, scores, indices in search(emb[q_rows[active]], corpus_emb, depth, chunk_size=chunk_size,
                                         device=device):
        groups = active[start:start + len(scores)]
        selection, counts = select_negatives(
            scores, indices, [plan.group_excluded[g] for g in groups], floor[groups], plan.group_wanted[groups],
            params, plan.group_keys[groups], plan.corpus_keys,
        )
        stats.removed.add(counts)
        w = selection.indices.shape[1]
        group_idx[groups, :w], group_scores[groups, :w] = selection.indices, selection.scores
        group_count[groups] = selection.counts
        if on_search is not None:
            on_search(len(groups))

    # A row takes only what its own natives leave to fill, best first.
    groups_of_rows = plan.group_of_row
    mined_counts = np.minimum(np.maximum(params.num_negatives - lengths, 0), group_count[groups_of_rows])
    row = np.repeat(np.arange(len(mined_counts)), mined_counts)
    starts = np.concatenate([[0], np.cumsum(mined_counts)[:-1]]).astype(np.int64)
    col = np.arange(int(mined_counts.sum())) - starts[row]
    flat_idx = group_idx[groups_of_rows[row], col]
    flat_mined = group_scores[groups_of_rows[row], col]
    mined_texts = pa.array(plan.corpus, type=pa.string()).take(pa.array(flat_idx))

    stats.native_negatives = int(lengths.sum())
    stats.mined_negatives = int(mined_counts.sum())
    stats.rows_short = int(((lengths + mined_counts) < params.num_negatives).sum())
    stats.positive_scores = distribution(positive_scores)
    stats.native_scores = distribution(flat_native)
    stats.mined_scores = distribution(flat_mined)
    out = assemble(table, positive_scores, flat_native, mined_texts, flat_mined, mined_counts)
    rank = positive_ranks(emb[q_rows], emb[: plan.n_positive_texts], plan.group_of_row, positive_scores,
                          plan.group_own, chunk_size=chunk_size, device=device) if ranks else None
    return Mined(out, stats, rank, emb[query_of_row], emb[p_rows])
