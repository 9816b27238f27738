"""Publishing: the staged Hub folder loads with `datasets`, the card parses, commercial-only holds.

Offline: the only thing replaced is the network, in HfApi.create_repo / HfApi.upload_folder.
"""

from __future__ import annotations

import fnmatch
import inspect
import json
import logging
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import datasets
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from huggingface_hub import DatasetCard, HfApi

from m3e_data.catalog import load_catalog
from m3e_data.cli.main import main
from m3e_data.manifest import write_stage
from m3e_data.schema import UNIFIED_SCHEMA
from m3e_data.stages.normalize.stage import BuildOptions, build, select_sources
from m3e_data.stages.publish import stage as publish
from m3e_data.stages.publish.card import hub_license
from m3e_data.stages.publish.hub_stage import MINING_KEY, StageError, scan_staged
from m3e_data.stages.publish.stage import CommercialRefusal, PublishError, commercial_problems, push
from m3e_data.storage import ownership
from m3e_data.storage.store import SUCCESS, atomic_write_json, parquet_files

REPO = "someone/m3e-hq"
TOKEN = "hf_tEsTtOkEnThatMustNeverBePrinted"


# ---- fixtures: a demo build, its m3e-hq and a mined (scored) copy -------------------------------------


def make_demo(out: Path) -> Path:
    """A demo build's OUT/m3e-hq: the hq stage's own output when it exists, else a copy of OUT/m3e."""
    build(select_sources("all"), BuildOptions(out=out, sources="demo"))
    hq = out / "m3e-hq"
    if not hq.is_dir():
        shutil.copytree(out / "m3e", hq)
    return hq


def make_scored(hq: Path) -> Path:
    """OUT/m3e-hq-with-score as the mine stage writes it: every row gets one more negative (the next
    row's positive) and scores, and each part carries the mining record in its schema metadata."""
    out = hq.parent / "m3e-hq-with-score"
    record = {"model": "moka-ai/m3e-base", "revision": "0123abcd", "score": "cosine similarity",
              "params": {"range": [10, 100], "num_negatives": 1}}
    for src in sorted(p for p in hq.iterdir() if p.is_dir()):
        rows = pa.concat_tables([pq.read_table(p) for p in parquet_files(src)]).to_pylist()
        for i, row in enumerate(rows):
            other = rows[(i + 1) % len(rows)]["positive"]
            if len(rows) > 1 and other not in (row["positive"], row["query"]):
                row["negatives"] = [*row["negatives"], other]
            row["positive_score"] = 0.9
            row["negative_scores"] = [round(0.5 - 0.1 * k, 2) for k in range(len(row["negatives"]))]
        schema = UNIFIED_SCHEMA.with_metadata({MINING_KEY: json.dumps({**record, "source": src.name}).encode()})
        (out / src.name).mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), out / src.name / "part-00000.parquet")
        atomic_write_json(out / src.name / SUCCESS, {"rows": len(rows)})
    write_stage(hq.parent, "mine", {"model": record["model"], "revision": record["revision"],
                                    "score": record["score"], "options": {"params": record["params"]}})
    return out


@pytest.fixture(scope="session")
def demo_hq(tmp_path_factory) -> Path:
    return make_demo(tmp_path_factory.mktemp("demo"))


@pytest.fixture
def hq(demo_hq: Path, tmp_path: Path) -> Path:
    """A private copy of the demo OUT (tests tamper with it)."""
    shutil.copytree(demo_hq.parent, tmp_path / "out")
    return tmp_path / "out" / "m3e-hq"


def input_counts(data_dir: Path) -> Counter:
    """(source, split) -> rows, read straight from the input Parquet."""
    counts: Counter = Counter()
    for part in sorted(data_dir.glob("*/part-*.parquet")):
        table = pq.read_table(part, columns=["source", "split", "commercial"])
        for row in table.group_by(["source", "split"]).aggregate([([], "count_all")]).to_pylist():
            counts[(row["source"], row["split"])] += row["count_all"]
    return counts


