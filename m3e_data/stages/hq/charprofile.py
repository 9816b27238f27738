"""Per text, the character counts the quality rules read (Han, kana, letters, special, space) and the
longest run of one repeated character — one pass over each text's code points.

Compiled with numba when it is installed (the `fast` extra): no temporaries the size of the batch's code
points. Without it, the same figures from numpy over the whole batch (prefix sums per class, runs by
diff); a test runs both on the same texts.
"""

from __future__ import annotations

import numpy as np

from m3e_data.stages.hq import sketch as kernels
from m3e_data.stages.hq.sketch import numba

LETTER, HAN, KANA, SPECIAL, SPACE = 1, 2, 4, 8, 16
CLASSES = (HAN, KANA, LETTER, SPECIAL, SPACE)  # the order of char_profile's count columns


def _per_text(cp_starts: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """How many code points of each text fall in `mask` (prefix sums: empty texts count 0)."""
    csum = np.zeros(len(mask) + 1, dtype=np.int64)
    np.cumsum(mask, out=csum[1:])
    return (csum[cp_starts[1:]] - csum[cp_starts[:-1]]).astype(np.int32)


def _max_runs(cp: np.ndarray, owner: np.ndarray, n: int) -> np.ndarray:
    """Longest run of one repeated character in each text (哈哈哈哈 → 4)."""
    out = np.zeros(n, dtype=np.int32)
    if len(cp) == 0:
        return out
    new_run = np.r_[True, (cp[1:] != cp[:-1]) | (owner[1:] != owner[:-1])]
    run_start = np.flatnonzero(new_run)
    run_len = np.diff(np.r_[run_start, len(cp)])
    np.maximum.at(out, owner[run_start], run_len.astype(np.int32))
    return out


def _numpy_profile(cp: np.ndarray, cp_starts: np.ndarray, table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    classes = table[cp]
    counts = np.stack([_per_text(cp_starts, (classes & c) > 0) for c in CLASSES], axis=1)
    owner = np.repeat(np.arange(len(cp_starts) - 1), np.diff(cp_starts))
    return counts, _max_runs(cp, owner, len(cp_starts) - 1)


if numba is not None:

    @numba.njit(cache=True, nogil=True)
    def _profile_kernel(cp, cp_starts, table, bits, counts, max_run):  # noqa: ANN001, ANN202 (numba)
        for t in range(len(cp_starts) - 1):
            lo, hi = cp_starts[t], cp_starts[t + 1]
            run = best = 0
            prev = -1
            for i in range(lo, hi):
                c = cp[i]
                cls = table[c]
                for k in range(len(bits)):
                    if cls & bits[k]:
                        counts[t, k] += 1
                run = run + 1 if c == prev else 1
                best = max(best, run)
                prev = c
            max_run[t] = best


def char_profile(cp: np.ndarray, cp_starts: np.ndarray, table: np.ndarray, compiled: bool | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(counts, max_run) for the texts given as code points back to back (cp, cp_starts): counts[t, k] is
    how many code points of text t have class CLASSES[k] in `table` (uint8 class bits by code point),
    max_run[t] its longest run of one character. `compiled`: the numba kernel (default where installed)."""
    if not (compiled if compiled is not None else kernels.USE_NUMBA):
        return _numpy_profile(cp, cp_starts, table)
    if numba is None:
        raise RuntimeError("the compiled profile needs numba: pip install 'm3e-data[fast]'")
    m = len(cp_starts) - 1
    counts = np.zeros((m, len(CLASSES)), dtype=np.int32)
    max_run = np.zeros(m, dtype=np.int32)
    _profile_kernel(np.ascontiguousarray(cp), np.ascontiguousarray(cp_starts, dtype=np.int64), table,
                    np.array(CLASSES, dtype=np.uint8), counts, max_run)
    return counts, max_run
