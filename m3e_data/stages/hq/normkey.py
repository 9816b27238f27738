"""The exact-dedup keys of texts (xxh3-64 of the UTF-8 of NFKC, lower case, no whitespace, punctuation or
symbols), computed per code point where that is provably the same as the Arrow string kernels.

Arrow's NFKC is the costly step (~11 µs a 300-character text), yet nearly every Chinese text is already
in NFKC. A text all of whose code points are "plain" is unchanged by NFKC (Unicode's quick check: every
character NFKC_QC=Yes with combining class 0) and its lower-casing and removals act on each code point
alone, so its normal form is a lookup per code point. The per-code-point table is built by running the
very Arrow kernels `quality.normalize` runs on every single character (and Python's unicodedata, so that
a character either Unicode version treats specially is not plain); any text holding one non-plain code
point (full-width forms, combining marks, Hangul jamo, non-ASCII capitals, planes 3+) goes through
`quality.normalize` as before. The keys are identical either way (tests compare both on every plane).
"""

from __future__ import annotations

import unicodedata
from functools import cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

try:  # optional: m3e-data[fast]
    import numba
except ImportError:  # pragma: no cover - exercised where numba is absent
    numba = None

KEEP, UPPER, DROP, OTHER = 0, 1, 2, 3  # per code point: kept as is, ASCII capital, removed, not plain
_PLANES = 0x30000  # planes 0-2 are looked up; above, every code point is OTHER


@cache
def code_point_classes(drop_pattern: str) -> np.ndarray:
    """KEEP/UPPER/DROP/OTHER for each code point below _PLANES, for the normalisation that removes
    `drop_pattern` (a character class regex, one character at a time is the same as a run)."""
    cps = np.array([c for c in range(_PLANES) if not 0xD800 <= c <= 0xDFFF], dtype=np.uint32)
    single = pa.array([chr(c) for c in cps.tolist()], pa.string())
    nfkc = pc.utf8_normalize(single, "NFKC")
    nfd = pc.utf8_normalize(single, "NFD")
    lower = pc.utf8_lower(single)
    dropped = pc.equal(pc.replace_substring_regex(single, drop_pattern, ""), "").to_numpy(zero_copy_only=False)
    out = np.full(_PLANES, OTHER, dtype=np.uint8)
    stable = pc.equal(nfkc, single).to_numpy(zero_copy_only=False)
    same_case = pc.equal(lower, single).to_numpy(zero_copy_only=False)
    ascii_upper = (cps >= ord("A")) & (cps <= ord("Z"))
    plain = stable & (same_case | ascii_upper)
    # A character that a canonical decomposition holds after its first place can compose with what precedes
    # it (NFKC_QC=Maybe), and a non-zero combining class can be reordered: neither is plain.
    # Python's Unicode too, one call over every character but the newline (a newline between them composes
    # with nothing; the newline itself is checked alone).
    listed = single.to_pylist()
    others = [ch for ch in listed if ch != "\n"]
    py_nfkc = dict(zip(others, unicodedata.normalize("NFKC", "\n".join(others)).split("\n"), strict=True))
    py_nfkc["\n"] = unicodedata.normalize("NFKC", "\n")
    py_nfd = unicodedata.normalize("NFD", "\n".join(others)).split("\n")
    maybe = {c for text in (*nfd.to_pylist(), *py_nfd) if len(text) > 1 for c in text[1:]}
    py_plain = np.fromiter(
        (py_nfkc[ch] == ch and not unicodedata.combining(ch) and ch not in maybe for ch in listed),
        dtype=bool, count=len(cps),
    )
    plain &= py_plain
    out[cps[plain]] = KEEP
    out[cps[plain & ascii_upper]] = UPPER
    out[cps[plain & dropped & ~ascii_upper]] = DROP
    return out


if numba is not None:

    @numba.njit(cache=True, nogil=True)
    def _plain_utf8(cp, cp_starts, classes, out, ends, other, chars):  # noqa: ANN001, ANN202 (numba)
        """UTF-8 of each text's normal form into out (text i at ends[i]:ends[i + 1]) and its length in code
        points into chars; other[i] where a code point is not plain (that text's bytes are left empty)."""
        pos = 0
        for t in range(len(cp_starts) - 1):
            start = pos
            kept = 0
            for i in range(cp_starts[t], cp_starts[t + 1]):
                c = np.uint32(cp[i])
                k = classes[c] if c < _PLANES else OTHER
                if k == OTHER:
                    other[t] = True
                    pos = start
                    kept = 0
                    break
                if k == DROP:
                    continue
                kept += 1
                if k == UPPER:
                    c += np.uint32(0x20)
                if c < 0x80:
                    out[pos] = c
                    pos += 1
                elif c < 0x800:
                    out[pos] = 0xC0 | (c >> 6)
                    out[pos + 1] = 0x80 | (c & 0x3F)
                    pos += 2
                elif c < 0x10000:
                    out[pos] = 0xE0 | (c >> 12)
                    out[pos + 1] = 0x80 | ((c >> 6) & 0x3F)
                    out[pos + 2] = 0x80 | (c & 0x3F)
                    pos += 3
                else:
                    out[pos] = 0xF0 | (c >> 18)
                    out[pos + 1] = 0x80 | ((c >> 12) & 0x3F)
                    out[pos + 2] = 0x80 | ((c >> 6) & 0x3F)
                    out[pos + 3] = 0x80 | (c & 0x3F)
                    pos += 4
            ends[t + 1] = pos
            chars[t] = kept


def keys_from_codepoints(texts: pa.Array | pa.ChunkedArray, cp: np.ndarray, cp_starts: np.ndarray,
                         drop_pattern: str, normalize) -> np.ndarray:  # noqa: ANN001 (quality.normalize)
    """xxh3-64 keys of normalize(texts), given the texts' code points back to back (minhash.codepoints).
    Needs numba (callers fall back to normalize + hash without it)."""
    return forms_from_codepoints(texts, cp, cp_starts, drop_pattern, normalize)[0]


def forms_from_codepoints(texts: pa.Array | pa.ChunkedArray, cp: np.ndarray, cp_starts: np.ndarray,
                          drop_pattern: str, normalize) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    """(xxh3-64 key, length in code points) of normalize(texts): see keys_from_codepoints."""
    n = len(cp_starts) - 1
    keys = np.zeros(n, dtype=np.uint64)
    chars = np.zeros(n, dtype=np.int64)
    if n == 0:
        return keys, chars
    out = np.empty(4 * len(cp), dtype=np.uint8)
    ends = np.zeros(n + 1, dtype=np.int64)
    other = np.zeros(n, dtype=bool)
    _plain_utf8(np.ascontiguousarray(cp, dtype=np.uint32), np.ascontiguousarray(cp_starts, dtype=np.int64),
                code_point_classes(drop_pattern), out, ends, other, chars)
    data = memoryview(out)
    bounds = ends.tolist()
    digest = xxhash.xxh3_64_intdigest
    keys[:] = np.fromiter((digest(data[bounds[i] : bounds[i + 1]]) for i in range(n)), dtype=np.uint64, count=n)
    rest = np.flatnonzero(other)
    if len(rest):
        texts = texts.combine_chunks() if isinstance(texts, pa.ChunkedArray) else texts
        slow = normalize(texts.take(pa.array(rest)))
        keys[rest] = np.fromiter((digest(t.encode("utf-8", "surrogatepass")) for t in slow.to_pylist()),
                                 dtype=np.uint64, count=len(rest))
        chars[rest] = pc.utf8_length(slow).to_numpy(zero_copy_only=False)
    return keys, chars