class FakeHub:
    """Records what would be sent to the Hub instead of sending it."""

    def __init__(self, monkeypatch) -> None:
        self.created: list[dict] = []
        self.uploads: list[dict] = []
        self.repos: dict[str, bool] = {}  # repo_id -> private, as the Hub would hold them
        hub = self
        # Calls must fit the real methods' signatures, so a renamed argument fails here, not on the Hub.
        real_create, real_upload = inspect.signature(HfApi.create_repo), inspect.signature(HfApi.upload_folder)
        real_info = inspect.signature(HfApi.repo_info)

        def create_repo(self, repo_id, **kwargs):
            real_create.bind(self, repo_id, **kwargs)
            hub.created.append({"repo_id": repo_id, **kwargs})
            hub.repos.setdefault(repo_id, bool(kwargs.get("private")))
            return f"https://huggingface.co/datasets/{repo_id}"

        def repo_info(self, repo_id, **kwargs):
            real_info.bind(self, repo_id, **kwargs)
            return SimpleNamespace(id=repo_id, private=hub.repos[repo_id])

        def upload_folder(self, **kwargs):
            real_upload.bind(self, **kwargs)
            folder = Path(kwargs["folder_path"])
            ignored = kwargs.get("ignore_patterns") or []  # what huggingface_hub leaves out (fnmatch)
            files = sorted(rel for p in folder.rglob("*") if p.is_file()
                           if not any(fnmatch.fnmatch(rel := p.relative_to(folder).as_posix(), pat)
                                      for pat in ignored))
            hub.uploads.append({**kwargs, "files": files})
            return "commit"

        monkeypatch.setattr(HfApi, "create_repo", create_repo)
        monkeypatch.setattr(HfApi, "repo_info", repo_info)
        monkeypatch.setattr(HfApi, "upload_folder", upload_folder)


@pytest.fixture
def fake_hub(monkeypatch) -> FakeHub:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    return FakeHub(monkeypatch)


# ---- staging and loading ------------------------------------------------------------------------------


def test_staged_folder_loads_every_config_with_its_rows_and_features(hq: Path, tmp_path: Path):
    import datasets

    stage_dir = tmp_path / "staged"
    # Half the biggest multi-row split: that split at least gets two shards, and must still load whole.
    splits = [t.filter(pc.equal(t["split"], sp)) for t in map(pq.read_table, hq.glob("*/part-*.parquet"))
              for sp in set(t["split"].to_pylist())]
    shard_bytes = max(t.nbytes for t in splits if t.num_rows > 1) // 2
    prepared, url = push(hq, REPO, dry_run=stage_dir, shard_bytes=shard_bytes)
    assert url is None
    expected = input_counts(hq)
    sources = sorted({s for s, _ in expected})
    assert sorted(prepared.staged.configs) == sources
    assert any(len(f.files) > 1 for splits in prepared.staged.configs.values() for f in splits.values())

    features = datasets.Features.from_arrow_schema(UNIFIED_SCHEMA)
    cache = tmp_path / "hf-cache"
    for config in ["all", *sources]:
        ds = datasets.load_dataset(str(stage_dir), config, cache_dir=str(cache))
        want = Counter()
        for (s, sp), n in expected.items():
            if config == "all" or s == config:
                want[sp] += n
        assert {split: d.num_rows for split, d in ds.items()} == dict(want), config
        for split, d in ds.items():
            assert d.features == features
            assert set(d["source"]) == {s for s, sp in expected if sp == split and config in ("all", s)}


def test_staged_rows_are_the_input_rows_in_named_shards(hq: Path, tmp_path: Path):
    stage_dir = tmp_path / "staged"
    # A 1-byte budget puts every row in its own shard: the names must still say N-of-M correctly.
    push(hq, REPO, dry_run=stage_dir, shard_bytes=1)
    for (config, split), n in input_counts(hq).items():
        shards = sorted((stage_dir / config).glob(f"{split}-*.parquet"))
        assert [s.name for s in shards] == [f"{split}-{i:05d}-of-{n:05d}.parquet" for i in range(n)]
    staged = pa.concat_tables([pq.read_table(p) for p in sorted((tmp_path / "staged").rglob("*.parquet"))])
    source = pa.concat_tables([pq.read_table(p) for p in sorted(hq.glob("*/part-*.parquet"))])
    assert sorted(staged.to_pylist(), key=lambda r: r["id"]) == sorted(source.to_pylist(), key=lambda r: r["id"])


