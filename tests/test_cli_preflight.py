"""Issue 14, items 1-2: a missing extra, a Hub that cannot be reached or never answers, a mistyped local
path and a push whose token cannot write each stop at once, in one line that says what to do.

The network is real and local: a closed port on 127.0.0.1, a socket that accepts and never answers, and a
tiny HTTP server standing in for the Hub's address (only HfApi.whoami, the account, is replaced).
"""

from __future__ import annotations

import http.server
import inspect
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import huggingface_hub
import pytest
import requests
from click.testing import CliRunner
from huggingface_hub.errors import HfHubHTTPError

from m3e_data.cli.main import main
from m3e_data.cli.preflight import check_hub, looks_like_path


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def silent_hub():
    """A server that accepts every connection and never sends a byte."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


@pytest.fixture
def answering_hub():
    """An HTTP server that answers every request (404), as any reachable endpoint does."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def online(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("M3E_HUB_TIMEOUT", "1")
    return monkeypatch


# ---- 1. a missing extra ---------------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["mine", "train"])
def test_a_missing_extra_is_named_with_its_install_line_and_exit_1(command, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    argv = ["m3e-data", command, "--in", str(folder), "--out", str(tmp_path / "o")]
    if command == "train":
        argv += ["--model", str(folder)]
    code = f"import sys; sys.modules['torch'] = None; sys.argv = {argv!r}; from m3e_data.cli.main import main; main()"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert f"`m3e-data {command}` needs the [{command}] extra (torch not installed)" in done.stderr
    assert f"pip install torch==2.13.0 && pip install 'm3e-data[{command}]'" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "o").exists()


# ---- 2. the Hub: refused, silent, skipped -----------------------------------------------------------------

def _said(result) -> str:
    return " ".join(result.output.split())


def test_build_from_an_unreachable_hub_stops_in_one_line_naming_the_way_out(online, tmp_path):
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    online.setenv("HF_ENDPOINT", endpoint)
    start = time.monotonic()
    result = CliRunner().invoke(main, ["build", "--recipe", "all", "--out", str(tmp_path / "o")])
    assert time.monotonic() - start < 5
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    said = _said(result)
    assert f"cannot reach the Hugging Face Hub at {endpoint} (HF_ENDPOINT) for `m3e-data build`" in said
    assert "refused the connection" in said
    for way_out in ("--sources DIR", "--sources demo", "HF_HUB_OFFLINE=1", "M3E_HUB_TIMEOUT"):
        assert way_out in said
    assert "Traceback" not in result.output and not (tmp_path / "o").exists()


def test_a_hub_that_accepts_and_never_answers_fails_within_the_timeout(online, silent_hub, tmp_path):
    online.setenv("HF_ENDPOINT", silent_hub)
    start = time.monotonic()
    result = CliRunner().invoke(main, ["build", "--recipe", "cmrc2018", "--out", str(tmp_path / "o")])
    assert time.monotonic() - start < 4  # M3E_HUB_TIMEOUT=1, not minutes
    assert result.exit_code == 1
    assert "accepted the connection but sent no answer within 1 s" in _said(result)
    # train with a Hub id meets the same check, with its own way out.
    model = tmp_path / "model"
    model.mkdir()
    start = time.monotonic()
    result = CliRunner().invoke(main, ["train", "--in", "someone/m3e-hq", "--model", str(model),
                                       "--out", str(tmp_path / "m")])
    assert time.monotonic() - start < 4 and result.exit_code == 1
    assert f"at {silent_hub} (HF_ENDPOINT) for `m3e-data train`" in _said(result)
    assert "pass a local folder to --in and --model" in _said(result)


def test_offline_mode_skips_the_check_and_a_local_build_never_makes_it(online, tmp_path):
    online.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    online.setenv("HF_HUB_OFFLINE", "1")
    check_hub("build")  # no network asked
    online.delenv("HF_HUB_OFFLINE")
    result = CliRunner().invoke(main, ["build", "--recipe", "cmrc2018", "--sources", "demo",
                                       "--out", str(tmp_path / "o"), "--no-hq"])
    assert result.exit_code == 0, result.output


def test_a_bad_timeout_setting_is_named(online):
    online.setenv("M3E_HUB_TIMEOUT", "soon")
    result = CliRunner().invoke(main, ["build", "--recipe", "cmrc2018", "--out", "o"])
    assert result.exit_code == 1 and "M3E_HUB_TIMEOUT='soon': expected a number of seconds" in result.output


# ---- 2. path-like values -----------------------------------------------------------------------------------

def test_a_value_that_looks_like_a_path_is_a_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    assert looks_like_path("out/nope") and looks_like_path("./m3e") and looks_like_path("a/b/c")
    assert looks_like_path(str(tmp_path / "x")) and looks_like_path("~/models/x")
    assert not looks_like_path("moka-ai/m3e-small") and not looks_like_path("m3e-small")


