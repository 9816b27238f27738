"""Scale on one machine: normalize and m3e-hq at 1M and 4M rows, and mining on a tiny model, local vs Ray.

    python benchmarks/bench_scale.py --tmp /tmp/scale --keep --json scale.json      # 1M and 4M (an hour+)
    python benchmarks/bench_scale.py --sizes 100000 --cases normalize:local,normalize:ray2 --tmp /tmp/s --keep
    python benchmarks/bench_scale.py --table scale.json [mine.json]   # the Markdown table of saved runs

Input: four raw sources in the layouts their recipes read (news2016zh and webtext2019zh JSON lines,
zhihu_kol and cmrc2018 Parquet shards), about a quarter of the rows each, whose texts are benchmarks/
corpus.py's (Zipf-weighted words, realistic lengths, 20% planted near copies), generated in chunks of
CHUNK rows (copies are planted within a chunk). Written once per size under --tmp and reused with --keep.

Every case is a fresh `m3e-data` subprocess: `build --no-hq` (normalize), `hq` on a normalized OUT (its
cache and outputs removed first) and `mine` (MINE_PAIRS pairs, a random 2-layer 32-dim BERT, --no-cache).
Executors: `local` (normalize: one process; hq: its default pool of 2 processes; mine: one process),
`ray1` / `ray2`: a Ray head started for the case with `ray start --num-cpus 1|2` (its own --temp-dir) and
joined with --ray-address; its start is timed apart, since `wall - start` is the fair overhead.

Figures: wall s, Ray start s, CPU s of the whole tree (the driver's from getrusage, Ray's processes' from
psutil: they are not the driver's children), the peak of the tree's summed PSS and each Ray worker's own
peak PSS (psutil every 0.2 s; PSS shares the object store's pages fairly), and the same-answer check: rows
out and an order-free checksum of the ids equal to the local executor's. The machine is shared, so CPU
seconds are the load-robust figure; the load average is printed with each case.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
import corpus as C  # noqa: E402

CHUNK = 500_000  # rows generated at a time: corpus.generate holds ~2.5 KB a row
MINE_PAIRS = 20_000
SAMPLE_S = 0.2
# Ray 2.60's `ray start` turns token authentication on when ~/.ray/auth_token exists, but a driver joining by
# address only sends the token when told to: the head and every driver get the same mode.
RAY_ENV = {"RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0"}
STAGES = ("normalize", "hq", "mine")
# ray2 before ray1: local vs ray2 is the comparison on 2 cores. local1 is hq with --workers 1, Ray with 1 worker's
# like for like (local hq is a pool of 2 processes); other stages are one local process anyway.
EXECUTORS = ("local", "ray2", "ray1", "local1")
DEFAULT_CASES = tuple(f"{s}:{e}" for s in STAGES for e in EXECUTORS if e != "local1" or s == "hq")
BASELINE = {"ray1": "local1"}  # a Ray case's overhead is against this local case where it ran, else local's
# corpus.py's four sources, each written in one real source's upstream layout.
RAW = {"bench_a": "news2016zh", "bench_b": "webtext2019zh", "bench_c": "zhihu_kol", "bench_d": "cmrc2018"}
RECIPES = ",".join(RAW.values())
COMPLETE = ".complete.json"


# --- raw sources in their upstream layouts


class RawWriter:
    """Appends rows to the four sources' upstream files, one chunk after another."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.count = dict.fromkeys(RAW.values(), 0)
        self._files: dict[str, Any] = {}
        self._parquet: dict[str, pq.ParquetWriter] = {}

    def _fh(self, rel: str) -> Any:
        if rel not in self._files:
            path = self.root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            self._files[rel] = path.open("w", encoding="utf-8")
        return self._files[rel]

    def _table(self, rel: str, table: pa.Table) -> None:
        if rel not in self._parquet:
            path = self.root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            self._parquet[rel] = pq.ParquetWriter(path, table.schema)
        if table.num_rows:
            self._parquet[rel].write_table(table, row_group_size=50_000)

    def add(self, queries: list[str], positives: list[str], source: str) -> None:
        start = self.count[source]
        self.count[source] += len(queries)
        idx = np.arange(start, start + len(queries))
        getattr(self, f"_{source}")(queries, positives, idx)

    def _news2016zh(self, queries: list[str], positives: list[str], idx: np.ndarray) -> None:
        """new2016zh/news2016zh_{train,valid}.json: one article a line (a tenth of them in valid)."""
        for q, p, i in zip(queries, positives, idx.tolist(), strict=True):
            name = "valid" if i % 10 == 9 else "train"
            self._fh(f"news2016zh/new2016zh/news2016zh_{name}.json").write(json.dumps(
                {"news_id": f"{610000000 + i}", "keywords": q[:4], "title": q, "desc": p[:20],
                 "source": "示例新闻网", "time": "03-22 12:00", "content": p}, ensure_ascii=False) + "\n")

    def _webtext2019zh(self, queries: list[str], positives: list[str], idx: np.ndarray) -> None:
        """webtext2019zh/web_text_zh_{train,valid,testa}.json: one reply a line."""
        for q, p, i in zip(queries, positives, idx.tolist(), strict=True):
            name = "valid" if i % 20 == 18 else "testa" if i % 20 == 19 else "train"
            self._fh(f"webtext2019zh/web_text_zh_{name}.json").write(json.dumps(
                {"qid": 65000000 + i, "title": q, "desc": "", "topic": "生活", "star": i % 9, "content": p,
                 "answer_id": 650000000 + i, "answerer_tags": ""}, ensure_ascii=False) + "\n")

    def _zhihu_kol(self, queries: list[str], positives: list[str], idx: np.ndarray) -> None:
        """data/train-0000k-of-00005-<hash>.parquet: INSTRUCTION, RESPONSE, SOURCE, METADATA (a JSON string)."""
        shard = idx % 5
        for k in range(5):
            rows = np.flatnonzero(shard == k).tolist()
            meta = [json.dumps({"question_id": 30000000 + int(idx[r]), "answer_id": 40000000 + int(idx[r]),
                                "url": f"https://www.zhihu.com/question/{30000000 + int(idx[r])}",
                                "upvotes": f"赞同 {int(idx[r]) % 300}",
                                "answer_creation_time": "2022-05-01T08:00:00.000Z"}) for r in rows]
            self._table(f"zhihu_kol/data/train-{k:05d}-of-00005-{0x5EED0 + k:016x}.parquet", pa.table({
                "INSTRUCTION": [queries[r] for r in rows], "RESPONSE": [positives[r] for r in rows],
                "SOURCE": ["Zhihu"] * len(rows), "METADATA": meta}))

    def _cmrc2018(self, queries: list[str], positives: list[str], idx: np.ndarray) -> None:
        """data/{train,validation,test}-00000-of-00001.parquet: id, context, question, answers (the Hub's)."""
        split = np.where(idx % 10 == 8, 1, np.where(idx % 10 == 9, 2, 0))
        answer = pa.struct([("text", pa.list_(pa.string())), ("answer_start", pa.list_(pa.int32()))])
        for k, (name, tag) in enumerate((("train", "TRAIN"), ("validation", "DEV"), ("test", "TRIAL"))):
            rows = np.flatnonzero(split == k).tolist()
            self._table(f"cmrc2018/data/{name}-00000-of-00001.parquet", pa.table({
                "id": [f"{tag}_{int(idx[r])}_QUERY_0" for r in rows],
                "context": [positives[r] for r in rows], "question": [queries[r] for r in rows],
                "answers": pa.array([{"text": [positives[r][:6]], "answer_start": [0]} for r in rows], answer),
            }))

    def close(self) -> None:
        for fh in self._files.values():
            fh.close()
        for writer in self._parquet.values():
            writer.close()


