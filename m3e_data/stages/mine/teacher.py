"""Teacher scores: a cross-encoder re-scores each row's (query, positive) and (query, negative) pairs.

The bi-encoder chooses the negatives; the cross-encoder (a bge-reranker, say) only replaces the scores,
as FlagEmbedding's distillation data carries them. Scores are the model's raw outputs (no sigmoid): the
logits a reranker is trained on, which distillation losses turn into distributions themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

ScoreFn = Callable[[list[tuple[str, str]]], np.ndarray]


def public_name(model: str) -> str:
    """The score model as a reader of a release may see it: a local folder by its name only."""
    from m3e_data.stages.publish.hub_stage import public_model_name

    return public_model_name(model, "local" if Path(model).exists() else None)


def score_meaning(model: str, revision: str | None) -> str:
    at = f"@{revision}" if revision else ""
    return f"cross-encoder {public_name(model)}{at} raw logit (no activation; higher = more relevant)"


def load_cross_encoder(model: str, *, revision: str | None = None, device: str | None = None,
                       batch_size: int = 64, max_length: int = 512) -> ScoreFn:
    """A scoring function over (query, text) pairs backed by sentence-transformers' CrossEncoder."""
    import torch
    from sentence_transformers import CrossEncoder

    encoder = CrossEncoder(model, revision=revision, device=device, max_length=max_length)

    def score(pairs: list[tuple[str, str]]) -> np.ndarray:
        if not pairs:
            return np.empty(0, dtype=np.float32)
        out = encoder.predict(pairs, batch_size=batch_size, show_progress_bar=False,
                              activation_fn=torch.nn.Identity(), convert_to_numpy=True)
        return np.asarray(out, dtype=np.float32).reshape(-1)

    return score


def rescore(table: pa.Table, score: ScoreFn) -> pa.Table:
    """The rows with positive_score and negative_scores replaced by the teacher's, in one batch of pairs."""
    queries = table.column("query").to_pylist()
    negatives = table.column("negatives").combine_chunks()
    counts = pc.fill_null(pc.list_value_length(negatives), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    flat = pc.list_flatten(negatives).to_pylist()
    parents = np.repeat(np.arange(len(queries)), counts)
    pairs = list(zip(queries, table.column("positive").to_pylist(), strict=True))
    pairs += [(queries[r], t) for r, t in zip(parents, flat, strict=True)]
    scores = score(pairs)
    offsets = np.zeros(len(counts) + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    columns = {
        "positive_score": pa.array(scores[: len(queries)], type=pa.float32()),
        "negative_scores": pa.ListArray.from_arrays(pa.array(offsets, pa.int32()),
                                                    pa.array(scores[len(queries):], type=pa.float32())),
    }
    for name, values in columns.items():
        i = table.schema.get_field_index(name)
        table = table.set_column(i, table.schema.field(name), values.cast(table.schema.field(name).type))
    return table
