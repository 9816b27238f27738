"""The bundled encoder on a tiny randomly initialised BERT written inside the test (no download)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from m3e_data.stages.mine.encoder import Encoder, read_layout  # noqa: E402

TEXTS = ["天气怎么样", "今天天气很好", "北京是中国的首都", "我想去图书馆看书", "这家面馆的牛肉面很实惠", "好"]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# Characters of every text the mining tests use, so the tiny model sees real tokens, not [UNK].
EXTRA_CHARS = "一二三四五六七八九十上下左右人口手山水火木你我他们的了是在有和不这那来去吃喝看听说写读书报笔纸春夏秋冬"


def make_tiny_bert(folder: Path, texts: list[str] = TEXTS, seed: int = 0) -> Path:
    """A 2-layer, 32-dim BERT with a vocabulary of the texts' characters, saved like a Hub model."""
    chars = sorted(set("".join(texts) + EXTRA_CHARS) - {" "})
    vocab = [*SPECIALS, *chars, *"abcdefghijklmnopqrstuvwxyz0123456789"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    transformers.BertTokenizer(vocab=str(folder / "vocab.txt")).save_pretrained(folder)
    torch.manual_seed(seed)
    config = transformers.BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    transformers.BertModel(config).save_pretrained(folder)
    return folder


def count_forwards(encoder: Encoder) -> list[int]:
    """Counts model forward calls (the proof that a cache hit ran no model)."""
    calls = [0]
    for replica in encoder.replicas:
        original = replica.forward

        def counted(*args, _original=original, **kwargs):
            calls[0] += 1
            return _original(*args, **kwargs)

        replica.forward = counted
    return calls


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


def manual_mean(folder: Path, text: str) -> np.ndarray:
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    model = transformers.AutoModel.from_pretrained(folder).eval()
    with torch.no_grad():
        hidden = model(**tok([text], return_tensors="pt")).last_hidden_state[0]
    v = hidden.mean(0).numpy()
    return v / np.linalg.norm(v)


def test_mean_pooled_unit_vectors_independent_of_batch_padding(tiny):
    enc = Encoder(str(tiny), device="cpu", batch_size=4)
    assert (enc.model_id, enc.revision, enc.dim, enc.pooling) == (str(tiny), "local", 32, "mean")
    together = enc.encode(TEXTS)
    assert together.dtype == np.float32 and together.shape == (len(TEXTS), 32)
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1, atol=1e-5)
    # Length-sorted, padded batches must give each text what it gets alone, in the caller's order.
    alone = np.stack([enc.encode([t])[0] for t in TEXTS])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    np.testing.assert_allclose(together[0], manual_mean(tiny, TEXTS[0]), atol=1e-5)


def test_duplicates_are_encoded_once(tiny):
    enc = Encoder(str(tiny), device="cpu")
    out = enc.encode(["好", "天气怎么样", "好"])
    assert enc.stats["encoded"] == 2
    np.testing.assert_array_equal(out[0], out[2])


def test_cache_hit_runs_no_model_and_returns_identical_vectors(tiny, tmp_path):
    first = Encoder(str(tiny), device="cpu", cache_dir=tmp_path)
    calls = count_forwards(first)
    a = first.encode(TEXTS)
    assert calls[0] > 0
    first.close()

    second = Encoder(str(tiny), device="cpu", cache_dir=tmp_path)
    calls = count_forwards(second)
    b = second.encode(list(reversed(TEXTS)))
    assert calls[0] == 0 and second.stats["cache_hits"] == len(TEXTS)
    np.testing.assert_array_equal(a, b[::-1])
    # A new text costs one forward; the cached ones still none.
    second.encode([*TEXTS, "我想去"])
    assert calls[0] == 1
    second.close()

    # Another max_length is another key: nothing is reused.
    other = Encoder(str(tiny), device="cpu", cache_dir=tmp_path, max_length=4)
    calls = count_forwards(other)
    other.encode(TEXTS)
    assert calls[0] > 0
    other.close()


def test_cache_is_keyed_by_the_weights_of_a_local_folder(tmp_path):
    model = make_tiny_bert(tmp_path / "m", seed=0)
    a = Encoder(str(model), device="cpu", cache_dir=tmp_path / "cache").encode(TEXTS[:2])
    make_tiny_bert(tmp_path / "m", seed=1)  # retrained in place
    b = Encoder(str(model), device="cpu", cache_dir=tmp_path / "cache").encode(TEXTS[:2])
    assert not np.allclose(a, b)


def test_sentence_transformers_folder_with_cls_pooling_matches_sentence_transformers(tiny, tmp_path):
    st = pytest.importorskip("sentence_transformers")
    models = pytest.importorskip("sentence_transformers.models")
    model = st.SentenceTransformer(
        modules=[models.Transformer(str(tiny)), models.Pooling(32, "cls"), models.Normalize()],
        device="cpu",
    )
    model.save(str(tmp_path / "st"))
    assert read_layout(tmp_path / "st").pooling == "cls"
    ours = Encoder(str(tmp_path / "st"), device="cpu").encode(TEXTS)
    theirs = st.SentenceTransformer(str(tmp_path / "st"), device="cpu").encode(TEXTS, normalize_embeddings=True)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_transformer_in_a_sub_folder_named_by_modules_json(tiny, tmp_path):
    folder = tmp_path / "st"
    sub = make_tiny_bert(folder / "0_Transformer")
    (folder / "1_Pooling").mkdir()
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "0_Transformer", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]))
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": 32, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True}))
    layout = read_layout(folder)
    assert (layout.transformer_dir, layout.pooling) == (sub, "mean")
    np.testing.assert_allclose(Encoder(str(folder), device="cpu").encode(TEXTS[:1])[0],
                               manual_mean(sub, TEXTS[0]), atol=1e-5)


def test_unsupported_pooling_is_a_clear_error(tmp_path):
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "modules.json").write_text(json.dumps(
        [{"path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_max_tokens": True}))
    with pytest.raises(ValueError, match="unsupported pooling"):
        read_layout(tmp_path)


def test_modules_that_change_the_vector_are_refused(tiny, tmp_path):
    """A Dense (or any other) module after pooling would be silently skipped: refuse the folder instead."""
    st = pytest.importorskip("sentence_transformers")
    models = pytest.importorskip("sentence_transformers.models")
    model = st.SentenceTransformer(
        modules=[models.Transformer(str(tiny)), models.Pooling(32, "mean"), models.Dense(32, 16)], device="cpu",
    )
    model.save(str(tmp_path / "st"))
    with pytest.raises(ValueError, match="not supported"):
        read_layout(tmp_path / "st")


def test_progress_callback_counts_the_texts_encoded(tiny, tmp_path):
    enc = Encoder(str(tiny), device="cpu", batch_size=2, cache_dir=tmp_path)
    seen: list[tuple[int, int]] = []
    enc.encode(TEXTS, on_progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (len(TEXTS), len(TEXTS)) and len(seen) == 3  # one call per batch of 2
    seen.clear()
    enc.encode(TEXTS, on_progress=lambda done, total: seen.append((done, total)))
    assert seen == []  # all cached: nothing to encode, nothing reported
    enc.close()


def test_several_devices_give_the_same_vectors(tiny):
    """--device "cpu,cpu": one replica per device, batches dealt out between threads (the multi-GPU path)."""
    one = Encoder(str(tiny), device="cpu", batch_size=2).encode(TEXTS)
    two = Encoder(str(tiny), device="cpu,cpu", batch_size=2)
    assert len(two.replicas) == 2
    np.testing.assert_allclose(two.encode(TEXTS), one, atol=1e-6)
