"""Everything the statistics need from a text's 3-grams, in one pass per text: shingle count, distinct
3-grams, the 3-grams its query and positive share, and the MinHash minimums of the permutations the LSH
bands use (bands x rows of them, not num_perm).

Compiled with numba when it is installed (the `fast` extra): per text, packed 3-gram -> one 64-bit hash ->
its 40-bit key (distinct/shared counts) and its permuted 32-bit values (minimums), with no temporaries the
size of the batch. Without numba the same figures come from numpy over the whole batch (`_numpy_sketch`);
both give identical results (a test runs both on the same texts). The kernel is cached on disk
(`cache=True`), so a pool worker loads it instead of compiling it.
"""

from __future__ import annotations

import os

import numpy as np

from m3e_data.stages.hq.minhash import (
    MinHashParams,
    hash_keys,
    permutations,
    shingle_codepoints,
    signatures_from_hashes,
)

try:  # optional: m3e-data[fast]
    import numba
except ImportError:  # pragma: no cover - exercised where numba is absent
    numba = None

# M3E_HQ_NUMBA=0 turns the compiled kernel off (the numpy path gives the same figures, slower).
USE_NUMBA = numba is not None and os.environ.get("M3E_HQ_NUMBA", "1") != "0"

_MASK40 = (1 << 40) - 1