def make_sources(root: Path, n: int, seed: int = 0) -> dict[str, int]:
    """The four raw sources with n rows in all under root (reused when complete); rows per source."""
    done = root / COMPLETE
    if done.exists():
        return json.loads(done.read_text())
    shutil.rmtree(root, ignore_errors=True)
    writer = RawWriter(root)
    try:
        for k, start in enumerate(range(0, n, CHUNK)):
            chunk = C.generate(min(CHUNK, n - start), seed=seed + k)
            src = np.asarray(chunk.source)
            for bench, name in RAW.items():
                rows = np.flatnonzero(src == bench).tolist()
                writer.add([chunk.queries[i] for i in rows], [chunk.positives[i] for i in rows], name)
    finally:
        writer.close()
    done.write_text(json.dumps(writer.count))
    return writer.count


# --- the mining input and model


def make_mine_input(root: Path, pairs: int) -> tuple[Path, Path, int]:
    """OUT/m3e-hq/<source>/ of `pairs` corpus pairs and a random tiny BERT knowing their characters;
    (input folder, model folder, unique texts to encode)."""
    from m3e_data.schema import UNIFIED_SCHEMA
    from m3e_data.storage.store import SUCCESS, PartWriter

    hq, model = root / "m3e-hq", root / "tiny-bert"
    chunk = C.generate(pairs, seed=7)
    texts = len(set(chunk.queries) | set(chunk.positives))
    if (root / COMPLETE).exists():
        return hq, model, texts
    shutil.rmtree(root, ignore_errors=True)
    src = np.asarray(chunk.source)
    for name in RAW:
        rows = np.flatnonzero(src == name).tolist()
        m = len(rows)
        folder = hq / name
        folder.mkdir(parents=True)
        writer = PartWriter(folder)
        writer.write(pa.table({
            "id": [f"{name}/train/{i}" for i in rows], "source": [name] * m, "split": ["train"] * m,
            "query": [chunk.queries[i] for i in rows], "positive": [chunk.positives[i] for i in rows],
            "negatives": pa.array([[]] * m, pa.list_(pa.string())), "positive_score": pa.nulls(m, pa.float32()),
            "negative_scores": pa.nulls(m, pa.list_(pa.float32())), "task": ["qa"] * m,
            "homogeneous": [False] * m, "domain": ["colloquial"] * m, "license": ["synthetic"] * m,
            "commercial": [True] * m,
        }, schema=UNIFIED_SCHEMA))
        writer.finish()
        (folder / SUCCESS).write_text(json.dumps({"rows": m}))
    tiny_bert(model, chunk.queries + chunk.positives)
    (root / COMPLETE).write_text("{}")
    return hq, model, texts


