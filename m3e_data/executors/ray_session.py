"""Connecting to Ray: the optional extra, the address, and one session per command."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

INSTALL_HINT = "the Ray executor needs the optional extra: pip install 'm3e-data[ray]'"


class RayUnavailable(RuntimeError):
    """--executor ray was asked for but ray is not installed (a usage error, not a crash)."""


def require_ray() -> Any:
    """Import ray, or say which extra to install."""
    try:
        import ray
    except ImportError as exc:
        raise RayUnavailable(INSTALL_HINT) from exc
    return ray


def resolve_address(address: str | None) -> str | None:
    """--ray-address, else RAY_ADDRESS, else None (a local Ray started for this command)."""
    return address or os.environ.get("RAY_ADDRESS") or None


def unreachable(address: str | None, timeout: float = 3.0) -> str | None:
    """Why nothing answers at a HOST:PORT (or ray://HOST:PORT) address, or None. ray.init retries an
    address where no cluster runs for minutes, so the command asks first; "auto" and "local" pass."""
    if not address or address in ("auto", "local"):
        return None
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return f"{address!r} is not HOST:PORT, ray://HOST:PORT or auto"
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        return f"no Ray cluster answers at {address} ({exc.strerror or exc}); is `ray start --head` running there?"
    return None


@contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[Any]:
    """Join the cluster at `address` (or start a local one) for the length of a command.

    A session that was already initialised (a test's `ray.init(num_cpus=2)`, a notebook) is reused and left
    running: shutting down someone else's cluster connection would break them.
    """
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    address = resolve_address(address)
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
    if address is None and num_cpus is not None:
        kwargs["num_cpus"] = num_cpus
    ray.init(address=address, **kwargs)
    try:
        yield ray
    finally:
        ray.shutdown()


def check_ray_executor(ray_address: str | None) -> None:
    """--executor ray's preconditions, checked before any work by every command that takes it: ray
    installed, and a cluster answering at the address (ray.init would retry a dead one for minutes).
    Raises click.BadParameter, a usage error (exit 2)."""
    import click

    try:
        ray = require_ray()
    except RayUnavailable as exc:
        raise click.BadParameter(str(exc), param_hint="--executor") from None
    if ray.is_initialized():  # ray_session joins the session already open, whatever the address says
        return
    why = unreachable(resolve_address(ray_address))
    if why:
        raise click.BadParameter(why, param_hint="--ray-address" if ray_address else "RAY_ADDRESS")
