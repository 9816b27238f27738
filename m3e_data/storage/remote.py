"""Outputs on object storage (s3://, gs://, any fsspec URL): a local working mirror and a committed sync.

Object stores have no atomic rename, so the stages never write the store directly: a command given a URL
works in a local mirror folder (OUT as the stages know it) and syncs it with the store. The unit of trust
is a stage folder (one holding `_SUCCESS.json`): it is committed on the store when its `_SUCCESS.json` is
there and every file the record lists is there with its size. `push` un-commits a folder first (deletes its
`_SUCCESS.json`), uploads the files, removes the ones it wrote that the new record no longer lists, and
uploads `_SUCCESS.json` last; `pull` takes only committed folders; `clean_uncommitted` deletes what a
crashed push left (our part files in a folder without a record) and nothing a user put there.

A stage folder the command removed from the mirror (hq drops the m3e-hq and rejects folders of sources a
smaller build no longer selects) is removed from the store too when the command pushes, or a later pull
would bring it back: only a folder this session saw committed there, with the same record still, and only
our files in it (un-committed first, its marker last); a user's file stays.

Files outside stage folders (the manifest, the fingerprint and embedding caches, a report) are single
objects, each PUT atomic on its own. Credentials come from fsspec/botocore's own configuration (env vars,
profiles, FSSPEC_* config): this module never reads, prints or stores them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath
from typing import Any

from m3e_data.storage import store
from m3e_data.storage.lock import LOCK_FILE
from m3e_data.storage.ownership import MARKER
from m3e_data.storage.store import (
    SUCCESS,
    TEMP_PREFIX,
    _alive,
    atomic_write_json,
    file_sha256,
    read_success,
    swap_in,
    temp_name,
    temp_owner,
)

# The package each protocol needs, and the extra that installs it.
EXTRAS = {"s3": ("s3fs", "s3"), "s3a": ("s3fs", "s3"), "gs": ("gcsfs", "gcs"), "gcs": ("gcsfs", "gcs")}
SYNC_STATE = ".m3e-sync.json"  # in the mirror: what the store held of each loose file at the last sync
_URL = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")


class RemoteError(ValueError):
    """An object store that cannot be used: a missing protocol package, no such bucket, no answer."""


def is_url(text: str | os.PathLike[str] | None) -> bool:
    """A scheme:// URL other than file:// (a file:// URL is a local path)."""
    if text is None or isinstance(text, os.PathLike):
        return False
    m = _URL.match(str(text))
    return bool(m) and m.group(1).lower() != "file"


def protocol(url: str) -> str:
    m = _URL.match(url)
    return m.group(1).lower() if m else ""


def filesystem(url: str) -> tuple[Any, str]:
    """The fsspec file system of `url` and the path inside it (bucket/key, no trailing slash).

    Storage options come from fsspec's config and the protocol library's own environment (AWS_ENDPOINT_URL,
    AWS_PROFILE, GOOGLE_APPLICATION_CREDENTIALS, ...). Listings are re-read: another writer, or a crash, may
    have changed the store since this process last looked."""
    import fsspec

    scheme = protocol(url)
    try:
        fs, path = fsspec.core.url_to_fs(url)
    except ImportError:
        package, extra = EXTRAS.get(scheme, (f"the fsspec implementation of {scheme}://", ""))
        how = f"pip install 'm3e-data[{extra}]'" if extra else f"install {package}"
        raise RemoteError(f"{scheme}:// URLs need {package}, which is not installed: {how}") from None
    except ValueError as exc:  # fsspec: "Protocol not known"
        raise RemoteError(f"{url}: {exc}") from None
    fs.invalidate_cache()
    return fs, path.rstrip("/")