def test_an_unfinished_source_is_refused_not_skipped(hq: Path, tmp_path: Path):
    (hq / "lcqmc" / SUCCESS).unlink()
    with pytest.raises(StageError, match=r"lcqmc.*_SUCCESS"):
        push(hq, REPO, dry_run=tmp_path / "staged")
    assert not (tmp_path / "staged").exists()


def test_a_rerun_reuses_the_staging_and_new_inputs_restage_it(hq: Path, tmp_path: Path, fake_hub: FakeHub):
    stage_dir = tmp_path / "stage"
    first, _ = push(hq, REPO, stage_dir=stage_dir)
    shard = next(stage_dir.rglob("*.parquet"))
    mtime = shard.stat().st_mtime_ns
    again, _ = push(hq, REPO, stage_dir=stage_dir)
    assert (first.reused, again.reused) == (False, True)
    assert shard.stat().st_mtime_ns == mtime
    assert fake_hub.uploads[0]["files"] == fake_hub.uploads[1]["files"]

    shutil.rmtree(hq / "cmrc2018")  # the input changed: the staging must follow it
    third, _ = push(hq, REPO, stage_dir=stage_dir)
    assert not third.reused and "cmrc2018" not in third.staged.configs
    assert not (stage_dir / "cmrc2018").exists()


# ---- the card -----------------------------------------------------------------------------------------


def test_card_parses_and_its_yaml_lists_every_config(hq: Path, tmp_path: Path):
    prepared, _ = push(hq, REPO, dry_run=tmp_path / "staged")
    card = DatasetCard.load(prepared.card)
    data = card.data.to_dict()
    catalog = load_catalog()
    sources = sorted(prepared.staged.configs)

    configs = {c["config_name"]: c for c in data["configs"]}
    assert sorted(configs) == sorted(["all", *sources])
    assert configs["all"].get("default") is True
    assert not any(c.get("default") for name, c in configs.items() if name != "all")
    for source in sources:
        assert {f["path"] for f in configs[source]["data_files"]} == {
            f"{source}/{split}-*.parquet" for split in prepared.staged.configs[source]
        }
    infos = {i["config_name"]: i for i in data["dataset_info"]}
    assert sorted(infos) == sorted(configs)
    expected = input_counts(hq)
    for (source, split), n in expected.items():
        assert {s["name"]: s["num_examples"] for s in infos[source]["splits"]}[split] == n
    assert sum(s["num_examples"] for s in infos["all"]["splits"]) == sum(expected.values())

    assert data["language"] == ["zh"]
    assert "sentence-transformers" in data["tags"]
    assert set(data["task_categories"]) == {"sentence-similarity", "feature-extraction"}
    assert data["size_categories"] == ["n<1K"]
    assert data["license"] == sorted({hub_license(catalog[s].license.spdx) for s in sources})
    assert {"cc-by-nc-2.0", "cc-by-sa-4.0", "unknown", "other"} <= set(data["license"])

    body = card.text
    for source in sources:
        row = next(line for line in body.splitlines() if line.startswith(f"| `{source}` | "))
        assert catalog[source].license.spdx in row and catalog[source].homepage in row
        assert ("| yes |" if catalog[source].commercial else "| no |") in row
        assert catalog[source].citation.strip().splitlines()[0] in body
    assert f'load_dataset("{REPO}", "{sources[0]}"' in body
    assert "@software{MokaMassiveMixedEmbedding" in body
    assert "does not record the hq stage" in body  # the demo build has no hq section
    assert re.search(r"\*\*LLM-generated text\*\*: .*`hc3_chinese`", body)
    assert re.search(r"\*\*Machine translation\*\*: .*`mlqa`", body)
    assert "Hard negatives and scores" not in body


