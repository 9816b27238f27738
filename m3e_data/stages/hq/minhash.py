"""MinHash over character 3-grams, vectorised with numpy, giving exactly datasketch's signatures.

datasketch 2.0 is the reference. Its default scheme, "affine32", pre-mixes each input hash with the 32-bit
MurmurHash3 finalizer and then applies `a_k * h + b_k mod 2^32` with (a, b) drawn from
`np.random.RandomState(seed)`. This module takes those permutations from datasketch itself and applies the
same arithmetic to whole batches, so `MinHash(num_perm, seed, hashfunc=H).update(g)` for every 3-gram g of
a text gives the same hash values as `signatures([text])` here, where H is the shingle hash:

- "cp63" (default, fast): the 3-gram's code points packed into 63 bits, `(c0+1) | (c1+1) << 21 | (c2+1) <<
  42` (a 1- or 2-character text leaves the high fields 0), mixed with the 64-bit MurmurHash3 finalizer and
  truncated to 32 bits; `shingle_hash` is its scalar form, to hand to datasketch;
- "sha1": datasketch's default hash function (sha1_hash32 of the UTF-8 bytes), computed per 3-gram in Python;
  slower, for signatures that must match a plain `MinHash()`.

A text shorter than 3 characters is one shingle (the whole text): with an empty shingle set, every short
text would get the same signature. The empty text has no shingles and datasketch's empty signature.
Records of stored signatures carry SCHEME, the hash name, num_perm and seed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np

from m3e_data.stages.hq.distinct import distinct

N = 3  # character n-gram size
SCHEME = "affine32"  # datasketch's permutation scheme these signatures follow
_MAX32 = np.uint32(0xFFFFFFFF)
_M64 = (1 << 64) - 1


@dataclass(frozen=True)
class MinHashParams:
    num_perm: int = 128
    seed: int = 1
    hash: str = "cp63"  # "cp63" or "sha1"

    def record(self) -> dict[str, object]:
        return {"scheme": SCHEME, "hash": self.hash, "num_perm": self.num_perm, "seed": self.seed, "ngram": N}


@cache
def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's (a, b) for this num_perm and seed, drawn exactly as `MinHash._init_permutations` draws
    them for "affine32" (a test compares them with datasketch's own). Importing datasketch here would cost
    seconds per worker process: it imports scipy."""
    gen = np.random.RandomState(seed)
    a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
    return a, b


def _fmix32(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def _fmix64(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> np.uint64(33))


def shingle_hash(shingle: str | bytes) -> int:
    """The "cp63" hash of one shingle, in the form datasketch's `hashfunc` takes (bytes are UTF-8)."""
    if isinstance(shingle, bytes):
        shingle = shingle.decode("utf-8")
    key = 0
    for i, ch in enumerate(shingle[:N]):
        key |= (ord(ch) + 1) << (21 * i)
    key ^= key >> 33
    key = (key * 0xFF51AFD7ED558CCD) & _M64
    key ^= key >> 33
    key = (key * 0xC4CEB9FE1A85EC53) & _M64
    key ^= key >> 33
    return key & 0xFFFFFFFF


def shingles(text: str) -> list[str]:
    """The shingle list datasketch is fed for `text` (duplicates kept; MinHash ignores them)."""
    if len(text) < N:
        return [text] if text else []
    return [text[i : i + N] for i in range(len(text) - N + 1)]


@dataclass
class Shingled:
    """The 3-grams of a batch of texts as flat arrays: keys[starts[i]:starts[i+1]] belong to text i."""

    keys: np.ndarray  # uint64 packed code points, one per shingle occurrence
    starts: np.ndarray  # int64, len(texts) + 1
    codepoints: np.ndarray  # uint32, every text's code points back to back
    cp_starts: np.ndarray  # int64, len(texts) + 1

    @property
    def counts(self) -> np.ndarray:
        return np.diff(self.starts)

    def text_of_shingle(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.starts) - 1), self.counts)


