"""chatmed_consult as michaelwzhu/ChatMed_Consult_Dataset serves it: one JSON-lines file
ChatMed_Consult-v0.3.json, rows {query, response}. Synthetic rows: the three the recipe test asserts, then the demo's bulk
(tests/make_demo/_bulk.py), then the broken lines."""

from tests.make_demo import jsonl, write_text
from tests.make_demo._bulk import medical_pairs

ROWS = [
    {"query": "最近总是失眠，晚上一点多才能睡着，怎么办？",
     "response": "建议保持规律作息，睡前一小时不看手机，避免下午喝咖啡和浓茶；若持续超过一个月，请到睡眠门诊就诊。"},
    {"query": "孩子发烧38.5度，需要马上吃退烧药吗？",
     "response": "体温超过38.5度且孩子明显不适时可以服用儿童退烧药，同时注意补充水分；若持续高热或精神差，请及时就医。"},
    # A lost answer (null): bad_value:text_not_string.
    {"query": "胃疼吃什么药好？", "response": None},
]


def write(root):
    path = root / "ChatMed_Consult-v0.3.json"
    # A truncated line (malformed_json), then one with bytes that are neither UTF-8 nor GBK (undecodable_bytes).
    bulk = [{"query": q, "response": a} for q, a in medical_pairs()]
    write_text(path, jsonl(ROWS + bulk) + '{"query": "膝盖疼是怎么回事", "respon\n')
    with path.open("ab") as fh:
        fh.write('{"query": "头疼", "response": "'.encode() + b"\xff\xfe" + '建议休息"}\n'.encode())