def test_card_reports_the_hq_drops_the_manifest_records(hq: Path, tmp_path: Path):
    options = {"config": {"defaults": {"max_char_run": 9}, "sources": {"lcqmc": {"min_query_chars": 3}},
                          "jaccard": 0.8, "side_jaccard": 0.5},
               "stats": {"version": 2, "bands": 20, "rows": 6,
                         "minhash": {"scheme": "affine32", "hash": "cp63", "num_perm": 128, "seed": 1, "ngram": 3}},
               "decontaminate": {"/home/me/evals/t2ranking-dev.tsv": "0123"}, "keep_eval_splits": False}
    write_stage(hq.parent, "hq", {"options": options, "sources": {
        "lcqmc": {"rows_in": 9, "rows_out": 4, "dropped": {"near_duplicate": 3, "too_short": 2}},
    }, "decontamination": {"/home/me/evals/t2ranking-dev.tsv": 7}, "overlap": {"lcqmc": {"paws_x": 2}}})
    prepared, _ = push(hq, REPO, dry_run=tmp_path / "staged")
    body = DatasetCard.load(prepared.card).text
    lcqmc = next(line for line in body.splitlines() if line.startswith("| `lcqmc` | ") and "near_duplicate" in line)
    assert "| 9 | 4 | near_duplicate 3, too_short 2 |" in lcqmc
    # The settings read as sentences, with the numbers the build used.
    assert "LSH with 20 bands of 6 rows" in body and "Jaccard ≥ 0.8" in body and "≥ 0.5" in body
    assert 'all sources: `{"max_char_run": 9}`' in body and '`lcqmc`: `{"min_query_chars": 3}`' in body
    assert "left out (they are evaluation data)" in body
    assert "- `t2ranking-dev.tsv`: 7 rows" in body and "/home/me" not in body
    assert "- `lcqmc` → `paws_x`: 2 rows" in body
    assert "No evaluation set was named" not in body
    assert "does not record the hq stage" not in body


def test_mined_card_states_model_revision_parameters_and_scores(hq: Path, tmp_path: Path):
    scored = make_scored(hq)
    prepared, _ = push(scored, "someone/m3e-hq-with-score", dry_run=tmp_path / "staged")
    card = DatasetCard.load(prepared.card)
    assert card.data.pretty_name == "M3E-HQ with scores"
    assert "hard-negatives" in card.data.tags
    body = card.text
    assert "## Hard negatives and scores" in body
    assert "**model**: moka-ai/m3e-base" in body and "**revision**: 0123abcd" in body
    assert "num_negatives" in body and "cosine similarity" in body
    assert prepared.staged.mining.keys() == prepared.staged.configs.keys()  # per-source record survives staging


# ---- commercial only ----------------------------------------------------------------------------------


def test_commercial_only_stages_no_non_commercial_row(hq: Path, tmp_path: Path):
    stage_dir = tmp_path / "staged"
    prepared, _ = push(hq, REPO, dry_run=stage_dir, commercial_only=True)
    catalog = load_catalog()
    commercial_sources = sorted({s for s, _ in input_counts(hq) if catalog[s].commercial})
    assert commercial_sources  # the demo has some (csl, paws_x, ...): the test must see rows
    assert sorted(prepared.staged.configs) == commercial_sources
    rows = pa.concat_tables([pq.read_table(p) for p in stage_dir.rglob("*.parquet")])
    assert rows.num_rows == sum(n for (s, _), n in input_counts(hq).items() if s in commercial_sources)
    assert pc.all(rows["commercial"]).as_py()
    card = DatasetCard.load(prepared.card)
    assert card.data.license == sorted({hub_license(catalog[s].license.spdx) for s in commercial_sources})
    assert "commercial-use" in card.text and "Not for commercial use" not in card.text
    assert commercial_problems(stage_dir) == []


def _rewrite(path: Path, change) -> None:
    table = pq.read_table(path)
    pq.write_table(change(table), path)


def _set(table: pa.Table, column: str, value) -> pa.Table:
    values = table[column].to_pylist()
    values[0] = value
    return table.set_column(table.schema.get_field_index(column), column, pa.array(values, table[column].type))


