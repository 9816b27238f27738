"""Streaming readers for local files, in the formats the sources are distributed in.

Every reader yields raw rows as dicts, or a `BadRow` with a reason where a row cannot be read (truncated
line, undecodable bytes, malformed CSV row, lone surrogate). The caller counts those; one bad row costs
one row and never ends a build. JSON lines, TSV, CSV and Parquet are streamed; a JSON document (array,
`{"data": [...]}`, SQuAD nesting) is parsed whole, which is fine for the sources that ship one (the
largest is ~35 MB), and a file too large to be one is always streamed as JSON lines.

Lines are decoded one by one, UTF-8 first with a GB18030 (a superset of GBK) fallback per line: some
sources mix the two, and a guess made once per file either garbles the UTF-8 lines of a mostly-GBK file
or drops every line of a GBK file whose first bytes are damaged. What a reader works around without
losing a row (a GB18030 line, a gzip stream cut short, an empty file) is a *note*, counted through
`collecting_notes`.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import logging
import re
import zlib
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from m3e_data.storage.store import iter_batches

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BadRow:
    """A raw row that could not be read; `reason` is a short snake_case name used in counts."""

    reason: str
    detail: str = ""


RawRow = dict[str, Any]
ReadItem = RawRow | BadRow

# Undecodable bytes kept by errors="surrogateescape" (U+DC80..U+DCFF), and any surrogate at all: a JSON
# escape such as "\ud800" decodes to a lone surrogate, which Arrow cannot encode.
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_ESCAPED_SURROGATE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")

_PROBE_LINES = 8  # first non-blank lines that decide whether a .json file is JSON lines
_DOCUMENT_LIMIT = 256 << 20  # a .json file larger than this is streamed as JSON lines, never loaded whole
_CSV_MAX_RECORD_LINES = 500  # a quoted CSV field over more lines than this is a quote left open

# Note names (counted per occurrence, not drops).
DECODED_GB18030 = "decoded_gb18030"  # a line that is not UTF-8 was read as GB18030
TRUNCATED_GZIP = "truncated_gzip"  # a gzip file ends before its end marker; the rows before the cut are kept
EMPTY_FILE = "empty_file"  # a zero-byte text file: read as an empty split, with a warning

_note_sinks: list[Counter[str]] = []


@contextmanager
def collecting_notes(counter: Counter[str]) -> Iterator[Counter[str]]:
    """Count the notes of the readers that run inside the block into `counter` (innermost block wins).

    Readers are generators consumed far from where they are created (normalize's loop), so they report
    to whoever is collecting while they run rather than through their return value.
    """
    _note_sinks.append(counter)
    try:
        yield counter
    finally:
        for i in range(len(_note_sinks) - 1, -1, -1):
            if _note_sinks[i] is counter:
                del _note_sinks[i]
                break


def noted(items: Iterable[ReadItem], counter: Counter[str]) -> Iterator[ReadItem]:
    """`items`, with the notes of the readers producing them counted into `counter`."""
    with collecting_notes(counter):
        yield from items


def note(name: str, warning: str = "") -> None:
    if _note_sinks:
        _note_sinks[-1][name] += 1
    if warning:
        log.warning("%s", warning)


class _CutTolerantGzip(io.RawIOBase):
    """A gzip stream that ends where the data ends: a file cut short (a partial download or copy) yields
    what was decompressed before the cut instead of failing the whole file."""

    def __init__(self, path: Path, notes: bool) -> None:
        self._gz = gzip.open(path, "rb")  # noqa: SIM115 - closed by close(), with the BufferedReader over it
        self._path = path
        self._notes = notes
        self._cut = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._cut:
            return 0
        try:
            return self._gz.readinto(buffer)
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            self._cut = True
            if self._notes:
                note(TRUNCATED_GZIP, f"{self._path}: the gzip stream is cut short ({exc}); the rows before the "
                                     "cut are kept, the rest of the file is missing: download it again")
            return 0

    def close(self) -> None:
        self._gz.close()
        super().close()


def open_binary(path: Path, notes: bool = True) -> IO[bytes]:
    """The file's bytes, decompressed for `.gz`; `notes=False` for a peek that must not count a cut twice."""
    if path.suffix == ".gz":
        return io.BufferedReader(_CutTolerantGzip(path, notes), 1 << 16)
    return path.open("rb")


def _is_empty(path: Path) -> bool:
    """A zero-byte file is an empty split, with a warning (it is more often a failed copy than data)."""
    if path.stat().st_size:
        return False
    note(EMPTY_FILE, f"{path}: the file is empty (0 bytes); it is read as an empty split")
    return True


def _looks_gbk(raw: bytes) -> bool:
    """A line that is not UTF-8 is GBK text, not UTF-8 with a damaged byte, when most of its non-ASCII
    bytes do not form UTF-8 characters (GB18030 decodes much damaged UTF-8 into plausible-looking
    characters, so decoding alone does not tell)."""
    text = raw.decode("utf-8", errors="replace")
    bad = text.count("\ufffd")
    return bad > sum(1 for ch in text if ch > "\x7f") - bad


def _decode_line(raw: bytes, exc: UnicodeDecodeError) -> tuple[str, str | None]:
    """A line that is not UTF-8: (its text, None) when it is GB18030, else (its text with the bytes kept
    as lone surrogates, why it cannot be read), so that a reader needing the line's shape still has it."""
    body = raw.rstrip(b"\r\n")
    if len(body) == len(raw) and exc.reason == "unexpected end of data" and exc.end == len(raw):
        reason = "truncated_line"  # the last line (no line ending), valid UTF-8 cut inside a character
    else:
        if _looks_gbk(raw):
            try:
                text = raw.decode("gb18030")
            except UnicodeDecodeError:
                pass
            else:
                note(DECODED_GB18030)
                return text, None
        reason = "undecodable_bytes"
    return raw.decode("utf-8", errors="surrogateescape"), reason


def _decoded(raws: Iterable[bytes]) -> Iterator[tuple[int, str, str | None]]:
    """(line number, text with its line ending, None or why the line is broken) for every line."""
    for n, raw in enumerate(raws, 1):
        if n == 1 and raw.startswith(codecs.BOM_UTF8):
            raw = raw[len(codecs.BOM_UTF8):]
        try:
            yield n, raw.decode("utf-8"), None
        except UnicodeDecodeError as exc:
            yield n, *_decode_line(raw, exc)


def _decoded_lines(path: Path) -> Iterator[tuple[int, str, str | None]]:
    with open_binary(path) as fh:
        yield from _decoded(fh)


def iter_lines(path: Path) -> Iterator[str | BadRow]:
    """Decoded lines without their line ending; a line that cannot be decoded is a BadRow."""
    for n, text, broken in _decoded_lines(path):
        if broken is not None:
            yield BadRow(broken, f"{path.name} line {n}")
        else:
            yield text.rstrip("\r\n")


def _standalone_object(line: str) -> bool:
    if line[:1].isspace():
        return False
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def _container(path: Path, field: str) -> str:
    """"lines" for JSON lines (streamed), "document" for one document (parsed whole), "empty" for a file
    of blank lines.

    The name decides for `.jsonl`; a file too large to be a document is JSON lines. Otherwise the first
    non-blank lines decide: a first line that is a complete object is a row, unless it is a whole
    `{"data": [...]}` document on one line (CINLID's GBK copy is); a first line that is garbage, cut, an
    array or NUL bytes does not make the file a document when most of the lines after it are objects on
    their own. An indented or one-element-per-line document has at most its last element standing alone.
    """
    if path.name.lower().removesuffix(".gz").endswith((".jsonl", ".ndjson")):
        return "lines"
    if path.stat().st_size > _DOCUMENT_LIMIT:
        return "lines"
    lines: list[str] = []
    with open_binary(path, notes=False) as fh:
        for raw in fh:
            if raw.strip():
                lines.append(raw.decode("utf-8", errors="replace").lstrip("\ufeff").rstrip("\r\n"))
                if len(lines) > _PROBE_LINES:
                    break
    if not lines:
        return "empty"
    try:
        first = json.loads(lines[0], strict=False)
    except ValueError:
        first = None
    if isinstance(first, dict):
        return "document" if isinstance(first.get(field), list) else "lines"
    later = [_standalone_object(line) for line in lines[1:]]
    return "lines" if later and sum(later) * 2 > len(later) else "document"


def is_json_lines(path: Path, field: str = "data") -> bool:
    """Whether iter_json streams this file as JSON lines (rather than parsing one document)."""
    return path.stat().st_size > 0 and _container(path, field) == "lines"


def line_ranges(path: Path, split_bytes: int) -> list[tuple[int, int]]:
    """[start, end) byte ranges that cover an uncompressed file, each about `split_bytes` long and each
    starting at a line start, so that a range owns exactly the lines that start inside it.

    Reads a line's worth of bytes at each cut, never the file: a cut is moved to just after the first
    newline at or after it. A line longer than `split_bytes` merges the ranges it spans. Cutting only at
    b"\n" never splits a character: no byte of a multi-byte UTF-8 or GB18030 character is 0x0A.
    """
    if split_bytes < 1:
        raise ValueError(f"split_bytes must be at least 1, got {split_bytes}")
    size = path.stat().st_size
    cuts = [0]
    with path.open("rb") as fh:
        at = split_bytes
        while at < size:
            fh.seek(at - 1)  # a newline just before the cut makes the cut a line start already
            fh.readline()
            cut = fh.tell()
            if cut >= size:
                break
            cuts.append(cut)
            at = max(cut, at) + split_bytes
    cuts.append(size)
    return [(a, b) for a, b in zip(cuts, cuts[1:], strict=False) if b > a]


def _lines_in(fh: IO[bytes], start: int, end: int) -> Iterator[bytes]:
    """The lines of `fh` that start in [start, end); `start` is a line start (line_ranges)."""
    fh.seek(start)
    at = start
    for raw in fh:
        if at >= end:
            return
        at += len(raw)
        yield raw


def iter_json_lines_range(path: Path, start: int, end: int) -> Iterator[ReadItem]:
    """The rows of the JSON lines that start in [start, end) of an uncompressed file: the same items,
    bad rows included, that iter_json yields for those lines when it reads the whole file."""
    return _iter_json_lines(path, start, end)


def _iter_json_lines(path: Path, start: int = 0, end: int | None = None) -> Iterator[ReadItem]:
    """The hot path of the largest sources: UTF-8 bytes go to orjson undecoded; only a line orjson
    rejects is looked at again (another encoding, a cut last line, a lone surrogate)."""
    with open_binary(path) as fh:
        lines = fh if end is None else _lines_in(fh, start, end)
        for n, raw in enumerate(lines, 1):
            if n == 1 and start == 0 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8):]
            try:
                row = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                if not raw.strip():
                    continue
                row = _reread_json_line(raw, path, n, exc)
                if isinstance(row, BadRow):
                    yield row
                    continue
            yield row if isinstance(row, dict) else BadRow("not_an_object", f"{path.name} line {n}")


