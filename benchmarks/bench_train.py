"""Benchmark train/: step throughput against a plain sentence-transformers script, and batch size vs memory.

    python benchmarks/bench_train.py                 # CPU: throughput + largest batch in 2 GB (peak RSS)
    python benchmarks/bench_train.py --quick         # fewer steps, smaller sweep
    python benchmarks/bench_train.py --gpu-only      # on CUDA: m3e-small-sized run (tokens/s) + memory sweep

1. Pairs/s of `m3e_train.run.train` (our data layer: Parquet -> per-source datasets -> single-source
   no-duplicate batches -> loss router) against a plain SentenceTransformerTrainer script on the same rows
   (one Dataset, NO_DUPLICATES batches, the same MultipleNegativesRankingLoss, model, batch and length),
   interleaved in the same process, median of the repeats. The intervals between optimiser step ends after
   a warm-up are timed (a TrainerCallback): each holds fetching and collating the batch (the data layer)
   and the step itself; evaluation and loading are excluded from both.
2. The largest batch (pairs) whose training step fits a memory budget, plain InfoNCE vs GradCache
   (CachedMultipleNegativesRankingLoss, mini-batch 32): one subprocess per batch size, peak RSS on CPU
   (`ru_maxrss`), torch.cuda.max_memory_allocated on CUDA.
3. On CUDA only: a short run of a moka-ai/m3e-small-sized BERT (random weights, nothing downloaded:
   vocab 21128, hidden 512, 4 layers, 8 heads, intermediate 2048, max position 512), pairs/s and tokens/s.

No network is used: the model is a random BERT over a synthetic vocabulary (m3e_train.synthetic).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TQDM_DISABLE", "1")

# The CPU benchmark model: big enough that the step dominates, small enough for a 2-core machine.
CPU_MODEL = {"hidden": 256, "layers": 4, "heads": 4, "intermediate": 1024, "max_position": 128}
# moka-ai/m3e-small's shape (a 4-layer, 512-wide Chinese RoBERTa); random weights.
M3E_SMALL = {"hidden": 512, "layers": 4, "heads": 8, "intermediate": 2048, "max_position": 512, "vocab": 21128}


def _corpus(root: Path, rows: int, vocab_size: int | None = None):
    from m3e_train.synthetic import Topics, corpus_rows, write_source

    topics = Topics(topics=120, fillers=200, seed=0)
    stage = root / "build" / "m3e-hq"
    write_source(stage, corpus_rows("src_a", rows * 2 // 3, topics=topics))
    write_source(stage, corpus_rows("src_b", rows // 3, topics=topics))
    vocab = topics.vocab
    if vocab_size:
        from m3e_train.synthetic import SPECIAL_TOKENS, charset

        vocab = charset(vocab_size - len(SPECIAL_TOKENS))
    return root / "build", vocab


def _model(root: Path, vocab: list[str], shape: dict) -> Path:
    from m3e_train.synthetic import tiny_bert

    return tiny_bert(root / "base", vocab, hidden=shape["hidden"], layers=shape["layers"], heads=shape["heads"],
                     intermediate=shape["intermediate"], max_position=shape["max_position"])


class StepTimer:
    """A TrainerCallback that records the wall time between consecutive optimiser step ends after `warmup`
    steps: each interval holds the batch's fetch and collation (the data layer, which the trainer runs
    before on_step_begin) as well as forward, backward and the optimiser."""

    def __new__(cls, warmup: int):
        from transformers import TrainerCallback

        class _Timer(TrainerCallback):
            def __init__(self) -> None:
                self.warmup, self.times, self.last = warmup, [], None

            def on_step_end(self, args, state, control, **kwargs):
                now = time.perf_counter()
                if state.global_step > self.warmup and self.last is not None:
                    self.times.append(now - self.last)
                self.last = now

        return _Timer()


def run_ours(build: Path, model: Path, out: Path, *, batch: int, steps: int, warmup: int, max_length: int) -> float:
    from m3e_train.run import TrainConfig, train

    timer = StepTimer(warmup)
    config = TrainConfig(
        data=str(build), model=str(model), out=out, max_steps=steps + warmup, batch_size=batch, lr=1e-4,
        warmup=0.0, max_length=max_length, heldout_rows=0, checkpoint_every=10**6, log_every=10**6,
    )
    train(config, callbacks=[timer])
    return batch * len(timer.times) / sum(timer.times)


def run_plain(build: Path, model: Path, out: Path, *, batch: int, steps: int, warmup: int, max_length: int) -> float:
    """The script a user would write with sentence-transformers alone, on the same rows."""
    import pyarrow.parquet as pq
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    anchors, positives = [], []
    for f in sorted(build.glob("m3e-hq/*/part-*.parquet")):
        t = pq.read_table(f, columns=["query", "positive"])
        anchors += t["query"].to_pylist()
        positives += t["positive"].to_pylist()
    ds = Dataset.from_dict({"anchor": anchors, "positive": positives})
    st = SentenceTransformer(str(model))
    st.max_seq_length = max_length
    timer = StepTimer(warmup)
    import torch

    args = SentenceTransformerTrainingArguments(
        output_dir=str(out), max_steps=steps + warmup, per_device_train_batch_size=batch, learning_rate=1e-4,
        save_strategy="no", report_to="none", logging_steps=10**6, batch_sampler=BatchSamplers.NO_DUPLICATES,
        dataloader_pin_memory=torch.cuda.is_available(),
        bf16=bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported()),
    )
    trainer = SentenceTransformerTrainer(model=st, args=args, train_dataset=ds,
                                         loss=MultipleNegativesRankingLoss(st, scale=20.0), callbacks=[timer])
    trainer.train()
    return batch * len(timer.times) / sum(timer.times)


def mean_tokens(build: Path, model: Path, max_length: int, n: int = 2000) -> float:
    import pyarrow.parquet as pq
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(model), device="cpu")
    t = pq.read_table(sorted(build.glob("m3e-hq/*/part-*.parquet"))[0], columns=["query", "positive"]).slice(0, n)
    texts = t["query"].to_pylist() + t["positive"].to_pylist()
    enc = st.tokenizer(texts, truncation=True, max_length=max_length)
    return sum(len(ids) for ids in enc["input_ids"]) / len(texts)


def throughput(root: Path, build: Path, model: Path, *, batch: int, steps: int, warmup: int, max_length: int,
               repeats: int) -> dict:
    ours, plain = [], []
    for r in range(repeats):  # interleaved, so contention from other jobs hits both alike
        ours.append(run_ours(build, model, root / f"ours{r}", batch=batch, steps=steps, warmup=warmup,
                             max_length=max_length))
        plain.append(run_plain(build, model, root / f"plain{r}", batch=batch, steps=steps, warmup=warmup,
                               max_length=max_length))
    o, p = statistics.median(ours), statistics.median(plain)
    tokens = mean_tokens(build, model, max_length) * 2  # two texts per pair
    return {"ours_pairs_per_s": o, "plain_pairs_per_s": p, "ratio": o / p, "ours_runs": ours, "plain_runs": plain,
            "tokens_per_s_ours": o * tokens, "mean_tokens_per_pair": tokens}


_STEP_CHILD = r"""
import json, os, resource, sys, torch
from sentence_transformers import SentenceTransformer
from m3e_train.losses import build_loss
from m3e_train.data import PAIRS
model_dir, batch, mini, max_length, device = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
torch.manual_seed(0)
st = SentenceTransformer(model_dir, device=device)
st.max_seq_length = max_length
st.train()
loss = build_loss(st, PAIRS, mini_batch_size=mini or None)
# Texts at full length: the worst case a batch can hit.
a = ["".join(chr(0x4E00 + (i * 7 + j) % 400) for j in range(max_length)) for i in range(batch)]
p = ["".join(chr(0x4E00 + (i * 11 + j) % 400) for j in range(max_length)) for i in range(batch)]
opt = torch.optim.AdamW(st.parameters(), lr=1e-5)
if device.startswith("cuda"):
    torch.cuda.reset_peak_memory_stats()