@pytest.mark.parametrize(
    "tamper, reason",
    [
        (lambda d: _rewrite(next(d.rglob("*.parquet")), lambda t: _set(t, "commercial", False)),
         "commercial=False"),
        (lambda d: _rewrite(next(d.rglob("*.parquet")), lambda t: _set(t, "license", "CC-BY-NC-4.0")),
         "CC-BY-NC-4.0"),
        (lambda d: _rewrite(next(d.rglob("*.parquet")), lambda t: _set(t, "source", "lcqmc")),
         "the catalog says LicenseRef-research-only"),
        (lambda d: (d / "README.md").write_text(
            (d / "README.md").read_text(encoding="utf-8").replace("license:\n", "license:\n- cc-by-nc-4.0\n", 1),
            encoding="utf-8"), "card licence 'cc-by-nc-4.0'"),
        (lambda d: shutil.copy(next(Path(d).rglob("*.parquet")), d / "extra.csv"), "extra.csv"),
    ],
    ids=["row-flag", "row-licence", "row-source", "card-licence", "stray-file"],
)
def test_commercial_check_refuses_a_tampered_staging(hq: Path, tmp_path: Path, tamper, reason):
    stage_dir = tmp_path / "staged"
    push(hq, REPO, dry_run=stage_dir, commercial_only=True)
    tamper(stage_dir)
    problems = commercial_problems(stage_dir)
    assert any(reason in p for p in problems), problems


def test_commercial_push_refuses_a_tampered_file_and_uploads_nothing(hq: Path, tmp_path: Path, fake_hub: FakeHub):
    stage_dir = tmp_path / "stage"
    push(hq, REPO, stage_dir=stage_dir, commercial_only=True)
    assert len(fake_hub.uploads) == 1  # clean: it goes out

    _rewrite(next(stage_dir.rglob("*.parquet")), lambda t: _set(t, "commercial", False))
    with pytest.raises(CommercialRefusal, match="nothing was uploaded"):
        push(hq, REPO, stage_dir=stage_dir, commercial_only=True)
    result = CliRunner().invoke(main, ["push", str(hq), "--repo-id", REPO, "--commercial-only",
                                       "--stage-dir", str(stage_dir)])
    assert result.exit_code != 0 and "refusing a commercial-only push" in result.output
    assert len(fake_hub.uploads) == 1 and len(fake_hub.created) == 1


# ---- the upload ---------------------------------------------------------------------------------------


def test_push_sends_the_staged_folder_to_a_dataset_repo_without_showing_the_token(
    hq: Path, tmp_path: Path, fake_hub: FakeHub, caplog
):
    caplog.set_level(logging.DEBUG)
    stage_dir = tmp_path / "stage"
    result = CliRunner().invoke(main, ["push", str(hq), "--repo-id", REPO, "--private",
                                       "--stage-dir", str(stage_dir)])
    assert result.exit_code == 0, result.output
    assert fake_hub.created == [{"repo_id": REPO, "repo_type": "dataset", "private": True, "exist_ok": True}]
    (upload,) = fake_hub.uploads
    assert upload["repo_id"] == REPO and upload["repo_type"] == "dataset"
    assert Path(upload["folder_path"]) == stage_dir
    assert "token" not in upload or upload["token"] is None  # huggingface_hub resolves it itself
    files = upload["files"]
    assert "README.md" in files
    assert all(f == "README.md" or re.fullmatch(r"[a-z0-9_]+/\w+-\d{5}-of-\d{5}\.parquet", f) for f in files)
    assert {f.split("/")[0] for f in files if f != "README.md"} == {s for s, _ in input_counts(hq)}
    assert "uploaded to https://huggingface.co/datasets/someone/m3e-hq" in result.output
    assert TOKEN not in result.output and TOKEN not in caplog.text
    # The staging's bookkeeping is inside the folder (nothing beside it) and stays out of the upload.
    assert (stage_dir / ownership.MARKER).is_file() and ownership.MARKER not in files
    assert not list(tmp_path.glob("stage?*"))


