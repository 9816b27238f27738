"""The training driver: rows -> per-source datasets and losses -> SentenceTransformerTrainer -> model folder.

The trainer, checkpoints, resumption, DDP and logging are sentence-transformers' and transformers'; this file
only wires our data, sampler, losses and evaluation into them and writes the model folder atomically.

Layout of OUT (the model folder):
    modules.json, config.json, model.safetensors, ...   the sentence-transformers model (written last)
    README.md                                           model card
    eval_results.json                                   evaluation before and after, per set (m3e_train.evaluate)
    loss_curve.json                                     training loss per logged step
    checkpoints/checkpoint-N/                           while training; removed at the end unless kept
    .m3e-owner.json                                     what train wrote (m3e_data.storage.ownership)

OUT must be new, empty, or a folder train wrote holding nothing else: a user's file in it (a checkpoints/
or 1_Pooling/ of their own, a README.md) is refused before anything is loaded, never overwritten.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from m3e_train.card import render_card
from m3e_train.data import SCORED, TrainData, load_rows, source_of, training_tables
from m3e_train.evaluate import EvalSet, evaluate, heldout_set, load_task, t2ranking_set, with_mean

from m3e_data.storage import ownership
from m3e_data.storage.store import atomic_write_json, ordinary_permissions

log = logging.getLogger("m3e_train")

CHECKPOINTS = "checkpoints"
BEFORE_FILE = "eval_before.json"  # kept beside the checkpoints so a resumed run reports the same baseline
OWNER = "train"  # the marker name of a model folder (m3e_data.storage.ownership)
_SAVE_TMP = ".model."  # prefix of save_model_folder's temp folder inside OUT


def claim_out(out: Path) -> None:
    """Refuse an OUT holding anything train did not write; else record it as train's, checkpoints included.

    A temp folder a killed save left (recorded as train's when it was made) is removed here.
    """
    ownership.check_replaceable(out, OWNER)
    marker = ownership.read_marker(out) or {}
    for tree in marker.get("trees", []):
        if isinstance(tree, str) and tree.startswith(_SAVE_TMP) and "/" not in tree:
            shutil.rmtree(out / tree, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    ownership.mark(out, OWNER, trees=[CHECKPOINTS])


@dataclass
class TrainConfig:
    data: str
    model: str
    out: Path
    epochs: float = 1.0
    max_steps: int | None = None
    batch_size: int = 32
    mini_batch_size: int | None = None
    lr: float = 2e-5
    warmup: float = 0.1  # < 1: a fraction of the steps; >= 1: a number of steps
    max_length: int = 512
    temperature: float = 0.05
    loss: str = "auto"
    num_negatives: int = 7
    pooling: str | None = None  # None: the base model's own pooling, mean for a plain transformers model
    prompts: dict[str, str] = field(default_factory=dict)  # task -> instruction prefix for the query
    sources: list[str] | None = None
    commercial_only: bool = False
    max_rows_per_source: int | None = None
    heldout_rows: int = 200
    eval_dirs: list[Path] = field(default_factory=list)  # T2Ranking layout
    eval_tasks: list[Path] = field(default_factory=list)  # C-MTEB / MTEB task folders (m3e-data eval)
    eval_max_queries: int | None = 1000
    eval_corpus_size: int | None = 100_000
    sampling_temperature: float = 1.0
    seed: int = 42
    checkpoint_every: int = 500
    log_every: int = 10
    resume: bool = False
    keep_checkpoints: bool = False
    eval_batch_size: int = 64
    revision: str | None = None
    device: str | None = None


def load_model(base: str, *, pooling: str | None, max_length: int, revision: str | None = None, device=None):
    """A SentenceTransformer from a Hub id or folder; a plain transformers model gets mean pooling (M3E)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
    model = SentenceTransformer(base, revision=revision, device=device or _local_device(), local_files_only=offline)
    if pooling is not None:
        for name, module in list(model._modules.items()):
            if isinstance(module, Pooling) and module.pooling_mode != pooling:
                model._modules[name] = Pooling(module.embedding_dimension, pooling_mode=pooling)
    model.max_seq_length = max_length
    return model


def _local_device() -> str | None:
    """Under torchrun / accelerate launch, this process's own GPU. Left to sentence-transformers, every
    process would load its copy (and a CUDA context) onto cuda:0 first."""
    import torch

    local_rank = os.environ.get("LOCAL_RANK")
    if local_rank is not None and torch.cuda.is_available():
        return f"cuda:{int(local_rank)}"
    return None


def _pooling_of(model) -> str:
    from sentence_transformers.sentence_transformer.modules import Pooling

    modes = [str(m.pooling_mode) for m in model.modules() if isinstance(m, Pooling)]
    return modes[0] if modes else "unknown"


def eval_sets(config: TrainConfig, data: TrainData) -> list[EvalSet]:
    sets = [
        s
        for name, rows in data.sources.items()
        if (s := heldout_set(name, rows.heldout, config.prompts.get(rows.task))) is not None
    ]
    for folder in config.eval_dirs:
        sets.append(
            t2ranking_set(
                folder, max_queries=config.eval_max_queries, corpus_size=config.eval_corpus_size,
                seed=config.seed, query_prompt=config.prompts.get("qa"),
            )
        )
    for folder in config.eval_tasks:
        task = load_task(folder, query_prompt=config.prompts.get("qa"))
        if any(s.name == task.name for s in sets):
            raise ValueError(f"{folder}: an evaluation set named {task.name} is already there")
        for reason, count in sorted(task.dropped.items()):
            log.warning("%s: %d %s left out", task.name, count, reason)
        sets.append(task)
    return sets


def _to_dataset(table):
    import datasets

    return datasets.Dataset(datasets.table.InMemoryTable(table))


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def train(config: TrainConfig, callbacks: list | None = None) -> dict[str, Any]:
    """Train, evaluate before and after, and write the model folder. Returns the summary it saved.

    `callbacks` are transformers TrainerCallbacks (the benchmark times steps with one).
    """
    import transformers
    from m3e_train.losses import build_loss, world_size
    from m3e_train.sampler import multi_source_sampler, per_source_batch_sampler
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from transformers.trainer_utils import get_last_checkpoint

    out = config.out
    if _is_main_process():  # the other processes of a torchrun launch write nothing into OUT themselves
        claim_out(out)
    ckpt_dir = out / CHECKPOINTS
    last = get_last_checkpoint(str(ckpt_dir)) if ckpt_dir.is_dir() else None
    if last and not config.resume:
        raise FileExistsError(f"{ckpt_dir} holds checkpoints of an earlier run: pass --resume, or remove it")
    transformers.set_seed(config.seed)

    data = load_rows(
        config.data, sources=config.sources, commercial_only=config.commercial_only,
        max_rows_per_source=config.max_rows_per_source, heldout_rows=config.heldout_rows, seed=config.seed,
    )
    tables = training_tables(data, loss=config.loss, num_negatives=config.num_negatives)
    model = load_model(
        config.model, pooling=config.pooling, max_length=config.max_length, revision=config.revision,
        device=config.device,
    )
    if config.prompts:
        model.prompts = dict(config.prompts)

    sets = eval_sets(config, data)
    before_file = ckpt_dir / BEFORE_FILE
    if last and before_file.exists():
        before = json.loads(before_file.read_text(encoding="utf-8"))
    else:
        before = with_mean(evaluate(model, sets, batch_size=config.eval_batch_size)) if _is_main_process() else {}
        if _is_main_process():
            atomic_write_json(before_file, before)

    train_sets = {name: _to_dataset(table) for name, (table, _) in tables.items()}
    losses = {
        name: build_loss(model, kind, temperature=config.temperature, mini_batch_size=config.mini_batch_size)
        for name, (_, kind) in tables.items()
    }
    prompts = {}
    for name, (_, kind) in tables.items():
        text = config.prompts.get(data.sources[source_of(name)].task)
        if text:
            prompts[name] = {("sentence1" if kind == SCORED else "anchor"): text}

    import torch

    # The trainer places the model itself: --device cpu must reach it, and on a machine without CUDA a
    # torchrun / accelerate launch is a multi-CPU (gloo) run only when it is told so.
    use_cpu = config.device == "cpu" or (world_size() > 1 and not torch.cuda.is_available())
    on_gpu = torch.cuda.is_available() and not use_cpu
    args = SentenceTransformerTrainingArguments(
        output_dir=str(ckpt_dir),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps or -1,
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.lr,
        warmup_steps=config.warmup,
        seed=config.seed,
        logging_steps=config.log_every,
        logging_first_step=True,
        save_strategy="steps",
        save_steps=config.checkpoint_every,
        save_total_limit=2,
        report_to="none",
        dataloader_pin_memory=on_gpu,
        use_cpu=use_cpu,
        bf16=bool(on_gpu and torch.cuda.is_bf16_supported()),
        batch_sampler=per_source_batch_sampler,
        multi_dataset_batch_sampler=multi_source_sampler(config.sampling_temperature, group=world_size()),
        prompts=prompts or None,
    )
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=train_sets, loss=losses,
                                         callbacks=callbacks)
    result = trainer.train(resume_from_checkpoint=last if config.resume and last else None)

    summary: dict[str, Any] = {}
    if trainer.is_world_process_zero():
        after = with_mean(evaluate(model, sets, batch_size=config.eval_batch_size))
        curve = [
            {"step": e["step"], "loss": e["loss"], "learning_rate": e.get("learning_rate")}
            for e in trainer.state.log_history
            if "loss" in e
        ]
        hyper = _hyperparameters(config, model, world_size(), result.global_step)
        source_rows = [
            {
                "name": name,
                "rows": rows.train.num_rows,
                "heldout": rows.heldout.num_rows,
                "license": rows.license,
                "commercial": rows.commercial,
                "task": rows.task,
                "kind": "+".join(sorted({k for n, (_, k) in tables.items() if source_of(n) == name})),
                "dropped": dict(rows.dropped),
            }
            for name, rows in data.sources.items()
        ]
        summary = {
            "data": data.origin,
            "stage": data.stage,
            "base_model": config.model,
            "steps": result.global_step,
            "train_loss": result.training_loss,
            "before": before,
            "after": after,
            "sources": source_rows,
            "skipped_sources": data.skipped,
            "hyperparameters": hyper,
        }
        card = render_card(
            base_model=config.model, data_origin=data.origin, stage=data.stage, sources=source_rows,
            hyperparameters=hyper, before=before, after=after,
            final_loss=curve[-1]["loss"] if curve else None, steps=result.global_step,
            mean_loss=result.training_loss, final_loss_step=curve[-1]["step"] if curve else None,
        )
        save_model_folder(
            model, out,
            {
                "README.md": card,
                "eval_results.json": json.dumps(summary, ensure_ascii=False, indent=2) + "\n",
                "loss_curve.json": json.dumps(curve, indent=2) + "\n",
            },
        )
        if not config.keep_checkpoints:
            shutil.rmtree(ckpt_dir, ignore_errors=True)
        ownership.mark(out, OWNER, trees=[CHECKPOINTS])
    return summary


