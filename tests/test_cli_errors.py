"""Expected failures end in one clear line and exit code 1; --debug / M3E_DEBUG=1 adds the traceback.

The failures are the audit's (issue 12): the disk filling up while m3e-hq writes, and the Hub unreachable
during push. The disk is filled by the real writer raising what Arrow raises on ENOSPC; the Hub is a
closed local port, so the connection error comes from the real HTTP stack.
"""

import errno
import os
import socket
import subprocess
import sys
import textwrap

import pytest
import requests
from click.testing import CliRunner
from huggingface_hub.errors import HfHubHTTPError

from m3e_data.cli.failures import explain
from m3e_data.cli.main import main
from m3e_data.storage import store


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    result = CliRunner().invoke(main, ["build", "--recipe", "cmrc2018", "--sources", "demo", "--out", str(out), "--no-hq"])
    assert result.exit_code == 0, result.output
    return out


def _disk_full(self, *args, **kwargs):
    # What pyarrow raises when a write hits a full disk: an OSError whose errno is not set.
    raise OSError("[Errno 28] Error writing bytes to file. Detail: [errno 28] No space left on device")


def test_disk_full_during_hq_is_one_line_and_exit_1(built, monkeypatch):
    monkeypatch.setattr(store.PartWriter, "write", _disk_full)
    result = CliRunner().invoke(main, ["hq", str(built), "--workers", "1"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: no space left on the disk during `m3e-data hq`")
    assert "free some space" in lines[-1] and "Traceback" not in result.output
    debug = CliRunner().invoke(main, ["--debug", "hq", str(built), "--workers", "1"])
    assert debug.exit_code == 1 and isinstance(debug.exception, OSError)  # the traceback is shown
    assert "error: no space left on the disk" in debug.stderr


def test_an_oserror_names_its_file_and_a_bug_keeps_its_traceback(built, monkeypatch):
    target = str(built / "m3e-hq" / "cmrc2018")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), target)

    monkeypatch.setattr("m3e_data.cli.hq.run_hq", full)
    result = CliRunner().invoke(main, ["hq", str(built)])
    assert result.exit_code == 1 and target in result.stderr and len(result.stderr.strip().splitlines()) == 1

    def bug(*args, **kwargs):
        raise KeyError("a bug")

    monkeypatch.setattr("m3e_data.cli.hq.run_hq", bug)
    assert isinstance(CliRunner().invoke(main, ["hq", str(built)]).exception, KeyError)


def test_hub_errors_are_told_by_kind():
    class ConnectError(Exception):  # httpx's, as huggingface_hub 1.x raises it (httpx is not installed here)
        __module__ = "httpx"

    line = explain(ConnectError("[Errno 111] Connection refused"), "push")
    assert line.startswith("cannot reach the Hugging Face Hub at ") and "staged folder is reused" in line
    response = requests.Response()
    response.status_code = 401
    line = explain(HfHubHTTPError("401 Client Error: Unauthorized", response=response), "push")
    assert "HTTP 401" in line and "HF_TOKEN" in line
    wrapped = RuntimeError("upload failed")
    wrapped.__cause__ = requests.ConnectionError("Max retries exceeded")
    assert explain(wrapped, "build").startswith("cannot reach the Hugging Face Hub")
    assert explain(ValueError("a bug"), "push") is None


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PUSH = textwrap.dedent("""
    import sys
    from pathlib import Path
    import m3e_data.cli.publish as cli
    from m3e_data.stages.publish.stage import upload

    def push(data_dir, repo_id, **kwargs):  # skip staging; the upload itself talks to the real Hub client
        upload(data_dir, repo_id)

    cli.push = push
    from m3e_data.cli.main import main
    main()
""")


@pytest.mark.parametrize("debug", [False, True])
def test_push_with_the_hub_unreachable_is_one_line_in_a_real_process(tmp_path, debug):
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    env = dict(os.environ, HF_ENDPOINT=endpoint, HF_TOKEN="hf_not_a_real_token", HF_HUB_DISABLE_TELEMETRY="1")
    env.pop("M3E_DEBUG", None)
    if debug:
        env["M3E_DEBUG"] = "1"
    proc = subprocess.run(
        [sys.executable, "-c", PUSH, "push", str(tmp_path), "--repo-id", "someone/m3e-hq"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    error = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and f"cannot reach the Hugging Face Hub at {endpoint} during `m3e-data push`" in error[0]
    assert ("Traceback" in proc.stderr) is debug
    if not debug:
        assert proc.stderr.strip().splitlines() == error
