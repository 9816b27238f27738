"""One bad row costs one row: the readers against the damage the fault audit (issue 12) fed them.

Each test builds the damaged file exactly as it was found broken: an unclosed CSV quote, a SQuAD paragraph
with one undecodable byte, a lone surrogate escape, a JSON-lines file whose first line is garbage, mixed
UTF-8/GBK lines, a gzip cut short, a zero-byte file, a cut last line. The fuzz test at the end damages one
line of a valid file in many ways and checks that every other row still comes out intact.
"""

import gzip
import json
import logging
import random
from collections import Counter

import pytest

from m3e_data.stages.normalize import readers
from m3e_data.stages.normalize.readers import (
    BadRow,
    collecting_notes,
    iter_csv,
    iter_json,
    iter_squad,
    iter_tsv,
    read_file,
)
from tests.test_readers import _CountingReader


def write(path, data: bytes):
    path.write_bytes(data)
    return path


def split(items):
    rows = [r for r in items if not isinstance(r, BadRow)]
    return rows, Counter(r.reason for r in items if isinstance(r, BadRow))


# --- CSV: a quote left open -------------------------------------------------------------------------

def _law_rows(n):
    return [{"title": f"问题{i}", "question": "", "reply": f"回答{i}，要看合同", "is_best": str(i % 2)} for i in range(n)]


def _csv_line(r):
    return f"{r['title']},{r['question']},{r['reply']},{r['is_best']}\n"


def test_an_unclosed_csv_quote_costs_one_row_not_the_rows_it_swallows(tmp_path):
    rows = _law_rows(20)
    lines = [_csv_line(r) for r in rows]
    lines[3] = '问题3,,"他说要看合同,1\n'  # the quote never closes; row 9 has the next quote
    lines[9] = '问题9,,回答9，"要看"合同,1\n'
    data = "title,question,reply,is_best\n" + "".join(lines)
    got, bad = split(list(iter_csv(write(tmp_path / "lawzhidao_filter.csv", data.encode()))))
    assert bad == {"unclosed_quote": 1}
    assert got == rows[:3] + rows[4:9] + [dict(rows[9], reply='回答9，"要看"合同', is_best="1")] + rows[10:]


def test_an_unclosed_quote_in_the_last_column_is_found_by_the_rows_inside_it(tmp_path):
    # The swallowed stretch ends in a record with the header's field count: the rows inside give it away.
    rows = _law_rows(12)
    lines = [_csv_line(r) for r in rows]
    lines[2] = '问题2,,回答2,"1\n'
    lines[8] = '问题8,,回答8,1"\n'
    data = "title,question,reply,is_best\n" + "".join(lines)
    got, bad = split(list(iter_csv(write(tmp_path / "a.csv", data.encode()))))
    assert bad == {"unclosed_quote": 1}
    assert [r["title"] for r in got] == [f"问题{i}" for i in range(12) if i != 2]


def test_a_real_multiline_field_is_kept_and_an_overlong_field_is_field_too_long(tmp_path):
    long = "长" * 140_000
    data = f'title,reply\n甲,"第一行\n第二行\n第三行"\n乙,{long}\n丙,三\n'
    items = list(iter_csv(write(tmp_path / "a.csv", data.encode())))
    got, bad = split(items)
    assert got == [{"title": "甲", "reply": "第一行\n第二行\n第三行"}, {"title": "丙", "reply": "三"}]
    assert bad == {"field_too_long": 1}


# --- SQuAD: count in questions ----------------------------------------------------------------------

def _squad(paragraphs):
    return {"version": "v1", "data": [{"title": "青梅湖", "paragraphs": paragraphs}]}


def _para(context, first, n):
    return {"context": context, "qas": [
        {"id": f"q{i}", "question": f"第{i}个问题？", "answers": [{"text": "青梅湖", "answer_start": 0}]}
        for i in range(first, first + n)]}


