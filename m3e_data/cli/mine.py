"""`m3e-data mine`: add hard negatives and similarity scores to m3e-hq (-> m3e-hq-with-score).

Thin: parses options and calls m3e_data.stages.mine.stage. torch/transformers load only when a source needs mining.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from m3e_data.cli.console import Col, fit_table, messages, resumable, table_width, tables
from m3e_data.cli.preflight import local_folder, local_or_hub, require_extra
from m3e_data.cli.remote import open_out, refuse_url, work_dir_option
from m3e_data.cli.vocabulary import names, old_spelling
from m3e_data.commercial import commercial_folders
from m3e_data.executors.ray_session import check_ray_executor
from m3e_data.stages.mine.mining import MiningParams, parse_range
from m3e_data.stages.mine.stage import (
    FAILED,
    UNCHANGED,
    MineOptions,
    ModelLoadError,
    SourceResult,
    default_cache_dir,
    mine,
)
from m3e_data.storage.remote import is_url

MINE_CAPTION = (
    "rows: rows mined. mined / native: negatives added by the model / kept from the source. short of N: rows "
    "that got fewer negatives than --num-negatives. pos mean / neg mean: mean cosine of the positives / mined "
    "negatives. margin drops: candidates left out for scoring too close to the positive. rows dropped: rows the "
    "consistency filter or semantic dedup removed (OUT/rejects/mine)."
)


def _summary(results: list[SourceResult], width: int) -> Table:
    cols = [Col("source", fold=False), Col("status", fold=False), Col("rows", number=True),
            Col("mined", drop=2, number=True), Col("native", drop=3, number=True),
            Col("short of N", drop=2, number=True), Col("pos mean", drop=1, number=True),
            Col("neg mean", drop=1, number=True), Col("margin drops", drop=3, number=True),
            Col("rows dropped", drop=2, number=True), Col("seconds", drop=4, number=True)]
    rows = []
    for r in results:
        s = r.stats
        if not s:  # its reason was printed when it finished
            rows.append([r.name, r.status, *[""] * 9])
            continue
        rows.append([
            r.name, r.status, f"{s['rows']:,}", f"{s['mined_negatives']:,}", f"{s['native_negatives']:,}",
            f"{s['rows_short']:,}", f"{s['positive_scores'].get('mean', float('nan')):.3f}",
            f"{s['mined_scores'].get('mean', float('nan')):.3f}", f"{s['removed']['relative_margin']:,}",
            f"{sum(s.get('dropped', {}).values()):,}", "" if r.status == UNCHANGED else f"{r.seconds:.1f}",
        ])
    return fit_table(cols, rows, width, title="m3e mine", caption=MINE_CAPTION)


def _folders(input_dir: str, out: str, work_dir: Path | None) -> tuple[Path, Path]:
    """--in and --out as local folders: URLs side by side in one build folder OUT are mirrored together
    (OUT's manifest and embedding cache with them); local folders as given."""
    if not (is_url(input_dir) or is_url(out)):
        open_out(out, work_dir, "--out")  # refuses a --work-dir without a URL
        if Path(out).is_file():
            raise click.BadParameter(f"{out}: a file, not a folder", param_hint="--out")
        return local_folder(input_dir, "--in"), Path(out)
    parent_in, _, name_in = input_dir.rstrip("/").rpartition("/")
    parent_out, _, name_out = out.rstrip("/").rpartition("/")
    if not (is_url(input_dir) and is_url(out)) or parent_in != parent_out or name_in == name_out:
        raise click.UsageError(
            "with an object store, --in and --out are two URLs in one build folder, e.g. --in s3://b/OUT/m3e-hq "
            "--out s3://b/OUT/m3e-hq-with-score")
    mirror, _ = open_out(parent_in, work_dir, "--in")
    return local_folder(mirror / name_in, "--in"), mirror / name_out


@click.command("mine")
@old_spelling("--sources", "--only", "only")
@click.option("--in", "input_dir", required=True, metavar="DIR|URL",
              help="Input folder: OUT/m3e-hq (one sub-folder per source), or its object store URL.")
@click.option("--out", required=True, metavar="DIR|URL",
              help="Output folder: OUT/m3e-hq-with-score (a URL when --in is one, in the same folder OUT).")
@click.option("--model", default="moka-ai/m3e-small", show_default=True,
              help="Hub id or local folder (transformers or sentence-transformers layout).")
@click.option("--revision", default=None, help="Hub revision (branch, tag or commit) of --model.")
@click.option("--device", default=None, help="cpu, cuda, cuda:1, … (default: every visible GPU, else cpu).")
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=1),
              help="Texts per encoding batch.")
