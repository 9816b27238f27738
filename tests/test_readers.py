"""Local readers: containers, encodings and broken rows as the sources really ship them."""

import gzip
import json
from collections import Counter

import pytest

from m3e_data.stages.normalize.readers import (
    BadRow,
    collecting_notes,
    iter_csv,
    iter_json,
    iter_json_lines_range,
    iter_squad,
    iter_tsv,
    line_ranges,
)


def write(path, data: bytes):
    path.write_bytes(data)
    return path


def test_json_lines_with_bom_crlf_blank_lines_and_a_truncated_last_line(tmp_path):
    text = '{"a": "甲"}\r\n\r\n{"a": "乙"}\r\n{"a": "丙'
    rows = list(iter_json(write(tmp_path / "x.json", b"\xef\xbb\xbf" + text.encode())))
    assert rows[:2] == [{"a": "甲"}, {"a": "乙"}]
    assert isinstance(rows[2], BadRow) and rows[2].reason == "truncated_line"


def test_gbk_file_is_read_through_the_gb18030_fallback(tmp_path):
    doc = {"data": [{"phrase1": "画蛇添足", "phrase2": "多此一举", "label": "entailment"}]}
    path = write(tmp_path / "cinlid.json", json.dumps(doc, ensure_ascii=False).encode("gbk"))
    with collecting_notes(Counter()) as notes:
        assert list(iter_json(path)) == doc["data"]
    assert notes == {"decoded_gb18030": 1}


def test_json_array_and_dict_keyed_by_id(tmp_path):
    arr = write(tmp_path / "a.json", json.dumps([{"q": "一"}, 3], ensure_ascii=False).encode())
    rows = list(iter_json(arr))
    assert rows[0] == {"q": "一"} and rows[1].reason == "not_an_object"
    by_id = write(tmp_path / "b.json", json.dumps({"k1": {"q": "二"}}, ensure_ascii=False, indent=2).encode())
    assert list(iter_json(by_id)) == [{"q": "二", "_key": "k1"}]


def test_an_undecodable_line_in_a_utf8_file_is_one_bad_row(tmp_path):
    lines = [json.dumps({"a": f"第{i}行"}, ensure_ascii=False).encode() for i in range(3000)]
    lines[2000] = b'{"a": "\xff\xfe broken"}'
    rows = list(iter_json(write(tmp_path / "x.jsonl", b"\n".join(lines))))
    bad = [r for r in rows if isinstance(r, BadRow)]
    assert len(rows) == 3000 and [b.reason for b in bad] == ["undecodable_bytes"]


def test_gzipped_json_lines(tmp_path):
    path = tmp_path / "docs-0.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write('{"docid": "1#0", "title": "标题"}\n')
    assert list(iter_json(path)) == [{"docid": "1#0", "title": "标题"}]


def test_tsv_header_detection_short_rows_and_stray_quotes(tmp_path):
    cols = ["id", "sentence1", "sentence2", "label"]
    text = "id\tsentence1\tsentence2\tlabel\n1\t他说\"好\"\t他同意了\t1\n2\t只有两列\n3\ta\tb\tc\td\n"
    rows = list(iter_tsv(write(tmp_path / "dev.tsv", text.encode()), columns=cols))
    assert rows[0] == {"id": "1", "sentence1": '他说"好"', "sentence2": "他同意了", "label": "1"}
    assert rows[1] == {"id": "2", "sentence1": "只有两列"}
    assert rows[2].reason == "malformed_tsv_row"
    headless = list(iter_tsv(write(tmp_path / "t.tsv", "甲\t乙\t1\n".encode()), columns=["a", "b", "label"]))
    assert headless == [{"a": "甲", "b": "乙", "label": "1"}]


def test_csv_multiline_quoted_field_and_malformed_row(tmp_path):
    text = 'title,question,reply,is_best\n借款不还怎么办,,"可以起诉。\n保留证据",1\n坏行,只有两列\n合同,"",要看条款,0\n'
    rows = list(iter_csv(write(tmp_path / "lawzhidao_filter.csv", text.encode())))
    assert rows[0]["reply"] == "可以起诉。\n保留证据"
    assert rows[1].reason == "malformed_csv_row"
    assert rows[2] == {"title": "合同", "question": "", "reply": "要看条款", "is_best": "0"}


