"""m3e_data/demo/_eval/: an evaluation file for `build --decontaminate`, in C-MTEB retrieval's JSON-lines form
({query, positive: [...]}, which decontaminate.read_eval_texts reads). Not a source (no catalog entry has
this name). Invented rows; see _bulk.EVAL_ROWS for which demo rows they catch."""

from tests.make_demo import jsonl, write_text
from tests.make_demo._bulk import EVAL_ROWS


def write(root):
    write_text(root / "retrieval_dev.jsonl", jsonl(EVAL_ROWS))
