"""`m3e-data eval`: a sentence-transformers model against local C-MTEB / MTEB task folders.

Registered through the `m3e_data.commands` entry point, as `train` is; torch and sentence-transformers load
inside the command only.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from m3e_data.cli.remote import refuse_url


def path_like(value: str) -> bool:
    """A value the user meant as a folder, not a Hub id (owner/name): "./m", "/m", "~/m", "a/b/c", "a\\b"."""
    return value.startswith((".", "/", "~")) or "\\" in value or value.count("/") > 1


@click.command("eval")
@click.option("--model", required=True, metavar="MODEL", help="A sentence-transformers model: local folder or Hub id.")
@click.option("--task", "tasks", required=True, multiple=True, type=click.Path(path_type=Path),
              help="A task folder as downloaded from the Hub (C-MTEB/<Task>, mteb/<Task>); repeatable.")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), callback=refuse_url,
              help="Write {task: {metric: value}} as JSON here.")
@click.option("--device", default=None, help="cpu, cuda, cuda:1, ... (default: the best available).")
@click.option("--batch-size", type=int, default=64, show_default=True, help="Texts per encoding batch.")
def eval_command(model: str, tasks: tuple[Path, ...], out: Path | None, device: str | None, batch_size: int) -> None:
    """Evaluate a model on local C-MTEB / MTEB task folders.

    Retrieval (nDCG@10, MRR@10, Recall@100), pair scoring (Spearman of cosine) and pair classification
    (average precision); the kind of each task is told by its files. Figures are computed with sentence-transformers'
    evaluators (see the README for how they compare with the C-MTEB leaderboard).
    """
    from m3e_data.cli.console import messages

    local = Path(model).expanduser()
    if local.exists() and not local.is_dir():
        raise click.BadParameter(f"{model}: a file, not a model folder", param_hint="--model")
    if not local.exists() and path_like(model):
        raise click.BadParameter(f"{model}: no such folder", param_hint="--model")
    if out is not None and out.is_dir():
        raise click.BadParameter(f"{out}: a folder; give the JSON file to write", param_hint="--out")
    try:
        from m3e_train.evaluate import TaskError, load_task
    except ImportError as exc:
        raise click.ClickException(f"{exc}; install the training extra: pip install 'm3e-data[train]'") from None

    # Every folder is read before the model loads: a mistyped path fails in a second, not after minutes.
    sets = []
    for folder in tasks:
        try:
            task = load_task(folder)
        except TaskError as exc:
            raise click.ClickException(str(exc)) from None
        if any(s.name == task.name for s in sets):
            raise click.ClickException(f"{folder}: a second task named {task.name}; results are keyed by folder name")
        sets.append(task)
        for reason, count in sorted(task.dropped.items()):
            messages.print(f"note: {task.name}: {count} {reason} left out")

    try:
        from m3e_train.evaluate import evaluate
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise click.ClickException(f"{exc}; install the training extra: pip install 'm3e-data[train]'") from None
    import torch

    if device and device.startswith("cuda") and not torch.cuda.is_available():
        raise click.BadParameter(f"{device}: no CUDA device on this machine", param_hint="--device")
    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
    try:
        encoder = SentenceTransformer(str(local) if local.is_dir() else model, device=device,
                                      local_files_only=offline)
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"{model}: cannot load the model: {exc}") from None

    results: dict[str, dict[str, float]] = {}
    for task in sets:
        messages.print(f"{task.name}: {_size(task)}, encoding ...")
        results.update(evaluate(encoder, [task], batch_size=batch_size, progress=True))
    _print_table(sets, results)
    if out is not None:
        from m3e_data.storage.store import atomic_write_json

        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out, results)
        messages.print(f"results: {out}")


def _size(task) -> str:
    from m3e_train.evaluate import IRSet

    if isinstance(task, IRSet):
        return f"retrieval, {len(task.queries)} queries, {len(task.corpus)} passages"
    return f"{task.kind}, {len(task.sentences1)} pairs"


def _print_table(sets: list, results: dict[str, dict[str, float]]) -> None:
    from rich.table import Table

    from m3e_data.cli.console import tables

    table = Table(title="evaluation")
    for column, justify in (("task", "left"), ("kind", "left"), ("metric", "left"), ("value", "right")):
        table.add_column(column, justify=justify)
    for task in sets:
        for i, (metric, value) in enumerate(results[task.name].items()):
            table.add_row(task.name if i == 0 else "", task.kind if i == 0 else "", metric, f"{value:.4f}")
    tables().print(table)
