"""Object store URLs on the command line: `--out s3://...` (build), `OUT` (hq, report), `--in/--out` (mine).

A command given a URL works in a local mirror (`--work-dir`, default under ~/.cache/m3e-data/out/), locked
as a local OUT is, after removing what a crashed run left on the store and pulling every committed stage
folder; each folder a stage commits is pushed at once, and everything committed is pushed when the command
ends (the folders Ray workers committed included), even when it fails or is interrupted.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from m3e_data.cli.console import error_line, messages
from m3e_data.storage.remote import RemoteError, RemoteOut, check_bucket, filesystem, is_url

_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]+:/")


def work_dir_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--work-dir", type=click.Path(path_type=Path, file_okay=False), default=None, metavar="DIR",
        help="With an object store URL (s3://, gs://, ...): the local folder the stages work in, synced with the "
             "store (default: ~/.cache/m3e-data/out/<hash of the URL>; XDG_CACHE_HOME honoured).")(fn)


URL_COMMANDS = "object store URLs are taken by build, hq, report and mine only"


def refuse_url(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """A click callback for options that write local folders (or files) only."""
    kind = "file" if isinstance(param.type, click.Path) and not param.type.dir_okay else "folder"
    for v in value if isinstance(value, tuple) else (value,):
        # click.Path has already made s3://b/x into s3:/b/x: a scheme and one slash is a URL too.
        if v is not None and _SCHEME.match(str(v)) and not str(v).lower().startswith("file:"):
            shown = re.sub(r"^([^:/]+):/+", r"\1://", str(v))  # the URL as typed
            raise click.BadParameter(
                f"{shown}: {ctx.info_name} writes a local {kind}; {URL_COMMANDS} (copy it with your store's tools)",
                param=param)
    return value


def open_out(value: str | Path, work_dir: Path | None, option: str) -> tuple[Path, RemoteOut | None]:
    """A local OUT as it is; a URL: its mirror, locked, cleaned and pulled, pushed when the command ends."""
    from m3e_data.cli.hq import hold_for_command

    if not is_url(str(value)):
        if work_dir is not None:
            raise click.BadParameter("--work-dir is for an object store URL (s3://, gs://, ...)",
                                     param_hint="--work-dir")
        return Path(value), None
    try:
        session = RemoteOut(str(value), work_dir)
    except RemoteError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None
    hold_for_command(session.mirror)
    try:
        session.open()
    except RemoteError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:  # fsspec's transport errors (s3fs maps the store's answers to OSErrors)
        raise click.ClickException(f"{session.url}: reading the store failed ({type(exc).__name__}: {exc}); "
                                   "nothing was built, rerun to retry") from None
    session.__enter__()
    # Registered after the lock: closes run last-in first-out, so the push happens while the lock is held.
    click.get_current_context().call_on_close(lambda: _finish(session))
    messages.print(f"{session.url}: working in {session.mirror}", markup=False, highlight=False)
    if session.deleted:
        messages.print(f"{session.url}: removed {len(session.deleted)} uncommitted file(s) a crashed run left "
                       f"({', '.join(session.deleted[:3])}{', ...' if len(session.deleted) > 3 else ''})",
                       markup=False, highlight=False)
    return session.mirror, session


def _finish(session: RemoteOut) -> None:
    """Push what is committed; a failure of the push fails the command, unless it is failing already."""
    session.__exit__(None, None, None)
    failing = sys.exc_info()[1]
    failing = failing is not None and not (isinstance(failing, SystemExit) and failing.code in (0, None))
    try:
        session.push()
    except Exception as exc:  # a transport error, in one line
        line = f"{session.url}: the push of {session.mirror} failed ({type(exc).__name__}: {exc}); rerun to retry"
        if failing:
            error_line(line)
            return
        raise click.ClickException(line) from None
    messages.print(f"{session.url}: committed stage folders pushed", markup=False, highlight=False)
    if session.removed:
        shown = ", ".join(session.removed[:3]) + (", ..." if len(session.removed) > 3 else "")
        messages.print(f"{session.url}: removed {len(session.removed)} stage folder(s) this command dropped "
                       f"({shown}); files of yours in them are kept", markup=False, highlight=False)


def check_sources_url(url: str) -> None:
    """--sources URL: the protocol's package is there and the bucket answers, before any work."""
    try:
        fs, path = filesystem(url)
        check_bucket(fs, path, url)
    except RemoteError as exc:
        raise click.ClickException(str(exc)) from None