def tiny_bert(folder: Path, texts: list[str]) -> None:
    """A random 2-layer, 32-dim BERT whose vocabulary is the texts' characters, saved like a Hub model."""
    import torch
    import transformers

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(set("".join(texts)) - {" "})]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    transformers.BertTokenizer(vocab=str(folder / "vocab.txt")).save_pretrained(folder)
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=128)
    transformers.BertModel(config).save_pretrained(folder)


# --- a Ray head of our own, and sampling processes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_roots(temp_dir: Path) -> list[Any]:
    """The processes of the Ray head under temp_dir (gcs, raylet, monitors: their command lines name it).
    Other engineers' Ray clusters on this machine are left alone: `ray stop` would end them too."""
    import psutil

    roots = []
    for p in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if any(str(temp_dir) in arg for arg in p.info["cmdline"] or ()):
                roots.append(p)
    return roots


def _tree(roots: list[Any]) -> list[Any]:
    import psutil

    seen: dict[int, Any] = {}
    for root in roots:
        with contextlib.suppress(psutil.Error):
            for p in [root, *root.children(recursive=True)]:
                seen.setdefault(p.pid, p)
    return list(seen.values())


@dataclass
class RayHead:
    address: str
    start_s: float
    temp_dir: Path
    roots: list[Any] = field(default_factory=list)


