"""Find a source's files: bundled demo data, a local directory, an object store URL, or the Hugging Face Hub.

A local directory mirrors where the data comes from: for a Hub source, `DIR/<source>/` is a snapshot of
the repo at the revision the layout reads (`hf download --repo-type dataset <repo> --local-dir
DIR/<source>`), so layout paths are relative to it; for a download layout (every layout of a download
source, and a Hub source's layouts marked `by_name`) it is the extracted archive, and each file is found by
name at any depth. The catalog's layouts are tried in order: the first that holds
every wanted split is read; else the one holding most of them, whose missing splits are named (with the
file names looked for) and left out. When no layout holds any, the error names every layout and file tried,
and where to get the data.

An object store URL (`--sources s3://bucket/raw`) holds `<source>/` as a local directory would: the layouts
are matched against one listing of `<url>/<source>/`, the fingerprint is made from that listing (path, size,
ETag), and each file is downloaded once, with the files beside it, into a local cache keyed by their ETags.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

from m3e_data.catalog import Layout, Source, how_to_get
from m3e_data.stages.normalize.readers import ReadItem, read_file
from m3e_data.storage import remote
from m3e_data.storage.confine import refuse_links_outside
from m3e_data.storage.fingerprint import HashCache, fingerprint_files, input_files

DEMO = "demo"
HUB = "hub"


class SourceMissing(LookupError):
    """The data of a source is not where the build looks for it."""


def demo_root() -> Path:
    return Path(str(resources.files("m3e_data.demo")))


def hub_url(repo_id: str, revision: str, path: str) -> str:
    """`hf://` path of a file in a dataset repo; the revision is URL-quoted (refs/convert/parquet)."""
    return f"hf://datasets/{repo_id}@{quote(revision, safe='')}/{path}"


@dataclass
class Located:
    """Where one source's data was found, and how to read it."""

    source: Source
    layout: Layout
    files: dict[str, list[str]]  # split -> local paths, or hf:// URLs for the Hub
    origin: str
    fingerprint: str
    remote: bool = False
    # split -> the file names looked for, for each split of the layout that was not found (built without it)
    missing: dict[str, list[str]] = field(default_factory=dict)
    # requested splits that the layout does not have
    unknown: list[str] = field(default_factory=list)
    _local_cache: dict[str, Path] = field(default_factory=dict, repr=False)
    # An object store's files (not the Hub's): URL of each file's folder -> its files' name -> listing info
    store_listing: dict[str, dict[str, dict[str, Any]]] | None = field(default=None, repr=False)

    @property
    def splits(self) -> list[str]:
        return list(self.files)

    def warnings(self) -> list[str]:
        """One line per split that is not built: what was looked for, and how to say it is not wanted."""
        silence = f"--splits {','.join(self.splits)}"
        if self.remote:
            where = f"in {self.origin.removeprefix('hub:')}"
        else:
            where = "at any depth" if self.source.access.kind == "download" else "in the folder"
        lines = [
            f"split {split} not found: looked for {', '.join(patterns)} {where} "
            f"(layout {self.layout.name!r}); built the others; pass {silence} to leave it out"
            for split, patterns in self.missing.items()
        ]
        lines += [
            f"split {split} not built: layout {self.layout.name!r} has only {', '.join(self.layout.splits)}"
            for split in self.unknown
        ]
        return lines

    def local_path(self, path: str) -> Path:
        """A local copy of one file (downloaded through huggingface_hub's cache for the Hub)."""
        if not self.remote:
            return Path(path)
        if path not in self._local_cache and self.store_listing is not None:
            folder, name = path.rsplit("/", 1)
            self._local_cache[path] = remote.fetch_folder(folder, self.store_listing[folder]) / name
        if path not in self._local_cache:
            repo_path = path.split("@", 1)[1].split("/", 1)[1]
            self._local_cache[path] = hub_download(
                self.layout.repo_id or self.source.access.repo_id or "",
                repo_path,
                self.layout.revision or self.source.access.revision,
            )
        return self._local_cache[path]

    def rows(self, split: str) -> Iterator[ReadItem]:
        """Raw rows of one split, streamed, file after file."""
        fmt = self.layout.format
        if fmt == "custom":
            raise ValueError(f"{self.source.name}: layout {self.layout.name!r} is read by its recipe")
        for path in self.files[split]:
            # `datasets` streams Parquet from the Hub. Other files are downloaded into huggingface_hub's
            # cache (resumable) and streamed by our readers: datasets' JSON loader fails a whole file on one
            # undecodable or truncated line (ArrowInvalid), where ours counts that line and reads on.
            if self.remote and fmt == "parquet" and self.store_listing is None:
                yield from stream_with_datasets(fmt, [path])
            else:
                yield from read_file(self.local_path(path), fmt, self.layout.options)


