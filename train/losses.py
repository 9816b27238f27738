"""One loss per training set, from what its rows carry; sentence-transformers supplies every loss.

- pairs / rows with hard negatives -> InfoNCE with in-batch negatives (MultipleNegativesRankingLoss; the
  hard negatives ride along as extra columns), scale = 1 / temperature. With --mini-batch-size the same
  loss runs through GradCache (CachedMultipleNegativesRankingLoss): the contrastive batch is no longer
  bounded by activation memory, and the gradients are the same (tests/test_train.py checks it).
- --loss cosent: scored rows (m3e-hq-with-score) -> CoSENTLoss, scale 20 (the CoSENT paper's and uniem's
  roadmap value), one pair per (query, positive) and (query, negative) with its score.
- --loss distill: rows with teacher scores (mine --score-model) -> DistillKLDivLoss over each row's
  candidates (positive + hard negatives): KL from the teacher's softmax (its raw logits, temperature 1) to
  the student's cosines at the InfoNCE temperature, as FlagEmbedding distils a reranker.
- --loss auto is InfoNCE for every source (train/data.py AUTO_LOSS).

Across several processes both InfoNCE losses gather embeddings from every device
(`gather_across_devices=True`), so each query sees world_size × batch negatives.
"""

from __future__ import annotations

import os

from m3e_train.data import DISTILL, SCORED

COSENT_SCALE = 20.0
TEACHER_TEMPERATURE = 1.0  # a reranker's raw logits are already on a softmax scale


def world_size() -> int:
    """Processes in this run, as torchrun / accelerate launch set it."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def build_loss(
    model,
    kind: str,
    *,
    temperature: float = 0.05,
    mini_batch_size: int | None = None,
    gather_across_devices: bool | None = None,
):
    """The loss module for one training set of the given kind (pairs, negatives, scored or distill)."""
    from sentence_transformers.sentence_transformer.losses import (
        CachedMultipleNegativesRankingLoss,
        CoSENTLoss,
        DistillKLDivLoss,
        MultipleNegativesRankingLoss,
    )
    from sentence_transformers.util import pairwise_cos_sim

    if temperature <= 0:
        raise ValueError("temperature must be > 0")
    if kind == SCORED:
        return CoSENTLoss(model, scale=COSENT_SCALE)
    if kind == DISTILL:
        return DistillKLDivLoss(model, similarity_fct=pairwise_cos_sim, student_temperature=temperature,
                                teacher_temperature=TEACHER_TEMPERATURE)
    gather = world_size() > 1 if gather_across_devices is None else gather_across_devices
    if mini_batch_size:
        return CachedMultipleNegativesRankingLoss(
            model, scale=1.0 / temperature, mini_batch_size=mini_batch_size, gather_across_devices=gather
        )
    return MultipleNegativesRankingLoss(model, scale=1.0 / temperature, gather_across_devices=gather)