def test_one_undecodable_byte_in_a_squad_paragraph_costs_that_paragraphs_questions(tmp_path):
    doc = _squad([_para("青梅湖很大。BROKEN", 0, 3), _para("青梅湖很深。", 3, 17)])
    data = json.dumps(doc, ensure_ascii=False).encode().replace(b"BROKEN", b"\xff")
    got, bad = split(list(iter_squad(write(tmp_path / "train.json", data))))
    assert bad == {"undecodable_bytes": 3}
    assert [r["id"] for r in got] == [f"q{i}" for i in range(3, 20)]


def test_one_undecodable_byte_in_a_question_costs_that_question(tmp_path):
    doc = _squad([_para("青梅湖很大。", 0, 20)])
    doc["data"][0]["paragraphs"][0]["qas"][7]["question"] = "BROKEN"
    data = json.dumps(doc, ensure_ascii=False).encode().replace(b"BROKEN", b"\xe4\xb8")
    got, bad = split(list(iter_squad(write(tmp_path / "train.json", data))))
    assert bad == {"undecodable_bytes": 1} and len(got) == 19 and "q7" not in {r["id"] for r in got}


# --- lone surrogates --------------------------------------------------------------------------------

def test_a_lone_surrogate_is_one_bad_row_in_every_json_container(tmp_path):
    import pyarrow as pa

    array = write(tmp_path / "a.json", b'[{"q": "\\ud800x"}, {"q": "\\u7532"}, {"q": "\\ud83d\\ude00"}]')
    lines = write(tmp_path / "b.json", b'{"q": "\\ud800x"}\n{"q": "\\u7532"}\n{"q": "\\ud83d\\ude00"}\n')
    for path in (array, lines):
        got, bad = split(list(iter_json(path)))
        assert got == [{"q": "甲"}, {"q": "😀"}] and bad == {"lone_surrogate": 1}, path.name
        pa.array([r["q"] for r in got])  # what failed the whole source: Arrow encoding the strings
    doc = _squad([_para("青梅湖很大。", 0, 4)])
    doc["data"][0]["paragraphs"][0]["qas"][2]["question"] = "SURROGATE"
    data = json.dumps(doc, ensure_ascii=False).replace("SURROGATE", "\\udc00?").encode()
    got, bad = split(list(iter_squad(write(tmp_path / "train.json", data))))
    assert bad == {"lone_surrogate": 1} and [r["id"] for r in got] == ["q0", "q1", "q3"]


# --- JSON lines with a bad first line ---------------------------------------------------------------

@pytest.mark.parametrize("first", [
    b"garbage that is not json",
    b'{"title": "\xe6\xa0\x87',  # cut
    b'["an", "array"]',
    b"\x00" * 64,
    b"[",
], ids=["garbage", "cut", "array", "nul", "bracket"])
def test_json_lines_with_a_bad_first_line_are_streamed_and_lose_only_that_line(tmp_path, monkeypatch, first):
    seen = [0]
    real_open = readers.open_binary

    monkeypatch.setattr(readers, "open_binary", lambda path, **kw: _CountingReader(real_open(path, **kw), seen))
    n = 30_000
    body = "".join(json.dumps({"news_id": str(i), "title": f"第{i}条新闻"}, ensure_ascii=False) + "\n" for i in range(n))
    path = write(tmp_path / "news2016zh_train.json", first + b"\n" + body.encode())
    items = iter_json(path)
    head = [next(items) for _ in range(11)]
    assert isinstance(head[0], BadRow) and all(isinstance(r, dict) for r in head[1:])
    assert seen[0] < path.stat().st_size // 4  # streamed: not loaded whole to decide or to read
    got, bad = split(head + list(items))
    assert len(got) == n and sum(bad.values()) == 1


def test_the_file_name_decides_jsonl_and_a_document_is_still_a_document(tmp_path):
    # A .jsonl whose every early line is damaged is still JSON lines.
    path = write(tmp_path / "train.jsonl", b"[1]\n[2]\n" + b'{"a": "\xe7\x94\xb2"}\n')
    got, bad = split(list(iter_json(path)))
    assert got == [{"a": "甲"}] and bad == {"not_an_object": 2}
    doc = json.dumps([{"a": "甲"}, {"a": "乙"}], ensure_ascii=False, indent=1).encode()
    assert list(iter_json(write(tmp_path / "train.json", doc))) == [{"a": "甲"}, {"a": "乙"}]