@click.option("--max-length", default=512, show_default=True, type=click.IntRange(min=2),
              help="Tokens per text (capped at the model's limit).")
@click.option("--cache-dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              callback=refuse_url,
              help="Embedding cache folder (default: OUT/cache/embeddings when --out sits in the build folder OUT "
                   "of --in, else OUT_DIR/.cache/embeddings inside --out).")
@click.option("--no-cache", is_flag=True, help="Do not cache embeddings on disk.")
@click.option("--chunk-size", type=click.IntRange(min=1), default=None,
              help="Queries per search chunk (default: as many as 128 MiB of scores allow).")
@click.option("--range", "rank_range", default="0:100", show_default=True,
              help="Rank window MIN:MAX (0-based) over the candidates left after excluding positives and the query.")
@click.option("--relative-margin", type=float, default=0.05, show_default=True,
              help="Drop candidates scoring above positive_score - |positive_score| * MARGIN (negative: off).")
@click.option("--max-score", type=float, default=None, help="Drop candidates scoring above this cosine.")
@click.option("--num-negatives", type=click.IntRange(min=1), default=7, show_default=True,
              help="Negatives per row, native ones included.")
@click.option("--sampling", type=click.Choice(["top", "random"]), default="top", show_default=True,
              help="Take the hardest candidates, or a seeded random sample of the window.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of --sampling random.")
@click.option("--only", default=None, metavar="NAMES",
              help="Comma-separated sources to mine (default: every source in --in).")
@click.option("--commercial-only", is_flag=True,
              help="Mine only sources whose licence permits commercial use; every row is re-checked first.")
@click.option("--consistency-topk", type=click.IntRange(min=1), default=None,
              help="Drop a row whose positive ranks below K among its source's positives for its query "
                   "(reason inconsistent_pair; E5's consistency filter). Default: off.")
@click.option("--min-positive-score", type=float, default=None,
              help="Drop a row whose positive_score is below X (reason low_positive_score): the cosine, or the "
                   "--score-model's logit when one is given. Default: off.")
@click.option("--score-model", default=None,
              help="Cross-encoder (Hub id or folder, e.g. BAAI/bge-reranker-base) whose raw logits replace the "
                   "scores; the --model still mines the negatives.")
@click.option("--score-revision", default=None, help="Hub revision of --score-model.")
@click.option("--semantic-dedup", type=click.FloatRange(-1, 1), default=None, metavar="THRESHOLD",
              help="Drop a row whose (query, positive) pair is within THRESHOLD cosine (mean of the query and "
                   "positive cosines) of a kept row's, in this or an earlier source (reason semantic_duplicate, "
                   "kept_id). Default: off.")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: this machine. ray: encoder and search actors on a Ray cluster (same rows; needs the "
                   "ray extra).")
@click.option("--ray-address", default=None, metavar="ADDR",
              help="Ray cluster to join with --executor ray (default: RAY_ADDRESS, else a local Ray).")
@click.option("--max-corpus-bytes", type=click.IntRange(min=1), default=None, metavar="BYTES",
              help="With --executor ray: search a source's corpus embeddings in shards of at most BYTES on the "
                   "device (fp16 on a GPU, fp32 on a CPU), merging their top-k (default: half a GPU's memory, else "
                   "a quarter of a node's).")
