"""`m3e-data train`: the click command. m3e_data loads it through the `m3e_data.commands` entry point.

Nothing heavy is imported here: torch, transformers and sentence-transformers load inside the command, so
`m3e-data --help` works without the training extra.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import click

from m3e_data.cli.preflight import local_or_hub, require_extra
from m3e_data.cli.remote import refuse_url
from m3e_data.cli.vocabulary import names, old_spelling


def one_gpu(device: str | None, environ: dict[str, str]) -> tuple[str | None, str | None]:
    """--device cuda:N for a single-process run, as (device, CUDA_VISIBLE_DEVICES to set or None).

    The transformers trainer places the model on cuda:0 (and spreads a batch over every visible GPU), so
    a chosen GPU is made the only visible one, before CUDA starts, and is then "cuda". An existing
    CUDA_VISIBLE_DEVICES list is indexed, as CUDA itself would. Under torchrun each rank has its own GPU.
    """
    match = re.fullmatch(r"cuda:(\d+)", device or "")
    if match is None or "WORLD_SIZE" in environ:
        return device, None
    index = int(match.group(1))
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible:
        listed = [v.strip() for v in visible.split(",") if v.strip()]
        if index >= len(listed):
            raise click.BadParameter(f"{device}: CUDA_VISIBLE_DEVICES={visible} lists {len(listed)} GPU(s)",
                                     param_hint="--device")
        return "cuda", listed[index]
    return "cuda", str(index)


def _prompts(values: tuple[str, ...]) -> dict[str, str]:
    from m3e_data.schema import TASKS

    parsed: dict[str, str] = {}
    for value in values:
        task, eq, text = value.partition("=")
        if not eq or task not in TASKS:
            raise click.BadParameter(f"{value!r}: expected TASK=TEXT with TASK one of {', '.join(TASKS)}",
                                     param_hint="--prompt")
        parsed[task] = text
    return parsed


@click.command("train")
@old_spelling("--data", "--in", "data")
@old_spelling("--sources", "--only", "only")
@click.option("--in", "data", default=None, metavar="DIR_OR_HUB_ID",
              help="A build folder (m3e-hq-with-score/ is preferred over m3e-hq/), a stage folder, or a Hub dataset "
                   "id (required).")
@click.option("--model", "base", required=True, metavar="BASE", help="Base model: Hub id or local folder.")
@click.option("--out", type=click.Path(path_type=Path), required=True, callback=refuse_url,
              help="The model folder to write.")
@click.option("--epochs", type=float, default=1.0, show_default=True, help="Passes over the training rows.")
@click.option("--max-steps", type=int, default=None, help="Stop after N optimiser steps (overrides --epochs).")
@click.option("--batch-size", type=int, default=32, show_default=True, help="Contrastive batch per device.")
@click.option("--mini-batch-size", type=int, default=None,
              help="GradCache: encode the batch in chunks of N, so the batch is not bounded by activation memory.")
@click.option("--lr", type=float, default=2e-5, show_default=True, help="Peak learning rate (AdamW, linear decay).")
@click.option("--warmup", type=float, default=0.1, show_default=True,
              help="Warm-up: a fraction of the steps when < 1, a number of steps otherwise.")
@click.option("--max-length", type=int, default=512, show_default=True, help="Tokens per text.")
@click.option("--temperature", type=float, default=0.05, show_default=True,
              help="InfoNCE temperature (M3E's released models used 0.01).")
@click.option("--loss", type=click.Choice(["auto", "infonce", "cosent", "distill"]), default="auto",
              show_default=True,
              help="infonce: in-batch + hard negatives; cosent: CoSENT (scale 20) on the rows' scores; distill: KL "
                   "to the teacher scores of mine --score-model over each row's candidates; auto: infonce for "
                   "every source (what benchmarks/bench_quality.py supports; see the README).")
@click.option("--num-negatives", type=int, default=7, show_default=True,
              help="Hard negatives per row at most (0: in-batch negatives only).")
@click.option("--pooling", type=click.Choice(["mean", "cls"]), default=None,
              help="Default: the base model's own pooling; mean (M3E) for a plain transformers model.")
@click.option("--prompt", "prompt", multiple=True, metavar="TASK=TEXT",
              help="Instruction prefix for the queries of sources of TASK, e.g. qa=为这个问题检索答案： (repeatable).")
@click.option("--only", default=None, metavar="NAMES", help="Comma-separated sources to train on (default: all).")
@click.option("--commercial-only", is_flag=True, help="Only rows whose licence permits commercial use.")
@click.option("--max-rows-per-source", type=int, default=None, help="Cap each source at N training rows.")
@click.option("--heldout-rows", type=int, default=200, show_default=True,
              help="Rows held out per source for evaluation (at most a tenth of the source).")
@click.option("--eval", "eval_dirs", multiple=True, type=click.Path(path_type=Path, exists=True, file_okay=False),
              help="A folder in T2Ranking layout (collection.tsv, queries.*.tsv, qrels.*.tsv); repeatable.")
@click.option("--eval-task", "eval_tasks", multiple=True,
              type=click.Path(path_type=Path, exists=True, file_okay=False),
              help="A C-MTEB / MTEB task folder, as `m3e-data eval --task` reads it; repeatable.")
@click.option("--eval-max-queries", type=int, default=1000, show_default=True,
              help="Queries per evaluation set at most (a seeded sample).")
@click.option("--eval-corpus-size", type=int, default=100_000, show_default=True,
              help="Relevant passages plus a random sample up to N (T2Ranking's collection has 2.3M).")
@click.option("--sampling-temperature", type=float, default=1.0, show_default=True,
              help="Source sampling: p ∝ size^(1/T); 1 is proportional to size (M3E), larger is flatter.")
@click.option("--seed", type=int, default=42, show_default=True,
              help="Seed of the held-out split, the batch order and the initialisation of new layers.")
@click.option("--checkpoint-every", type=int, default=500, show_default=True, help="Save a checkpoint every N steps.")
@click.option("--log-every", type=int, default=10, show_default=True, help="Log the loss every N steps.")
@click.option("--resume", is_flag=True, help="Continue from the last checkpoint in OUT/checkpoints.")
@click.option("--keep-checkpoints", is_flag=True, help="Keep OUT/checkpoints after a finished run.")
@click.option("--device", default=None, help="cpu, cuda, cuda:1, ... (default: the best available).")
def train(
    data: str | None, base: str, out: Path, epochs: float, max_steps: int | None, batch_size: int,
    mini_batch_size: int | None, lr: float, warmup: float, max_length: int, temperature: float, loss: str,
    num_negatives: int, pooling: str | None, prompt: tuple[str, ...], only: str | None, commercial_only: bool,
    max_rows_per_source: int | None, heldout_rows: int, eval_dirs: tuple[Path, ...],
    eval_tasks: tuple[Path, ...], eval_max_queries: int,
    eval_corpus_size: int, sampling_temperature: float, seed: int, checkpoint_every: int, log_every: int,
    resume: bool, keep_checkpoints: bool, device: str | None,
) -> None:
    """Train an embedding model on m3e-hq / m3e-hq-with-score (sentence-transformers).

    Runs under torchrun / accelerate launch as well; negatives are then gathered across devices.
    """
    if data is None:
        raise click.UsageError("Missing option '--in': the build folder or Hub dataset to train on")
    require_extra("train", "train")
    local_or_hub(data, "--in", "train")
    local_or_hub(base, "--model", "train")
    device, visible = one_gpu(device, dict(os.environ))
    if visible is not None:  # before anything starts CUDA
        os.environ["CUDA_VISIBLE_DEVICES"] = visible
    try:
        from m3e_train.run import TrainConfig
        from m3e_train.run import train as run_training
    except ImportError as exc:  # the training extra is missing
        raise click.ClickException(f"{exc}; install the training extra: pip install 'm3e-data[train]'") from None

    if mini_batch_size is not None and mini_batch_size > batch_size:
        raise click.BadParameter("must not exceed --batch-size", param_hint="--mini-batch-size")
    config = TrainConfig(
        data=data, model=base, out=out, epochs=epochs, max_steps=max_steps, batch_size=batch_size,
        mini_batch_size=mini_batch_size, lr=lr, warmup=warmup, max_length=max_length, temperature=temperature,
        loss=loss, num_negatives=num_negatives, pooling=pooling, prompts=_prompts(prompt),
        sources=names(only) or None,
        commercial_only=commercial_only, max_rows_per_source=max_rows_per_source, heldout_rows=heldout_rows,
        eval_dirs=list(eval_dirs), eval_tasks=list(eval_tasks), eval_max_queries=eval_max_queries,
        eval_corpus_size=eval_corpus_size,
        sampling_temperature=sampling_temperature, seed=seed, checkpoint_every=checkpoint_every,
        log_every=log_every, resume=resume, keep_checkpoints=keep_checkpoints, device=device,
    )
    try:
        summary = run_training(config)
    except (ValueError, FileNotFoundError, FileExistsError) as exc:
        raise click.ClickException(str(exc)) from None
    if summary:
        _print_summary(summary, out)


def _print_summary(summary: dict, out: Path) -> None:
    """Each evaluation set's figures before and after training, then where the model went."""
    from m3e_data.cli.console import Col, fit_table, messages, table_width, tables

    before, after = summary["before"], summary["after"]
    if after:
        cols = [Col("eval set", fold=False), Col("metric", fold=False), Col("before", number=True),
                Col("after", number=True)]
        rows = []
        for name in [n for n in after if n != "mean"] + (["mean"] if "mean" in after else []):
            for i, (metric, value) in enumerate(after[name].items()):
                was = before.get(name, {}).get(metric, float("nan"))
                rows.append([name if i == 0 else "", metric, f"{was:.4f}", f"{value:.4f}"])
        table = fit_table(cols, rows, table_width(), title="evaluation before and after training")
        tables().print(table)
    else:
        messages.print("no evaluation: every source was too small to hold rows out (--heldout-rows), "
                       "and no --eval or --eval-task")
    loss = summary.get("train_loss")
    messages.print(
        f"model: {out} ({summary['steps']} steps" + (f", mean training loss {loss:.4f}" if loss is not None else "")
        + "; eval_results.json and loss_curve.json beside it)"
    )