def hub_download(repo_id: str, filename: str, revision: str) -> Path:
    """One file of a dataset repo, through huggingface_hub's cache (HF_ENDPOINT and the token honoured)."""
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(repo_id, filename, repo_type="dataset", revision=revision))


def stream_with_datasets(fmt: str, data_files: list[str]) -> Iterator[ReadItem]:
    """Stream rows of Parquet / JSON files (local paths or hf:// URLs) through `datasets`."""
    from datasets import load_dataset

    ds = load_dataset(fmt, data_files={"rows": data_files}, split="rows", streaming=True)
    yield from ds


def _match_local(root: Path, pattern: str, by_name: bool) -> list[Path]:
    if by_name:  # download sources: a file name (or glob) at any depth
        found = sorted(p for p in root.rglob(pattern) if p.is_file())
        if len(found) > 1 and not any(ch in pattern for ch in "*?["):
            listed = ", ".join(str(p.relative_to(root)) for p in found)
            raise SourceMissing(f"{root}: {pattern} is ambiguous, found {listed}; keep one copy")
        return refuse_links_outside(root, found)
    return refuse_links_outside(root, sorted(p for p in root.glob(pattern) if p.is_file()))


Choice = tuple[Layout, dict[str, list[str]], dict[str, list[str]]]  # layout, files by split, missing splits


def _choose_layout(layouts: Sequence[Layout], splits: list[str] | None,
                   find: Callable[[Layout, list[str]], tuple[dict[str, list[str]], str]]) -> tuple[Choice | None, list[str]]:
    """The first layout for whose every wanted split `find` finds files; else the one with the most splits
    found (its missing splits are built without); with, for each layout passed over, what it looked for.
    `find(layout, wanted splits)` returns the files by split and a note of what it looked for."""
    tried: list[str] = []
    best: Choice | None = None
    for layout in layouts:
        wanted = [s for s in layout.splits if splits is None or s in splits]
        files, note = find(layout, wanted)
        missing = {s: list(layout.splits[s]) for s in wanted if s not in files}
        if wanted and not missing:
            return (layout, files, missing), tried
        if files and (best is None or len(files) > len(best[1])):
            best = (layout, files, missing)
        tried.append(f"layout {layout.name!r} ({note})")
    return best, tried


def _locate_local(
    source: Source, root: Path, splits: list[str] | None, origin: str, cache: HashCache | None = None
) -> Located:
    """The first layout whose every wanted split is present; else the one with most splits present (its
    missing splits are listed on the result, and built without); else SourceMissing naming every file."""
    def find(layout: Layout, wanted: list[str]) -> tuple[dict[str, list[str]], str]:
        if not wanted:
            return {}, f"no split {', '.join(splits or [])}; it has {', '.join(layout.splits)}"
        files: dict[str, list[str]] = {}
        for split in wanted:
            found: list[Path] = []
            for pattern in layout.splits[split]:
                found += _match_local(root, pattern, layout.by_name)  # by name: download layouts
            if found:
                files[split] = [str(p) for p in found]
        return files, "; ".join(f"{s}: {', '.join(layout.splits[s])}" for s in wanted)

    best, tried = _choose_layout(source.access.layouts, splits, find)
    if best is None:
        offered = sorted({s for layout in source.access.layouts for s in layout.splits})
        if splits is not None and not set(splits) & set(offered):
            raise SourceMissing(
                f"{source.name}: no split {', '.join(splits)} in any layout; it has {', '.join(offered)} "
                f"(build with --splits {','.join(offered)}, or without --splits)"
            )
        if source.access.layouts and source.access.layouts[-1].by_name and tried:
            tried[-1] += ", each name looked for at any depth"
        raise SourceMissing(_missing_message(source, root, tried))
    layout, files, missing = best
    paths = [Path(p) for fs in files.values() for p in fs]
    unknown = [s for s in splits or [] if s not in layout.splits]
    fingerprint = fingerprint_files(input_files(paths), root, cache)
    return Located(source, layout, files, origin, fingerprint, missing=missing, unknown=unknown)