for _ in range(2):
    feats = [{k: (v.to(device) if torch.is_tensor(v) else v) for k, v in st.preprocess(t).items()} for t in (a, p)]
    value = loss(feats, None)
    value.backward()
    opt.step(); opt.zero_grad()
peak = torch.cuda.max_memory_allocated() if device.startswith("cuda") else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"peak_bytes": peak}))
"""


def fits(model: Path, batch: int, mini: int, max_length: int, device: str, budget: int, timeout: int) -> tuple[bool, float | None]:
    cmd = [sys.executable, "-c", _STEP_CHILD, str(model), str(batch), str(mini), str(max_length), device]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, None
    if proc.returncode != 0:  # out of memory (CUDA OOM, or killed)
        return False, None
    peak = json.loads(proc.stdout.strip().splitlines()[-1])["peak_bytes"]
    return peak <= budget, peak


def largest_batch(model: Path, *, mini: int, max_length: int, device: str, budget: int, start: int, cap: int,
                  timeout: int) -> dict:
    batch, best, peaks = start, None, {}
    while batch <= cap:
        ok, peak = fits(model, batch, mini, max_length, device, budget, timeout)
        peaks[batch] = None if peak is None else round(peak / 2**20)
        if not ok:
            break
        best = batch
        batch *= 2
    return {"largest_batch": best, "hit_cap": best == cap, "peak_mib_by_batch": peaks}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--gpu-only", action="store_true", help="Only the CUDA parts.")
    parser.add_argument("--budget-mib", type=int, default=None, help="Memory budget (CPU: 2048, CUDA: 8192).")
    args = parser.parse_args()

    import torch

    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    report: dict = {"device": torch.cuda.get_device_name(0) if cuda else f"cpu ({os.cpu_count()} cores)",
                    "torch_threads": torch.get_num_threads(), "loadavg_before": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        root = Path(tmp)
        if not args.gpu_only:
            build, vocab = _corpus(root / "cpu", rows=3000)
            model = _model(root / "cpu", vocab, CPU_MODEL)
            steps = 8 if args.quick else 20
            report["model"] = CPU_MODEL
            report["throughput"] = {"batch": 32, "max_length": 64, "timed_steps": steps, **throughput(
                root / "cpu", build, model, batch=32, steps=steps, warmup=3, max_length=64,
                repeats=1 if args.quick else 2)}
            budget = (args.budget_mib or (8192 if cuda else 2048)) * 2**20
            cap = 512 if args.quick else 4096
            report["memory"] = {"budget_mib": budget // 2**20, "max_length": 128, "measure": "peak RSS" if not cuda
                                else "torch.cuda.max_memory_allocated"}
            for name, mini in (("plain", 0), ("gradcache_mini32", 32)):
                report["memory"][name] = largest_batch(model, mini=mini, max_length=128, device=device,
                                                       budget=budget, start=16, cap=cap, timeout=300)
                print(json.dumps({name: report["memory"][name]}), flush=True)
        if cuda:
            build, vocab = _corpus(root / "gpu", rows=20000, vocab_size=M3E_SMALL["vocab"])
            model = _model(root / "gpu", vocab, M3E_SMALL)
            report["m3e_small_gpu"] = {"config": M3E_SMALL, "batch": 128, "max_length": 256, **throughput(
                root / "gpu", build, model, batch=128, steps=30, warmup=5, max_length=256, repeats=2)}
            budget = (args.budget_mib or 8192) * 2**20
            report["m3e_small_gpu"]["memory"] = {
                name: largest_batch(model, mini=mini, max_length=256, device="cuda", budget=budget, start=64,
                                    cap=65536, timeout=300)
                for name, mini in (("plain", 0), ("gradcache_mini128", 128))
            }
        else:
            report["m3e_small_gpu"] = "skipped: no CUDA device"
    report["loadavg_after"] = os.getloadavg()
    report["max_rss_mib_parent"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