def test_a_real_push_never_stages_inside_a_dry_run_folder(hq: Path, tmp_path: Path, fake_hub: FakeHub):
    """A dry run into OUT/hub, the parent of the default staging OUT/hub/OWNER--NAME: the real push that
    follows must leave it as the dry run wrote it (no shards of its own, no upload cache inside it)."""
    preview = hq.parent / "hub"
    dry = CliRunner().invoke(main, ["push", str(hq), "--repo-id", REPO, "--dry-run", str(preview)])
    assert dry.exit_code == 0, dry.output
    snapshot = {p.relative_to(preview).as_posix(): p.read_bytes() for p in preview.rglob("*") if p.is_file()}

    real = CliRunner().invoke(main, ["push", str(hq), "--repo-id", REPO])
    assert real.exit_code == 0, real.output
    (upload,) = fake_hub.uploads
    staged = Path(upload["folder_path"])
    assert staged == hq.parent / "hub-upload" / REPO.replace("/", "--")
    assert preview not in staged.parents and staged != preview
    assert {p.relative_to(preview).as_posix(): p.read_bytes() for p in preview.rglob("*") if p.is_file()} == snapshot
    # The dry run still reads as it did: every input row once, nothing of the real staging added.
    ds = datasets.load_dataset(str(preview), "all", cache_dir=str(tmp_path / "c"))
    assert sum(len(d) for d in ds.values()) == sum(input_counts(hq).values())

    # Asked to stage into the dry run's folder, or inside it: refused, with the way out, nothing sent.
    for inside in (preview, preview / "mine"):
        refused = CliRunner().invoke(main, ["push", str(hq), "--repo-id", REPO, "--stage-dir", str(inside)])
        assert refused.exit_code == 1 and "Traceback" not in refused.output
        assert f"the dry-run staging {preview}" in " ".join(refused.output.split())
        assert "choose another --stage-dir" in " ".join(refused.output.split())
    assert len(fake_hub.uploads) == 1 and not (preview / "mine").exists()
    assert {p.relative_to(preview).as_posix(): p.read_bytes() for p in preview.rglob("*") if p.is_file()} == snapshot


def test_push_without_a_token_stops_before_the_network(hq: Path, tmp_path: Path, fake_hub: FakeHub, monkeypatch):
    monkeypatch.setattr(publish, "get_token", lambda: None)
    with pytest.raises(PublishError, match="not logged in"):
        push(hq, REPO, stage_dir=tmp_path / "stage")
    assert fake_hub.created == [] and fake_hub.uploads == []


def test_hf_endpoint_is_honoured_by_the_api_we_upload_with():
    # huggingface_hub reads HF_ENDPOINT at import: check it in a fresh interpreter.
    env = {**os.environ, "HF_ENDPOINT": "https://hf-mirror.example.com/"}
    code = "from m3e_data.stages.publish.stage import HfApi; print(HfApi().endpoint)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "https://hf-mirror.example.com"


def test_dry_run_needs_no_token_and_never_calls_the_hub(hq: Path, tmp_path: Path, fake_hub: FakeHub, monkeypatch):
    monkeypatch.setattr(publish, "get_token", lambda: None)
    result = CliRunner().invoke(main, ["push", str(hq), "--repo-id", REPO, "--dry-run", str(tmp_path / "d"),
                                       "--shard-size-mb", "1"])
    assert result.exit_code == 0, result.output
    assert "nothing uploaded" in result.output
    assert fake_hub.created == [] and fake_hub.uploads == []
    assert scan_staged(tmp_path / "d").rows == sum(input_counts(hq).values())
    # A public release of research-only sources is flagged before anything is staged or sent.
    said = " ".join(result.output.split())
    assert "warning: belle_2m, bq," in said and "Consider --private or --commercial-only" in said
    quiet = CliRunner().invoke(main, ["push", str(hq), "--repo-id", REPO, "--dry-run", str(tmp_path / "d"),
                                      "--commercial-only"])
    assert quiet.exit_code == 0 and "warning" not in quiet.output


# ---- a build that ran the hq stage; what a reader of the card must (not) see -------------------------


@pytest.fixture(scope="session")
def hq_built(tmp_path_factory) -> Path:
    """A demo build whose m3e-hq is the hq stage's own output, decontaminated against a local eval file."""
    from m3e_data.stages.hq.stage import run_hq

    out = tmp_path_factory.mktemp("hq-built") / "out"
    build(select_sources("all"), BuildOptions(out=out, sources="demo"))
    evals = out.parent / "private-evals" / "my-eval-set.txt"
    evals.parent.mkdir()
    queries = pa.concat_tables([pq.read_table(p) for p in parquet_files(out / "m3e" / "lcqmc")])["query"]
    evals.write_text("\n".join(queries.to_pylist()[:2]) + "\n", encoding="utf-8")
    run_hq(out, decontaminate=[evals], workers=1)
    return out / "m3e-hq"


