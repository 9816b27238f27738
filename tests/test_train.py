"""train/: a tiny random BERT trained on a synthetic Chinese corpus, on CPU, offline."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import click
import numpy as np
import pyarrow as pa
import pytest

pytest.importorskip("sentence_transformers")
pytest.importorskip("accelerate")

os.environ["HF_HUB_OFFLINE"] = "1"

import torch  # noqa: E402
from click.testing import CliRunner  # noqa: E402
from m3e_train import data as tdata  # noqa: E402
from m3e_train.evaluate import heldout_set, t2ranking_set  # noqa: E402
from m3e_train.losses import build_loss  # noqa: E402
from m3e_train.run import CHECKPOINTS, TrainConfig, train  # noqa: E402
from m3e_train.sampler import SourceBatchSampler, per_source_batch_sampler, source_weights  # noqa: E402
from m3e_train.synthetic import Topics, corpus_rows, tiny_bert, write_source  # noqa: E402

torch.set_num_threads(1)  # the test machine is shared: more threads only contend

REAL_T2RANKING = Path("/work/shared/fixtures/real/t2ranking")


@pytest.fixture(scope="module")
def build(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("train")
    topics = Topics(seed=1)
    hq = root / "build" / "m3e-hq"
    write_source(hq, corpus_rows("alpha", 500, topics=topics, duplicate_every=5, task="qa"))
    write_source(hq, corpus_rows("beta", 300, topics=topics, n_negatives=2, task="similarity",
                                 commercial=False, license="cc-by-nc-4.0"))
    scored = root / "scored" / "m3e-hq-with-score"
    write_source(scored, corpus_rows("gamma", 300, topics=topics, n_negatives=2, scored=True))
    model = tiny_bert(root / "base", topics.vocab)
    return {"root": root, "build": root / "build", "scored": root / "scored", "model": model,
            **eval_tasks(root / "tasks", Topics(seed=2))}


def eval_tasks(root: Path, topics: Topics) -> dict[str, Path]:
    """A C-MTEB retrieval task (with its -qrels sibling) and an LCQMC-style pair task, on the same topics."""
    import pyarrow.parquet as pq

    shard = "00000-of-00001-0c5e.parquet"
    rows = [topics.row(tuple(topics.rng.sample(range(40), 2))) for _ in range(60)]
    retrieval = root / "TopicRetrieval"
    for sub, table in (
        (retrieval / "data" / f"corpus-{shard}", {"id": [f"p{i}" for i in range(60)], "text": [r[1] for r in rows]}),
        (retrieval / "data" / f"queries-{shard}", {"id": [f"q{i}" for i in range(30)], "text": [r[0] for r in rows[:30]]}),
        (root / "TopicRetrieval-qrels" / "data" / f"dev-{shard}",
         {"qid": [f"q{i}" for i in range(30)], "pid": [f"p{i}" for i in range(30)], "score": [1] * 30}),
        # A pair matches when it shares its topics: the positive of its own row, else another row's.
        (root / "TopicPairs" / "data" / f"test-{shard}",
         {"sentence1": [r[0] for r in rows], "sentence2": [r[1] if i % 2 else rows[i - 1][1] for i, r in enumerate(rows)],
          "score": [i % 2 for i in range(60)]}),
    ):
        sub.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(table), sub)
    return {"retrieval_task": retrieval, "pair_task": root / "TopicPairs"}


@pytest.fixture(scope="module")
def trained(build) -> dict:
    """One CLI run: 40 steps of InfoNCE through GradCache (mini-batches of 8 in batches of 16)."""
    from m3e_data.cli.main import main

    out = build["root"] / "model-out"
    result = CliRunner().invoke(
        main,
        ["train", "--data", str(build["build"]), "--model", str(build["model"]), "--out", str(out),
         "--max-steps", "40", "--batch-size", "16", "--mini-batch-size", "8", "--lr", "5e-3", "--warmup", "0",
         "--max-length", "32", "--heldout-rows", "40", "--log-every", "5", "--checkpoint-every", "100",
         "--prompt", "qa=问：", "--eval-task", str(build["retrieval_task"]), "--eval-task", str(build["pair_task"])],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    return {"out": out, "stdout": result.output}


def test_loss_falls_and_retrieval_improves(trained):
    out = trained["out"]
    curve = json.loads((out / "loss_curve.json").read_text())
    assert len(curve) >= 5
    first, last = curve[0]["loss"], curve[-1]["loss"]
    assert last < 0.6 * first, curve
    results = json.loads((out / "eval_results.json").read_text())
    assert results["steps"] == 40
    for name in ("alpha", "beta"):
        before, after = results["before"][name], results["after"][name]
        assert after["ndcg_at_10"] > before["ndcg_at_10"] + 0.2, (name, before, after)
        assert after["mrr_at_10"] > before["mrr_at_10"]
    assert results["after"]["mean"]["ndcg_at_10"] > 0.5
    # --eval-task folders are evaluated by m3e-data eval's code, before and after.
    before, after = results["before"], results["after"]
    assert list(after["TopicRetrieval"]) == ["ndcg_at_10", "mrr_at_10", "recall_at_100"]
    assert after["TopicRetrieval"]["ndcg_at_10"] > before["TopicRetrieval"]["ndcg_at_10"] + 0.2
    assert after["TopicPairs"]["spearman"] > before["TopicPairs"]["spearman"] + 0.2
    # The command ends with the same figures as a table: set, metric, before, after.
    lines = trained["stdout"].splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip("│ ").startswith("alpha"))
    for offset, metric in enumerate(("ndcg_at_10", "mrr_at_10", "recall_at_100")):
        cells = [c.strip() for c in lines[start + offset].strip("│").split("│")]
        assert cells == ["" if offset else "alpha", metric, f"{before['alpha'][metric]:.4f}",
                         f"{after['alpha'][metric]:.4f}"]
    assert not (out / CHECKPOINTS).exists()  # removed after a finished run


def test_saved_folder_loads_encodes_and_has_a_card(trained):
    from sentence_transformers import SentenceTransformer

    out = trained["out"]
    model = SentenceTransformer(str(out), device="cpu")
    emb = model.encode(["一丁七万", "丈三上下"], normalize_embeddings=True)
    assert emb.shape == (2, 32)
    assert model.prompts.get("qa") == "问："
    card = (out / "README.md").read_text()
    for needle in ("alpha", "beta", "apache-2.0", "cc-by-nc-4.0", "do not permit commercial use",
                   "temperature", "nDCG@10", "library_name: sentence-transformers"):
        assert needle in card, needle
    # The base model and the data were local folders: named, never written out (test_model_card has more).
    assert str(out.parent) not in card and "base (a local model folder)" in card
    mean = re.search(r"mean\s+training\s+loss\s+(\d+\.\d{4})", trained["stdout"]).group(1)
    assert f"Mean training loss over all 40 steps (the figure `m3e-data train` prints): {mean}." in card
    # Ordinary permissions per the umask: the weights were 0600 and 1_Pooling/ 0700 (a private model).
    mask = os.umask(0)
    os.umask(mask)
    assert (out / "model.safetensors").stat().st_mode & 0o777 == 0o666 & ~mask
    assert (out / "1_Pooling").stat().st_mode & 0o777 == 0o777 & ~mask


def test_card_of_a_run_without_evaluation_says_why(build):
    from m3e_data.cli.main import main

    out = build["root"] / "no-eval"
    result = CliRunner().invoke(
        main,
        ["train", "--data", str(build["scored"]), "--model", str(build["model"]), "--out", str(out),
         "--max-steps", "2", "--batch-size", "8", "--heldout-rows", "0", "--max-length", "16", "--log-every", "1",
         "--checkpoint-every", "100"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    evaluation = (out / "README.md").read_text().split("## Evaluation", 1)[1]
    assert "| set |" not in evaluation  # no table without rows
    assert "No evaluation was run: every source was too small to hold rows out (`--heldout-rows`)" in evaluation


def test_bundled_encoder_reads_the_model(trained):
    encoder_mod = pytest.importorskip("m3e_data.stages.mine.encoder")
    from sentence_transformers import SentenceTransformer

    texts = ["一丁七万", "丈三上下不"]
    ours = encoder_mod.Encoder(str(trained["out"]), device="cpu").encode(texts)
    st = SentenceTransformer(str(trained["out"]), device="cpu").encode(texts, normalize_embeddings=True)
    assert ours.shape == st.shape
    assert abs(ours - st).max() < 1e-4


def _sets(build_dir: Path, loss: str = "auto") -> dict[str, tuple[pa.Table, str]]:
    data = tdata.load_rows(str(build_dir), heldout_rows=20)
    return tdata.training_tables(data, loss=loss, num_negatives=7)


def test_batches_are_single_source_without_duplicates(build):
    import datasets
    from torch.utils.data import ConcatDataset

    sets = _sets(build["build"])
    assert {n: k for n, (_, k) in sets.items()} == {"alpha": tdata.PAIRS, "beta": tdata.NEGATIVES}
    dsets = [datasets.Dataset(datasets.table.InMemoryTable(t)) for t, _ in sets.values()]
    # The synthetic alpha repeats a query every 5 rows: a plain shuffle would put some in one batch.
    assert len(set(dsets[0]["anchor"])) < len(dsets[0])
    concat = ConcatDataset(dsets)
    bounds = [0, len(dsets[0]), len(dsets[0]) + len(dsets[1])]
    for group in (1, 2):
        gen = torch.Generator()
        samplers = [per_source_batch_sampler(d, 16, False, ["score", "label"], gen, 0) for d in dsets]
        sampler = SourceBatchSampler(concat, samplers, generator=gen, seed=0, group=group)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        sources = []
        for batch in batches:
            src = {0 if i < bounds[1] else 1 for i in batch}
            assert len(src) == 1, "a batch mixes sources"
            sources.append(src.pop())
            texts = []
            for i in batch:
                row = concat[i]
                texts += [v for k, v in row.items() if isinstance(v, str)]
            assert len(texts) == len(set(texts)), "duplicate text inside a batch"
        # Proportional: both sources drawn, the larger more often; with group=2, in pairs of batches.
        assert 0 < sources.count(1) < sources.count(0)
        if group == 2:
            assert all(sources[i] == sources[i + 1] for i in range(0, len(sources), 2))
    assert source_weights([900, 100], 1.0) == pytest.approx([0.9, 0.1])
    flat = source_weights([900, 100], 3.0)
    assert 0.5 < flat[0] < 0.9


def test_loss_choice_for_scored_data(build):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import (
        CachedMultipleNegativesRankingLoss,
        CoSENTLoss,
        DistillKLDivLoss,
        MultipleNegativesRankingLoss,
    )

    # auto is InfoNCE for every source, scored or not: the mined negatives act as negatives.
    assert tdata.AUTO_LOSS == "infonce"
    auto = _sets(build["scored"])
    assert list(auto) == ["gamma"] and auto["gamma"][1] == tdata.NEGATIVES
    assert auto["gamma"][0].column_names == ["anchor", "positive", "negative_1", "negative_2"]
    assert _sets(build["scored"], loss="infonce")["gamma"][1] == tdata.NEGATIVES
    table, kind = _sets(build["scored"], loss="cosent")["gamma"]
    assert kind == tdata.SCORED
    assert table.column_names == ["sentence1", "sentence2", "score"]
    gamma_train_rows = 300 - 20
    assert table.num_rows == gamma_train_rows * 3  # one positive and two negatives per row
    # CoSENT and distillation on unscored rows are refused, not silently replaced.
    for loss in ("cosent", "distill"):
        with pytest.raises(ValueError, match="scores"):
            _sets(build["build"], loss=loss)
    model = SentenceTransformer(str(build["model"]), device="cpu")
    cosent = build_loss(model, tdata.SCORED)
    assert isinstance(cosent, CoSENTLoss) and cosent.scale == 20.0
    infonce = build_loss(model, tdata.PAIRS, temperature=0.05)
    assert type(infonce) is MultipleNegativesRankingLoss and infonce.scale == pytest.approx(20.0)
    assert isinstance(build_loss(model, tdata.NEGATIVES, mini_batch_size=4), CachedMultipleNegativesRankingLoss)
    assert isinstance(build_loss(model, tdata.DISTILL, temperature=0.05), DistillKLDivLoss)


def test_distillation_targets_are_the_rows_teacher_scores(build):
    from sentence_transformers import SentenceTransformer

    sets = _sets(build["scored"], loss="distill")
    table, kind = sets["gamma"]
    assert kind == tdata.DISTILL and table.column_names[-1] == "label"
    rows = tdata.load_rows(str(build["scored"]), heldout_rows=20).sources["gamma"].train
    by_query = {(r["query"], r["positive"]): r for r in rows.to_pylist()}
    for got in table.slice(0, 20).to_pylist():
        row = by_query[(got["anchor"], got["positive"])]
        assert got["label"] == pytest.approx([row["positive_score"], *row["negative_scores"]])
        assert [got["negative_1"], got["negative_2"]] == row["negatives"]
    # The loss is the KL from softmax(teacher) to softmax(student cosines / T), times T² (written out here).
    model = SentenceTransformer(str(build["model"]), device="cpu")
    batch = table.slice(0, 8).to_pydict()
    features = [model.preprocess(batch[c]) for c in ("anchor", "positive", "negative_1", "negative_2")]
    labels = torch.tensor(batch["label"])
    value = build_loss(model, tdata.DISTILL, temperature=0.05)(features, labels)
    with torch.no_grad():
        emb = [torch.nn.functional.normalize(model(f)["sentence_embedding"], dim=-1) for f in
               [model.preprocess(batch[c]) for c in ("anchor", "positive", "negative_1", "negative_2")]]
    student = torch.stack([(emb[0] * e).sum(-1) for e in emb[1:]], dim=1) / 0.05
    teacher = torch.softmax(labels, dim=1)
    want = (teacher * (teacher.log() - torch.log_softmax(student, dim=1))).sum(1).mean() * 0.05**2
    assert float(value.detach()) == pytest.approx(float(want), rel=1e-3) and float(value.detach()) > 0


def test_train_runs_with_distillation(build, tmp_path):
    from m3e_data.cli.main import main

    out = tmp_path / "distilled"
    result = CliRunner().invoke(
        main,
        ["train", "--data", str(build["scored"]), "--model", str(build["model"]), "--out", str(out), "--loss",
         "distill", "--max-steps", "3", "--batch-size", "8", "--max-length", "32", "--heldout-rows", "20",
         "--log-every", "1"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "eval_results.json").read_text())
    assert summary["steps"] == 3 and summary["sources"][0]["kind"] == tdata.DISTILL
    assert summary["hyperparameters"]["loss"] == "distill"


def _grads(model, loss, features) -> dict[str, torch.Tensor]:
    model.zero_grad()
    value = loss([{k: (v.clone() if torch.is_tensor(v) else v) for k, v in f.items()} for f in features], None)
    value.backward()
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def test_gradcache_gives_the_plain_gradients(build):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(build["model"]), device="cpu")
    model.train()
    table, _ = _sets(build["build"])["beta"]
    rows = table.slice(0, 12).to_pydict()
    features = [model.preprocess(rows[c]) for c in ("anchor", "positive", "negative_1", "negative_2")]
    plain = _grads(model, build_loss(model, tdata.NEGATIVES, temperature=0.05), features)
    cached = _grads(model, build_loss(model, tdata.NEGATIVES, temperature=0.05, mini_batch_size=4), features)
    assert plain.keys() == cached.keys() and len(plain) > 10
    # Same maths, different float32 summation order (mini-batches): compare against the gradient's scale
    # (some gradients, e.g. attention key biases, are zero in exact arithmetic and pure rounding noise here).
    scale = max(float(g.abs().max()) for g in plain.values())
    for name, g in plain.items():
        diff = float((g - cached[name]).abs().max())
        assert diff <= 1e-4 * scale, (name, diff, scale)
    assert any(g.abs().max() > 0 for g in plain.values())


def test_killed_run_resumes_from_its_last_checkpoint(build, monkeypatch):
    from sentence_transformers import SentenceTransformerTrainer

    out = build["root"] / "resumed"
    config = TrainConfig(
        data=str(build["scored"]), model=str(build["model"]), out=out, max_steps=12, batch_size=16, lr=5e-3,
        warmup=0.0, max_length=32, heldout_rows=20, checkpoint_every=4, log_every=2, loss="cosent",
    )
    original = SentenceTransformerTrainer.training_step
    calls = {"n": 0}

    def counting_step(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 7:
            raise KeyboardInterrupt  # killed during step 7: checkpoint-4 is the last one
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SentenceTransformerTrainer, "training_step", counting_step)
    with pytest.raises(KeyboardInterrupt):
        train(config)
    assert (out / CHECKPOINTS / "checkpoint-4").is_dir()
    assert not (out / "modules.json").exists()  # no half-finished model folder
    with pytest.raises(FileExistsError, match="--resume"):
        train(config)
    calls["n"] = -100  # no more kills
    config.resume = True
    summary = train(config)
    assert calls["n"] == -100 + (12 - 4)  # only the steps after the checkpoint ran again
    assert summary["steps"] == 12
    assert summary["sources"][0]["kind"] == tdata.SCORED
    assert (out / "modules.json").exists()


def test_selection_commercial_sources_caps_and_unfinished_folders(build, tmp_path):
    # --commercial-only keeps commercial rows and re-checks them against the catalog, as push does: the
    # invented sources here are unknown to it (and "apache-2.0" is not an SPDX id), so they are refused.
    with pytest.raises(ValueError, match="'alpha', which the catalog does not know"):
        tdata.load_rows(str(build["build"]), commercial_only=True, heldout_rows=10)
    catalog_named = tmp_path / "catalog" / "m3e-hq"
    write_source(catalog_named, corpus_rows("csl", 200, topics=Topics(seed=2), license="Apache-2.0"))
    write_source(catalog_named, corpus_rows("lcqmc", 100, topics=Topics(seed=2), commercial=False,
                                            license="LicenseRef-LCQMC-research-only"))
    data = tdata.load_rows(str(catalog_named.parent), commercial_only=True, heldout_rows=10)
    assert list(data.sources) == ["csl"] and "lcqmc" in data.skipped
    data = tdata.load_rows(str(build["build"]), sources=["beta"], max_rows_per_source=50, heldout_rows=10)
    beta = data.sources["beta"]
    assert beta.train.num_rows == 50 and beta.heldout.num_rows == 10
    assert beta.dropped["over_max_rows"] == 300 - 10 - 50
    with pytest.raises(ValueError, match="unknown sources"):
        tdata.load_rows(str(build["build"]), sources=["nope"])
    # A source folder without _SUCCESS.json (a killed stage) is skipped; eval splits never train.
    topics = Topics(seed=3)
    stage = tmp_path / "m3e-hq"
    rows = corpus_rows("delta", 40, topics=topics)
    split = pa.array(["test"] * 10 + ["train"] * 30)
    write_source(stage, rows.set_column(rows.schema.get_field_index("split"), "split", split))
    unfinished = write_source(stage, corpus_rows("eps", 40, topics=topics))
    (unfinished / "_SUCCESS.json").unlink()
    data = tdata.load_rows(str(tmp_path), heldout_rows=0)
    assert list(data.sources) == ["delta"] and data.sources["delta"].train.num_rows == 30
    assert data.sources["delta"].dropped["eval_split"] == 10
    assert "eps" in data.skipped


def test_heldout_and_t2ranking_sets(build, tmp_path):
    data = tdata.load_rows(str(build["build"]), heldout_rows=20)
    ir = heldout_set("beta", data.sources["beta"].heldout)
    assert len(ir.queries) == 20 and len(ir.corpus) == 20 * 3
    assert all(len(docs) == 1 for docs in ir.relevant.values())
    # Real T2Ranking query and qrels files (no header), a collection holding their passages.
    for name in ("queries.test.tsv", "qrels.test.tsv"):
        (tmp_path / name).write_bytes((REAL_T2RANKING / name).read_bytes())
    pids = {line.split("\t")[2] for line in (tmp_path / "qrels.test.tsv").read_text().splitlines()}
    (tmp_path / "collection.tsv").write_text(
        "pid\ttext\n" + "".join(f"{p}\t段落{p}\n" for p in sorted(pids)) + "99999999\t无关段落\n", encoding="utf-8"
    )
    t2 = t2ranking_set(tmp_path, corpus_size=None)
    qrels = [line.split("\t") for line in (tmp_path / "qrels.test.tsv").read_text().splitlines()]
    expected = {(q, p) for q, _, p, rel in qrels if int(rel) >= 2}
    got = {(q, p) for q, docs in t2.relevant.items() for p in docs}
    assert got == expected and got
    assert set(t2.queries) == {q for q, _ in expected}
    assert "99999999" in t2.corpus


def test_cli_help_lists_the_options():
    from m3e_data.cli.main import main

    result = CliRunner().invoke(main, ["train", "--help"])
    assert result.exit_code == 0
    for option in ("--in", "--mini-batch-size", "--loss", "--temperature", "--only", "--commercial-only",
                   "--max-rows-per-source", "--eval", "--resume", "--pooling", "--prompt"):
        assert option in result.output


def test_rows_with_fewer_negatives_do_not_truncate_the_others():
    topics = Topics(seed=5)
    full = corpus_rows("mixed", 300, topics=topics, n_negatives=3)
    short = corpus_rows("mixed", 5, topics=topics, n_negatives=1)
    bare = corpus_rows("mixed", 20, topics=topics)
    table = pa.concat_tables([full, short, bare])
    sets = tdata.contrastive_columns(table, num_negatives=7, min_bucket_rows=100)
    # The 5 short rows are under 100, but no smaller group exists to join: they keep a set of their own.
    assert {k: (t.num_rows, t.num_columns) for k, t in sets.items()} == {
        "": (300, 2 + 3), "__neg1": (5, 2 + 1), "__pairs": (20, 2)}
    assert sets[""].column("negative_3").to_pylist() == [n[2] for n in full["negatives"].to_pylist()]
    # A small group with more negatives joins the next smaller group, truncated to its count.
    more = corpus_rows("mixed", 4, topics=topics, n_negatives=5)
    sets = tdata.contrastive_columns(pa.concat_tables([full, more]), num_negatives=7, min_bucket_rows=100)
    assert {k: t.num_rows for k, t in sets.items()} == {"": 304}
    assert sets[""].num_columns == 2 + 3
    assert [tdata.source_of(n) for n in ("mixed", "mixed__neg1", "mixed__pairs")] == ["mixed"] * 3


def test_temperature_flattens_source_draws_and_skips_sources_without_a_full_batch():
    import datasets
    from torch.utils.data import ConcatDataset

    sizes = [640, 64, 8]  # the last cannot fill one batch of 16 with drop_last
    dsets = [datasets.Dataset.from_dict({"anchor": [f"a{s}-{i}" for i in range(n)],
                                         "positive": [f"p{s}-{i}" for i in range(n)]})
             for s, n in enumerate(sizes)]
    concat = ConcatDataset(dsets)
    bounds = np.cumsum([0, *sizes])

    def draws(temperature: float) -> list[int]:
        gen = torch.Generator()
        samplers = [per_source_batch_sampler(d, 16, True, [], gen, 0) for d in dsets]
        sampler = SourceBatchSampler(concat, samplers, generator=gen, seed=0, temperature=temperature, group=2)
        out = []
        for batch in sampler:
            assert len(batch) == 16
            out.append(int(np.searchsorted(bounds, batch[0], side="right") - 1))
        assert len(out) == len(sampler)
        return out

    plain, flat = draws(1.0), draws(4.0)
    assert 2 not in plain and 2 not in flat
    assert plain.count(1) == 64 // 16 // 2 * 2  # T = 1: every (grouped) batch of the source once
    assert flat.count(1) > plain.count(1)  # T > 1: the small source is drawn more often
    for seq in (plain, flat):  # pairs of batches from one source: one per process in a 2-process step
        assert all(seq[i] == seq[i + 1] for i in range(0, len(seq), 2))


def test_cls_pooling_option_and_the_bundled_encoder_follows_it(build, tmp_path):
    from m3e_train.run import load_model, save_model_folder

    model = load_model(str(build["model"]), pooling="cls", max_length=32, device="cpu")
    from sentence_transformers.sentence_transformer.modules import Pooling

    assert [m.pooling_mode for m in model.modules() if isinstance(m, Pooling)] == ["cls"]
    save_model_folder(model, tmp_path / "cls", {})
    encoder_mod = pytest.importorskip("m3e_data.stages.mine.encoder")
    enc = encoder_mod.Encoder(str(tmp_path / "cls"), device="cpu")
    assert enc.pooling == "cls"
    texts = ["一丁七万", "丈三上下"]
    assert abs(enc.encode(texts) - model.encode(texts, normalize_embeddings=True)).max() < 1e-4


def test_losses_gather_across_devices_under_torchrun(build, monkeypatch):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(build["model"]), device="cpu")
    assert not build_loss(model, tdata.PAIRS).gather_across_devices
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert build_loss(model, tdata.PAIRS).gather_across_devices
    assert build_loss(model, tdata.NEGATIVES, mini_batch_size=4).gather_across_devices


def test_hub_layout_reads_every_training_split(tmp_path):
    """The Hub path of --data, offline: a local folder in the published layout (one config per source)."""
    import pyarrow.parquet as pq

    topics = Topics(seed=9)
    for name in ("alpha", "beta"):
        rows = corpus_rows(name, 30, topics=topics)
        (tmp_path / "repo" / name).mkdir(parents=True)
        pq.write_table(rows.slice(0, 20), tmp_path / "repo" / name / "train-00000-of-00001.parquet")
        held = rows.slice(20, 10)
        held = held.set_column(held.schema.get_field_index("split"), "split", pa.array(["validation"] * 10))
        pq.write_table(held, tmp_path / "repo" / name / "validation-00000-of-00001.parquet")
    (tmp_path / "repo" / "README.md").write_text(
        "---\nconfigs:\n"
        "- config_name: all\n  data_files:\n  - split: train\n    path: '*/train-*.parquet'\n"
        "- config_name: alpha\n  data_files:\n  - split: train\n    path: alpha/train-*.parquet\n"
        "  - split: validation\n    path: alpha/validation-*.parquet\n"
        # A source published under another split name than "train" must not be lost.
        "- config_name: beta\n  data_files:\n  - split: extra\n    path: beta/train-*.parquet\n"
        "  - split: validation\n    path: beta/validation-*.parquet\n"
        "---\n", encoding="utf-8")
    tables, skipped, stage = tdata.read_hub(str(tmp_path / "repo"), cache_dir=str(tmp_path / "cache"))
    assert stage == "hub" and not skipped
    assert {n: t.num_rows for n, t in tables.items()} == {"alpha": 20, "beta": 20}
    assert set(tables["alpha"]["split"].to_pylist()) == {"train"}


def test_device_cuda_n_makes_that_gpu_the_only_visible_one():
    from m3e_train.cli import one_gpu

    assert one_gpu("cuda:1", {}) == ("cuda", "1")
    assert one_gpu("cuda:1", {"CUDA_VISIBLE_DEVICES": "4,6,7"}) == ("cuda", "6")  # indexed as CUDA would
    assert one_gpu("cuda:1", {"WORLD_SIZE": "2"}) == ("cuda:1", None)  # torchrun: each rank has its GPU
    assert one_gpu("cpu", {}) == ("cpu", None) and one_gpu(None, {}) == (None, None)
    with pytest.raises(click.BadParameter):
        one_gpu("cuda:3", {"CUDA_VISIBLE_DEVICES": "0,1"})


def test_out_holding_the_users_files_is_refused_before_training(build, trained, tmp_path, monkeypatch):
    """The audit's case: `train --out DIR` deleted DIR/checkpoints/ and DIR/1_Pooling/ with the user's files
    and overwrote DIR/README.md and DIR/config.json. Refused before any data or model is loaded."""
    from m3e_data.cli.main import main
    from m3e_data.storage.ownership import MARKER

    def no_loading(*args, **kwargs):
        raise AssertionError("a refused run must not load data")

    monkeypatch.setattr(tdata, "load_rows", no_loading)
    import m3e_train.run as run_module

    monkeypatch.setattr(run_module, "load_rows", no_loading)
    dest = tmp_path / "DIR"
    user = {"checkpoints/my-notes.txt": "notes", "1_Pooling/config.json": "{}", "README.md": "# mine",
            "config.json": '{"mine": true}'}
    for rel, text in user.items():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_text(text, encoding="utf-8")
    args = ["train", "--data", str(build["build"]), "--model", str(build["model"]), "--out", str(dest),
            "--max-steps", "1", "--device", "cpu"]
    result = CliRunner().invoke(main, args)
    said = "".join(result.output.split())
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert all(name in said for name in ("checkpoints/", "1_Pooling/", "README.md", "config.json")), result.output
    assert {p.relative_to(dest).as_posix(): p.read_text(encoding="utf-8")
            for p in dest.rglob("*") if p.is_file()} == user

    # A finished model folder is train's (its marker lists what it wrote) until the user adds a file.
    out = trained["out"]
    assert (out / MARKER).is_file()
    (out / "my-eval.txt").write_text("mine", encoding="utf-8")
    try:
        result = CliRunner().invoke(main, [*args[:6], str(out), *args[7:]])
        assert result.exit_code == 1 and "my-eval.txt" in result.output
    finally:
        (out / "my-eval.txt").unlink()