# --- encodings, decided per line --------------------------------------------------------------------

def test_one_gbk_line_in_a_utf8_file_garbles_nothing_and_is_counted(tmp_path):
    rows = [{"sentence1": f"第{i}句话", "sentence2": "画蛇添足", "label": "1"} for i in range(7)]
    lines = [json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in rows]
    lines[4] = json.dumps(rows[4], ensure_ascii=False).encode("gbk") + b"\n"
    tsv = [b"sentence1\tsentence2\tlabel\n"] + [f"{r['sentence1']}\t{r['sentence2']}\t1\n".encode() for r in rows]
    tsv[5] = f"{rows[4]['sentence1']}\t{rows[4]['sentence2']}\t1\n".encode("gbk")
    csv_ = [b"sentence1,sentence2,label\n"] + [f"{r['sentence1']},{r['sentence2']},1\n".encode() for r in rows]
    csv_[5] = f"{rows[4]['sentence1']},{rows[4]['sentence2']},1\n".encode("gbk")
    for name, data, read in (
        ("a.json", b"".join(lines), iter_json),
        ("a.tsv", b"".join(tsv), lambda p: iter_tsv(p, header=True)),
        ("a.csv", b"".join(csv_), iter_csv),
    ):
        with collecting_notes(Counter()) as notes:
            got = list(read(write(tmp_path / name, data)))
        assert got == rows and notes == {"decoded_gb18030": 1}, name


def test_a_gbk_file_with_one_bad_byte_early_loses_one_row(tmp_path):
    rows = [{"phrase1": f"成语{i}", "phrase2": "多此一举", "label": "entailment"} for i in range(20)]
    lines = [json.dumps(r, ensure_ascii=False).encode("gbk") + b"\n" for r in rows]
    lines[0] = lines[0].replace("成语".encode("gbk"), b"\xff\xff")
    got, bad = split(list(iter_json(write(tmp_path / "cinlid.json", b"".join(lines)))))
    assert got == rows[1:] and bad == {"undecodable_bytes": 1}


# --- gzip cut short, empty files, cut last lines ----------------------------------------------------

