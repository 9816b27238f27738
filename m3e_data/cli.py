"""The `m3e-data` command line. Commands are thin: they parse options and call the library."""

from __future__ import annotations

import difflib
import json
import sys
from importlib.metadata import entry_points
from pathlib import Path

import click
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from m3e_data.build import BUILT, UNCHANGED, BuildOptions, SourceResult, build, select_sources
from m3e_data.catalog import load_catalog
from m3e_data.console import error_line, messages, tables
from m3e_data.failures import explain
from m3e_data.hq_cli import hold_for_command, hq_command, hq_options, report_command, run_hq_command
from m3e_data.mine_cli import mine_command
from m3e_data.preflight import check_hub, local_folder
from m3e_data.publish_cli import export_command, push_command
from m3e_data.recipe import recipe_names


class _Main(click.Group):
    """The command group, with one handler for expected failures: a disk that fills up, a Hub that cannot
    be reached or refuses, a folder without permission. Each ends in one line on stderr and exit code 1;
    with --debug (or M3E_DEBUG=1) the traceback follows the line. Anything else is a bug and keeps its
    traceback."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:
            line = explain(exc, ctx.invoked_subcommand)
            if line is None:
                raise
            error_line(line)
            if ctx.params.get("debug"):
                raise
            ctx.exit(1)


@click.group(cls=_Main)
@click.version_option(package_name="m3e-data")
@click.option("--debug", is_flag=True, envvar="M3E_DEBUG",
              help="Show the traceback of a failure, not only its one-line message (or set M3E_DEBUG=1).")
def main(debug: bool) -> None:
    """Build the training data for Chinese text-embedding models (M3E)."""


def _catalog_rows() -> list[dict]:
    implemented = set(recipe_names())
    return [
        {
            "name": s.name,
            "domain": s.domain,
            "task": s.task,
            "card_rows": s.card_rows,
            "license": s.license.spdx,
            "commercial": s.commercial,
            "homogeneous": s.homogeneous,
            "available": s.available,
            "recipe": s.name in implemented,
            "access": s.access.kind,
            "quality": s.quality,
        }
        for s in load_catalog().values()
    ]


@main.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the table as a JSON list of objects.")
def list_sources(as_json: bool) -> None:
    """The catalog: every M3E source, its licence, and whether its recipe exists."""
    rows = _catalog_rows()
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    table = Table(title=f"{len(rows)} sources")
    for col in ("name", "domain", "task", "card rows", "license", "commercial", "s2s", "available", "recipe"):
        table.add_column(col, justify="right" if col == "card rows" else "left")
    yes = {True: "yes", False: "-"}
    for r in rows:
        table.add_row(
            r["name"], r["domain"], r["task"], f"{r['card_rows']:,}", r["license"], yes[r["commercial"]],
            yes[r["homogeneous"]], yes[r["available"]], yes[r["recipe"]],
        )
    tables().print(table)


def _choose(recipe_arg: str, commercial_only: bool) -> list:
    """The sources --recipe/--only names; an empty value or an unknown name stops with the closest names."""
    if recipe_arg.strip() != "all":
        names = [n.strip() for n in recipe_arg.split(",") if n.strip()]
        if not names:
            raise click.BadParameter(f"{recipe_arg!r} names no source: give 'all' or source names "
                                     "(`m3e-data list` shows them)", param_hint="--recipe")
        known = list(load_catalog())
        for name in names:
            if name not in known:
                close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
                hint = f"did you mean {' or '.join(close)}?" if close else "`m3e-data list` shows the catalog"
                raise click.BadParameter(f"unknown source {name!r}: {hint}", param_hint="--recipe")
    try:
        return select_sources(recipe_arg, commercial_only)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--recipe") from None


def _parse_recipe_options(values: tuple[str, ...], building: set[str]) -> dict[str, dict[str, str]]:
    parsed: dict[str, dict[str, str]] = {}
    for value in values:
        name, sep, rest = value.partition(".")
        key, eq, text = rest.partition("=")
        if not sep or not eq or not name or not key:
            raise click.BadParameter(f"{value!r}: expected SOURCE.KEY=VALUE", param_hint="--option")
        # A misspelt or unselected source would otherwise be ignored and the build run with the defaults.
        if name not in recipe_names():
            close = difflib.get_close_matches(name, recipe_names(), n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise click.BadParameter(f"{value!r}: no recipe named {name!r}{hint}", param_hint="--option")
        if name not in building:
            raise click.BadParameter(f"{value!r}: {name} is not being built (see --recipe/--only and "
                                     "--commercial-only)", param_hint="--option")
        parsed.setdefault(name, {})[key] = text
    return parsed


def _summary(results: list[SourceResult]) -> Table:
    table = Table(title="m3e build")
    for col in ("source", "status", "read", "written", "dropped", "top drop reasons", "seconds", "flag"):
        table.add_column(col, justify="right" if col in ("read", "written", "dropped", "seconds") else "left")
    for r in results:
        if r.status in (BUILT, UNCHANGED):
            top = ", ".join(f"{k} {v:,}" for k, v in r.counts.dropped.most_common(3))
            marks = ([f"! {r.flag}"] if r.flag else []) + [f"no split {s}" for s in r.missing_splits]
            table.add_row(
                r.name, r.status, f"{r.counts.read:,}", f"{r.counts.written:,}",
                f"{sum(r.counts.dropped.values()):,}", top, f"{r.seconds:.1f}", "; ".join(marks),
            )
        else:
            table.add_row(r.name, r.status, "", "", "", r.reason, "", "")
    return table


@main.command("build")
@click.option("--recipe", "--only", "recipe_arg", default="all", show_default=True, metavar="NAMES",
              help="Which sources: 'all' or a comma-separated list of names (`m3e-data list`). --only is the "
                   "same option, spelt as mine and train spell it.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Output folder.")
@click.option("--sources", default="hub", show_default=True,
              help="'hub' (download from the Hugging Face Hub), 'demo' (bundled demo data), or a folder "
                   "holding one sub-folder per source.")
@click.option("--splits", default=None, help="Comma-separated splits to read (default: every split).")
@click.option("--commercial-only", is_flag=True, help="Build only sources whose licence permits commercial use.")
@click.option("--option", "recipe_option", multiple=True, metavar="SOURCE.KEY=VALUE",
              help="A recipe option, e.g. webtext2019zh.best_answer_only=true (repeatable).")
@click.option("--no-hq", is_flag=True, help="Stop after normalize (skip the m3e-hq stage).")
@click.option("--allow-empty", is_flag=True,
              help="Exit 0 even when a source lost >= 99% of its rows to one drop reason (or read none).")
@hq_options
def build_command(
    recipe_arg: str, out: Path, sources: str, splits: str | None, commercial_only: bool,
    recipe_option: tuple[str, ...], no_hq: bool, allow_empty: bool, config_path: Path | None,
    decontaminate: tuple[Path, ...], keep_eval_splits: bool, workers: int, verify: bool,
) -> None:
    """Normalize sources into OUT/m3e/<source>/ in the unified schema, then run m3e-hq (quality filter,
    dedup, decontamination) into OUT/m3e-hq and OUT/rejects unless --no-hq."""
    chosen = _choose(recipe_arg, commercial_only)
    recipe_options = _parse_recipe_options(recipe_option, {s.name for s in chosen})
    if sources == "hub" and any(s.access.kind == "hub" and s.available for s in chosen):
        check_hub("build")
    elif sources not in ("hub", "demo"):
        local_folder(sources, "--sources")
    hold_for_command(out)  # one run per output folder, normalize and hq together
    options = BuildOptions(
        out=out,
        sources=sources,
        splits=[s.strip() for s in splits.split(",")] if splits else None,
        commercial_only=commercial_only,
        recipe_options=recipe_options,
        verify=verify,
    )
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:,} rows"),
        TimeElapsedColumn(), console=messages, transient=True,
    ) as progress:
        tasks: dict[str, int] = {}

        def on_start(name: str) -> None:
            tasks[name] = progress.add_task(name, total=None)

        def on_rows(name: str, n: int) -> None:
            progress.advance(tasks[name], n)

        results = build(chosen, options, on_start=on_start, on_rows=on_rows)
    tables().print(_summary(results))
    for r in results:
        for line in r.warnings:
            messages.print(f"{r.name}: {line}", markup=False, highlight=False)
    if not any(r.status in (BUILT, UNCHANGED) for r in results):
        messages.print("nothing was built (see the reasons above); the m3e-hq stage did not run")
        sys.exit(1)
    if not no_hq:
        run_hq_command(out, config_path, decontaminate, keep_eval_splits, workers,
                       sources=[r.name for r in results if r.status in (BUILT, UNCHANGED)], verify=verify)
    flagged = [r for r in results if r.flag]
    for r in flagged:
        messages.print(
            f"{r.name}: {r.flag} (a label read with the wrong type, a missing side file?); "
            + ("accepted with --allow-empty" if allow_empty else "pass --allow-empty to accept it"),
            markup=False, highlight=False,
        )
    if any(r.status == "failed" for r in results) or (flagged and not allow_empty):
        sys.exit(1)


main.add_command(hq_command)
main.add_command(report_command)
main.add_command(push_command)
main.add_command(export_command)


def _register_plugins() -> None:
    """Commands other packages contribute (train/ adds `train`) without m3e_data importing them."""
    for ep in entry_points(group="m3e_data.commands"):
        if ep.name in main.commands:
            continue
        try:
            main.add_command(ep.load(), ep.name)
        except Exception as exc:  # an optional extra that is not installed must not break the CLI
            missing = f"{type(exc).__name__}: {exc}"

            @click.command(ep.name, help=f"(unavailable: {missing})", context_settings={"ignore_unknown_options": True})
            @click.argument("args", nargs=-1, type=click.UNPROCESSED)
            def unavailable(args: tuple[str, ...], _why: str = missing) -> None:
                raise click.ClickException(f"this command is unavailable: {_why}")

            main.add_command(unavailable, ep.name)


main.add_command(mine_command)
_register_plugins()