def test_squad_nesting_is_flattened_one_row_per_question(tmp_path):
    doc = {"version": "v1", "data": [{"title": "湖", "paragraphs": [{"context": "青梅湖很大。", "qas": [
        {"id": "q1", "question": "哪个湖很大？", "answers": [{"text": "青梅湖", "answer_start": 0}]},
        {"id": "q2", "question": "无解？", "answers": [], "is_impossible": True},
    ]}]}]}
    rows = list(iter_squad(write(tmp_path / "train.json", json.dumps(doc, ensure_ascii=False).encode())))
    assert [(r["id"], r["context"], r["question"], r["is_impossible"]) for r in rows] == [
        ("q1", "青梅湖很大。", "哪个湖很大？", False),
        ("q2", "青梅湖很大。", "无解？", True),
    ]
    assert rows[0]["answers"] == {"text": ["青梅湖"], "answer_start": [0]}


def test_an_empty_file_is_an_empty_split(tmp_path):
    assert list(iter_json(write(tmp_path / "valid.json", b"\n  \n"))) == []


def test_csv_and_tsv_headers_lose_their_bom(tmp_path):
    csv_rows = list(iter_csv(write(tmp_path / "a.csv", "\ufefftitle,reply\n问,答\n".encode())))
    assert csv_rows == [{"title": "问", "reply": "答"}]
    tsv_rows = list(iter_tsv(write(tmp_path / "a.tsv", "\ufeffid\ts\n1\t甲\n".encode()), header=True))
    assert tsv_rows == [{"id": "1", "s": "甲"}]


def test_gbk_json_lines_are_decoded_line_by_line(tmp_path):
    rows = [{"sentence1": "画蛇添足", "sentence2": "多此一举", "label": "entailment"}] * 3
    path = write(tmp_path / "cinlid.json", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("gbk"))
    with collecting_notes(Counter()) as notes:
        assert list(iter_json(path)) == rows
    assert notes == {"decoded_gb18030": 3}


def test_an_undecodable_csv_row_is_one_bad_row_and_the_rows_after_it_are_read(tmp_path):
    data = "title,reply\n甲,一\n".encode() + b"\xe4\xb9,\xff\xfe\n" + "乙,二\n".encode() * 3000
    rows = list(iter_csv(write(tmp_path / "lawzhidao_filter.csv", data)))
    assert rows[0] == {"title": "甲", "reply": "一"}
    assert isinstance(rows[1], BadRow) and rows[1].reason == "undecodable_bytes"
    assert len(rows) == 3002 and rows[-1] == {"title": "乙", "reply": "二"}


def test_an_undecodable_row_of_a_json_array_is_one_bad_row(tmp_path):
    data = b'[{"q": "\xe7\x94\xb2"}, {"q": "\xff\xfe"}, {"q": "\xe4\xb9\x99"}]'
    rows = list(iter_json(write(tmp_path / "train.json", data)))
    assert rows[0] == {"q": "甲"} and rows[2] == {"q": "乙"}
    assert isinstance(rows[1], BadRow) and rows[1].reason == "undecodable_bytes"


def test_a_truncated_first_line_does_not_turn_json_lines_into_a_document(tmp_path):
    text = '{"a": "甲\n{"a": "乙"}\n{"a": "丙"}\n{"a": "丁"}\n'
    rows = list(iter_json(write(tmp_path / "x.json", text.encode())))
    assert rows[0].reason == "malformed_json" and rows[1:] == [{"a": "乙"}, {"a": "丙"}, {"a": "丁"}]
    # An indented document is still a document, although its last element stands alone on a line.
    doc = '{"data": [\n{"a": "甲"},\n{"a": "乙"},\n{"a": "丙"}\n]}\n'
    assert list(iter_json(write(tmp_path / "d.json", doc.encode()))) == [{"a": "甲"}, {"a": "乙"}, {"a": "丙"}]
    pretty = json.dumps({"data": [{"a": "甲"}, {"a": "乙"}]}, ensure_ascii=False, indent=2)
    assert list(iter_json(write(tmp_path / "p.json", pretty.encode()))) == [{"a": "甲"}, {"a": "乙"}]


class _CountingReader:
    """A binary file that counts the bytes handed out, to show that a reader streams."""

    def __init__(self, fh, seen):
        self.fh, self.seen = fh, seen

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.fh.close()

    def __iter__(self):
        for line in self.fh:
            self.seen[0] += len(line)
            yield line

    def read(self, n=-1):
        data = self.fh.read(n)
        self.seen[0] += len(data)
        return data

    def readinto(self, b):
        n = self.fh.readinto(b)
        self.seen[0] += n or 0
        return n

    def __getattr__(self, name):
        return getattr(self.fh, name)


