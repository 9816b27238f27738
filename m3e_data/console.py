"""Where the command line prints: progress bars and messages go to stderr, summary tables to stdout.

A table printed to a pipe or a log file gets a fixed width that fits every column; at a terminal it takes
the terminal's width.
"""

from __future__ import annotations

import sys

import click
from rich.console import Console

messages = Console(stderr=True)


def tables() -> Console:
    return Console() if sys.stdout.isatty() else Console(width=160)


def error_line(text: str) -> None:
    """One line on stderr, never wrapped (rich would wrap it to the terminal's width), grep-able."""
    click.echo(f"error: {' '.join(text.split())}", err=True)
