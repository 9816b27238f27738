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