def test_card_of_an_hq_build_reports_its_drops_and_shows_no_local_path(hq_built: Path, tmp_path: Path):
    import datasets

    stage_dir = tmp_path / "staged"
    prepared, _ = push(hq_built, REPO, dry_run=stage_dir)
    text = prepared.card.read_text(encoding="utf-8")
    assert str(hq_built.parent.parent) not in text and str(tmp_path) not in text  # no local path anywhere
    assert "my-eval-set.txt" in text  # the eval set is named by its file name
    body = DatasetCard.load(prepared.card).text
    assert "does not record the hq stage" not in body
    hq_record = json.loads((hq_built.parent / "build-manifest.json").read_text(encoding="utf-8"))["stages"]["hq"]
    assert sum(hq_record["decontamination"].values()) > 0  # the eval file did remove rows
    built = body.split("## How it was built", 1)[1].split("\n## ", 1)[0]
    for source, record in hq_record["sources"].items():
        row = next(line for line in built.splitlines() if line.startswith(f"| `{source}` | "))
        assert f"| {record['rows_in']:,} | {record['rows_out']:,} |" in row, row
        published = sum(f.rows for f in prepared.staged.configs.get(source, {}).values())
        assert row.endswith(f"| {published:,} |")
    # Each BibTeX entry once (news2016zh, webtext2019zh and baike2018qa share nlp_chinese_corpus's).
    keys = re.findall(r"^@\w+\{([^,]+),", body, flags=re.M)
    assert len(keys) == len(set(keys)), Counter(keys).most_common(3)
    # The staged hq output loads per config with the hq stage's counts.
    expected = input_counts(hq_built)
    assert "lcqmc" not in prepared.staged.configs  # both its rows matched the eval set: no empty config
    assert "The hq stage left no rows of `lcqmc`" in body  # ... but the card says where it went
    for config in ["all", sorted(prepared.staged.configs)[0]]:
        ds = datasets.load_dataset(str(stage_dir), config, cache_dir=str(tmp_path / "c"))
        assert sum(d.num_rows for d in ds.values()) == sum(
            n for (s, _), n in expected.items() if config in ("all", s))


def test_mined_with_a_local_model_folder_publishes_its_name_not_its_path(hq: Path, tmp_path: Path):
    scored = make_scored(hq)
    local = "/home/someone/models/m3e-base"
    for part in scored.glob("*/part-*.parquet"):
        table = pq.read_table(part)
        record = json.loads(table.schema.metadata[MINING_KEY])
        record.update(model=local, revision="local:0123456789abcdef")
        pq.write_table(table.replace_schema_metadata({MINING_KEY: json.dumps(record).encode()}), part)
    write_stage(hq.parent, "mine", {"model": local, "revision": "local:0123456789abcdef", "score": "cosine",
                                    "options": {"model": local, "in": str(hq), "out": str(scored)}})
    prepared, _ = push(scored, "someone/m3e-hq-with-score", dry_run=tmp_path / "staged")
    text = prepared.card.read_text(encoding="utf-8")
    assert local not in text and str(hq) not in text
    assert "**model**: m3e-base (a local model folder)" in text
    # The shards' records were made public when staged; the card names them once more, not twice.
    assert "(a local model folder) (a local model folder)" not in text
    assert text.count("m3e-base (a local model folder)") >= 2  # the manifest's line and a per-source record
    for shard in (tmp_path / "staged").rglob("*.parquet"):
        assert local not in pq.read_schema(shard).metadata[MINING_KEY].decode()


# ---- folders that are not ours are never replaced ----------------------------------------------------


@pytest.mark.parametrize("where", ["user-folder", "build-output"])
def test_staging_never_replaces_a_folder_it_did_not_write(hq: Path, tmp_path: Path, where: str):
    if where == "user-folder":
        dest = tmp_path / "documents"
        dest.mkdir()
        (dest / "thesis.docx").write_text("years of work", encoding="utf-8")
    else:
        dest = hq.parent  # OUT itself: --dry-run OUT by mistake
    before = sorted(p.relative_to(dest) for p in dest.rglob("*"))
    with pytest.raises(StageError, match="choose an empty or new folder"):
        push(hq, REPO, dry_run=dest)
    assert sorted(p.relative_to(dest) for p in dest.rglob("*")) == before
    result = CliRunner().invoke(main, ["push", str(hq), "--repo-id", REPO, "--dry-run", str(dest)])
    assert result.exit_code != 0 and "choose an empty or new folder" in result.output