@contextlib.contextmanager
def ray_head(num_cpus: int) -> Iterator[RayHead]:
    """`ray start --head --num-cpus N` on a free port with its own temp dir; its processes ended by pid after."""
    import psutil

    temp_dir = Path(tempfile.mkdtemp(prefix="bsr", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    port = _free_port()
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", f"--port={port}", f"--num-cpus={num_cpus}",
         "--num-gpus=0", "--node-ip-address=127.0.0.1", "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp_dir}",
         f"--object-store-memory={2 * 2**30}"],
        capture_output=True, text=True, env={**os.environ, **RAY_ENV},
    )
    head = RayHead(f"127.0.0.1:{port}", time.perf_counter() - t0, temp_dir)
    try:
        if proc.returncode:
            raise RuntimeError(f"ray start failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
        head.roots = _ray_roots(temp_dir)
        yield head
    finally:
        procs = _tree(head.roots or _ray_roots(temp_dir))
        for p in procs:
            with contextlib.suppress(psutil.Error):
                p.send_signal(signal.SIGTERM)
        _, alive = psutil.wait_procs(procs, timeout=10)
        for p in alive:
            with contextlib.suppress(psutil.Error):
                p.kill()
        shutil.rmtree(temp_dir, ignore_errors=True)


def _cpu(p: Any) -> float:
    t = p.cpu_times()
    return t.user + t.system + t.children_user + t.children_system


def _is_worker(p: Any) -> bool:
    cmd = p.cmdline()
    return bool(cmd) and (cmd[0].startswith("ray::") or any("default_worker.py" in a for a in cmd))


class Sampler:
    """Every SAMPLE_S: the summed PSS of the driver's tree and the Ray head's, each Ray worker's own PSS, and
    each Ray process's CPU seconds (the last reading of a process that exits counts)."""

    def __init__(self, driver: Any, ray_roots: list[Any]) -> None:
        self.driver, self.ray_roots = driver, ray_roots
        self.peak = 0
        self.worker_peak: dict[int, int] = {}
        self.ray_cpu: dict[int, float] = {}
        self.ray_cpu0 = {p.pid: _cpu(p) for p in _tree(ray_roots)}  # before the case: the start's own CPU
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        import psutil

        total = 0
        ray_procs = {p.pid for p in _tree(self.ray_roots)}
        for p in _tree([self.driver, *self.ray_roots]):
            try:
                info = p.memory_full_info()
                mem = getattr(info, "pss", info.rss)
                total += mem
                if p.pid in ray_procs:
                    self.ray_cpu[p.pid] = _cpu(p)
                    if _is_worker(p):
                        self.worker_peak[p.pid] = max(self.worker_peak.get(p.pid, 0), mem)
            except psutil.Error:  # a process that just exited
                continue
        self.peak = max(self.peak, total)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(SAMPLE_S)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()  # Ray's processes are still up: their final CPU readings

    def ray_cpu_s(self) -> float:
        return sum(cpu - self.ray_cpu0.get(pid, 0.0) for pid, cpu in self.ray_cpu.items())


# --- one case


def m3e_data() -> list[str]:
    script = Path(sys.executable).parent / "m3e-data"
    return [str(script)] if script.exists() else [sys.executable, "-m", "m3e_data.cli.main"]


def answer(folder: Path) -> tuple[int, int]:
    """Rows and an order-free checksum of the ids (the sum of their xxhash64 mod 2^64) of every source's
    Parquet under folder (hidden folders, e.g. rejects, left out)."""
    files = [p for p in sorted(folder.glob("*/*.parquet")) if not p.parent.name.startswith(".")]
    if not files:
        return 0, 0
    ids = pl.concat([pl.read_parquet(p, columns=["id"]) for p in files])["id"]
    return len(ids), int(ids.hash(seed=0).to_numpy().sum(dtype=np.uint64))  # uint64 sums wrap: mod 2^64


def run_command(argv: list[str], head: RayHead | None, log: Path) -> dict[str, Any]:
    """argv in a subprocess, sampled; wall s, CPU s (driver + Ray processes), peaks."""
    import psutil

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with log.open("w") as out:
        child = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                 env={**os.environ, **RAY_ENV, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
        with Sampler(psutil.Process(child.pid), head.roots if head else []) as sampler:
            child.wait()
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if child.returncode:
        raise RuntimeError(f"{' '.join(argv)} failed (exit {child.returncode}); see {log}:\n"
                           + log.read_text()[-3000:])
    driver_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    workers = sampler.worker_peak
    return {"wall_s": round(wall, 1), "cpu_s": round(driver_cpu + sampler.ray_cpu_s(), 1),
            "driver_cpu_s": round(driver_cpu, 1), "peak_pss_mb": round(sampler.peak / 2**20),
            "worker_peak_pss_mb": round(max(workers.values()) / 2**20) if workers else None,
            "ray_workers": len(workers) if head else None}


def _clean_hq(out: Path) -> None:
    for stale in (out / ".cache", out / "m3e-hq", out / "rejects", out / ".rejects"):
        shutil.rmtree(stale, ignore_errors=True)


def argv_for(stage: str, paths: dict[str, Path], executor: str, head: RayHead | None) -> list[str]:
    ray = ["--executor", "ray", "--ray-address", head.address] if head else ["--executor", "local"]
    if executor == "local1" and stage == "hq":
        ray += ["--workers", "1"]
    if stage == "normalize":
        return [*m3e_data(), "build", "--sources", str(paths["src"]), "--out", str(paths["out"]), "--recipe", RECIPES,
                "--no-hq", *ray]
    if stage == "hq":
        return [*m3e_data(), "hq", str(paths["out"]), *ray]
    return [*m3e_data(), "mine", "--in", str(paths["in"]), "--out", str(paths["out"]), "--model", str(paths["model"]),
            # A random model scores every candidate about as high as the positive: the default 5% margin would
            # drop them all; no margin lets it mine (and the negative selection run).
            "--device", "cpu", "--max-length", "128", "--relative-margin", "0", "--no-cache", *ray]


def code_version() -> str:
    """The commit the case's subprocess ran (the package is installed editable: the worktree's code), and
    whether the worktree had changes."""
    where = Path(__file__).resolve().parents[1]
    try:
        rev = subprocess.run(["git", "-C", str(where), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(where), "status", "--porcelain", "--", "m3e_data"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev + ("+changes" if dirty else "")


def run_case(stage: str, executor: str, paths: dict[str, Path], log: Path) -> dict[str, Any]:
    """One case: a fresh Ray head for ray1/ray2, the command, the figures and what it wrote."""
    workers = {"local": 0, "local1": 0, "ray1": 1, "ray2": 2}[executor]
    load = os.getloadavg()[0]
    with ray_head(workers) if workers else contextlib.nullcontext() as head:
        fig = run_command(argv_for(stage, paths, executor, head), head, log)
    out = paths["out"] / {"normalize": "m3e", "hq": "m3e-hq", "mine": "."}[stage]
    rows, checksum = answer(out)
    return {"stage": stage, "executor": executor, "ray_start_s": round(head.start_s, 1) if head else None,
            **fig, "rows_out": rows, "id_checksum": checksum, "code": code_version(), "load_before": round(load, 2),
            "load_after": round(os.getloadavg()[0], 2)}


# --- the whole benchmark


def run_size(n: int, root: Path, cases: list[str], say: Any = print,
             on_case: Any = None) -> list[dict[str, Any]]:
    """The normalize and hq cases at n rows, in the order given (an hq case without a normalize case before it
    builds its input locally, untimed). `on_case(figures)` is called as each case ends."""
    size_dir = root / f"n{n}"
    t0 = time.perf_counter()
    counts = make_sources(size_dir / "src", n)
    say(f"# {n:,} rows: sources ready ({time.perf_counter() - t0:.0f}s): {counts}")
    results = []
    hq_in = size_dir / "normalized"
    for case in cases:
        stage, executor = case.split(":")
        if stage == "normalize":
            out = size_dir / f"out-{executor}"
            shutil.rmtree(out, ignore_errors=True)
            r = run_case(stage, executor, {"src": size_dir / "src", "out": out}, size_dir / f"{stage}-{executor}.log")
            if not hq_in.exists():
                out.rename(hq_in)  # the hq cases' input
            else:
                shutil.rmtree(out)
        elif stage == "hq":
            if not (hq_in / "m3e").exists():
                say("# building the hq cases' input (local, not timed)")
                subprocess.run([*m3e_data(), "build", "--sources", str(size_dir / "src"), "--out", str(hq_in),
                                "--recipe", RECIPES, "--no-hq"], check=True, capture_output=True)
            _clean_hq(hq_in)
            r = run_case(stage, executor, {"out": hq_in}, size_dir / f"{stage}-{executor}.log")
        else:
            continue
        r["rows_in"] = n
        results.append(r)
        say(json.dumps(r))
        if on_case:
            on_case(r)
    return results


def run_mine(root: Path, cases: list[str], pairs: int = MINE_PAIRS, say: Any = print,
             on_case: Any = None) -> list[dict[str, Any]]:
    folder = root / f"mine{pairs}"
    hq, model, texts = make_mine_input(folder, pairs)
    results = []
    for case in cases:
        stage, executor = case.split(":")
        if stage != "mine":
            continue
        out = folder / f"out-{executor}"
        shutil.rmtree(out, ignore_errors=True)
        r = run_case(stage, executor, {"in": hq, "out": out, "model": model}, folder / f"mine-{executor}.log")
        r.update(rows_in=pairs, texts=texts, texts_per_s=round(texts / r["wall_s"]))
        results.append(r)
        say(json.dumps(r))
        if on_case:
            on_case(r)
        shutil.rmtree(out, ignore_errors=True)
    return results


def same_answer(results: list[dict[str, Any]]) -> list[str]:
    """Cases whose rows or id checksum differ from the local executor's at the same stage and size."""
    local = {(r["stage"], r["rows_in"]): r for r in results if r["executor"] == "local"}
    return [f"{r['stage']}:{r['executor']}@{r['rows_in']}" for r in results
            if (r["stage"], r["rows_in"]) in local
            and (r["rows_out"], r["id_checksum"]) != (local[r["stage"], r["rows_in"]]["rows_out"],
                                                       local[r["stage"], r["rows_in"]]["id_checksum"])]


def with_overhead(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each Ray case's overhead against local at the same stage and size: (wall - local) / local, without
    Ray's start (wall is the command alone) and with it."""
    local = {(r["executor"], r["stage"], r["rows_in"]): r for r in results if r["executor"].startswith("local")}
    for r in results:
        key = (r["stage"], r["rows_in"])
        base = local.get((BASELINE.get(r["executor"], "local"), *key)) or local.get(("local", *key))
        if not r["executor"].startswith("local") and base:
            r["overhead_vs"] = base["executor"]
            wall = base["wall_s"]
            r["overhead_pct"] = round(100 * (r["wall_s"] - wall) / wall, 1)
            r["overhead_with_start_pct"] = round(100 * (r["wall_s"] + r["ray_start_s"] - wall) / wall, 1)
            # The load-robust one: CPU seconds do not stretch when other work shares the cores.
            r["cpu_overhead_pct"] = round(100 * (r["cpu_s"] - base["cpu_s"]) / base["cpu_s"], 1)
    return results


def table(results: list[dict[str, Any]]) -> str:
    """A Markdown table of the figures."""
    head = ("| stage | rows | executor | wall s | Ray start s | overhead (with start) | CPU s (vs local) | peak PSS MB "
            "| per-worker peak PSS MB | rows out | same answer | load | code |")
    lines = [head, "|" + "|".join(["---"] * 13) + "|"]
    bad = set(same_answer(results))
    names = {"local": "local", "local1": "local, 1 process", "ray1": "Ray, 1 worker", "ray2": "Ray, 2 workers"}
    for r in results:
        executor = names[r["executor"]]
        if r["executor"] == "local" and r["stage"] == "hq":
            executor = "local (pool of 2 processes)"
        if r.get("overhead_vs") == "local1":
            executor += " (vs 1 process)"
        over = (f"{r['overhead_pct']:+.0f}% ({r['overhead_with_start_pct']:+.0f}%)" if "overhead_pct" in r else "")
        cpu = f" ({r['cpu_overhead_pct']:+.0f}%)" if "cpu_overhead_pct" in r else ""
        worker = f"{r['worker_peak_pss_mb']:,}" if r["worker_peak_pss_mb"] is not None else ""
        same = "no" if f"{r['stage']}:{r['executor']}@{r['rows_in']}" in bad else "yes"
        rows = f"{r['rows_in']:,}" + (f" pairs, {r['texts_per_s']:,} texts/s" if r["stage"] == "mine" else "")
        lines.append(
            f"| {r['stage']} | {rows} | {executor} | {r['wall_s']:.1f} | "
            f"{r['ray_start_s'] if r['ray_start_s'] is not None else ''} | {over} | {r['cpu_s']:.1f}{cpu} | "
            f"{r['peak_pss_mb']:,} | {worker} | "
            f"{r['rows_out']:,} | {same} | "
            f"{r['load_before']:.1f} | {r.get('code', '')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000000,4000000", help="comma-separated row counts")
    ap.add_argument("--cases", default=",".join(DEFAULT_CASES), help="comma-separated STAGE:EXECUTOR "
                    f"(stages {', '.join(STAGES)}; executors {', '.join(EXECUTORS)})")
    ap.add_argument("--mine-pairs", type=int, default=MINE_PAIRS)
    ap.add_argument("--tmp", type=Path, default=None, help="where inputs are written (reused with --keep)")
    ap.add_argument("--keep", action="store_true", help="keep --tmp's inputs for the next run")
    ap.add_argument("--json", type=Path, default=None, help="write every case's figures here")
    ap.add_argument("--table", type=Path, nargs="+", default=None, metavar="JSON",
                    help="print the table of --json files (runs of some sizes or cases each)")
    args = ap.parse_args(argv)
    if args.table:
        print(table(with_overhead([r for path in args.table for r in json.loads(path.read_text())["results"]])))
        return
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    for c in cases:
        stage, _, executor = c.partition(":")
        if stage not in STAGES or executor not in EXECUTORS:
            ap.error(f"--cases: {c!r} is not STAGE:EXECUTOR")
    root = args.tmp or Path(tempfile.mkdtemp(prefix="scale-"))
    root.mkdir(parents=True, exist_ok=True)
    print(f"# cpus {os.cpu_count()}, load average {os.getloadavg()}, started {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
          flush=True)
    results: list[dict[str, Any]] = []

    def save() -> None:
        if args.json:
            tmp = args.json.with_suffix(".tmp")
            tmp.write_text(json.dumps({"results": with_overhead(results), "cpus": os.cpu_count()}, indent=1))
            tmp.replace(args.json)

    def on_case(figures: dict[str, Any]) -> None:  # saved as each case ends: a run cut short keeps them
        results.append(figures)
        save()

    def say(line: str) -> None:
        print(line, flush=True)

    try:
        for n in (int(s) for s in args.sizes.split(",") if s):
            run_size(n, root, cases, say=say, on_case=on_case)
        if any(c.startswith("mine:") for c in cases):
            run_mine(root, cases, args.mine_pairs, say=say, on_case=on_case)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(table(with_overhead(results)))
    bad = same_answer(results)
    print(f"# same answer as local: {'yes' if not bad else 'NO: ' + ', '.join(bad)}; load average {os.getloadavg()}")
    if bad:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