def _hyperparameters(config: TrainConfig, model, processes: int, steps: int) -> dict[str, Any]:
    hyper = {
        k: v
        for k, v in asdict(config).items()
        if k not in ("data", "out", "eval_dirs", "eval_tasks", "resume", "keep_checkpoints", "device", "eval_batch_size")
    }
    hyper["pooling"] = _pooling_of(model)
    hyper["processes"] = processes
    hyper["global_batch_size"] = config.batch_size * processes
    hyper["steps"] = steps
    return {k: (json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else v) for k, v in hyper.items()}


def save_model_folder(model, out: Path, extra_files: dict[str, str]) -> None:
    """Write the model into a temp folder inside OUT, then move it in with modules.json last.

    modules.json is what makes a folder load as a sentence-transformers model, so it is removed first and
    moved in last: a killed save leaves a folder that fails to load rather than a mix of two models.
    """
    out.mkdir(parents=True, exist_ok=True)
    # Files that appeared in OUT while training ran are not overwritten either.
    ownership.check_replaceable(out, OWNER)
    tmp = Path(tempfile.mkdtemp(prefix=_SAVE_TMP, suffix=".tmp", dir=out))
    try:
        ownership.mark(out, OWNER, trees=[CHECKPOINTS, tmp.name])  # a killed save's temp stays train's
        model.save(str(tmp), create_model_card=False)
        for name, text in extra_files.items():
            (tmp / name).write_text(text, encoding="utf-8")
        ordinary_permissions(tmp)  # mkdtemp's 0700 and the weights' 0600 would make the model private
        (out / "modules.json").unlink(missing_ok=True)
        for entry in sorted(tmp.iterdir(), key=lambda p: p.name == "modules.json"):
            target = out / entry.name
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(entry, target)
        ownership.mark(out, OWNER, trees=[CHECKPOINTS])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
