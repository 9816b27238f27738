"""alpaca_gpt4 as shibing624/alpaca-zh serves it: one JSON array alpaca_gpt4_data_zh.json (indented by 4,
as GPT-4-LLM wrote it), rows {instruction, input, output}. Synthetic rows: the five the recipe test
asserts, then the demo's bulk (tests/make_demo/_bulk.py): general instructions, one row per quality rule, and
duplicates within the source and of chatmed_consult."""

import json

from tests.make_demo import write_text
from tests.make_demo._bulk import EXACT_COPY, GENERAL, NEAR_COPY, QUALITY, cross_copies

ROWS = [
    {"instruction": "写一首关于秋天的短诗。", "input": "",
     "output": "秋风轻拂过山岗，\n金黄的稻田泛起波浪。"},
    {"instruction": "把下面的句子改写成被动语态。", "input": "小明打碎了花瓶。", "output": "花瓶被小明打碎了。"},
    # Whitespace around the parts: the join strips it, no dangling or doubled space.
    {"instruction": "计算下列数字的平均值。 ", "input": " 3, 5, 7", "output": "平均值是5。"},
    # A row without `output` (missing_field:output) and one with an empty output (empty_text).
    {"instruction": "给这篇文章起一个标题。", "input": "今天我们去公园放风筝。"},
    {"instruction": "说出一种颜色。", "input": "", "output": ""},
]



def bulk() -> list[dict]:
    pairs = [*GENERAL, *QUALITY.values(), EXACT_COPY, NEAR_COPY, *cross_copies()]
    return [{"instruction": q, "input": "", "output": a} for q, a in pairs]


def write(root):
    write_text(root / "alpaca_gpt4_data_zh.json", json.dumps(ROWS + bulk(), ensure_ascii=False, indent=4))
