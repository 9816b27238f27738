"""The failures a user can meet and act on, each told in one line: what happened, where, what to do.

The command line prints that line and exits 1 instead of a traceback (`--debug` or M3E_DEBUG=1 shows the
traceback). Anything not recognised here is a bug, and keeps its traceback.
"""

from __future__ import annotations

import errno
import re

_NETWORK_MODULES = ("requests", "httpx", "httpcore", "urllib3", "huggingface_hub")
_NO_SPACE = re.compile(r"no space left on device|\berrno 28\b|disk quota exceeded", re.IGNORECASE)


def explain(exc: BaseException, command: str | None = None) -> str | None:
    """One line for an expected failure (it or an exception it was raised from), or None for a bug."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        line = _explain_one(current, command)
        if line is not None:
            return line
        current = current.__cause__ or current.__context__
    return None


def _explain_one(exc: BaseException, command: str | None) -> str | None:
    doing = f" during `m3e-data {command}`" if command else ""
    if _from_network_library(exc):
        return _network(exc, command, doing)
    if isinstance(exc, MemoryError):
        return f"out of memory{doing}: lower --workers, or run it on a machine with more memory"
    if not isinstance(exc, OSError):
        return None
    where = f" ({exc.filename})" if exc.filename else ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT) or _NO_SPACE.search(str(exc)):
        return (f"no space left on the disk{doing}{where}: free some space there (or write to another disk) "
                "and run the same command again; finished stages are reused, the interrupted one restarts")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied{doing}{where}: make it writable for this user, or choose another folder"
    if exc.errno == errno.EROFS:
        return f"read-only file system{doing}{where}: write to a folder on a writable disk"
    if exc.errno == errno.EMFILE:
        return f"too many open files{doing}: raise the limit (ulimit -n) and run the command again"
    return None


def _from_network_library(exc: BaseException) -> bool:
    return any(cls.__module__.split(".")[0] in _NETWORK_MODULES for cls in type(exc).__mro__)


def _hub_endpoint() -> str:
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - huggingface_hub is a dependency
        return "https://huggingface.co"
    return constants.ENDPOINT


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


def _network(exc: BaseException, command: str | None, doing: str) -> str:
    endpoint = _hub_endpoint()
    name = type(exc).__name__
    first = (str(exc).strip().splitlines() or [""])[0][:200]
    status = _status(exc)
    if status is None:
        again = {
            "push": "run push again when it is reachable: the staged folder is reused and the upload resumes",
            "build": "run the build again when it is reachable, or build from a local copy with --sources DIR",
        }.get(command or "", "run the command again when it is reachable")
        return (f"cannot reach the Hugging Face Hub at {endpoint}{doing} ({name}: {first}); check the "
                f"network, a proxy or HF_ENDPOINT, then {again}")
    if status in (401, 403):
        todo = "check that HF_TOKEN (or `hf auth login`) holds a token with access, with write access for push"
    elif status == 404:
        todo = "check the repository id and revision"
    elif status == 429 or status >= 500:
        todo = "the Hub is busy or failing: run the command again later"
    else:
        todo = "see the message; --debug shows the full error"
    return f"the Hugging Face Hub at {endpoint} answered HTTP {status}{doing} ({first}): {todo}"