def check_bucket(fs: Any, path: str, url: str) -> None:
    """RemoteError unless the bucket (the first part of `path`) exists and answers."""
    bucket = path.split("/", 1)[0]
    try:
        fs.info(bucket)
    except FileNotFoundError:
        raise RemoteError(f"{url}: no bucket {bucket!r} (create it first, or check the endpoint)") from None
    except PermissionError as exc:
        raise RemoteError(f"{url}: access to bucket {bucket!r} denied ({exc}); check the credentials") from None
    except Exception as exc:  # a transport error becomes one line, naming the URL only
        raise RemoteError(f"{url}: the object store did not answer ({type(exc).__name__}: {exc})") from None


def default_work_dir(url: str) -> Path:
    """The local mirror of a remote OUT: $XDG_CACHE_HOME (else ~/.cache)/m3e-data/out/<hash of the URL>."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "m3e-data" / "out" / hashlib.blake2b(url.rstrip("/").encode(), digest_size=8).hexdigest()


def default_source_cache() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "m3e-data" / "sources"


def _ours(name: str, marked: set[str], rel: str) -> bool:
    """A file the stages write: a part, a temp, the marker, or an entry our marker names."""
    return (
        fnmatchcase(name, "part-*.parquet") or name.startswith(TEMP_PREFIX) or name in (MARKER, SUCCESS)
        or rel in marked
    )


def _skipped(rel: str) -> bool:
    """Mirror-only files: the lock, the sync state, and temps anywhere on the path."""
    parts = rel.split("/")
    return rel in (LOCK_FILE, SYNC_STATE) or any(p.startswith(TEMP_PREFIX) for p in parts)


@dataclass
class Listing:
    """Every object under the remote OUT, grouped: committed stage folders, folders our stages wrote that
    hold no record (a crashed push), and loose files."""

    files: dict[str, dict[str, Any]]  # rel -> fsspec info
    committed: dict[str, list[str]] = field(default_factory=dict)  # folder -> rel paths inside it
    uncommitted: dict[str, list[str]] = field(default_factory=dict)
    loose: list[str] = field(default_factory=list)
    temps: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, fs: Any, root: str) -> Listing:
        try:
            found = fs.find(root, detail=True)
        except FileNotFoundError:
            found = {}
        files = {p[len(root) + 1:]: info for p, info in found.items() if p.startswith(root + "/")}
        listing = cls(files)
        folders = {str(PurePosixPath(rel).parent) for rel in files if PurePosixPath(rel).name == SUCCESS}
        # Where our stages wrote but no record is: a marker or a part file, outside any committed folder.
        open_ = {str(PurePosixPath(r).parent) for r in files if _enclosing(r, folders) is None and (
            PurePosixPath(r).name == MARKER or fnmatchcase(PurePosixPath(r).name, "part-*.parquet"))} - {"."}
        for rel in files:
            if _skipped(rel):  # a temp or a lock someone copied up: ours, never state
                listing.temps.append(rel)
            elif (owner := _enclosing(rel, folders)) is not None:
                listing.committed.setdefault(owner, []).append(rel)
            elif (owner := _enclosing(rel, open_)) is not None:
                listing.uncommitted.setdefault(owner, []).append(rel)
            else:
                listing.loose.append(rel)
        # A file in a folder where a stage folder would be (m3e/<name>/, beside m3e/<source>/) is a user's
        # or a crashed run's leftover, not part of OUT's state: never pulled (the mirror would refuse to
        # build there), never deleted.
        beside = {str(PurePosixPath(f).parent) for f in [*listing.committed, *listing.uncommitted]}
        listing.loose = [r for r in listing.loose
                         if len(PurePosixPath(r).parts) < 2 or str(PurePosixPath(r).parent.parent) not in beside]
        return listing


def _enclosing(rel: str, folders: set[str]) -> str | None:
    """The deepest folder of `folders` holding `rel`."""
    for parent in PurePosixPath(rel).parents:
        if str(parent) in folders:
            return str(parent)
    return None


def _marked(fs: Any, root: str, folder: str) -> set[str]:
    """The rel paths (from the remote OUT) that the folder's marker lists."""
    try:
        marker = json.loads(fs.cat_file(f"{root}/{folder}/{MARKER}"))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return set()
    entries = marker.get("entries") if isinstance(marker, dict) else None
    return {f"{folder}/{e}" for e in entries} if isinstance(entries, dict) else set()