def _reread_json_line(raw: bytes, path: Path, n: int, exc: Exception) -> Any:
    where = f"{path.name} line {n}"
    last = not raw.endswith(b"\n")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as decode_error:
        text, broken = _decode_line(raw, decode_error)
        if broken is not None:
            return BadRow(broken, where)
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError as second:
            exc = second
    if "surrogate" in str(exc):
        return BadRow("lone_surrogate", f"{where}: {exc}")
    return BadRow("truncated_line" if last else "malformed_json", f"{where}: {exc}")


def _load_document(path: Path) -> tuple[Any, bool]:
    """The parsed document, and whether any string in it may hold a surrogate: undecodable bytes kept as
    lone surrogates (so that the rows holding them can be dropped and the others read) or a JSON escape
    of one. Lines that are not UTF-8 are decoded as GB18030 where they can be, line by line."""
    with open_binary(path) as fh:
        data = fh.read()
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = "".join(line for _, line, _ in _decoded(data.splitlines(keepends=True)))
    surrogates = _SURROGATE.search(text) is not None or _ESCAPED_SURROGATE.search(text) is not None
    # strict=False: a control character (a NUL, a raw tab) inside a string costs nothing here; the text
    # repairs remove it later. Outside a string it is a broken document, as before.
    return json.loads(text, strict=False), surrogates