@work_dir_option
def mine_command(
    input_dir: str, out: str, model: str, revision: str | None, device: str | None, batch_size: int,
    max_length: int, cache_dir: Path | None, no_cache: bool, chunk_size: int | None, rank_range: str,
    relative_margin: float, max_score: float | None, num_negatives: int, sampling: str, seed: int,
    only: str | None, commercial_only: bool, consistency_topk: int | None, min_positive_score: float | None,
    score_model: str | None, score_revision: str | None, semantic_dedup: float | None, executor: str,
    ray_address: str | None, max_corpus_bytes: int | None, work_dir: Path | None,
) -> None:
    """Add hard negatives and cosine scores to m3e-hq, per source (-> m3e-hq-with-score)."""
    require_extra("mine", "mine")
    if executor == "ray":
        check_ray_executor(ray_address)
    elif ray_address or max_corpus_bytes:
        raise click.UsageError("--ray-address and --max-corpus-bytes apply to --executor ray only")
    input_dir, out = _folders(input_dir, out, work_dir)
    try:
        lo, hi = parse_range(rank_range)
        params = MiningParams(num_negatives=num_negatives, range_min=lo, range_max=hi,
                              relative_margin=None if relative_margin < 0 else relative_margin,
                              max_score=max_score, sampling=sampling, seed=seed)  # type: ignore[arg-type]
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    local_or_hub(model, "--model", "mine")
    chosen = names(only) or None
    if commercial_only:
        try:
            chosen = commercial_folders(input_dir, chosen)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
    options = MineOptions(
        input=input_dir, out=out, model=model, revision=revision, device=device, batch_size=batch_size,
        max_length=max_length, cache_dir=None if no_cache else (cache_dir or default_cache_dir(input_dir, out)),
        chunk_size=chunk_size, sources=chosen,
        params=params, consistency_topk=consistency_topk, min_positive_score=min_positive_score,
        score_model=score_model, score_revision=score_revision, semantic_dedup=semantic_dedup,
    )
    resume = ("Rerun the same command to resume: every finished source has its _SUCCESS.json and is skipped; "
              "embeddings already computed are reused from the cache (unless --no-cache).")
    with resumable("mine", resume) as track, Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
        TextColumn("{task.completed:,} {task.fields[unit]}"), TimeElapsedColumn(), console=messages, transient=True, disable=not messages.is_terminal,
    ) as progress:
        tasks: dict[str, int] = {}

        def on_start(name: str, rows: int) -> None:
            track.start(name)
            tasks[name] = progress.add_task(f"{name} ({rows:,} rows): encoding", total=None, unit="texts encoded")

        def on_encode(name: str, done: int, total: int) -> None:
            progress.update(tasks[name], completed=done, total=total, unit="texts encoded")

        searching: set[str] = set()

        def on_search(name: str, groups: int) -> None:
            if name not in searching:  # encoding is over: a fresh bar counts the queries searched
                searching.add(name)
                progress.remove_task(tasks[name])
                tasks[name] = progress.add_task(f"{name}: searching", total=None, unit="queries searched")
            progress.advance(tasks[name], groups)

        def on_done(result: SourceResult) -> None:
            track.finish(result.name)
            progress.remove_task(tasks[result.name])
            messages.print(f"{result.name}: {result.status} {result.reason}".rstrip())

        encoder = None
        if executor == "ray":
            from m3e_data.executors.mine_ray import RayEncoder

            encoder = RayEncoder(options, address=ray_address, max_corpus_bytes=max_corpus_bytes)
        try:
            results = mine(options, on_start=on_start, on_search=on_search, on_done=on_done, on_encode=on_encode,
                           encoder=encoder)
        except (FileNotFoundError, ValueError, ModelLoadError) as exc:
            raise click.ClickException(str(exc)) from None
    tables().print(_summary(results, table_width()))
    if any(r.status == FAILED for r in results):
        sys.exit(1)
