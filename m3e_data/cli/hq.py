"""`m3e-data hq` and `m3e-data report`, and the hq options `m3e-data build` shares. Thin: parse and call."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from m3e_data.cli.console import Col, fit_table, messages, resumable, table_width, tables
from m3e_data.cli.remote import refuse_url, work_dir_option
from m3e_data.cli.vocabulary import in_folder
from m3e_data.executors import EXECUTORS
from m3e_data.executors.hq_ray import RayExecutor, TooManyEdges
from m3e_data.executors.ray_session import check_ray_executor, ray_session
from m3e_data.stages.hq.decontaminate import EvalFileError
from m3e_data.stages.hq.quality import ThresholdError
from m3e_data.stages.hq.report import ReportError, _stage_drops, hq_section, write_report
from m3e_data.stages.hq.stage import Executor, HqConfig, HqConfigError, InputError, NothingToDo, run_hq
from m3e_data.storage.lock import FolderBusy, acquire, release
from m3e_data.storage.ownership import ForeignFiles


def hq_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--config, --decontaminate, --keep-eval-splits, --workers, --verify: shared by `hq` and `build`."""
    fn = click.option("--verify", is_flag=True,
                      help="Check the checksum of every finished part a rerun would reuse (normalize outputs, "
                           "cached statistics), not only its size; a damaged one is rebuilt.")(fn)
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


HQ_CAPTION = (
    "rows in: rows of OUT/m3e. Then the rows each step removed, in order: eval split (validation and test "
    "rows; --keep-eval-splits keeps them), quality rules, decontamination, dedup. rows out: rows of "
    "OUT/m3e-hq. Every removed row is in OUT/rejects with its reason."
)


def hq_table(section: dict[str, Any], width: int, title: str = "m3e-hq") -> Table:
    """The m3e-hq stage's numbers per source, fitted to `width` (the report shows the same numbers)."""
    cols = [Col("source", fold=False), Col("rows in", number=True), Col("eval split", drop=2, number=True),
            Col("quality", drop=1, number=True), Col("decontam", drop=2, number=True),
            Col("dedup", drop=1, number=True), Col("rows out", number=True), Col("kept %", drop=3, number=True),
            Col("top reasons", drop=4, min_width=12)]
    rows = []
    for name, src in section["sources"].items():
        d = _stage_drops(src)
        top = ", ".join(f"{r} {n:,}" for r, n in sorted(src["dropped"].items(), key=lambda kv: -kv[1])[:3])
        kept = 100 * src["rows_out"] / src["rows_in"] if src["rows_in"] else 0.0
        rows.append([name, f"{src['rows_in']:,}", f"{d['eval_split']:,}", f"{d['quality']:,}",
                     f"{d['decontaminate']:,}", f"{d['dedup']:,}", f"{src['rows_out']:,}", f"{kept:.1f}", top])
    return fit_table(cols, rows, width, title=title, caption=HQ_CAPTION)


def executor_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--executor and --ray-address."""
    fn = click.option("--ray-address", default=None,
                      help="The Ray cluster to join with --executor ray (default: RAY_ADDRESS, else a local Ray "
                           "started for this command).")(fn)
    fn = click.option("--executor", type=click.Choice(EXECUTORS), default="local", show_default=True,
                      help="Where the heavy steps run: this machine's processes, or a Ray cluster (same rows).")(fn)
    return fn


@contextmanager
def hq_executor(executor: str, ray_address: str | None, workers: int) -> Iterator[Executor]:
    """The hq stage's executor for the length of a command; --executor ray without ray is a usage error."""
    if executor == "local":
        yield Executor(workers)
        return
    check_ray_executor(ray_address)
    with ray_session(ray_address):
        yield RayExecutor()


def hold_for_command(out: Path) -> None:
    """Hold OUT's lock until the command ends (click closes its context), or fail in one line."""
    try:
        acquire(out)
    except FolderBusy as exc:
        raise click.ClickException(str(exc)) from None
    click.get_current_context().call_on_close(lambda: release(out))


