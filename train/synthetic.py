"""A synthetic Chinese corpus and a tiny random BERT, for tests and the benchmark (offline, seconds on CPU).

The corpus is built so that an untrained model cannot retrieve well and a trained one can: each of
`topics` topics owns two "query" characters and two different "document" characters; a row joins two topics,
its query written with their query characters and its positive with their document characters, both padded
with shared filler. Retrieval therefore needs the learned association between the two character sets, which
is what contrastive training supplies (and which also generalises to held-out topic pairs).
"""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from m3e_data.schema import UNIFIED_SCHEMA, make_id
from m3e_data.storage.store import SUCCESS, atomic_write_json

_FIRST_CJK = 0x4E00
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def charset(n: int, offset: int = 0) -> list[str]:
    return [chr(_FIRST_CJK + offset + i) for i in range(n)]


class Topics:
    def __init__(self, topics: int = 40, fillers: int = 30, seed: int = 0) -> None:
        chars = charset(4 * topics + fillers)
        self.query_chars = [chars[4 * i: 4 * i + 2] for i in range(topics)]
        self.doc_chars = [chars[4 * i + 2: 4 * i + 4] for i in range(topics)]
        self.fillers = chars[4 * topics:]
        self.rng = random.Random(seed)
        self.vocab = chars

    def _text(self, core: list[str], n_fill: int) -> str:
        chars = core + [self.rng.choice(self.fillers) for _ in range(n_fill)]
        self.rng.shuffle(chars)
        return "".join(chars)

    def row(self, pair: tuple[int, int], n_negatives: int = 0) -> tuple[str, str, list[str]]:
        i, j = pair
        query = self._text(self.query_chars[i] + self.query_chars[j], 3)
        positive = self._text(self.doc_chars[i] + self.doc_chars[j], 6)
        negatives = []
        for _ in range(n_negatives):
            # A hard negative shares one topic with the positive.
            k = self.rng.choice([t for t in range(len(self.doc_chars)) if t not in pair])
            negatives.append(self._text(self.doc_chars[i] + self.doc_chars[k], 6))
        return query, positive, negatives


def corpus_rows(
    source: str,
    n_rows: int,
    *,
    topics: Topics,
    n_negatives: int = 0,
    scored: bool = False,
    task: str = "qa",
    commercial: bool = True,
    license: str = "apache-2.0",
    duplicate_every: int = 0,
) -> pa.Table:
    """n_rows unified rows; every `duplicate_every`-th row repeats an earlier query (a false-negative trap)."""
    n_topics = len(topics.query_chars)
    rows: dict[str, list] = {name: [] for name in UNIFIED_SCHEMA.names}
    for r in range(n_rows):
        pair = tuple(topics.rng.sample(range(n_topics), 2))
        query, positive, negatives = topics.row(pair, n_negatives)  # type: ignore[arg-type]
        if duplicate_every and r and r % duplicate_every == 0:
            query = rows["query"][r - 1]
        rows["id"].append(make_id(source, "train", str(r)))
        rows["source"].append(source)
        rows["split"].append("train")
        rows["query"].append(query)
        rows["positive"].append(positive)
        rows["negatives"].append(negatives)
        rows["positive_score"].append(0.8 + 0.1 * topics.rng.random() if scored else None)
        rows["negative_scores"].append([0.3 + 0.3 * topics.rng.random() for _ in negatives] if scored else None)
        rows["task"].append(task)
        rows["homogeneous"].append(False)
        rows["domain"].append("synthetic")
        rows["license"].append(license)
        rows["commercial"].append(commercial)
    return pa.table(rows, schema=UNIFIED_SCHEMA)


def write_source(stage_dir: Path, table: pa.Table) -> Path:
    """One finished source folder as a build writes it: part-00000.parquet and _SUCCESS.json."""
    name = table["source"][0].as_py()
    folder = stage_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, folder / "part-00000.parquet")
    atomic_write_json(folder / SUCCESS, {"rows": table.num_rows, "parts": ["part-00000.parquet"]})
    return folder


def tiny_bert(folder: Path, vocab: list[str], *, hidden: int = 32, layers: int = 2, heads: int = 2,
              intermediate: int = 64, max_position: int = 64, seed: int = 0) -> Path:
    """A randomly initialised BERT with a WordPiece vocab of `vocab`, saved as a sentence-transformers folder."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers import BertConfig, BertModel, BertTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    hf = folder / "hf"
    hf.mkdir(exist_ok=True)
    (hf / "vocab.txt").write_text("\n".join(SPECIAL_TOKENS + vocab) + "\n", encoding="utf-8")
    # transformers 5: `vocab` takes the vocab file's path (the old `vocab_file` is silently ignored).
    tokenizer = BertTokenizer(vocab=str(hf / "vocab.txt"), do_lower_case=False)
    tokenizer.save_pretrained(hf)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(SPECIAL_TOKENS) + len(vocab), hidden_size=hidden, num_hidden_layers=layers,
        num_attention_heads=heads, intermediate_size=intermediate, max_position_embeddings=max_position,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )
    BertModel(config).save_pretrained(hf)
    transformer = Transformer(str(hf), max_seq_length=max_position)
    model = SentenceTransformer(modules=[transformer, Pooling(hidden, pooling_mode="mean")], device="cpu")
    model.save(str(folder / "st"), create_model_card=False)
    shutil_rmtree(hf)
    return folder / "st"


def shutil_rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
