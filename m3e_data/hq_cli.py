"""`m3e-data hq` and `m3e-data report`, and the hq options `m3e-data build` shares. Thin: parse and call."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from m3e_data.console import messages, tables
from m3e_data.decontaminate import EvalFileError
from m3e_data.hq import HqConfig, HqConfigError, NothingToDo, run_hq
from m3e_data.ownership import ForeignFiles
from m3e_data.quality import ThresholdError
from m3e_data.report import ReportError, hq_section, summary_table, write_report


def hq_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--config, --decontaminate, --keep-eval-splits, --workers: shared by `hq` and `build`."""
    fn = click.option("--workers", type=click.IntRange(1), default=2, show_default=True,
                      help="Processes that compute the hq statistics.")(fn)
    fn = click.option("--keep-eval-splits", is_flag=True,
                      help="Keep the sources' validation/test rows in m3e-hq (dropped by default).")(fn)
    fn = click.option("--decontaminate", "decontaminate", multiple=True,
                      type=click.Path(exists=True, dir_okay=False, path_type=Path),
                      help="An evaluation file (text lines, JSON lines or TSV) whose sentences training rows "
                           "must not match (repeatable).")(fn)
    fn = click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                      default=None, help="YAML thresholds: `defaults: {...}`, `sources: {name: {...}}`, `dedup: {...}`.")(fn)
    return fn


def run_hq_command(out: Path, config_path: Path | None, decontaminate: tuple[Path, ...], keep_eval_splits: bool,
                   workers: int) -> None:
    """Run the hq stage with a progress display and print its summary table (used by `hq` and `build`)."""
    try:
        config = HqConfig.load(config_path)
    except (HqConfigError, ThresholdError) as exc:
        raise click.BadParameter(str(exc), param_hint="--config") from None
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TextColumn("{task.completed:,} rows"),
                  TimeElapsedColumn(), console=messages, transient=True) as progress:
        task = progress.add_task("m3e-hq", total=None)

        def on_progress(step: str, source: str, rows: int) -> None:
            progress.update(task, description=f"m3e-hq {step}: {source}", completed=rows)

        try:
            run_hq(out, config, list(decontaminate), keep_eval_splits, on_progress=on_progress, workers=workers)
        except (EvalFileError, ThresholdError, NothingToDo, ForeignFiles) as exc:
            raise click.ClickException(str(exc)) from None
    section = hq_section(out)
    tables().print(summary_table(section))
    for name, record in section.get("sources", {}).items():
        if record.get("duplicate_ids"):
            messages.print(f"[yellow]warning[/]: {name}: {record['duplicate_ids']:,} rows repeat another row's id "
                           "(the source's own key is not unique), so rejects and kept_id can be ambiguous")
    for path, n in section.get("decontamination", {}).items():
        tables().print(f"decontaminated by {path}: {n:,} rows")


@click.command("hq")
@click.argument("out", type=click.Path(exists=True, file_okay=False, path_type=Path))
@hq_options
def hq_command(out: Path, config_path: Path | None, decontaminate: tuple[Path, ...], keep_eval_splits: bool,
               workers: int) -> None:
    """Re-run the m3e-hq stage over OUT/m3e (quality filter, dedup, decontamination): OUT/m3e-hq, OUT/rejects.

    Statistics are cached, so re-running with new thresholds takes seconds.
    """
    run_hq_command(out, config_path, decontaminate, keep_eval_splits, workers)


@click.command("report")
@click.argument("out", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--html", "html_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the HTML report (default OUT/report.html).")
def report_command(out: Path, html_path: Path | None) -> None:
    """Write a self-contained HTML report of the m3e-hq stage and print its table."""
    try:
        path = write_report(out, html_path)
    except ReportError as exc:
        raise click.ClickException(str(exc)) from None
    tables().print(summary_table(hq_section(out)))
    messages.print(f"report: {path}")
