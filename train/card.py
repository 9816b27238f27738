"""The model card (README.md) of a trained model: the data, sources, licences, hyperparameters, results.

The card is published with the weights, so it names things the way a reader elsewhere can look them up:
a Hub id as is, a local folder by the id its own files give (the Hub cache's `models--OWNER--NAME`
folder, or its card's `model_name`/`model_id`) or else by its name; never by the path on this machine.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub.repocard import metadata_load

# Folder names that say nothing about the model inside (the bundled test model lives in `.../model`, a Hub
# cache snapshot in a commit hash): the parent's name is the better name.
_GENERIC = re.compile(r"^(model|models|st|hf|snapshot|checkpoint(-\d+)?|[0-9a-f]{40})$", re.IGNORECASE)
_HUB_CACHE = re.compile(r"^models--([^/]+?)--(.+)$")


@dataclass(frozen=True)
class BaseModel:
    name: str  # how the card names it
    hub_id: str | None  # for the `base_model` metadata, which the Hub links; None for a local model it cannot


def _front_matter(readme: Path) -> dict[str, Any]:
    """A model card's YAML metadata ({} when there is no card or it is unreadable: the name falls back)."""
    try:
        return metadata_load(readme) or {}
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError):
        return {}


def describe_base_model(model: str) -> BaseModel:
    """How the card names the base model `model` (a Hub id, or a local folder as `train --model` took it)."""
    path = Path(model).expanduser()
    if not path.is_dir():
        return BaseModel(model, model)
    folders = [path.resolve(), *path.resolve().parents]
    for folder in folders[:4]:  # .../models--OWNER--NAME/snapshots/<hash>
        hub = _HUB_CACHE.match(folder.name)
        if hub:
            hub_id = f"{hub.group(1)}/{hub.group(2)}"
            return BaseModel(hub_id, hub_id)
    # A card's `base_model` names the model *it* came from, not itself: only an own id is taken.
    own = _front_matter(path / "README.md")
    for key in ("model_id", "model_name"):
        value = own.get(key)
        if isinstance(value, str) and value.strip():
            value = value.strip()
            return BaseModel(f"{value} (a local model folder)", value if "/" in value else None)
    name = next((f.name for f in folders if f.name and not _GENERIC.match(f.name)), folders[0].name or "model")
    return BaseModel(f"{name} (a local model folder)", None)


def public_origin(data: str) -> str:
    """The training data as the card names it: a Hub id as is, a local folder by its name."""
    path = Path(data).expanduser()
    if not path.exists():
        return data
    return f"{path.resolve().name or 'data'} (a local folder)"


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
    mean_loss: float | None = None,
    final_loss_step: int | None = None,
) -> str:
    """README.md text. `sources` rows: name, rows, heldout, license, commercial, task, kind, dropped.

    `base_model` and `data_origin` as `train` took them (a local path is named, never written out);
    `final_loss`: the last logged loss (the trainer's mean over the last logging interval, ending at
    `final_loss_step`); `mean_loss`: the mean over the whole run, the figure `m3e-data train` prints.
    """
    licences = sorted({s["license"] for s in sources})
    all_commercial = all(s["commercial"] for s in sources)
    base = describe_base_model(base_model)
    origin = public_origin(data_origin)
    front = [
        "---",
        "language: [zh]",
        "library_name: sentence-transformers",
        "pipeline_tag: sentence-similarity",
        "tags: [sentence-transformers, feature-extraction, sentence-similarity, m3e]",
        # The Hub reads base_model as a model id: a local model with none is named in the text only.
        *([f"base_model: {json.dumps(base.hub_id)}"] if base.hub_id else []),
        "---",
    ]
    lines = [
        *front,
        "",
        "# Chinese text-embedding model trained with m3e-data",
        "",
        f"Fine-tuned from {_named(base.name)} on {_named(origin)}, stage `{stage}`, for {steps:,} steps with "
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
    public = {"model": base.name, "base_model": base.name, "data": origin}  # the config's paths, named
    lines += [f"| {k} | {public.get(k, v)} |" for k, v in hyperparameters.items()]
    lines += [
        "",
        "## Evaluation",
        "",
        "Retrieval on held-out rows of each source (queries against their positives and hard negatives) and "
        "on any `--eval` sets. Also in `eval_results.json`; the loss curve is in `loss_curve.json`.",
        "",
    ]
    if after:
        lines += [
            "| set | nDCG@10 before | nDCG@10 after | MRR@10 before | MRR@10 after |",
            "|---|---:|---:|---:|---:|",
        ]
        for name in after:
            b, a = before.get(name, {}), after[name]
            lines.append(
                f"| {name} | {_fmt(b.get('ndcg_at_10'))} | {_fmt(a.get('ndcg_at_10'))} | "
                f"{_fmt(b.get('mrr_at_10'))} | {_fmt(a.get('mrr_at_10'))} |"
            )
    else:
        lines.append(f"No evaluation was run: {_no_eval_reason(sources)}.")
    lines += ["", *_loss_lines(mean_loss, final_loss, final_loss_step, steps), ""]
    return "\n".join(lines)


def _named(name: str) -> str:
    """`name` in code font, a trailing "(a local ...)" note outside it."""
    head, sep, note = name.partition(" (")
    return f"`{head}`" + (f" ({note}" if sep else "")


def _no_eval_reason(sources: list[dict[str, Any]]) -> str:
    if not any(s["heldout"] for s in sources):
        return ("every source was too small to hold rows out (`--heldout-rows`) and no `--eval` set was given, "
                "so there was nothing to score before and after training")
    return "no evaluation set was scored"


def _loss_lines(mean_loss: float | None, final_loss: float | None, final_step: int | None, steps: int) -> list[str]:
    """The two loss figures, each named for what it is: they differ, and the CLI prints the first."""
    out = []
    if mean_loss is not None:
        out.append(f"- Mean training loss over all {steps:,} steps (the figure `m3e-data train` prints): "
                   f"{_fmt(mean_loss)}.")
    if final_loss is not None:
        at = f" (logged at step {final_step:,}, the mean over the steps since the previous log)" if final_step else ""
        out.append(f"- Last logged training loss{at}: {_fmt(final_loss)}; the whole curve is in `loss_curve.json`.")
    return out or ["No training loss was logged."]