def _has_surrogates(value: Any) -> bool:
    if isinstance(value, str):
        return _SURROGATE.search(value) is not None
    if isinstance(value, dict):
        return any(_has_surrogates(k) or _has_surrogates(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_surrogates(v) for v in value)
    return False


def _surrogate_reason(value: Any) -> str:
    """undecodable_bytes for bytes kept by surrogateescape, lone_surrogate for a JSON escape of one."""
    return "undecodable_bytes" if _ESCAPED_BYTE.search(json.dumps(value, ensure_ascii=False)) else "lone_surrogate"


def _document_rows(path: Path, field: str | None) -> tuple[list[Any], bool]:
    """The row list of a JSON document (array, `{field: [...]}`, or a dict keyed by id), and whether
    its strings may hold surrogates."""
    try:
        doc, surrogates = _load_document(path)
    except json.JSONDecodeError as exc:
        # One document cannot lose only its broken part (its rows are not lines), and keeping the rows
        # before the break would lose an unknown number after it without a count: the source fails.
        raise ValueError(
            f"{path}: neither JSON lines nor one JSON document ({exc.msg} at line {exc.lineno} column "
            f"{exc.colno}); the file is cut or damaged there: download it again"
        ) from exc
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
    return doc, surrogates


def iter_json(path: Path, field: str | None = None) -> Iterator[ReadItem]:
    """JSON lines, a JSON array, `{"data": [...]}` (or another `field`), or a dict keyed by id."""
    container = "empty" if _is_empty(path) else _container(path, field or "data")
    if container == "lines":
        yield from _iter_json_lines(path)
        return
    if container == "empty":
        return
    doc, surrogates = _document_rows(path, field)
    for n, row in enumerate(doc):
        if not isinstance(row, dict):
            yield BadRow("not_an_object", f"{path.name} item {n}")
        elif surrogates and _has_surrogates(row):
            yield BadRow(_surrogate_reason(row), f"{path.name} item {n}")
        else:
            yield row


def iter_squad(path: Path) -> Iterator[ReadItem]:
    """SQuAD nesting (data → paragraphs → qas) flattened to one row per question.

    Row: id, title, context, question, answers {text, answer_start}, is_impossible. Every problem is
    counted in questions: undecodable bytes in a paragraph cost that paragraph's questions, in a question
    that question, and never the article's other questions.
    """
    container = "empty" if _is_empty(path) else _container(path, "data")
    if container == "empty":
        return
    if container == "lines":  # one article per line
        articles: Iterable[Any] = _iter_json_lines(path)
        surrogates = False
    else:
        articles, surrogates = _document_rows(path, "data")
    for article in articles:
        if isinstance(article, BadRow):
            yield article
            continue
        if not isinstance(article, dict):
            yield BadRow("not_an_object", f"{path.name}: article")
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
                row = {
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
                if surrogates and _has_surrogates(row):
                    yield BadRow(_surrogate_reason(row), f"{path.name}: article {title!r} question {qa.get('id')}")
                else:
                    yield row


def iter_tsv(
    path: Path, columns: list[str] | None = None, header: bool | str = "auto"
) -> Iterator[ReadItem]:
    """Tab-separated rows without quoting (texts hold stray quotes).

    `header`: true, false, or "auto" (the first line is a header when it equals `columns`). A row with
    fewer fields than `columns` keeps the leading ones (2-column unlabelled test files), unless it is the
    last line, without a line ending, and shorter than the row before it: that line was cut. A row with
    more fields is malformed.
    """
    if _is_empty(path):
        return
    lines: Iterator[tuple[int, str, str | None]] = _decoded_lines(path)
    names = columns
    if header is not False:
        first = next(lines, None)
        if first is not None and first[2] is None:
            fields = first[1].rstrip("\r\n").split("\t")
            is_header = header is True or (columns is not None and fields == columns)
            if is_header:
                names = names or fields
            else:
                lines = _prepend(first, lines)
        elif first is not None:
            lines = _prepend(first, lines)
    if names is None:
        raise ValueError(f"{path}: a TSV without header needs `columns`")
    previous = len(names)
    for n, text, broken in lines:
        if broken is not None:
            yield BadRow(broken, f"{path.name} line {n}")
            continue
        line = text.rstrip("\r\n")
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) > len(names):
            yield BadRow("malformed_tsv_row", f"{path.name} line {n}: {len(fields)} fields")
            continue
        if len(fields) < previous and len(line) == len(text):
            yield BadRow("truncated_line", f"{path.name} line {n}: {len(fields)} fields, no line ending")
            continue
        previous = len(fields)
        yield dict(zip(names, fields, strict=False))


def _prepend(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    yield first
    yield from rest


class _RecordLines:
    """Decoded lines handed to csv.reader one at a time, remembering those of the record being read, so
    that a record that swallowed the rows after it (a quote left open) can be read again line by line."""

    def __init__(self, lines: Iterator[tuple[int, str, str | None]]) -> None:
        self._lines = lines
        self._again: deque[tuple[int, str, str | None]] = deque()
        self.taken: list[tuple[int, str, str | None]] = []

    def __iter__(self) -> _RecordLines:
        return self

    def __next__(self) -> str:
        line = self._again.popleft() if self._again else next(self._lines)
        self.taken.append(line)
        return line[1]

    def read_again(self, lines: list[tuple[int, str, str | None]]) -> None:
        self._again.extendleft(reversed(lines))

    def at_end(self) -> bool:
        if not self._again:
            try:
                self._again.append(next(self._lines))
            except StopIteration:
                return True
        return False


def _holds_rows(lines: list[tuple[int, str, str | None]], width: int) -> bool:
    """Whether the inner lines of a quoted field look like whole rows of the file (a quote left open):
    most of them, and at least two, parse on their own into exactly `width` fields."""
    if width < 2 or len(lines) < 2:
        return False
    rows = sum(1 for _, text, _ in lines if len(next(csv.reader([text]), [])) == width)
    return rows >= 2 and rows * 2 > len(lines)


def iter_csv(path: Path) -> Iterator[ReadItem]:
    """CSV with a header row; quoted fields may span lines.

    A quote left open swallows the rows after it into one field: a record over several lines whose field
    count is wrong, that runs over too many lines, whose inner lines look like whole rows, or whose quote
    is still open at the end of the file, costs its first line (`unclosed_quote`) and the lines after it are read again. A row whose field count differs
    from the header's is malformed (`truncated_line` when it is the cut last line); a field over the csv
    module's limit is `field_too_long`; a row holding undecodable bytes is one bad row.
    """
    if _is_empty(path):
        return
    lines = _RecordLines(_decoded_lines(path))
    reader = csv.reader(lines)
    try:
        names = next(reader)
    except StopIteration:
        return
    width = len(names)
    while True:
        lines.taken = []
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            taken = lines.taken
            first = taken[0][0] if taken else reader.line_num
            if len(taken) > 1:
                yield BadRow("unclosed_quote", f"{path.name} line {first}: {exc}")
                lines.read_again(taken[1:])
            elif "field larger than field limit" in str(exc):
                yield BadRow("field_too_long", f"{path.name} line {first}: {exc}")
            else:
                yield BadRow("malformed_csv_row", f"{path.name} line {first}: {exc}")
            continue
        if not fields:
            continue
        taken = lines.taken
        if len(taken) > 1 and (
            len(fields) != width or len(taken) > _CSV_MAX_RECORD_LINES or _holds_rows(taken[1:-1], width)
            # a quote still open at the end of the file (csv.reader ends the field there without a word)
            or sum(text.count('"') for _, text, _ in taken) % 2 == 1 and lines.at_end()
        ):
            yield BadRow("unclosed_quote", f"{path.name} line {taken[0][0]}: a quoted field runs over "
                                           f"{len(taken) - 1} more lines; they are read again")
            lines.read_again(taken[1:])
            continue
        broken = next((b for _, _, b in taken if b is not None), None)
        if broken is not None or any(_ESCAPED_BYTE.search(f) for f in fields):
            yield BadRow(broken or "undecodable_bytes", f"{path.name} line {taken[0][0]}")
            continue
        if len(fields) != width:
            cut = len(fields) < width and not taken[-1][1].endswith("\n")
            yield BadRow("truncated_line" if cut else "malformed_csv_row",
                         f"{path.name} line {taken[0][0]}: {len(fields)} fields")
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