def _missing_message(source: Source, where: Path | str, tried: list[str]) -> str:
    a = source.access
    if a.kind == "hub":
        # The snapshot command for the first layout: its repo (a mirror may differ) and revision (a Parquet
        # export lives on refs/convert/parquet, and a snapshot of main would hold only a loading script).
        first = a.layouts[0]
        revision = first.revision or a.revision
        local = where if isinstance(where, Path) else f"DIR/{source.name}"
        get = (
            f"get it with `hf download --repo-type dataset {first.repo_id or a.repo_id}"
            f"{'' if revision == 'main' else f' --revision {revision}'} --local-dir {local}`"
        )
        for layout in a.layouts:  # a layout that is a download (an upstream archive), not a Hub snapshot
            if layout.by_name:
                get += f"; or ({layout.name}): {how_to_get(source, layout)}"
        if not isinstance(where, Path):
            get += "; then build with --sources DIR"
    else:
        get = "get it: " + "; or: ".join(dict.fromkeys(how_to_get(source, layout) for layout in a.layouts))
    return f"{source.name}: no data at {where}; tried {' / '.join(tried) or 'nothing'}; {get}"


def hub_filesystem():
    """huggingface_hub's fsspec file system (honours HF_ENDPOINT and the login token)."""
    from huggingface_hub import HfFileSystem

    return HfFileSystem()


def hub_commit(repo_id: str, revision: str) -> str:
    """The commit a revision of a dataset repo points to: part of the input fingerprint."""
    from huggingface_hub import HfApi

    return HfApi().dataset_info(repo_id, revision=revision).sha or revision


def _why_not_found(exc: FileNotFoundError) -> str:
    text = str(exc)
    for reason in ("repository not found", "revision not found", "invalid repository id"):
        if reason in text:
            return reason
    return "not found"


def _locate_hub(source: Source, splits: list[str] | None) -> Located:
    """As _locate_local, over the Hub's repos and revisions: a complete layout first, else the one with
    most wanted splits present, built without the others."""
    a = source.access
    fs = hub_filesystem()
    def find(layout: Layout, wanted: list[str]) -> tuple[dict[str, list[str]], str]:
        revision = layout.revision or a.revision
        repo_id = layout.repo_id or a.repo_id or ""
        files: dict[str, list[str]] = {}
        try:
            for split in wanted:
                urls = []
                for pattern in layout.splits[split]:
                    found = fs.glob(hub_url(repo_id, revision, pattern))
                    urls += [hub_url(repo_id, revision, f.split("/", 3)[3]) for f in sorted(found)]
                if urls:
                    files[split] = urls
        except FileNotFoundError as exc:
            # HfFileSystem raises this for a repo or revision that does not exist (a Parquet export branch
            # removed with the viewer, a pull request ref that is gone, a mirror repo deleted): that layout
            # is absent, and the next one is tried.
            return {}, f"{repo_id}@{revision}: {_why_not_found(exc)}"
        return files, f"{repo_id}@{revision}"

    best, tried = _choose_layout(a.layouts, splits, find)
    if best is None:
        raise SourceMissing(_missing_message(source, f"hf://datasets/{a.repo_id}", tried))
    layout, files, missing = best
    revision = layout.revision or a.revision
    repo_id = layout.repo_id or a.repo_id or ""
    sha = hub_commit(repo_id, revision)
    fp = hashlib.blake2b(f"{repo_id}@{sha}:{sorted(files.items())}".encode(), digest_size=16)
    unknown = [s for s in splits or [] if s not in layout.splits]
    return Located(
        source, layout, files, f"hub:{repo_id}@{revision}", fp.hexdigest(), remote=True, missing=missing,
        unknown=unknown,
    )


