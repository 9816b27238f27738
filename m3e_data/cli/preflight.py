"""Checks a command makes before it starts work: the extra it needs is installed, a value that looks like a
local folder exists, the Hugging Face Hub answers (within seconds, not after minutes of retries), and a
push's token may write the repository.

Each failure is a click.ClickException: one line naming what failed and what to do, exit code 1.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import ssl
import threading
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import click

DEFAULT_TIMEOUT = 5.0
_TRUE = {"1", "ON", "YES", "TRUE"}

# What each extra brings, as the import names `find_spec` looks for.
EXTRAS: dict[str, tuple[str, ...]] = {
    "mine": ("torch", "transformers"),
    "train": ("torch", "transformers", "sentence_transformers", "accelerate"),
}

# What to do instead of the Hub, per command.
_INSTEAD = {
    "build": "build from local files with --sources DIR, try the bundled demo with --sources demo",
    "mine": "pass a local model folder with --model DIR",
    "train": "pass a local folder to --in and --model",
    "push": "stage it with --dry-run DIR and push later (nothing was staged or sent)",
}


class PreflightError(click.ClickException):
    """An expected failure found before any work started."""


def require_extra(extra: str, command: str) -> None:
    """Stop with the install line when a module of `extra` is missing (checked without importing it)."""
    missing = [name for name in EXTRAS[extra] if _missing(name)]
    if missing:
        raise PreflightError(
            f"`m3e-data {command}` needs the [{extra}] extra ({', '.join(missing)} not installed): on CPU "
            f"`pip install torch==2.13.0 && pip install 'm3e-data[{extra}]'`, on a GPU machine torch for your "
            f"CUDA first (README, Install)"
        )


def _missing(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is None
    except (ImportError, ValueError):  # a parent package missing, or a module entry set to None
        return True


def hub_endpoint() -> str:
    # Read at call time: huggingface_hub reads HF_ENDPOINT once, at its import.
    return (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in _TRUE


def hub_timeout() -> float:
    text = os.environ.get("M3E_HUB_TIMEOUT", "").strip()
    if not text:
        return DEFAULT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise PreflightError(f"M3E_HUB_TIMEOUT={text!r}: expected a number of seconds above 0")
    return value


def check_hub(command: str) -> None:
    """Stop in one line, within about the timeout, when the Hub does not answer an HTTP request.

    Any HTTP answer (even an error status) counts as reachable: the Hub's own reply is then explained
    by the command. HF_HUB_OFFLINE=1 skips the check (the cache is all that will be read).
    """
    if hub_offline():
        return
    endpoint, timeout = hub_endpoint(), hub_timeout()
    failure: list[str] = []
    # A thread bounds what socket timeouts do not: a DNS lookup that hangs.
    probe = threading.Thread(target=lambda: failure.extend(_probe(endpoint, timeout)), daemon=True)
    probe.start()
    probe.join(timeout + 1.0)
    if probe.is_alive():
        failure = [f"no answer within {timeout:g} s"]
    if failure:
        raise PreflightError(
            f"cannot reach the Hugging Face Hub at {endpoint} (HF_ENDPOINT) for `m3e-data {command}`: "
            f"{failure[0]}. Check the network or point HF_ENDPOINT at a mirror; or {_INSTEAD[command]}, or set "
            f"HF_HUB_OFFLINE=1 to use only what the local Hub cache holds. M3E_HUB_TIMEOUT=SECONDS waits longer."
        )


def _probe(endpoint: str, timeout: float) -> list[str]:
    host = urlsplit(endpoint).hostname or endpoint
    try:
        with urllib.request.urlopen(f"{endpoint}/api/whoami-v2", timeout=timeout):
            return []
    except urllib.error.HTTPError:  # it answered
        return []
    except urllib.error.URLError as exc:
        reason = exc.reason
    except (OSError, ValueError) as exc:
        reason = exc
    if isinstance(reason, socket.gaierror):
        return [f"the name {host} does not resolve (DNS)"]
    if isinstance(reason, ConnectionRefusedError):
        return [f"{host} refused the connection"]
    if isinstance(reason, TimeoutError | socket.timeout):
        return [f"{host} accepted the connection but sent no answer within {timeout:g} s"]
    if isinstance(reason, ssl.SSLError):
        return [f"the TLS handshake with {host} failed ({reason})"]
    return [f"{type(reason).__name__}: {reason}"]


def looks_like_path(value: str) -> bool:
    """A local path rather than a Hub id: it starts with `.`, `/` or `~`, has more than one `/` (a Hub id
    has one), or has a separator and a leading part of it exists here (`out/nope` when `out/` exists)."""
    if value.startswith((".", "~", os.sep)) or (os.altsep and value.startswith(os.altsep)):
        return True
    if value.count("/") > 1:
        return True
    if os.sep in value or (os.altsep and os.altsep in value):
        return any(parent.exists() for parent in Path(value).parents if str(parent) != ".")
    return False


def local_folder(value: str | Path, option: str) -> Path:
    """`value` as an existing folder, or stop at once with "no such folder"."""
    path = Path(value).expanduser()
    if not path.is_dir():
        what = "not a folder" if path.exists() else "no such folder"
        raise click.BadParameter(f"{what}: {value}", param_hint=option)
    return path


def local_or_hub(value: str, option: str, command: str) -> bool:
    """True when `value` is a local folder; a path-like value that does not exist stops at once; otherwise
    it is a Hub id and the Hub must answer. An object store URL is refused: these commands read local files."""
    from m3e_data.storage.remote import is_url

    if is_url(value):
        raise click.BadParameter(f"{value}: {command} {option} takes a local folder or a Hub id, not an object "
                                 "store URL (copy it down with your store's tools)", param_hint=option)
    if Path(value).expanduser().exists():
        return True
    if looks_like_path(value):
        local_folder(value, option)
    check_hub(command)
    return False


def check_push(repo_id: str, api: object | None = None) -> None:
    """Before staging: a valid OWNER/NAME, a token, the Hub reachable, and a token that may write there."""
    from huggingface_hub import HfApi, get_token
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        if repo_id.count("/") != 1:
            raise HFValidationError("expected OWNER/NAME")
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise click.BadParameter(f"{repo_id!r}: {exc}", param_hint="--repo-id") from None
    if get_token() is None:
        raise PreflightError("not logged in to the Hugging Face Hub: set HF_TOKEN or run `hf auth login` "
                             "(nothing was staged)")
    if hub_offline():  # the upload itself will say it is offline; there is nothing to ask
        return
    check_hub("push")
    api = api or HfApi(endpoint=hub_endpoint())
    try:
        who = api.whoami()  # type: ignore[attr-defined]
    except HfHubHTTPError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        raise PreflightError(f"the Hub at {hub_endpoint()} refused the token (HTTP {status}): set a valid "
                             "HF_TOKEN or run `hf auth login` (nothing was staged)") from None
    role = (who.get("auth") or {}).get("accessToken", {}).get("role")
    if role == "read":
        raise PreflightError(f"the token of {who.get('name')} is read-only: create a token with write access "
                             "and set HF_TOKEN or run `hf auth login` (nothing was staged)")
    owner = repo_id.split("/")[0]
    names = {who.get("name")} | {org.get("name") for org in who.get("orgs") or []}
    if owner not in names:
        raise PreflightError(
            f"--repo-id {repo_id}: the token belongs to {who.get('name')} (organisations: "
            f"{', '.join(sorted(n for n in names - {who.get('name')} if n)) or 'none'}), which cannot write under "
            f"{owner}; use {who.get('name')}/NAME or log in as {owner} (nothing was staged)"
        )