def test_json_lines_tsv_and_csv_are_streamed_not_loaded_whole(tmp_path, monkeypatch):
    from m3e_data.stages.normalize import readers

    seen = [0]
    real_open = readers.open_binary
    monkeypatch.setattr(readers, "open_binary", lambda path, **kw: _CountingReader(real_open(path, **kw), seen))
    n = 60_000  # ~4 MB per file; the first rows must come after reading a small part of it
    jsonl = write(tmp_path / "big.json", "".join(json.dumps({"t": f"第{i}行文本"}, ensure_ascii=False) + "\n" for i in range(n)).encode())
    tsv = write(tmp_path / "big.tsv", "".join(f"{i}\t第{i}行\t1\n" for i in range(n)).encode())
    csv_ = write(tmp_path / "big.csv", ("a,b\n" + "".join(f"{i},第{i}行\n" for i in range(n))).encode())
    for path, rows in (
        (jsonl, iter_json(jsonl)),
        (tsv, iter_tsv(tsv, columns=["id", "s", "label"], header=False)),
        (csv_, iter_csv(csv_)),
    ):
        seen[0] = 0
        first = [next(rows) for _ in range(10)]
        assert all(isinstance(r, dict) for r in first)
        assert seen[0] < path.stat().st_size // 4, (path.name, seen[0], path.stat().st_size)


# --- byte ranges of a large JSON-lines file (the Ray executor's units)

# Every quirk a range reader must keep: a BOM, CRLF and LF endings, blank and whitespace lines, multi-byte
# characters (3-byte CJK, a 4-byte emoji), a GBK line, malformed JSON, a lone surrogate escape, a line that
# is not an object, and a last line cut without its newline.
_QUIRKS = b"".join([
    b"\xef\xbb\xbf" + '{"q": "问一", "a": "答"}\r\n'.encode(),
    '{"q": "长问题' .encode() + "很长的文本" .encode() * 9 + b'", "a": "x"}\n',
    b"\n",
    b"   \r\n",
    '{"q": "😀表情", "a": "答二"}\n'.encode(),
    '{"q": "坏的一行", "a": \n'.encode(),
    '{"q": "国标", "a": "编码"}\r\n'.encode("gbk"),
    b'{"q": "\\ud800", "a": "a"}\n',
    b'[1, 2]\n',
    '{"q": "最后", "a": "截断'.encode(),
])


def _items(rows):
    return [(r.reason if isinstance(r, BadRow) else r) for r in rows]


def test_line_ranges_cover_the_file_and_cut_only_after_a_newline(tmp_path):
    path = write(tmp_path / "x.json", _QUIRKS)
    size = len(_QUIRKS)
    for split_bytes in range(1, size + 2):
        ranges = line_ranges(path, split_bytes)
        assert ranges[0][0] == 0 and ranges[-1][1] == size
        assert all(a < b for a, b in ranges)
        assert all(ranges[k][1] == ranges[k + 1][0] for k in range(len(ranges) - 1))
        assert all(_QUIRKS[a - 1:a] == b"\n" for a, _ in ranges[1:])
        # a range is as short as its lines allow: it ends with the line holding its budget's last byte
        for a, b in ranges[:-1]:
            assert b == _QUIRKS.index(b"\n", a + split_bytes - 1) + 1
    assert line_ranges(path, size) == [(0, size)]
    assert len(line_ranges(path, 1)) == _QUIRKS.count(b"\n") + 1  # every line its own range
    with pytest.raises(ValueError, match="at least 1"):
        line_ranges(path, 0)


def test_ranges_read_together_are_the_whole_file_bad_rows_and_notes_included(tmp_path):
    path = write(tmp_path / "x.json", _QUIRKS)
    with collecting_notes(Counter()) as whole_notes:
        whole = _items(iter_json(path))
    assert "malformed_json" in whole and "truncated_line" in whole and "not_an_object" in whole
    assert "lone_surrogate" in whole and {"q": "😀表情", "a": "答二"} in whole and len(whole) == 8
    for split_bytes in range(1, len(_QUIRKS) + 2):
        with collecting_notes(Counter()) as notes:
            parts = [_items(iter_json_lines_range(path, a, b)) for a, b in line_ranges(path, split_bytes)]
        assert [row for part in parts for row in part] == whole, split_bytes
        assert notes == whole_notes == {"decoded_gb18030": 1}


def test_a_range_owns_the_lines_that_start_in_it(tmp_path):
    path = write(tmp_path / "x.jsonl", b'{"n": 1}\n{"n": 2}\r\n{"n": 3}')
    assert _items(iter_json_lines_range(path, 0, 1)) == [{"n": 1}]  # a line starting at 0 runs past the end
    assert _items(iter_json_lines_range(path, 9, 10)) == [{"n": 2}]
    assert _items(iter_json_lines_range(path, 9, 20)) == [{"n": 2}, {"n": 3}]
    assert _items(iter_json_lines_range(path, 19, 27)) == [{"n": 3}]
