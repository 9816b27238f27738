"""train/ under torchrun: two CPU processes (gloo), sources of different losses in one run, negatives
gathered across processes. A step where one process drew a distillation batch and the other an InfoNCE
one would hang in all_gather; the run must instead finish and write one model folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sentence_transformers")
pytest.importorskip("accelerate")

from m3e_train.synthetic import Topics, corpus_rows, tiny_bert, write_source  # noqa: E402

pytestmark = pytest.mark.slow


def test_two_process_run_with_mixed_losses_finishes(tmp_path):
    topics = Topics(seed=1)
    stage = tmp_path / "build" / "m3e-hq-with-score"
    # --loss distill: rows without negatives train as InfoNCE pairs, rows with scored negatives distil.
    write_source(stage, corpus_rows("alpha", 400, topics=topics, duplicate_every=5, scored=True))  # pairs
    write_source(stage, corpus_rows("gamma", 150, topics=topics, n_negatives=2, scored=True))  # distill
    model = tiny_bert(tmp_path / "base", topics.vocab)
    script = tmp_path / "cli.py"
    script.write_text("from m3e_data.cli.main import main\nmain()\n")
    out = tmp_path / "out"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1",
           "CUDA_VISIBLE_DEVICES": ""}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
           "train", "--data", str(tmp_path / "build"), "--model", str(model), "--out", str(out), "--loss", "distill",
           "--max-steps", "12", "--batch-size", "8", "--max-length", "32", "--heldout-rows", "10",
           "--log-every", "2", "--checkpoint-every", "100", "--lr", "5e-3", "--warmup", "0"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    except subprocess.TimeoutExpired as exc:  # the failure this guards against is a hang
        pytest.fail(f"the two-process run hung: {str(exc.stderr)[-2000:]}")
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads((out / "eval_results.json").read_text())
    assert results["steps"] == 12
    assert results["hyperparameters"]["processes"] == 2
    assert results["hyperparameters"]["global_batch_size"] == 16
    assert {s["kind"] for s in results["sources"]} == {"pairs", "distill"}
    assert results["before"] and results["after"]  # evaluated once, on the main process
    assert (out / "modules.json").is_file() and not (out / "checkpoints").exists()
    assert not list(Path(out).glob(".model.*.tmp"))
