"""webqa: question -> evidence passage; with the raw WebQA v1.0 files, no_answer evidences are negatives.

Layouts, tried in this order:
- `json`: suolyer/webqa's train.json / dev.json / test.json, rows `{id, input, output}`. M3E's rule:
  input -> output, one pair per row over all three files: 42,216 pairs.
- `parquet-export`: the Hub's Parquet export of the same repo (refs/convert/parquet, `default/<split>/`),
  for a copy whose JSON file names differ.
- `webqa-v1`: Baidu's raw WebQA v1.0 (me_train.json, me_validation.ann.json, me_test.ann.json; each one
  JSON object mapping a question id to `{question, evidences: {id: {evidence, answer: [...]}}}`), found at
  any depth under DIR/webqa/. One pair per question: its first evidence that holds an answer, with every
  evidence marked `no_answer` as a native negative (42,223 questions in v1.0; a question without an
  answered evidence is counted as no_answered_evidence). Option `every_evidence=true` makes one pair per
  answered evidence instead.
"""

from m3e_data.recipe import Pair, Skip
from m3e_data.stages.normalize.readers import BadRow, iter_json

OPTIONS = {"every_evidence": False}
RAW_LAYOUT = "webqa-v1"
NO_ANSWER = "no_answer"


def read(located, split, ctx):
    """Questions of the raw files, one row each, with their id as `qid`; other layouts read as usual."""
    if ctx.layout != RAW_LAYOUT:
        yield from located.rows(split)
        return
    for path in located.files[split]:
        for item in iter_json(located.local_path(path)):
            if isinstance(item, BadRow) or "question" in item:
                yield item if isinstance(item, BadRow) else {"qid": item.get("_key"), **item}
                continue
            # A one-line file reads as a single JSON-lines row: the whole id -> question mapping.
            for qid, question in item.items():
                yield {"qid": qid, **question} if isinstance(question, dict) else BadRow("not_an_object", qid)


def _answers(evidence):
    return [str(a).strip() for a in evidence["answer"]]


def to_pairs(row, ctx):
    if ctx.layout != RAW_LAYOUT:
        # Ids are row positions: the copy's `id` is not known to be unique within a file.
        yield Pair(row["input"], row["output"])
        return
    evidences = list(row["evidences"].values())
    # An evidence counts as a negative only where annotators said so; one without any answer is neither.
    answered = [e["evidence"] for e in evidences if any(a != NO_ANSWER for a in _answers(e))]
    negatives = [e["evidence"] for e in evidences if set(_answers(e)) == {NO_ANSWER}]
    if not answered:
        raise Skip("no_answered_evidence")
    chosen = answered if ctx.options["every_evidence"] else answered[:1]
    qid = row.get("qid")
    for j, positive in enumerate(chosen):
        key = None if qid is None else (str(qid) if len(chosen) == 1 else f"{qid}-{j}")
        yield Pair(row["question"], positive, negatives, key=key)