def test_an_earlier_staging_is_replaced_and_an_empty_folder_used(hq: Path, tmp_path: Path):
    dest = tmp_path / "empty"
    dest.mkdir()
    push(hq, REPO, dry_run=dest)
    marker = ownership.read_marker(dest)
    (dest / ownership.MARKER).write_text(json.dumps({**marker, "key": None}), encoding="utf-8")  # forget the key
    again, _ = push(hq, REPO, dry_run=dest, commercial_only=True)
    assert not again.reused and commercial_problems(dest) == []


# ---- the upload, continued ---------------------------------------------------------------------------


def test_a_private_push_to_an_existing_public_repo_is_refused(hq: Path, tmp_path: Path, fake_hub: FakeHub):
    fake_hub.repos[REPO] = False  # it exists, public
    with pytest.raises(PublishError, match="already exists and is public"):
        push(hq, REPO, private=True, stage_dir=tmp_path / "stage")
    assert fake_hub.uploads == []
    fake_hub.repos[REPO] = True  # made private on the Hub: now it goes
    push(hq, REPO, private=True, stage_dir=tmp_path / "stage")
    assert len(fake_hub.uploads) == 1


def test_upload_large_folder_is_used_where_huggingface_hub_has_it(
    hq: Path, tmp_path: Path, fake_hub: FakeHub, monkeypatch
):
    """huggingface_hub < 2 has the resumable `upload_large_folder` (2.x folded it into upload_folder)."""
    calls = []

    def upload_large_folder(self, repo_id, folder_path, *, repo_type, revision=None, private=None,
                            allow_patterns=None, ignore_patterns=None, num_workers=None, print_report=True,
                            print_report_every=60):
        folder = Path(folder_path)
        # It keeps its progress inside the folder; a rerun must not take that for a stray file.
        (folder / ".cache" / "huggingface" / "upload").mkdir(parents=True, exist_ok=True)
        (folder / ".cache" / "huggingface" / "upload" / "README.md.metadata").write_text("x", encoding="utf-8")
        calls.append({"repo_id": repo_id, "folder_path": folder, "repo_type": repo_type, "private": private})

    monkeypatch.setattr(HfApi, "upload_large_folder", upload_large_folder, raising=False)
    stage_dir = tmp_path / "stage"
    push(hq, REPO, stage_dir=stage_dir, commercial_only=True, private=True)
    push(hq, REPO, stage_dir=stage_dir, commercial_only=True, private=True)  # a rerun resumes, not refused
    assert calls == [{"repo_id": REPO, "folder_path": stage_dir, "repo_type": "dataset", "private": True}] * 2
    assert fake_hub.uploads == []
    shutil.rmtree(hq / "cmrc2018")  # new inputs: the staging (with the upload cache) is replaced
    push(hq, REPO, stage_dir=stage_dir, commercial_only=True, private=True)
    assert len(calls) == 3


def test_dry_run_refuses_a_folder_holding_the_users_readme_and_files_added_to_a_staging(hq: Path, tmp_path: Path):
    """The audit's case: `push --dry-run D` replaced a D holding only the user's README.md (a name a staging
    writes), and wrote D.m3e-stage.json beside D."""
    dest = tmp_path / "work" / "D"
    dest.mkdir(parents=True)
    (dest / "README.md").write_text("# my notes\n", encoding="utf-8")
    args = ["push", str(hq), "--repo-id", REPO, "--dry-run", str(dest)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and "README.md" in result.output and "Traceback" not in result.output
    assert [p.name for p in dest.iterdir()] == ["README.md"]
    assert (dest / "README.md").read_text(encoding="utf-8") == "# my notes\n"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["D"]  # nothing written beside D

    (dest / "README.md").unlink()
    assert CliRunner().invoke(main, args).exit_code == 0
    assert sorted(p.name for p in dest.parent.iterdir()) == ["D"] and (dest / ownership.MARKER).is_file()
    # A file dropped into a current staging is refused too: a reused staging is uploaded whole.
    (dest / "cmrc2018" / "my-extra.parquet").write_bytes(b"x")
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and "cmrc2018/my-extra.parquet" in result.output
    assert (dest / "cmrc2018" / "my-extra.parquet").read_bytes() == b"x"