def test_a_truncated_gzip_keeps_the_rows_before_the_cut_and_names_the_file(tmp_path, caplog):
    body = "".join(json.dumps({"docid": f"{i}#0", "text": f"段落{i}" * 20}, ensure_ascii=False) + "\n"
                   for i in range(3000)).encode()
    whole = gzip.compress(body)
    path = write(tmp_path / "docs-0.jsonl.gz", whole[: len(whole) * 2 // 3])
    with caplog.at_level(logging.WARNING), collecting_notes(Counter()) as notes:
        got, bad = split(list(iter_json(path)))
    assert 1000 < len(got) < 3000 and got == [json.loads(line) for line in body.splitlines()[: len(got)]]
    assert sum(bad.values()) <= 1 and set(bad) <= {"truncated_line"}
    assert notes == {"truncated_gzip": 1} and "docs-0.jsonl.gz" in caplog.text


def test_a_zero_byte_file_is_an_empty_split_with_a_warning(tmp_path, caplog):
    for fmt, name in (("json", "a.json"), ("squad", "b.json"), ("tsv", "c.tsv"), ("csv", "d.csv")):
        path = write(tmp_path / name, b"")
        caplog.clear()
        with caplog.at_level(logging.WARNING), collecting_notes(Counter()) as notes:
            assert list(read_file(path, fmt, {"columns": ["a", "b"]})) == []
        assert notes == {"empty_file": 1} and name in caplog.text and "empty" in caplog.text


def test_a_cut_last_line_is_truncated_line_not_undecodable_bytes(tmp_path):
    jsonl = write(tmp_path / "a.json", '{"a": "甲"}\n{"a": "乙"}\n{"a": "丙'.encode()[:-1])
    assert split(list(iter_json(jsonl))) == ([{"a": "甲"}, {"a": "乙"}], {"truncated_line": 1})
    # A GBK last line without a line ending is not cut: it is read.
    gbk = write(tmp_path / "b.json", '{"a": "甲"}\n'.encode() + '{"a": "乙"}'.encode("gbk"))
    assert split(list(iter_json(gbk))) == ([{"a": "甲"}, {"a": "乙"}], {})
    tsv = write(tmp_path / "a.tsv", "1\t甲\t乙\n2\t丙\t丁\n3\t戊".encode()[:-2])
    assert split(list(iter_tsv(tsv, columns=["id", "s1", "s2"], header=False)))[1] == {"truncated_line": 1}
    csv_ = write(tmp_path / "a.csv", "t,r\n甲,一\n乙,二\n丙".encode()[:-1])
    assert split(list(iter_csv(csv_))) == ([{"t": "甲", "r": "一"}, {"t": "乙", "r": "二"}], {"truncated_line": 1})


# --- fuzz: damage one line, every other row survives ------------------------------------------------

def _damage(rng, line: bytes) -> bytes:
    body = line.rstrip(b"\n")
    i = rng.randrange(len(body) + 1)
    op = rng.choice(["ff", "cut_char", "quote", "nul", "drop", "gbk", "brace", "surrogate"])
    if op == "ff":
        body = body[:i] + b"\xff" + body[i:]
    elif op == "cut_char":
        pos = body.find("第".encode())
        body = body[:pos + 1] + body[pos + 3:] if pos >= 0 else body[:i]
    elif op == "quote":
        body = body[:i] + b'"' + body[i:]
    elif op == "nul":
        body = body[:i] + b"\x00" * rng.randint(1, 8) + body[i:]
    elif op == "drop":
        body = body[:i]
    elif op == "gbk":
        body = body.decode().encode("gb18030")
    elif op == "brace":
        body = b"[" + body
    else:
        body = body.replace("行".encode(), b"\\ud800", 1)
    return body + b"\n"


@pytest.mark.parametrize("fmt", ["jsonl", "array", "tsv", "csv"])
def test_fuzz_one_damaged_line_costs_at_most_that_row(tmp_path, fmt):
    rng = random.Random(fmt)
    n = 40
    rows = [{"id": str(i), "text": f"第{i}行的文字，有点长"} for i in range(n)]
    for case in range(60):
        if fmt in ("jsonl", "array"):
            lines = [json.dumps(r, ensure_ascii=False).encode() + (b",\n" if fmt == "array" and i < n - 1 else b"\n")
                     for i, r in enumerate(rows)]
        elif fmt == "tsv":
            lines = [f"{r['id']}\t{r['text']}\n".encode() for r in rows]
        else:
            lines = [f"{r['id']},{r['text']}\n".encode() for r in rows]
        k = rng.randrange(n)
        lines[k] = _damage(rng, lines[k])
        if fmt == "array":
            data, name = b"[\n" + b"".join(lines) + b"]\n", "a.json"
        elif fmt == "jsonl":
            data, name = b"".join(lines), "a.json"
        elif fmt == "tsv":
            data, name = b"".join(lines), "a.tsv"
        else:
            data, name = b"id,text\n" + b"".join(lines), "a.csv"
        path = write(tmp_path / f"{case}-{name}", data)
        try:
            items = list(read_file(path, "json" if fmt in ("jsonl", "array") else fmt,
                                   {"columns": ["id", "text"], "header": False}))
        except ValueError:
            # A JSON document that no longer parses fails its source with a clear message (an array is
            # one value: there is no line to drop); JSON lines never do.
            assert fmt == "array"
            continue
        others = [r for i, r in enumerate(rows) if i != k]
        got = [r for r in items if not isinstance(r, BadRow) and r in others]
        assert got == others, (case, lines[k])
        assert len(items) <= n + 1, (case, lines[k])  # a damaged line is one item, or two when it split


def test_notes_reach_the_build_record(tmp_path):
    # A local source whose file mixes one GBK line into UTF-8: the build writes every row and records the
    # fallback in the source's counts (and so in _SUCCESS.json and the manifest).
    from m3e_data.catalog import load_catalog
    from m3e_data.stages.normalize.stage import BuildOptions, build_source

    folder = tmp_path / "src" / "cinlid"
    folder.mkdir(parents=True)
    rows = [{"phrase1": f"成语{i}", "phrase2": "多此一举", "label": "entailment"} for i in range(5)]
    lines = [json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in rows]
    lines[2] = json.dumps(rows[2], ensure_ascii=False).encode("gbk") + b"\n"
    write(folder / "train.json", b"".join(lines))
    result = build_source(load_catalog()["cinlid"], BuildOptions(out=tmp_path / "out", sources=str(tmp_path / "src")))
    assert result.status == "built", result.reason
    assert result.counts.notes == {"decoded_gb18030": 1} and result.counts.read == 5
    assert result.counts.as_dict()["notes"] == {"decoded_gb18030": 1}


def test_a_symbolic_link_leading_outside_the_source_folder_is_refused(tmp_path):
    from m3e_data.catalog import load_catalog
    from m3e_data.stages.normalize.stage import FAILED, BuildOptions, build

    secret = write(tmp_path / "secret.json", b'{"phrase1": "\xe5\xaf\x86", "phrase2": "x", "label": "entailment"}\n')
    folder = tmp_path / "src" / "cinlid"
    folder.mkdir(parents=True)
    (folder / "train.json").symlink_to(secret)
    [result] = build([load_catalog()["cinlid"]], BuildOptions(out=tmp_path / "out", sources=str(tmp_path / "src")))
    assert result.status == FAILED and "symbolic link" in result.reason and str(secret) in result.reason
    assert not (tmp_path / "out" / "m3e" / "cinlid").exists()
    # A link that stays inside the source folder (a copy shared between two layouts) is fine.
    (folder / "train.json").unlink()
    write(folder / "data.json", secret.read_bytes())
    (folder / "train.json").symlink_to(folder / "data.json")
    [result] = build([load_catalog()["cinlid"]], BuildOptions(out=tmp_path / "out", sources=str(tmp_path / "src")))
    assert result.status == "built", result.reason


def test_a_file_too_large_to_be_a_document_is_streamed_as_json_lines(tmp_path, monkeypatch):
    # An indented document below the limit is parsed whole; above it (a multi-GB file whose lines all
    # fail to parse would otherwise be loaded into memory) the same bytes are streamed line by line.
    pretty = json.dumps({"data": [{"a": "甲"}, {"a": "乙"}]}, ensure_ascii=False, indent=2).encode()
    path = write(tmp_path / "train.json", pretty)
    assert list(iter_json(path)) == [{"a": "甲"}, {"a": "乙"}]
    monkeypatch.setattr(readers, "_DOCUMENT_LIMIT", len(pretty) - 1)
    got, bad = split(list(iter_json(path)))
    assert got == [] and sum(bad.values()) == len([line for line in pretty.splitlines() if line.strip()])


def test_a_cut_json_document_fails_with_where_and_what_to_do(tmp_path):
    doc = json.dumps(_squad([_para("青梅湖很大。", 0, 5)]), ensure_ascii=False, indent=2).encode()
    path = write(tmp_path / "train-zen-v1.0.json", doc[: len(doc) // 2])
    with pytest.raises(ValueError, match=r"train-zen-v1.0.json: .* at line \d+ column \d+\); the file is cut or "
                                         r"damaged there: download it again"):
        list(iter_squad(path))


def test_a_quote_left_open_near_the_end_of_the_file_costs_one_row(tmp_path):
    data = 'title,reply\n甲,一\n乙,"二\n丙,三\n'
    got, bad = split(list(iter_csv(write(tmp_path / "a.csv", data.encode()))))
    assert got == [{"title": "甲", "reply": "一"}, {"title": "丙", "reply": "三"}] and bad == {"unclosed_quote": 1}


def test_a_nul_inside_a_string_of_a_json_document_does_not_fail_the_source(tmp_path):
    data = '[{"question": "甲\x00乙", "sql": "SELECT 1"}, {"question": "丙", "sql": "SELECT 2"}]'.encode()
    assert list(iter_json(write(tmp_path / "train.json", data))) == [
        {"question": "甲\x00乙", "sql": "SELECT 1"}, {"question": "丙", "sql": "SELECT 2"},
    ]