def run_hq_command(out: Path, config_path: Path | None, decontaminate: tuple[Path, ...], keep_eval_splits: bool,
                   workers: int, sources: list[str] | None = None, verify: bool = False,
                   executor: str = "local", ray_address: str | None = None) -> None:
    """Run the hq stage with a progress display and print its summary table (used by `hq` and `build`).

    `sources`: the build's selection (default: the one the last build recorded in the manifest).
    `executor`, `ray_address`: see executor_options."""
    try:
        config = HqConfig.load(config_path)
    except (HqConfigError, ThresholdError) as exc:
        raise click.BadParameter(str(exc), param_hint="--config") from None
    resume = ("Rerun the same command to resume: the statistics of every finished source are cached in "
              f"{out / '.cache' / 'hq'} and reused; the decisions after them take seconds.")
    with resumable("m3e-hq", resume) as track, Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TextColumn("{task.completed:,} rows"),
        TimeElapsedColumn(), console=messages, transient=True, disable=not messages.is_terminal,
    ) as progress:
        task = progress.add_task("m3e-hq", total=None)

        def on_progress(step: str, source: str, rows: int) -> None:
            track.start(f"{step} of {source}")
            progress.update(task, description=f"m3e-hq {step}: {source}", completed=rows)

        try:
            with hq_executor(executor, ray_address, workers) as runner:
                run_hq(out, config, list(decontaminate), keep_eval_splits, on_progress=on_progress,
                       sources=sources, verify=verify, executor=runner)
        except (EvalFileError, ThresholdError, NothingToDo, InputError, FolderBusy, ForeignFiles,
                TooManyEdges) as exc:
            raise click.ClickException(str(exc)) from None
    section = hq_section(out)
    tables().print(hq_table(section, table_width()))
    for name, record in section.get("sources", {}).items():
        if record.get("duplicate_ids"):
            messages.print(f"[yellow]warning[/]: {name}: {record['duplicate_ids']:,} rows repeat another row's id "
                           "(the source's own key is not unique), so rejects and kept_id can be ambiguous")
    for path, n in section.get("decontamination", {}).items():
        tables().print(f"decontaminated by {path}: {n:,} rows")


@click.command("hq")
@in_folder("out", "OUT", "The build folder OUT (holding OUT/m3e), or its object store URL", urls=True)
@hq_options
@executor_options
@work_dir_option
def hq_command(out: Path | str, config_path: Path | None, decontaminate: tuple[Path, ...], keep_eval_splits: bool,
               workers: int, verify: bool, executor: str, ray_address: str | None, work_dir: Path | None) -> None:
    """Re-run the m3e-hq stage over OUT/m3e (quality filter, dedup, decontamination): OUT/m3e-hq, OUT/rejects.

    Reads the sources the last build into OUT selected. Statistics are cached, so re-running with new
    thresholds takes seconds.
    """
    from m3e_data.cli.remote import open_out

    out, session = open_out(out, work_dir, "--in")
    if session is None:
        hold_for_command(out)
    run_hq_command(out, config_path, decontaminate, keep_eval_splits, workers, verify=verify, executor=executor,
                   ray_address=ray_address)


@click.command("report")
@in_folder("out", "OUT", "The build folder OUT (after m3e-hq), or its object store URL", urls=True)
@click.option("--html", "html_path", type=click.Path(dir_okay=False, path_type=Path), default=None, callback=refuse_url,
              help="Where to write the HTML report (default OUT/report.html).")
@work_dir_option
def report_command(out: Path | str, html_path: Path | None, work_dir: Path | None) -> None:
    """Write a self-contained HTML report of the m3e-hq stage and print its table."""
    from m3e_data.cli.remote import open_out

    out, _ = open_out(out, work_dir, "--in")
    try:
        path = write_report(out, html_path)
    except ReportError as exc:
        raise click.ClickException(str(exc)) from None
    tables().print(hq_table(hq_section(out), table_width()))
    messages.print(f"report: {path}")
