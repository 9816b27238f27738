"""The model card (README.md) of a trained model: the data, sources, licences, hyperparameters, results."""

from __future__ import annotations

import json
from typing import Any


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"


def render_card(
    *,
    base_model: str,
    data_origin: str,
    stage: str,
    sources: list[dict[str, Any]],
    hyperparameters: dict[str, Any],
    before: dict[str, dict[str, float]],
    after: dict[str, dict[str, float]],
    final_loss: float | None,
    steps: int,
) -> str:
    """README.md text. `sources` rows: name, rows, heldout, license, commercial, task, kind, dropped."""
    licences = sorted({s["license"] for s in sources})
    all_commercial = all(s["commercial"] for s in sources)
    front = [
        "---",
        "language: [zh]",
        "library_name: sentence-transformers",
        "pipeline_tag: sentence-similarity",
        "tags: [sentence-transformers, feature-extraction, sentence-similarity, m3e]",
        f"base_model: {json.dumps(base_model)}",
        "---",
    ]
    lines = [
        *front,
        "",
        "# Chinese text-embedding model trained with m3e-data",
        "",
        f"Fine-tuned from `{base_model}` on `{data_origin}` (stage `{stage}`) for {steps:,} steps with "
        "`m3e-data train`.",
        "",
        "```python",
        "from sentence_transformers import SentenceTransformer",
        'model = SentenceTransformer("PATH_TO_THIS_FOLDER")',
        'embeddings = model.encode(["今天天气怎么样", "明天会下雨吗"], normalize_embeddings=True)',
        "```",
        "",
        "## Training data",
        "",
        "| source | training rows | held out | licence | commercial | task | loss | dropped |",
        "|---|---:|---:|---|---|---|---|---|",
    ]
    for s in sources:
        dropped = ", ".join(f"{k} {v:,}" for k, v in sorted(s["dropped"].items())) or "–"
        lines.append(
            f"| {s['name']} | {s['rows']:,} | {s['heldout']:,} | {s['license']} | "
            f"{'yes' if s['commercial'] else 'no'} | {s['task']} | {s['kind']} | {dropped} |"
        )
    lines += [
        "",
        f"Licences of the training data: {', '.join(licences)}. "
        + (
            "Every source is marked as permitting commercial use."
            if all_commercial
            else "**Some sources do not permit commercial use**: the weights inherit their terms; train with "
            "`--commercial-only` for a model built only on commercially usable data."
        ),
        "",
        "## Training procedure",
        "",
        "Each batch comes from a single source, drawn in proportion to source size (temperature-smoothed when "
        "`sampling_temperature` ≠ 1); no text occurs twice in an InfoNCE batch. Pairs train with in-batch "
        "InfoNCE (MultipleNegativesRankingLoss, scale = 1/temperature), rows with hard negatives add them to "
        "the candidates, scored rows train with CoSENT (scale 20).",
        "",
        "| hyperparameter | value |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v} |" for k, v in hyperparameters.items()]
    lines += [
        "",
        "## Evaluation",
        "",
        "Retrieval on held-out rows of each source (queries against their positives and hard negatives) and "
        "on any `--eval` sets. Also in `eval_results.json`; the loss curve is in `loss_curve.json`.",
        "",
        "| set | nDCG@10 before | nDCG@10 after | MRR@10 before | MRR@10 after |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in after:
        b, a = before.get(name, {}), after[name]
        lines.append(
            f"| {name} | {_fmt(b.get('ndcg_at_10'))} | {_fmt(a.get('ndcg_at_10'))} | "
            f"{_fmt(b.get('mrr_at_10'))} | {_fmt(a.get('mrr_at_10'))} |"
        )
    lines += ["", f"Final training loss: {_fmt(final_loss)}.", ""]
    return "\n".join(lines)
