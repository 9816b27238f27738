"""Exact 3-gram Jaccards of row pairs (near dedup's verification), compiled: per text its set of 32-bit
shingle hashes, sorted; per row the union of its query's and positive's; per edge the intersections by
merging two sorted arrays. The same figures as dedup.pair_sets + dedup.edge_jaccard (the numpy reference,
which sorts every edge's members together), without temporaries the size of the edges' members.
"""

from __future__ import annotations

import numpy as np

from m3e_data.stages.hq.sketch import numba

if numba is not None:
    from m3e_data.stages.hq.sketch import _fmix64, shingle_key, sort_distinct, sorted_intersection

    _U = numba.uint64

    @numba.njit(cache=True, nogil=True)
    def _text_sets(cp, cp_starts, keys, ptr):  # noqa: ANN001, ANN202 (numba)
        """Each text's distinct shingle hashes, sorted, into keys[ptr[t]:ptr[t + 1]] (ptr filled here; keys
        holds room for every shingle)."""
        m32 = _U(0xFFFFFFFF)
        at = 0
        for t in range(len(cp_starts) - 1):
            lo, hi = cp_starts[t], cp_starts[t + 1]
            length = hi - lo
            ptr[t] = at
            if length <= 0:
                continue
            count = length - 2 if length >= 3 else 1
            for i in range(count):  # minhash.hash_keys' hash of the packed 3-gram
                keys[at + i] = numba.uint32(_fmix64(shingle_key(cp, lo, length, i)) & m32)
            at += sort_distinct(keys[at : at + count])
        ptr[len(cp_starts) - 1] = at
        return at

    @numba.njit(cache=True, nogil=True)
    def _union_sets(keys, ptr, m, out, out_ptr):  # noqa: ANN001, ANN202 (numba)
        """Per row r, the union of texts r and m + r (sorted, distinct)."""
        at = 0
        for r in range(m):
            out_ptr[r] = at
            i, ie, j, je = ptr[r], ptr[r + 1], ptr[m + r], ptr[m + r + 1]
            while i < ie or j < je:
                if j >= je or (i < ie and keys[i] < keys[j]):
                    out[at] = keys[i]
                    i += 1
                elif i >= ie or keys[j] < keys[i]:
                    out[at] = keys[j]
                    j += 1
                else:
                    out[at] = keys[i]
                    i += 1
                    j += 1
                at += 1
        out_ptr[m] = at

    @numba.njit(cache=True, nogil=True)
    def _jaccard(keys, ptr, x, y):  # noqa: ANN001, ANN202 (numba)
        inter = sorted_intersection(keys, ptr[x], ptr[x + 1], keys, ptr[y], ptr[y + 1])
        union = (ptr[x + 1] - ptr[x]) + (ptr[y + 1] - ptr[y]) - inter
        return inter / union if union > 0 else 1.0

    @numba.njit(cache=True, nogil=True)
    def _edges(keys, ptr, ukeys, uptr, m, a, b, swap, pair, query, positive):  # noqa: ANN001, ANN202 (numba)
        for e in range(len(a)):
            x, y = a[e], b[e]
            pair[e] = _jaccard(ukeys, uptr, x, y)
            q = _jaccard(keys, ptr, x, y)
            p = _jaccard(keys, ptr, m + x, m + y)
            if swap[e]:
                cq = _jaccard(keys, ptr, x, m + y)
                cp = _jaccard(keys, ptr, m + x, y)
                # float32 as the reference compares them
                if min(np.float32(cq), np.float32(cp)) > min(np.float32(q), np.float32(p)):
                    q, p = cq, cp
            query[e] = q
            positive[e] = p


def similarities(cp: np.ndarray, cp_starts: np.ndarray, m: int, a: np.ndarray, b: np.ndarray,
                 swap: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For m rows given as 2m texts (query r is text r, positive r text m + r; see minhash.codepoints) and
    edges a[i]-b[i]: the Jaccards of the united pair sets, of query with query and of positive with
    positive, float32 (where swap[i] and the crossed orientation is the more alike, the crossed side
    figures). Needs numba."""
    if numba is None:
        raise RuntimeError("the compiled verification needs numba: pip install 'm3e-data[fast]'")
    cp_starts = np.ascontiguousarray(cp_starts, dtype=np.int64)
    shingles = int(np.maximum(np.diff(cp_starts) - 2, np.minimum(np.diff(cp_starts), 1)).sum())
    keys = np.empty(shingles, dtype=np.uint32)
    ptr = np.zeros(2 * m + 1, dtype=np.int64)
    used = _text_sets(np.ascontiguousarray(cp, dtype=np.uint32), cp_starts, keys, ptr)
    keys = keys[:used]
    ukeys = np.empty(used, dtype=np.uint32)
    uptr = np.zeros(m + 1, dtype=np.int64)
    _union_sets(keys, ptr, m, ukeys, uptr)
    n = len(a)
    pair, query, positive = (np.empty(n, dtype=np.float32) for _ in range(3))
    _edges(keys, ptr, ukeys, uptr, m, np.ascontiguousarray(a, dtype=np.int64), np.ascontiguousarray(b, dtype=np.int64),
           np.ascontiguousarray(swap, dtype=np.bool_), pair, query, positive)
    return pair, query, positive