def _match_store(rels: list[str], pattern: str, by_name: bool) -> list[str]:
    """`_match_local` over a listing: by name at any depth (rglob), else the relative path (glob)."""
    if by_name:
        found = sorted(r for r in rels if PurePosixPath(r).match(pattern))
        if len(found) > 1 and not any(ch in pattern for ch in "*?["):
            raise SourceMissing(f"{pattern} is ambiguous, found {', '.join(found)}; keep one copy")
        return found
    want = pattern.split("/")
    return sorted(r for r in rels if len(r.split("/")) == len(want)
                  and all(fnmatchcase(a, b) for a, b in zip(r.split("/"), want, strict=True)))


def _locate_store(source: Source, url: str, splits: list[str] | None) -> Located:
    """As _locate_local, over one listing of `<url>/<source>/` on an object store."""
    base = f"{url.rstrip('/')}/{source.name}"
    fs, path = remote.filesystem(base)
    remote.check_bucket(fs, path, url)
    try:
        found = fs.find(path, detail=True)
    except FileNotFoundError:
        found = {}
    infos = {p[len(path) + 1:]: info for p, info in found.items() if p.startswith(path + "/")}
    rels = [r for r in infos if not PurePosixPath(r).name.startswith(".")]
    if not rels:
        raise SourceMissing(_missing_message(source, base, ["nothing (no objects under it)"]))
    def find(layout: Layout, wanted: list[str]) -> tuple[dict[str, list[str]], str]:
        files: dict[str, list[str]] = {}
        for split in wanted:
            matched: list[str] = []
            for pattern in layout.splits[split]:
                try:
                    matched += _match_store(rels, pattern, layout.by_name)
                except SourceMissing as exc:
                    raise SourceMissing(f"{base}: {exc}") from None
            if matched:
                files[split] = matched
        return files, "; ".join(f"{s}: {', '.join(layout.splits[s])}" for s in wanted) or "no wanted split"

    best, tried = _choose_layout(source.access.layouts, splits, find)
    if best is None:
        raise SourceMissing(_missing_message(source, base, tried))
    layout, chosen, missing = best
    # What a build may read: each chosen file and the files beside it (fingerprint.input_files), by listing.
    folders = {str(PurePosixPath(r).parent) for fs_ in chosen.values() for r in fs_}
    listing: dict[str, dict[str, dict[str, Any]]] = {}
    for rel in rels:
        parent = str(PurePosixPath(rel).parent)
        if parent in folders:
            folder_url = base if parent == "." else f"{base}/{parent}"
            info = infos[rel]
            listing.setdefault(folder_url, {})[PurePosixPath(rel).name] = {
                "size": info.get("size"), "etag": remote.etag(info)}
    h = hashlib.blake2b(digest_size=16)
    for folder_url in sorted(listing):
        for name, info in sorted(listing[folder_url].items()):
            rel = f"{folder_url[len(base):].lstrip('/')}/{name}".lstrip("/")
            h.update(f"{rel}\0{info['size']}\0{info['etag']}\n".encode())
    files = {s: [f"{base}/{r}" for r in fs_] for s, fs_ in chosen.items()}
    unknown = [s for s in splits or [] if s not in layout.splits]
    return Located(source, layout, files, base, h.hexdigest(), remote=True, missing=missing, unknown=unknown,
                   store_listing=listing)


def locate(
    source: Source, sources: str, splits: list[str] | None = None, cache: HashCache | None = None
) -> Located:
    """Find `source` in `sources`: "demo", "hub", a local directory or an object store URL holding
    `<source>/`. Local files are fingerprinted by content, through `cache` when given (build passes OUT's)."""
    if not source.available and sources in (DEMO, HUB):
        raise SourceMissing(f"{source.name}: {source.availability}")
    if sources == DEMO:
        root = demo_root() / source.name
        if not root.is_dir():
            raise SourceMissing(f"{source.name}: no demo data is bundled for it")
        return _locate_local(source, root, splits, "demo", cache)
    if sources == HUB:
        if source.access.kind != "hub":
            raise SourceMissing(
                _missing_message(source, "the Hub", ["nothing: it is not on the Hub, pass --sources DIR"])
            )
        return _locate_hub(source, splits)
    if remote.is_url(sources):
        return _locate_store(source, sources, splits)
    root = Path(sources) / source.name
    if not root.is_dir():
        raise SourceMissing(_missing_message(source, root, ["nothing (no such folder)"]))
    return _locate_local(source, root, splits, f"dir:{root}", cache)