def distinct_and_shared(keys: np.ndarray, starts: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct 3-grams per text (texts 0..2n-1, query i and positive n+i) and, per row, how many
    distinct 3-grams its query and positive share — with one sort.

    Each shingle becomes row << 41 | 40-bit mixed key << 1 | side: after sorting, duplicates inside one text
    are equal neighbours, and a 3-gram shared by query and positive is a neighbour differing in the last
    bit. 40 bits collide inside one row with odds ~k^2 / 2^41: negligible at these lengths.
    """
    owner = np.repeat(np.arange(len(starts) - 1, dtype=np.int64), np.diff(starts))
    side = (owner >= n).astype(np.uint64)
    row = np.where(owner >= n, owner - n, owner).astype(np.uint64)
    key40 = (hash_keys(keys).astype(np.uint64) << np.uint64(8) ^ (keys & np.uint64(0xFF))) & np.uint64(_MASK40)
    values = np.sort((row << np.uint64(41)) | (key40 << np.uint64(1)) | side)
    if len(values):
        values = values[np.r_[True, values[1:] != values[:-1]]]
    text = (values >> np.uint64(41)).astype(np.int64) + (values & np.uint64(1)).astype(np.int64) * n
    distinct = np.bincount(text, minlength=2 * n)
    shared_at = np.flatnonzero((values[1:] >> np.uint64(1)) == (values[:-1] >> np.uint64(1)))
    shared = np.bincount((values[shared_at] >> np.uint64(41)).astype(np.int64), minlength=n)
    return distinct, shared


def _numpy_sketch(cp: np.ndarray, cp_starts: np.ndarray, n: int, params: MinHashParams, perms: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    keys, starts = shingle_codepoints(cp, cp_starts)
    distinct, shared = distinct_and_shared(keys, starts, n)
    sig = signatures_from_hashes(hash_keys(keys), starts, params, perms)
    return np.diff(starts), distinct, shared, sig


if numba is not None:
    _U = numba.uint64
    _U32 = numba.uint32

    @numba.njit(cache=True, nogil=True)
    def _fmix64(h):  # noqa: ANN001, ANN202 (numba)
        h ^= h >> _U(33)
        h *= _U(0xFF51AFD7ED558CCD)
        h ^= h >> _U(33)
        h *= _U(0xC4CEB9FE1A85EC53)
        return h ^ (h >> _U(33))

    @numba.njit(cache=True, nogil=True)
    def shingle_key(cp, lo, length, i):  # noqa: ANN001, ANN202 (numba)
        """The packed key of the i-th 3-gram of the text cp[lo:lo + length] (minhash.shingle_codepoints'
        packing: one key for a text of 1-2 characters)."""
        if length >= 3:
            return (_U(cp[lo + i]) + _U(1)) | ((_U(cp[lo + i + 1]) + _U(1)) << _U(21)) | (
                (_U(cp[lo + i + 2]) + _U(1)) << _U(42))
        key = _U(cp[lo]) + _U(1)
        if length == 2:
            key |= (_U(cp[lo + 1]) + _U(1)) << _U(21)
        return key

    @numba.njit(cache=True, nogil=True)
    def _one_text(cp, lo, hi, a, b, sig_row, buf, xs):  # noqa: ANN001, ANN202 (numba)
        """Fill buf with the text's 40-bit keys (sorted, unique) and fold its permuted hashes into sig_row;
        returns (shingles, distinct). xs: scratch for the text's 32-bit shingle hashes."""
        m32 = _U(0xFFFFFFFF)
        length = hi - lo
        if length <= 0:
            return 0, 0
        count = length - 2 if length >= 3 else 1
        for i in range(count):
            key = shingle_key(cp, lo, length, i)
            h = _fmix64(key) & m32
            buf[i] = ((h << _U(8)) ^ (key & _U(0xFF))) & _U(_MASK40)
            # datasketch's affine32 on the 32-bit MurmurHash3 finalizer of the shingle hash
            x = h
            x ^= x >> _U(16)
            x = (x * _U(0x85EBCA6B)) & m32
            x ^= x >> _U(13)
            x = (x * _U(0xC2B2AE35)) & m32
            x ^= x >> _U(16)
            xs[i] = _U32(x)
        # Per permutation, the minimum over the text's hashes, in 32-bit arithmetic ((a x + b) mod 2^32 is
        # the low half of the 64-bit affine): a reduction the compiler turns into SIMD lanes, 2.3x faster
        # than folding each hash into all the permutations.
        for k in range(a.shape[0]):
            ak, bk, m = a[k], b[k], sig_row[k]
            for i in range(count):
                m = min(m, _U32(ak * xs[i] + bk))
            sig_row[k] = m
        return count, sort_distinct(buf[:count])

    @numba.njit(cache=True, nogil=True)
    def sort_distinct(values):  # noqa: ANN001, ANN202 (numba)
        """Sort `values` in place and move its distinct values to the front; returns how many there are."""
        values.sort()
        distinct = 1 if len(values) else 0
        for i in range(1, len(values)):
            if values[i] != values[distinct - 1]:
                values[distinct] = values[i]
                distinct += 1
        return distinct

    @numba.njit(cache=True, nogil=True)
    def sorted_intersection(x, x_lo, x_hi, y, y_lo, y_hi):  # noqa: ANN001, ANN202 (numba)
        """How many values the sorted, distinct runs x[x_lo:x_hi] and y[y_lo:y_hi] share (one merge)."""
        i, j, both = x_lo, y_lo, 0
        while i < x_hi and j < y_hi:
            if x[i] == y[j]:
                both += 1
                i += 1
                j += 1
            elif x[i] < y[j]:
                i += 1
            else:
                j += 1
        return both

    @numba.njit(cache=True, nogil=True)
    def _sketch_kernel(cp, cp_starts, n, a, b, counts, distinct, shared, sig):  # noqa: ANN001, ANN202 (numba)
        longest = 1
        for t in range(2 * n):
            longest = max(longest, cp_starts[t + 1] - cp_starts[t])
        qbuf = np.empty(longest, dtype=np.uint64)
        pbuf = np.empty(longest, dtype=np.uint64)
        xs = np.empty(longest, dtype=np.uint32)
        for r in range(n):
            cq, dq = _one_text(cp, cp_starts[r], cp_starts[r + 1], a, b, sig[r], qbuf, xs)
            cpp, dp = _one_text(cp, cp_starts[n + r], cp_starts[n + r + 1], a, b, sig[n + r], pbuf, xs)
            counts[r], distinct[r], counts[n + r], distinct[n + r] = cq, dq, cpp, dp
            shared[r] = sorted_intersection(qbuf, 0, dq, pbuf, 0, dp)


def sketch(cp: np.ndarray, cp_starts: np.ndarray, n: int, params: MinHashParams, perms: int | None = None,
           compiled: bool | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For 2n texts (query i is text i, positive i text n + i) given as code points back to back (cp,
    cp_starts: see minhash.codepoints): shingles per text, distinct 3-grams per text, distinct 3-grams
    shared by each row's query and positive, and the (2n x perms) MinHash signatures over the first
    `perms` permutations (default num_perm; the LSH bands read only bands x rows of them).

    `compiled` picks the numba kernel (True) or numpy (False); None: the kernel where numba is installed."""
    perms = params.num_perm if perms is None else perms
    if not (compiled if compiled is not None else USE_NUMBA):
        return _numpy_sketch(cp, cp_starts, n, params, perms)
    if numba is None:
        raise RuntimeError("the compiled sketch needs numba: pip install 'm3e-data[fast]'")
    a, b = permutations(params.num_perm, params.seed)
    counts = np.zeros(2 * n, dtype=np.int64)
    distinct = np.zeros(2 * n, dtype=np.int64)
    shared = np.zeros(n, dtype=np.int64)
    sig = np.full((2 * n, perms), 0xFFFFFFFF, dtype=np.uint32)
    _sketch_kernel(np.ascontiguousarray(cp, dtype=np.uint32), np.ascontiguousarray(cp_starts, dtype=np.int64), n,
                   np.ascontiguousarray(a[:perms], dtype=np.uint32), np.ascontiguousarray(b[:perms], dtype=np.uint32),
                   counts, distinct, shared, sig)
    return counts, distinct, shared, sig