def _record(fs: Any, root: str, folder: str) -> tuple[bytes, dict[str, Any]] | None:
    try:
        raw = fs.cat_file(f"{root}/{folder}/{SUCCESS}")
        record = json.loads(raw)
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return (raw, record) if isinstance(record, dict) else None


def _listed(record: dict[str, Any]) -> dict[str, int | None]:
    """The files a record lists with their sizes (a record older than file lists: its parts, sizes unknown)."""
    files = record.get("files")
    if isinstance(files, dict):
        return {str(k): v.get("bytes") if isinstance(v, dict) else None for k, v in files.items()}
    parts = record.get("parts")
    return {str(p): None for p in parts} if isinstance(parts, list) else {}


def _intact(listing: Listing, folder: str, record: dict[str, Any]) -> bool:
    for rel, size in _listed(record).items():
        info = listing.files.get(f"{folder}/{rel}")
        if info is None or (size is not None and info.get("size") != size):
            return False
    return True


def etag(info: dict[str, Any]) -> str:
    return str(info.get("ETag") or info.get("etag") or info.get("md5Hash") or info.get("mtime") or "")


class RemoteOut:
    """A remote OUT and its local mirror, for the length of one command (see the module note)."""

    def __init__(self, url: str, work_dir: Path | None = None) -> None:
        self.url = url.rstrip("/")
        self.fs, self.root = filesystem(self.url)
        self.mirror = (work_dir or default_work_dir(self.url)).expanduser().resolve()
        self.folders: dict[str, bytes] = {}  # stage folder -> the record the store holds (as far as we know)
        self.state: dict[str, Any] = {"url": self.url, "loose": {}}
        self.deleted: list[str] = []  # what clean_uncommitted removed, for the command's log
        self.removed: list[str] = []  # stage folders push removed from the store, for the command's log

    # -- start of a command -------------------------------------------------------------------------
    def open(self) -> None:
        """Check the bucket, remove what a crashed push left, pull every committed folder."""
        check_bucket(self.fs, self.root, self.url)
        self.mirror.mkdir(parents=True, exist_ok=True)
        try:
            loaded = json.loads((self.mirror / SYNC_STATE).read_text(encoding="utf-8"))
            if isinstance(loaded, dict) and loaded.get("url") == self.url and isinstance(loaded.get("loose"), dict):
                self.state = loaded
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            pass
        self.clean_uncommitted()
        self.pull()

    def clean_uncommitted(self) -> None:
        """Delete our files in remote folders without a record, and the files a committed folder's record
        does not list, when we wrote them (part-*.parquet, temps, the marker's entries); never another file."""
        listing = Listing.of(self.fs, self.root)
        doomed = [r for r in listing.temps if PurePosixPath(r).name != LOCK_FILE]
        for folder, rels in listing.uncommitted.items():
            marked = _marked(self.fs, self.root, folder)
            doomed += [r for r in rels if _ours(PurePosixPath(r).name, marked, r)]
        for folder, rels in listing.committed.items():
            got = _record(self.fs, self.root, folder)
            listed = {f"{folder}/{k}" for k in _listed(got[1])} if got else set()
            marked = _marked(self.fs, self.root, folder)
            keep = listed | {f"{folder}/{SUCCESS}", f"{folder}/{MARKER}"}
            doomed += [r for r in rels if r not in keep and _ours(PurePosixPath(r).name, marked, r)]
        for rel in doomed:
            self.fs.rm_file(f"{self.root}/{rel}")
        self.deleted = doomed

    def pull(self) -> None:
        """Download every committed remote folder the mirror does not hold as is, and the loose files that
        changed on the store; an uncommitted or damaged folder is not trusted (the stage rebuilds it)."""
        listing = Listing.of(self.fs, self.root)
        for folder in sorted(listing.committed):
            got = _record(self.fs, self.root, folder)
            if got is None or not _intact(listing, folder, got[1]):
                continue
            raw, record = got
            local = self.mirror / folder
            try:
                same = (local / SUCCESS).read_bytes() == raw and read_success(local) is not None
            except OSError:
                same = False
            if not same:
                names = list(_listed(record))
                if f"{folder}/{MARKER}" in listing.files:
                    names.append(MARKER)
                self._download_folder(folder, names, raw)
            self.folders[folder] = raw
        loose = self.state.setdefault("loose", {})
        for rel in listing.loose:
            info, local = listing.files[rel], self.mirror / rel
            known = loose.get(rel, {})
            if (local.is_file() and local.stat().st_size == info.get("size") and known.get("etag") == etag(info)
                    and known.get("sha256") == file_sha256(local)):
                continue
            local.parent.mkdir(parents=True, exist_ok=True)
            tmp = local.parent / temp_name(local.name)
            self.fs.get_file(f"{self.root}/{rel}", str(tmp))
            os.replace(tmp, local)
            loose[rel] = {"etag": etag(info), "sha256": file_sha256(local)}
        self._save_state()

    def _download_folder(self, folder: str, names: list[str], record: bytes) -> None:
        """The folder's files into a temp folder of the mirror, the record last, swapped into place."""
        target = self.mirror / folder
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / temp_name(target.name)
        tmp.mkdir()
        try:
            for name in names:
                (tmp / name).parent.mkdir(parents=True, exist_ok=True)
                self.fs.get_file(f"{self.root}/{folder}/{name}", str(tmp / name))
            (tmp / SUCCESS).write_bytes(record)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        swap_in(tmp, target)

    # -- during and at the end of a command --------------------------------------------------------
    def _committed_local(self) -> Iterator[str]:
        for path in sorted(self.mirror.rglob(SUCCESS)):
            rel = path.parent.relative_to(self.mirror).as_posix()
            if not _skipped(rel):
                yield rel

    def push(self) -> None:
        """Upload every committed mirror folder whose record the store lacks, then the changed loose files."""
        folders = list(self._committed_local())
        for folder in folders:
            self.push_folder(folder)
        for folder in sorted(set(self.folders) - set(folders)):
            if self._removed_locally(folder):
                self.remove_folder(folder)
        loose = self.state.setdefault("loose", {})
        for path in sorted(p for p in self.mirror.rglob("*") if p.is_file()):
            rel = path.relative_to(self.mirror).as_posix()
            if _skipped(rel) or _enclosing(rel, set(folders)) is not None:
                continue
            digest = file_sha256(path)
            if loose.get(rel, {}).get("sha256") == digest:
                continue
            self.fs.put_file(str(path), f"{self.root}/{rel}")  # one PUT: the store swaps it in whole
            loose[rel] = {"etag": etag(self.fs.info(f"{self.root}/{rel}")), "sha256": digest}
        self._save_state()

    def push_folder(self, folder: str) -> None:
        """Replace one remote stage folder by the mirror's, un-committing it first and committing it last."""
        local = self.mirror / folder
        raw = (local / SUCCESS).read_bytes()
        if self.folders.get(folder) == raw:
            return
        record = read_success(local)
        if record is None:  # damaged in the mirror: the next run rebuilds it; never publish it
            return
        remote = f"{self.root}/{folder}"
        before, marked = self._on_store(folder)
        if SUCCESS in before:
            self.fs.rm_file(f"{remote}/{SUCCESS}")  # un-commit: readers stop trusting the folder now
        self.folders.pop(folder, None)
        listed = set(_listed(record))
        for rel in sorted(before - listed - {SUCCESS, MARKER}):
            if _ours(PurePosixPath(rel).name, marked, rel):
                self.fs.rm_file(f"{remote}/{rel}")
        if (local / MARKER).is_file():
            self.fs.put_file(str(local / MARKER), f"{remote}/{MARKER}")
        for rel in sorted(listed):
            self.fs.put_file(str(local / rel), f"{remote}/{rel}")
        self.fs.pipe_file(f"{remote}/{SUCCESS}", raw)  # commit: last
        self.folders[folder] = raw

    def _on_store(self, folder: str) -> tuple[set[str], set[str]]:
        """The files under `folder` on the store and those its ownership marker names, relative to it."""
        remote = f"{self.root}/{folder}"
        try:
            files = {p[len(remote) + 1:] for p in self.fs.find(remote)}
        except FileNotFoundError:
            files = set()
        return files, {e.removeprefix(folder + "/") for e in _marked(self.fs, self.root, folder)}

    def _removed_locally(self, folder: str) -> bool:
        """The mirror no longer holds `folder` and no live process is swapping it in (a Ray worker between
        swap_in's two renames leaves its temps beside; a dead run's temps do not count)."""
        local = self.mirror / folder
        if local.exists() or local.is_symlink():
            return False
        beside = local.parent.glob(f"{TEMP_PREFIX}*") if local.parent.is_dir() else iter(())
        return not any(p.name.endswith((f".{local.name}", f".{local.name}.old"))
                       and (pid := temp_owner(p.name)) is not None and _alive(pid) for p in beside)

    def remove_folder(self, folder: str) -> None:
        """Remove a committed stage folder from the store: only when its record is still the one this
        session saw (another writer may have committed it again since), and only our files in it."""
        known = self.folders.pop(folder, None)
        got = _record(self.fs, self.root, folder)
        if known is None or got is None or got[0] != known:
            return
        remote = f"{self.root}/{folder}"
        present, marked = self._on_store(folder)
        listed = set(_listed(got[1]))
        self.fs.rm_file(f"{remote}/{SUCCESS}")  # un-commit first: a reader stops trusting it now
        # The marker goes last: a crash before it leaves an uncommitted folder whose marker still names
        # what clean_uncommitted may delete.
        for rel in sorted(present - {SUCCESS, MARKER}):
            if rel in listed or _ours(PurePosixPath(rel).name, marked, rel):
                self.fs.rm_file(f"{remote}/{rel}")
        if MARKER in present:
            self.fs.rm_file(f"{remote}/{MARKER}")
        self.removed.append(folder)

    def on_commit(self, target: Path) -> None:
        """store's commit hook: push a stage folder as soon as it is committed in the mirror. A failure is
        left to the command's final push, which reports it."""
        try:
            rel = target.resolve().relative_to(self.mirror)
        except ValueError:
            return
        # A failed push leaves the folder unrecorded as pushed: the final push retries it, and fails the
        # command if it fails again.
        with contextlib.suppress(Exception):
            self.push_folder(rel.as_posix())

    def _save_state(self) -> None:
        atomic_write_json(self.mirror / SYNC_STATE, self.state)

    def __enter__(self) -> RemoteOut:
        store.add_commit_hook(self.on_commit)
        return self

    def __exit__(self, *exc: object) -> None:
        store.remove_commit_hook(self.on_commit)


def fetch_folder(folder_url: str, files: dict[str, dict[str, Any]]) -> Path:
    """A local copy of one folder of an object store (`files`: name -> size and ETag, from a listing).

    The cache folder is keyed by the URL and every file's ETag and size, so a changed file is a new folder;
    each file is downloaded once (temp then rename), and a file's neighbours come with it: recipes read side
    files found beside their main file."""
    key = json.dumps([folder_url, sorted((n, i.get("size"), i.get("etag")) for n, i in files.items())])
    target = default_source_cache() / hashlib.blake2b(key.encode(), digest_size=16).hexdigest()
    target.mkdir(parents=True, exist_ok=True)
    fs, path = filesystem(folder_url)
    for name, info in sorted(files.items()):
        local = target / name
        if local.is_file() and local.stat().st_size == info.get("size"):
            continue
        tmp = target / temp_name(name)
        try:
            fs.get_file(f"{path}/{name}", str(tmp))
            os.replace(tmp, local)
        finally:
            tmp.unlink(missing_ok=True)
    return target
