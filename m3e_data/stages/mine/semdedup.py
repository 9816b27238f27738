"""Semantic near-duplicates of (query, positive) pairs, as SemDeDup finds them (pure: arrays in, arrays out).

MinHash (m3e_data.stages.hq.dedup) catches surface copies; a pair re-worded by another source survives it. Here a
pair is the concatenation of its L2-normalised query and positive embeddings scaled by 1/√2, so the
cosine of two pairs is the mean of their query cosine and their positive cosine. k-means over the query
embeddings splits the rows into clusters; inside each cluster an exact search compares a row with the
rows kept before it (earlier sources first, then earlier rows), and a row whose best match reaches the
threshold is dropped with that row's id as `kept_id`. Near-duplicates that k-means puts in different
clusters are missed: the price of memory O(N·d) instead of O(N²).
"""

from __future__ import annotations

import numpy as np

ROWS_PER_CLUSTER = 512  # mean cluster size: the exact search inside one costs O(size²) time
SCORE_BLOCK_FLOATS = 32 * 2**20  # one block of in-cluster scores (128 MiB), however unequal the clusters
KMEANS_ITERATIONS = 10


def pair_vectors(query_emb: np.ndarray, positive_emb: np.ndarray) -> np.ndarray:
    """(n, 2·dim) unit vectors whose dot product is the mean of the query and positive cosines."""
    return (np.concatenate([query_emb, positive_emb], axis=1) / np.sqrt(2.0)).astype(np.float32)


def kmeans(points: np.ndarray, k: int, *, seed: int = 0, iterations: int = KMEANS_ITERATIONS) -> np.ndarray:
    """Spherical k-means (cosine) over unit vectors: the cluster of each point. Deterministic for a seed."""
    n = len(points)
    k = max(1, min(k, n))
    if k == 1:
        return np.zeros(n, dtype=np.int64)
    rng = np.random.default_rng(seed)
    centroids = points[rng.choice(n, size=k, replace=False)].copy()
    labels = np.zeros(n, dtype=np.int64)
    for _ in range(iterations):
        for s in range(0, n, 8192):  # an (8192, k) block of scores at a time
            labels[s:s + 8192] = np.argmax(points[s:s + 8192] @ centroids.T, axis=1)
        sums = np.zeros_like(centroids)
        np.add.at(sums, labels, points)
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        empty = norms[:, 0] == 0
        centroids = np.where(empty[:, None], centroids, sums / np.where(norms == 0, 1, norms))
    return labels


def near_duplicates(
    vectors: np.ndarray,
    cluster_on: np.ndarray,
    threshold: float,
    *,
    prior_vectors: np.ndarray | None = None,
    prior_cluster_on: np.ndarray | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Which rows to drop, and the row each matched: (kept_of, similarity).

    kept_of[i] = -1 for a kept row; j >= 0 for a duplicate of prior row j (j < len(prior)) or of this
    batch's row j - len(prior), which is kept. Prior rows (kept rows of earlier sources) are all kept.
    """
    dim = vectors.shape[1] if vectors.ndim == 2 else 0
    prior = prior_vectors if prior_vectors is not None else np.empty((0, dim), np.float32)
    prior_q = prior_cluster_on if prior_cluster_on is not None else np.empty((0, cluster_on.shape[1]), np.float32)
    n, p = len(vectors), len(prior)
    kept_of = np.full(n, -1, dtype=np.int64)
    similarity = np.full(n, np.nan, dtype=np.float32)
    if n == 0:
        return kept_of, similarity
    all_vectors = np.concatenate([prior, vectors]).astype(np.float32)
    labels = kmeans(np.concatenate([prior_q, cluster_on]).astype(np.float32),
                    -(-(n + p) // ROWS_PER_CLUSTER), seed=seed)
    order = np.argsort(labels, kind="stable")  # within a cluster: prior rows first, then this batch's order
    bounds = np.flatnonzero(np.diff(labels[order])) + 1
    for members in np.split(order, bounds):
        kept = members < p
        member_vectors = all_vectors[members]
        step = max(1, SCORE_BLOCK_FLOATS // len(members))
        for start in range(int(kept.sum()), len(members), step):  # prior rows come first and stay kept
            sims = member_vectors[start:start + step] @ member_vectors.T
            for offset, row in enumerate(sims):
                i = start + offset
                best = int(np.argmax(np.where(kept, row, -np.inf))) if kept.any() else -1
                if best >= 0 and row[best] >= threshold:
                    kept_of[members[i] - p] = members[best]
                    similarity[members[i] - p] = row[best]
                else:
                    kept[i] = True
    return kept_of, similarity
