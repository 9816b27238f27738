"""One option vocabulary across commands: `--only NAMES` says which sources, `--in DIR` names the input
folder, `--commercial-only` wherever rows flow. Old spellings stay as hidden aliases for one release.

Decorators over click commands, applied under `@click.command`; the command function sees one parameter.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from m3e_data.cli.console import messages

_GIVEN = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)


def old_spelling(flag: str, new: str, dest: str, **attrs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Accept `flag` (hidden) as the old spelling of the option `new` whose parameter is `dest`."""
    hidden = f"old_{flag.lstrip('-').replace('-', '_')}_for_{dest}"

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            value = kwargs.pop(hidden)
            ctx = click.get_current_context()
            if ctx.get_parameter_source(hidden) in _GIVEN:
                if ctx.get_parameter_source(dest) in _GIVEN:
                    raise click.UsageError(f"{flag} is the old spelling of {new}: give only {new}")
                messages.print(f"note: {flag} is now {new}; the old spelling goes in the next release",
                               markup=False, highlight=False)
                kwargs[dest] = value
            return fn(*args, **kwargs)

        return click.option(flag, hidden, hidden=True, help=f"Old spelling of {new} (kept for one release).",
                            **attrs)(wrapper)

    return decorate


def in_folder(dest: str, old_positional: str, help: str,
              urls: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`--in DIR`, with the command's former positional argument still accepted (as `old_positional`).
    `urls`: an object store URL is passed on as a string (the command mirrors it); else it is refused."""
    positional = f"positional_{dest}"

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            given, option = kwargs.pop(positional), kwargs[dest]
            if given is not None and option is not None and Path(given) != Path(option):
                raise click.UsageError(f"two input folders: {given} and --in {option}; give only --in")
            value = option if option is not None else given
            if value is None:
                raise click.UsageError("Missing option '--in': the input folder")
            from m3e_data.cli.preflight import local_folder
            from m3e_data.storage.remote import is_url

            if is_url(value):
                if not urls:
                    raise click.BadParameter(
                        f"{value}: {click.get_current_context().info_name} reads a local folder; object store "
                        "URLs are taken by build, hq, report and mine only", param_hint="--in")
                kwargs[dest] = value
                return fn(*args, **kwargs)
            kwargs[dest] = local_folder(value, "--in")
            return fn(*args, **kwargs)

        wrapper = click.argument(positional, required=False, metavar=f"[{old_positional}]")(wrapper)
        return click.option("--in", dest, default=None, metavar="DIR|URL" if urls else "DIR",
                            help=help + f" (the positional {old_positional} still works).")(wrapper)

    return decorate


def names(value: str | None) -> list[str] | None:
    """A comma-separated --only value as a list (None: every source)."""
    if value is None:
        return None
    return [n.strip() for n in value.split(",") if n.strip()]