def codepoints(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Every text's code points back to back (uint32) and where each text starts (int64, len(texts) + 1)."""
    lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    cp_starts = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(lengths, out=cp_starts[1:])
    # surrogatepass: a lone surrogate (seen in scraped text) is still one code point, as len() counts it.
    cp = np.frombuffer("".join(texts).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    return cp, cp_starts


def shingle_codepoints(cp: np.ndarray, cp_starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The packed 3-gram keys of texts given as code points (see `codepoints`), and each text's start among
    them, computed on the concatenated code points without a Python loop per 3-gram."""
    lengths = np.diff(cp_starts)
    padded = np.zeros(len(cp) + N - 1, dtype=np.uint64)
    padded[: len(cp)] = cp.astype(np.uint64) + np.uint64(1)
    # One candidate shingle per position; a text keeps positions [start, end - 2], or just its start when
    # it is 1-2 characters long (then the fields past its end must be zeroed, not the next text's).
    n_sh = np.where(lengths >= N, lengths - N + 1, np.minimum(lengths, 1))
    starts = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(n_sh, out=starts[1:])
    pos = np.repeat(cp_starts[:-1] - starts[:-1], n_sh) + np.arange(starts[-1], dtype=np.int64)
    keys = padded[pos] | (padded[pos + 1] << np.uint64(21)) | (padded[pos + 2] << np.uint64(42))
    short = np.flatnonzero((lengths > 0) & (lengths < N))
    if len(short):
        first = starts[short]
        keys[first] = padded[cp_starts[short]]
        two = lengths[short] == 2
        keys[first[two]] |= padded[cp_starts[short][two] + 1] << np.uint64(21)
    return keys, starts


def shingle_batch(texts: Sequence[str]) -> Shingled:
    """Every text's 3-gram keys, computed on the concatenated code points without a Python loop per 3-gram."""
    cp, cp_starts = codepoints(texts)
    keys, starts = shingle_codepoints(cp, cp_starts)
    return Shingled(keys, starts, cp, cp_starts)


def hash_keys(keys: np.ndarray) -> np.ndarray:
    """The "cp63" shingle hash of packed keys (vectorised `shingle_hash`)."""
    return (_fmix64(keys) & np.uint64(0xFFFFFFFF)).astype(np.uint32)


def _sha1_hashes(texts: Sequence[str]) -> np.ndarray:
    out = [
        int.from_bytes(hashlib.sha1(g.encode("utf-8", "surrogatepass")).digest()[:4], "little")
        for t in texts
        for g in shingles(t)
    ]
    return np.asarray(out, dtype=np.uint32)


# Shingles per permutation block: keeps the (shingles x num_perm) temporary inside the CPU cache.
_BLOCK = 8192


def signatures_from_hashes(hashes: np.ndarray, starts: np.ndarray, params: MinHashParams, perms: int | None = None
                           ) -> np.ndarray:
    """(texts x num_perm) uint32 signatures from each shingle's 32-bit hash, datasketch's affine32 way; only
    the first `perms` permutations (texts x perms) when given: LSH bands use bands x rows of them."""
    a, b = permutations(params.num_perm, params.seed)
    perms = params.num_perm if perms is None else perms
    a, b = a[:perms], b[:perms]
    n_texts = len(starts) - 1
    sig = np.full((n_texts, perms), _MAX32, dtype=np.uint32)
    if len(hashes) == 0:
        return sig
    mixed = _fmix32(hashes.astype(np.uint32))
    owner = np.repeat(np.arange(n_texts), np.diff(starts))
    # Permutations x shingles: the min runs along contiguous memory, several times faster than the transpose.
    buf = np.empty((perms, _BLOCK), dtype=np.uint32)
    a_col, b_col = a[:, None], b[:, None]
    for lo in range(0, len(mixed), _BLOCK):
        hi = min(lo + _BLOCK, len(mixed))
        block = buf[:, : hi - lo]
        np.multiply(a_col, mixed[None, lo:hi], out=block)
        block += b_col
        # A text may straddle blocks: reduce each text's run inside this block, then fold into its row.
        own = owner[lo:hi]
        first = np.flatnonzero(np.r_[True, own[1:] != own[:-1]])
        mins = np.minimum.reduceat(block, first, axis=1)
        rows = own[first]
        sig[rows] = np.minimum(sig[rows], mins.T)
    return sig


def signatures(texts: Sequence[str], params: MinHashParams = MinHashParams()) -> np.ndarray:
    """datasketch-identical MinHash signatures of `texts` over character 3-grams, (len(texts), num_perm)."""
    if params.hash == "sha1":
        lengths = [len(shingles(t)) for t in texts]
        starts = np.zeros(len(texts) + 1, dtype=np.int64)
        np.cumsum(lengths, out=starts[1:])
        return signatures_from_hashes(_sha1_hashes(texts), starts, params)
    if params.hash != "cp63":
        raise ValueError(f"unknown shingle hash {params.hash!r}; expected 'cp63' or 'sha1'")
    sh = shingle_batch(texts)
    return signatures_from_hashes(hash_keys(sh.keys), sh.starts, params)


def band_keys(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(texts x bands) uint64 LSH bucket keys: each band's `rows` hash values folded into 64 bits.

    A 64-bit key can collide, but only by chance (about n^2 / 2^64) and every candidate is verified with
    exact Jaccard afterwards, so a collision costs one comparison, never a wrong drop.
    """
    if bands * rows > sig.shape[1]:
        raise ValueError(f"{bands} bands x {rows} rows needs {bands * rows} permutations; have {sig.shape[1]}")
    out = np.empty((sig.shape[0], bands), dtype=np.uint64)
    rng = np.random.default_rng(0x5EED)
    # A fixed random odd multiplier per position, then one finalizer: one mix per band instead of per row.
    mult = rng.integers(1, 1 << 63, size=(bands, rows), dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    with np.errstate(over="ignore"):
        for band in range(bands):
            block = sig[:, band * rows : (band + 1) * rows].astype(np.uint64)
            out[:, band] = _fmix64((block * mult[band]).sum(axis=1, dtype=np.uint64) + np.uint64(band))
    return out


def unique_sets(texts: Sequence[str]) -> list[np.ndarray]:
    """Each text's set of 3-gram keys (sorted, unique), for exact Jaccard."""
    sh = shingle_batch(texts)
    return [distinct(sh.keys[sh.starts[i] : sh.starts[i + 1]]) for i in range(len(texts))]


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Exact Jaccard of two sorted unique key arrays (two empty sets are identical)."""
    union = len(a) + len(b)
    if union == 0:
        return 1.0
    inter = len(np.intersect1d(a, b, assume_unique=True))
    return inter / (union - inter)
