"""`m3e-data push` and `m3e-data export`: thin commands over m3e_data.stages.publish.stage and m3e_data.stages.publish.export."""

from __future__ import annotations

from pathlib import Path

import click

from m3e_data.cli.console import Col, fit_table, messages, table_width, tables
from m3e_data.cli.preflight import check_push
from m3e_data.cli.remote import refuse_url
from m3e_data.cli.vocabulary import in_folder
from m3e_data.stages.publish.export import FORMATS, ExportError, export
from m3e_data.stages.publish.hub_stage import StageError
from m3e_data.stages.publish.stage import CommercialRefusal, PublishError, push


def _warn_research_only(data_dir: Path) -> None:
    """A public release republishes every row: say so before uploading sources licensed for research only."""
    from m3e_data.catalog import load_catalog

    catalog = load_catalog()
    restricted = sorted(p.name for p in data_dir.iterdir()
                        if p.is_dir() and p.name in catalog and "research" in catalog[p.name].license.spdx)
    if restricted:
        messages.print(
            f"[yellow]warning[/]: {', '.join(restricted)} are licensed for research only, and some forbid "
            "redistribution; a public repository republishes their rows. Consider --private or --commercial-only."
        )


@click.command("push")
@in_folder("data_dir", "DATA_DIR", "The folder to publish: OUT/m3e-hq or OUT/m3e-hq-with-score")
@click.option("--repo-id", required=True, help="The dataset repository, OWNER/NAME (e.g. me/m3e-hq).")
@click.option("--commercial-only", is_flag=True,
              help="Publish only rows whose licence permits commercial use; refuse if anything says otherwise.")
@click.option("--private", is_flag=True, help="Create the repository as private.")
@click.option("--dry-run", "dry_run", type=click.Path(path_type=Path, file_okay=False), callback=refuse_url, default=None,
              help="Stage the repository (Parquet + README.md) into this folder and stop: nothing is uploaded. "
                   "The folder must be new, empty or an earlier staging (it is replaced).")
@click.option("--stage-dir", type=click.Path(path_type=Path, file_okay=False), callback=refuse_url, default=None,
              help="Where a real push stages (default OUT/hub/OWNER--NAME); rerun to resume a broken upload.")
@click.option("--shard-size-mb", type=click.IntRange(min=1), default=500, show_default=True,
              help="Shard size in MB of in-memory Arrow data (as datasets' max_shard_size).")
def push_command(
    data_dir: Path, repo_id: str, commercial_only: bool, private: bool, dry_run: Path | None,
    stage_dir: Path | None, shard_size_mb: int,
) -> None:
    """Publish --in DIR (OUT/m3e-hq or OUT/m3e-hq-with-score) to the Hugging Face Hub.

    One config per source plus `all` (the default), and a dataset card with licences, row counts, drop
    counts and citations. The token comes from HF_TOKEN or `hf auth login`; HF_ENDPOINT picks a mirror.
    """
    if dry_run is None:  # before anything is staged: a staging the Hub would refuse is wasted time
        check_push(repo_id)
    if not (commercial_only or private):
        _warn_research_only(data_dir)
    try:
        prepared, url = push(
            data_dir, repo_id, commercial_only=commercial_only, private=private, dry_run=dry_run,
            stage_dir=stage_dir, shard_bytes=shard_size_mb * 1024 * 1024,
        )
    except (CommercialRefusal, PublishError, StageError) as exc:
        raise click.ClickException(str(exc)) from None
    staged = prepared.staged
    cols = [Col("config", fold=False), *(Col(split, number=True) for split in staged.splits),
            Col("files", drop=1, number=True)]
    rows = [
        [config, *(f"{splits[s].rows:,}" if s in splits else "" for s in staged.splits),
         str(sum(len(f.files) for f in splits.values()))]
        for config, splits in sorted(staged.configs.items())
    ]
    title = f"{repo_id}: {staged.rows:,} rows" + (" (commercial only)" if commercial_only else "")
    table = fit_table(cols, rows, table_width(), title=title, caption="rows per config and split")
    tables().print(table)
    where = "reused" if prepared.reused else "staged"
    messages.print(f"{where} {staged.folder} (card: {prepared.card})")
    if url is None:
        messages.print(f"dry run: nothing uploaded; `datasets.load_dataset('{staged.folder}', CONFIG)` reads it")
    else:
        messages.print(f"uploaded to {url}")


@click.command("export")
@in_folder("data_dir", "DATA_DIR", "The folder to export: OUT/m3e-hq or OUT/m3e-hq-with-score")
@click.option("--format", "fmt", type=click.Choice(FORMATS), required=True, help="The tool to export for.")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), callback=refuse_url, required=True,
              help="Output folder: new, empty or an earlier export (replaced when the export finishes).")
@click.option("--max-negatives", type=click.IntRange(min=0), default=None,
              help="sentence-transformers: at most this many negatives per row (rows are grouped by their count).")
@click.option("--commercial-only", is_flag=True,
              help="Export only rows whose licence permits commercial use; refuse if any row says otherwise. "
                   "Implied when the input's build was commercial-only.")
def export_command(data_dir: Path, fmt: str, out: Path, max_negatives: int | None, commercial_only: bool) -> None:
    """Write --in DIR in the column names and layout of uniem, sentence-transformers or FlagEmbedding."""
    try:
        result = export(data_dir, fmt, out, max_negatives=max_negatives, commercial_only=commercial_only)
    except (ExportError, StageError) as exc:
        raise click.ClickException(str(exc)) from None
    table = fit_table([Col("file", min_width=20), Col("rows", number=True)],
                      [[rel, f"{rows:,}"] for rel, rows in sorted(result.files.items())], table_width(),
                      title=f"{fmt} export: {out}")
    tables().print(table)
    if result.negatives_dropped:
        messages.print(f"{result.negatives_dropped:,} negatives beyond --max-negatives were left out")
    if fmt == "sentence-transformers":
        messages.print(f"`datasets.load_dataset('{out}', CONFIG)` reads it; {out / 'README.md'} lists the configs "
                       "and the loss each suits")
