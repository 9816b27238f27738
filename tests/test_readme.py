"""The README's catalog blocks are generated from manifests/ and the CLI (python -m tests.make_readme)."""

from tests.make_readme import BLOCKS, README, render


def test_readme_blocks_match_the_catalog():
    text = README.read_text(encoding="utf-8")
    for name in BLOCKS:
        assert f"<!-- generated:{name} -->" in text, f"README lost its generated:{name} block"
    assert render(text) == text, "README is out of date: run python -m tests.make_readme"


def test_readme_lists_every_source_and_runs_the_ci_test_command():
    text = README.read_text(encoding="utf-8")
    from m3e_data.catalog import load_catalog

    table = text.split("<!-- generated:sources -->")[1].split("<!-- /generated:sources -->")[0]
    for name in load_catalog():
        assert f"| [{name}](" in table
    ci = (README.parent / ".ci" / "run").read_text(encoding="utf-8")
    assert "python -m pytest -q" in ci and "python -m pytest -q" in text
    assert "m3e-data build --recipe all --sources demo" in text


def test_the_walk_through_names_a_model_folder_that_exists_and_commands_that_parse(tmp_path, monkeypatch):
    """The demo walk-through's commands: the model folder line gives a real model, and every m3e-data line
    parses with the CLI's options (running them all is the demo, not a unit test)."""
    import shlex
    import subprocess
    import sys
    from pathlib import Path

    from m3e_data.cli.main import main

    text = README.read_text(encoding="utf-8")
    block = text.split("The whole way through on the demo data", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    lines = [line.split("  #", 1)[0].strip() for line in block.strip().splitlines()]
    model_line = next(line for line in lines if line.startswith("MODEL="))
    code = shlex.split(model_line.split("$(", 1)[1].rsplit(")", 1)[0])[2]
    folder = Path(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip())
    assert (folder / "config.json").is_file(), folder
    # Paths into the clone (the bundled evaluation file) are relative to its root.
    commands = [
        shlex.split(line.replace('"$MODEL"', str(folder)).replace("m3e_data/", f"{README.parent / 'm3e_data'}/"))
        for line in lines if line.startswith("m3e-data ")
    ]
    assert [c[1] for c in commands] == ["build", "report", "mine", "report", "push", "export", "train"]
    monkeypatch.chdir(tmp_path)  # the folders the earlier steps would have made, for options that must exist
    for made in ("out/demo/m3e-hq", "out/demo/m3e-hq-with-score"):
        (tmp_path / made).mkdir(parents=True)
    for argv in commands:
        with main.make_context("m3e-data", argv[1:], resilient_parsing=False) as ctx:
            sub = main.get_command(ctx, argv[1])
            sub.make_context(argv[1], argv[2:], parent=ctx)  # raises on an unknown option or a missing one


def test_ci_installs_with_the_readmes_own_cpu_install_lines():
    """CI runs the README's install steps, so they are the ones proven to work: the development line of
    the Install section, command by command, is what .ci/run installs."""
    import re
    import shlex

    text = README.read_text(encoding="utf-8")
    block = text.split("## Install", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    lines = block.strip().splitlines()
    dev = lines[lines.index(next(x for x in lines if x.startswith("# development"))) + 1]
    readme = [shlex.split(step) for step in dev.split("&&")]
    ci = [shlex.split(line) for line in (README.parent / ".ci" / "run").read_text(encoding="utf-8").splitlines()
          if re.match(r"\s*python -m pip install", line)]
    assert [[w for w in c[2:] if w != "-q"] for c in ci] == readme
    cpu = lines[lines.index(next(x for x in lines if x.startswith("# mine + train on CPU"))) + 1]
    assert cpu.split("&&")[0] == dev.split("&&")[0]  # the same pinned CPU wheel as CI proves
