"""Streaming readers for local files, in the formats the sources are distributed in.

Every reader yields raw rows as dicts, or a `BadRow` with a reason where a row cannot be read (truncated
JSON line, undecodable bytes, malformed CSV row). The caller counts those; one bad row never ends a build.
JSON lines, TSV, CSV and Parquet are streamed; a JSON document (array, `{"data": [...]}`, SQuAD nesting)
is parsed whole, which is fine for the sources that ship one (the largest is ~35 MB).
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from m3e_data.store import iter_batches


@dataclass(frozen=True)
class BadRow:
    """A raw row that could not be read; `reason` is a short snake_case name used in counts."""

    reason: str
    detail: str = ""


# Undecodable bytes kept by errors="surrogateescape" (U+DC80..U+DCFF).
_SURROGATE = re.compile("[\udc80-\udcff]")

RawRow = dict[str, Any]
ReadItem = RawRow | BadRow

_SNIFF_BYTES = 1 << 16
_JSONL_PROBE_LINES = 4  # lines after a malformed first one that decide whether a file is JSON lines


def open_binary(path: Path) -> IO[bytes]:
    if path.suffix == ".gz":
        return gzip.open(path, "rb")
    return path.open("rb")


def detect_encoding(path: Path) -> str:
    """utf-8-sig, or gb18030 (a superset of GBK) when the first 64 KB decode as that and not as UTF-8.

    A UTF-8 file with one corrupt line stays UTF-8 (the line becomes a BadRow): GB18030 does not decode
    UTF-8 Chinese text cleanly, so it only wins on files that really are GBK.
    """
    with open_binary(path) as fh:
        head = fh.read(_SNIFF_BYTES)
    if _decodes(head, "utf-8") or not _decodes(head, "gb18030"):
        return "utf-8-sig"
    return "gb18030"


def _decodes(head: bytes, encoding: str) -> bool:
    try:
        head.decode(encoding)
    except UnicodeDecodeError as exc:
        # A multi-byte character cut at the sniff boundary is not evidence against the encoding.
        return exc.start >= len(head) - 4 and len(head) == _SNIFF_BYTES
    return True


def _decode(raw: bytes, encoding: str, first: bool) -> str:
    # utf-8-sig strips a BOM only at the start of the file; a line in the middle is plain UTF-8.
    return raw.decode(encoding if first or encoding != "utf-8-sig" else "utf-8")


def iter_lines(path: Path) -> Iterator[str | BadRow]:
    """Decoded lines without their line ending; an undecodable line is a BadRow, not an exception."""
    encoding = detect_encoding(path)
    with open_binary(path) as fh:
        for n, raw in enumerate(fh):
            try:
                yield _decode(raw, encoding, n == 0).rstrip("\r\n")
            except UnicodeDecodeError as exc:
                yield BadRow("undecodable_bytes", f"{path.name} line {n + 1}: {exc.reason}")


def _first_char(path: Path) -> str:
    encoding = detect_encoding(path)
    with open_binary(path) as fh:
        head = fh.read(_SNIFF_BYTES).decode(encoding, errors="ignore")
    stripped = head.lstrip()
    return stripped[:1]


def _is_json_lines(path: Path, field: str) -> bool:
    """A file is JSON lines when its first non-blank line is a complete JSON object on its own, unless
    that object is a whole `{"data": [...]}` document written on one line (CINLID's GBK copy is).

    A first line that does not parse (truncated, or cut by a bad copy) does not make a multi-GB JSON-lines
    file a document to load whole: it is JSON lines when most of the next few lines are objects on their
    own. An indented or one-element-per-line document has at most its last element standing alone.
    """
    if _first_char(path) != "{":
        return False
    candidates: list[bool] = []
    for line in iter_lines(path):
        if isinstance(line, BadRow) or not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if not candidates and row is not None:  # the first line parsed: decide on it alone
            return not (isinstance(row, dict) and isinstance(row.get(field), list))
        candidates.append(isinstance(row, dict) and not line[:1].isspace())
        if len(candidates) > _JSONL_PROBE_LINES:
            break
    later = candidates[1:]
    return bool(later) and sum(later) * 2 > len(later)


def _load_document(path: Path) -> tuple[Any, bool]:
    """The parsed document, and whether it held undecodable bytes (kept as lone surrogates, so that the
    rows holding them can be counted as bad and the others still read)."""
    with open_binary(path) as fh:
        data = fh.read()
    encoding = detect_encoding(path)
    try:
        return json.loads(data.decode(encoding)), False
    except UnicodeDecodeError:
        return json.loads(data.decode(encoding, errors="surrogateescape")), True


def _has_surrogates(value: Any) -> bool:
    if isinstance(value, str):
        return _SURROGATE.search(value) is not None
    if isinstance(value, dict):
        return any(_has_surrogates(k) or _has_surrogates(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_surrogates(v) for v in value)
    return False


def _iter_json_lines(path: Path) -> Iterator[ReadItem]:
    """The hot path of the largest sources: UTF-8 bytes go to orjson undecoded."""
    encoding = detect_encoding(path)
    utf8 = encoding == "utf-8-sig"
    with open_binary(path) as fh:
        for n, raw in enumerate(fh, 1):
            if n == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8):]
            line: bytes | str = raw
            if not utf8:
                try:
                    line = raw.decode(encoding)
                except UnicodeDecodeError as exc:
                    yield BadRow("undecodable_bytes", f"{path.name} line {n}: {exc.reason}")
                    continue
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                if not line.strip():
                    continue
                reason = "undecodable_bytes" if utf8 and not _decodes(raw, "utf-8") else "malformed_json"
                yield BadRow(reason, f"{path.name} line {n}: {exc}")
                continue
            yield row if isinstance(row, dict) else BadRow("not_an_object", f"{path.name} line {n}")


def iter_json(path: Path, field: str | None = None) -> Iterator[ReadItem]:
    """JSON lines, a JSON array, `{"data": [...]}` (or another `field`), or a dict keyed by id.

    The container is decided from the first non-space character and the first line.
    """
    if not _first_char(path):
        return  # an empty file is an empty split
    if _is_json_lines(path, field or "data"):
        yield from _iter_json_lines(path)
        return
    try:
        doc, undecodable = _load_document(path)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: neither JSON lines nor one JSON document: {exc}") from exc
    if isinstance(doc, dict):
        key = field or ("data" if isinstance(doc.get("data"), list) else None)
        if key is not None:
            doc = doc.get(key)
            if not isinstance(doc, list):
                raise ValueError(f"{path}: field {key!r} is not a list of rows")
        else:  # a dict keyed by id: keep the key as `_key`
            doc = [dict(v, _key=k) if isinstance(v, dict) else v for k, v in doc.items()]
    if not isinstance(doc, list):
        raise ValueError(f"{path}: expected a list of rows, found {type(doc).__name__}")
    for n, row in enumerate(doc):
        if not isinstance(row, dict):
            yield BadRow("not_an_object", f"{path.name} item {n}")
        elif undecodable and _has_surrogates(row):
            yield BadRow("undecodable_bytes", f"{path.name} item {n}")
        else:
            yield row


def iter_squad(path: Path) -> Iterator[ReadItem]:
    """SQuAD nesting (data → paragraphs → qas) flattened to one row per question.

    Row: id, title, context, question, answers {text, answer_start}, is_impossible.
    """
    for article in iter_json(path):
        if isinstance(article, BadRow):
            yield article
            continue
        title = article.get("title", "")
        paragraphs = article.get("paragraphs")
        if not isinstance(paragraphs, list):
            yield BadRow("missing_field:paragraphs", f"{path.name}: article {title!r}")
            continue
        for para in paragraphs:
            qas = para.get("qas") if isinstance(para, dict) else None
            if not isinstance(qas, list):
                yield BadRow("missing_field:qas", f"{path.name}: article {title!r}")
                continue
            for qa in qas:
                if not isinstance(qa, dict):
                    yield BadRow("not_an_object", f"{path.name}: article {title!r}")
                    continue
                answers = qa.get("answers") or []
                yield {
                    "id": qa.get("id"),
                    "title": title,
                    "context": para.get("context"),
                    "question": qa.get("question"),
                    "answers": {
                        "text": [a.get("text") for a in answers if isinstance(a, dict)],
                        "answer_start": [a.get("answer_start") for a in answers if isinstance(a, dict)],
                    },
                    "is_impossible": bool(qa.get("is_impossible", False)),
                }


def iter_tsv(
    path: Path, columns: list[str] | None = None, header: bool | str = "auto"
) -> Iterator[ReadItem]:
    """Tab-separated rows without quoting (texts hold stray quotes).

    `header`: true, false, or "auto" (the first line is a header when it equals `columns`). A row with
    fewer fields than `columns` keeps the leading ones (2-column unlabelled test files); one with more is
    malformed.
    """
    lines = iter_lines(path)
    names = columns
    if header is not False:
        first = next(lines, None)
        if isinstance(first, str):
            fields = first.split("\t")
            is_header = header is True or (columns is not None and fields == columns)
            if is_header:
                names = names or fields
            else:
                lines = _prepend(first, lines)
        elif first is not None:
            lines = _prepend(first, lines)
    if names is None:
        raise ValueError(f"{path}: a TSV without header needs `columns`")
    for n, line in enumerate(lines):
        if isinstance(line, BadRow):
            yield line
            continue
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) > len(names):
            yield BadRow("malformed_tsv_row", f"{path.name} row {n + 1}: {len(fields)} fields")
            continue
        yield dict(zip(names, fields, strict=False))


def _prepend(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    yield first
    yield from rest


def iter_csv(path: Path) -> Iterator[ReadItem]:
    """CSV with a header row; quoted fields may span lines. A row whose field count differs from the
    header's is malformed and skipped; a row holding undecodable bytes is one bad row (the bytes are kept
    as lone surrogates while parsing, so the rows after it are still read)."""
    encoding = detect_encoding(path)
    with open_binary(path) as raw:
        text = io.TextIOWrapper(raw, encoding=encoding, errors="surrogateescape", newline="")
        reader = csv.reader(text)
        try:
            names = next(reader)
        except StopIteration:
            return
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield BadRow("malformed_csv_row", f"{path.name} line {reader.line_num}: {exc}")
                continue
            if not fields:
                continue
            if any(_SURROGATE.search(f) for f in fields):
                yield BadRow("undecodable_bytes", f"{path.name} line {reader.line_num}")
                continue
            if len(fields) != len(names):
                yield BadRow("malformed_csv_row", f"{path.name} line {reader.line_num}: {len(fields)} fields")
                continue
            yield dict(zip(names, fields, strict=False))


def iter_parquet(path: Path, batch_size: int = 8192) -> Iterator[ReadItem]:
    for batch in iter_batches(path, batch_size):
        yield from batch.to_pylist()


def read_file(path: Path, fmt: str, options: dict[str, Any] | None = None) -> Iterator[ReadItem]:
    """Rows of one local file in the catalog's `format`."""
    options = options or {}
    if fmt == "parquet":
        return iter_parquet(path)
    if fmt == "json":
        return iter_json(path, field=options.get("field"))
    if fmt == "squad":
        return iter_squad(path)
    if fmt == "tsv":
        return iter_tsv(path, columns=options.get("columns"), header=options.get("header", "auto"))
    if fmt == "csv":
        return iter_csv(path)
    raise ValueError(f"no reader for format {fmt!r} ({path})")