def test_a_mistyped_folder_is_told_at_once_not_taken_for_a_hub_id(online, tmp_path):
    online.chdir(tmp_path)
    online.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")  # asking it would be the bug
    (tmp_path / "out").mkdir()
    cases = [
        ["train", "--data", "out/nope", "--model", "moka-ai/m3e-small", "--out", "m"],  # the old spelling too
        ["train", "--in", "out", "--model", "./models/base", "--out", "m"],
        ["mine", "--in", "out/nope", "--out", "o"],
        ["mine", "--in", "out", "--out", "o", "--model", "out/base"],
        ["push", "--in", "out/nope", "--repo-id", "me/x", "--dry-run", "d"],
        ["export", "out/nope", "--format", "uniem", "--out", "e"],
    ]
    for argv in cases:
        start = time.monotonic()
        result = CliRunner().invoke(main, argv)
        assert time.monotonic() - start < 2, argv
        wrong = next(v for v in argv if v.startswith(("out/", "./")))
        assert result.exit_code == 2 and f"no such folder: {wrong}" in result.output, (argv, result.output)
        assert "Traceback" not in result.output and "cannot reach" not in result.output


# ---- 2. push checks the token and the repository before it stages -------------------------------------------

@pytest.fixture
def account(online, answering_hub, monkeypatch, tmp_path):
    """A token, a Hub that answers, and the account whoami reports (as the Hub's JSON has it)."""
    online.setenv("HF_ENDPOINT", answering_hub)
    monkeypatch.setenv("HF_TOKEN", "hf_" + "x" * 34)
    me = {"name": "someone", "orgs": [{"name": "team"}], "auth": {"accessToken": {"role": "write"}}}
    real = inspect.signature(huggingface_hub.HfApi.whoami)

    def whoami(self, *args, **kwargs):
        real.bind(self, *args, **kwargs)
        return me

    monkeypatch.setattr(huggingface_hub.HfApi, "whoami", whoami)
    data = tmp_path / "out" / "m3e-hq"
    (data / "cmrc2018").mkdir(parents=True)
    return me, data


def _push(data: Path, repo: str):
    return CliRunner().invoke(main, ["push", "--in", str(data), "--repo-id", repo])


def _nothing_staged(data: Path) -> bool:
    return not (data.parent / "hub").exists()


def test_push_to_a_namespace_the_token_cannot_write_stops_before_staging(account):
    me, data = account
    result = _push(data, "other/m3e-hq")
    assert result.exit_code == 1 and _nothing_staged(data)
    said = _said(result)
    assert "--repo-id other/m3e-hq: the token belongs to someone (organisations: team), which cannot write " \
           "under other" in said and "nothing was staged" in said
    me["auth"]["accessToken"]["role"] = "read"
    result = _push(data, "team/m3e-hq")
    assert result.exit_code == 1 and "is read-only" in _said(result) and _nothing_staged(data)


def test_push_with_a_rejected_or_missing_token_stops_before_staging(account, monkeypatch):
    me, data = account
    response = requests.Response()
    response.status_code = 401

    def refused(self, *args, **kwargs):
        raise HfHubHTTPError("401 Client Error: Unauthorized", response=response)

    monkeypatch.setattr(huggingface_hub.HfApi, "whoami", refused)
    result = _push(data, "someone/m3e-hq")
    assert result.exit_code == 1 and "refused the token (HTTP 401)" in _said(result) and _nothing_staged(data)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    result = _push(data, "someone/m3e-hq")
    assert result.exit_code == 1 and "not logged in" in _said(result) and _nothing_staged(data)
    result = _push(data, "not a repo")
    assert result.exit_code == 2 and "--repo-id" in result.output and _nothing_staged(data)


def test_push_with_no_network_is_one_line_before_staging(account, monkeypatch):
    _, data = account
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    result = _push(data, "someone/m3e-hq")
    assert result.exit_code == 1 and _nothing_staged(data)
    said = _said(result)
    assert "for `m3e-data push`" in said and "--dry-run DIR" in said and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) <= 3  # click wraps nothing: one Error line


def test_the_cli_subprocess_has_no_traceback_for_a_dead_hub(tmp_path):
    env = {**os.environ, "HF_ENDPOINT": f"http://127.0.0.1:{_closed_port()}", "M3E_HUB_TIMEOUT": "1"}
    env.pop("HF_HUB_OFFLINE", None)
    code = "import sys; sys.argv[0] = 'm3e-data'; from m3e_data.cli.main import main; main()"
    done = subprocess.run([sys.executable, "-c", code, "build", "--recipe", "all", "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().startswith("Error: cannot reach the Hugging Face Hub")
