"""The catalog: one YAML file per source in manifests/, validated when loaded.

A manifest holds facts about a source (where it lives, its layout, its licence); the recipe holds the code
that turns its rows into pairs. A malformed manifest is a `CatalogError` naming the file and the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from m3e_data.schema import TASKS

DOMAINS = (
    "encyclopedia",
    "e-commerce",
    "news",
    "colloquial",
    "finance",
    "medicine",
    "academic",
    "law",
    "idiom",
    "sql",
)
QUALITIES = ("excellent", "good")  # the card's 优 / 良
CARD_WORDS = ("yes", "no", "unstated")  # the card's 是 / 否 / 未说明
FORMATS = ("parquet", "json", "tsv", "csv", "squad", "custom")

# Published licences known to permit commercial use. A source is commercial only if its licence is here
# AND the M3E card does not say 否. Anything else (LicenseRef-…, NC, research-only, unknown) is not.
COMMERCIAL_LICENSES = frozenset(
    {
        "Apache-2.0",
        "MIT",
        "CC0-1.0",
        "CC-BY-4.0",
        "CC-BY-SA-3.0",
        "CC-BY-SA-4.0",
        # PAWS-X: "may be freely used for any purpose" (Google's licence file, no SPDX id).
        "LicenseRef-PAWS-X",
    }
)


class CatalogError(ValueError):
    """A manifest is missing a field or holds a value of the wrong kind."""


@dataclass(frozen=True)
class Layout:
    """One way a source's files can be laid out. Recipes try layouts in catalog order."""

    name: str
    format: str
    splits: dict[str, tuple[str, ...]]  # split -> file names or glob patterns
    revision: str | None = None  # Hub only: overrides the source's revision (e.g. refs/convert/parquet)
    repo_id: str | None = None  # Hub only: a mirror repo holding the same data in another layout
    options: dict[str, Any] = field(default_factory=dict)  # reader options: columns, header, field, ...
    # A download layout (an upstream archive): files are found by name at any depth, not at a Hub path.
    # Every layout of a download source is one; a Hub source marks its download layouts with `by_name`.
    by_name: bool = False
    how_to_get: str | None = None  # how a user gets this layout's files (download layouts)
    url: str | None = None


@dataclass(frozen=True)
class Access:
    kind: str  # "hub" or "download"
    layouts: tuple[Layout, ...]
    repo_id: str | None = None
    revision: str = "main"
    url: str | None = None
    how_to_get: str | None = None


@dataclass(frozen=True)
class License:
    spdx: str
    card_research: str
    card_commercial: str
    commercial: bool
    reason: str


@dataclass(frozen=True)
class Source:
    name: str
    description: str
    domain: str
    task: str
    quality: str
    provider: str
    homepage: str
    card_rows: int
    homogeneous: bool
    available: bool
    availability: str | None
    counting_rule: str
    access: Access
    license: License
    citation: str
    hq: dict[str, Any] = field(default_factory=dict)  # per-source thresholds for the m3e-hq stage

    @property
    def commercial(self) -> bool:
        return self.license.commercial


class _Fields:
    """Reads typed fields out of a YAML mapping, raising errors that name the file and the field path."""

    def __init__(self, data: Any, where: str, path: str = "") -> None:
        if not isinstance(data, dict):
            raise CatalogError(f"{where}: {path or 'document'}: expected a mapping, got {type(data).__name__}")
        self.data, self.where, self.path = data, where, path

    def _name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def get(self, key: str, kind: type | tuple[type, ...], *, optional: bool = False, default: Any = None) -> Any:
        if key not in self.data or self.data[key] is None:
            if optional:
                return default
            raise CatalogError(f"{self.where}: field '{self._name(key)}' is missing")
        value = self.data[key]
        # bool is an int in Python; a count written as `true` is still wrong.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            want = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
            raise CatalogError(
                f"{self.where}: field '{self._name(key)}' must be {want}, got {type(value).__name__} {value!r}"
            )
        return value

    def text(self, key: str, *, optional: bool = False) -> str | None:
        value = self.get(key, str, optional=optional)
        if value is not None and not value.strip():
            raise CatalogError(f"{self.where}: field '{self._name(key)}' is empty")
        return value

    def choice(self, key: str, choices: tuple[str, ...]) -> str:
        value = self.text(key)
        if value not in choices:
            raise CatalogError(
                f"{self.where}: field '{self._name(key)}' is {value!r}; expected one of {', '.join(choices)}"
            )
        return value

    def sub(self, key: str) -> _Fields:
        return _Fields(self.get(key, dict), self.where, self._name(key))


def _layout(data: Any, where: str, path: str, kind: str) -> Layout:
    f = _Fields(data, where, path)
    splits_raw = f.get("splits", dict)
    splits: dict[str, tuple[str, ...]] = {}
    for split, files in splits_raw.items():
        if isinstance(files, str):
            files = [files]
        if not isinstance(files, list) or not files or not all(isinstance(x, str) and x for x in files):
            raise CatalogError(f"{where}: field '{path}.splits.{split}' must be a file name or a list of them")
        splits[str(split)] = tuple(files)
    if not splits:
        raise CatalogError(f"{where}: field '{path}.splits' names no split")
    return Layout(
        name=f.text("name"),
        format=f.choice("format", FORMATS),
        splits=splits,
        revision=f.text("revision", optional=True),
        repo_id=f.text("repo_id", optional=True),
        options=f.get("options", dict, optional=True, default={}),
        by_name=kind == "download" or f.get("by_name", bool, optional=True, default=False),
        how_to_get=f.text("how_to_get", optional=True),
        url=f.text("url", optional=True),
    )


def _access(f: _Fields) -> Access:
    kind = f.choice("kind", ("hub", "download"))
    layouts_raw = f.get("layouts", list)
    if not layouts_raw:
        raise CatalogError(f"{f.where}: field '{f._name('layouts')}' is empty")
    layouts = tuple(
        _layout(x, f.where, f"{f._name('layouts')}[{i}]", kind) for i, x in enumerate(layouts_raw)
    )
    access = Access(
        kind=kind,
        layouts=layouts,
        repo_id=f.text("repo_id", optional=kind == "download"),
        revision=f.text("revision", optional=True) or "main",
        url=f.text("url", optional=kind == "hub"),
        how_to_get=f.text("how_to_get", optional=kind == "hub"),
    )
    if access.repo_id is not None and "/" not in access.repo_id:
        raise CatalogError(f"{f.where}: field '{f._name('repo_id')}' must be namespaced (owner/name)")
    for i, layout in enumerate(layouts):
        # A Hub layout's way to get it is a snapshot command; a download layout needs its own words (a Hub
        # source's download layouts each name their archive, so the source-wide text does not count there).
        if layout.by_name and not (layout.how_to_get or (kind == "download" and access.how_to_get)):
            raise CatalogError(
                f"{f.where}: field '{f._name('layouts')}[{i}].how_to_get' is missing (a download layout)"
            )
    return access


def how_to_get(source: Source, layout: Layout) -> str:
    """How a user gets the files of one layout: its own text, the source's, or the Hub snapshot command."""
    a = source.access
    if layout.by_name:
        text = layout.how_to_get or a.how_to_get or ""
        url = layout.url or a.url
        return text + (f" ({url})" if url and url not in text else "")
    revision = layout.revision or a.revision
    return (
        f"hf download --repo-type dataset {layout.repo_id or a.repo_id}"
        f"{'' if revision == 'main' else f' --revision {revision}'} --local-dir DIR/{source.name}"
    )


def layout_files(layout: Layout) -> list[str]:
    """The file names (or patterns) a layout reads: its splits' and the side files its options name."""
    split_files = {name for names in layout.splits.values() for name in names}
    side_files = {v for v in layout.options.values() if isinstance(v, str) and "." in v}
    return sorted(split_files | side_files)


def _license(f: _Fields) -> License:
    lic = License(
        spdx=f.text("spdx"),
        card_research=f.choice("card_research", CARD_WORDS),
        card_commercial=f.choice("card_commercial", CARD_WORDS),
        commercial=f.get("commercial", bool),
        reason=f.text("reason"),
    )
    allowed = lic.spdx in COMMERCIAL_LICENSES and lic.card_commercial != "no"
    if lic.commercial and not allowed:
        raise CatalogError(
            f"{f.where}: field '{f._name('commercial')}' is true, but commercial use needs a licence known to "
            f"permit it (got {lic.spdx}) and a card that does not say 否 (says {lic.card_commercial})"
        )
    return lic


def parse_source(data: Any, where: str) -> Source:
    f = _Fields(data, where)
    name = f.text("name")
    if Path(where).stem != name and where.endswith(".yaml"):
        raise CatalogError(f"{where}: field 'name' is {name!r} but the file is named {Path(where).name}")
    available = f.get("available", bool)
    return Source(
        name=name,
        description=f.text("description"),
        domain=f.choice("domain", DOMAINS),
        task=f.choice("task", TASKS),
        quality=f.choice("quality", QUALITIES),
        provider=f.text("provider"),
        homepage=f.text("homepage"),
        card_rows=f.get("card_rows", int),
        homogeneous=f.get("homogeneous", bool),
        available=available,
        availability=f.text("availability", optional=available),
        counting_rule=f.text("counting_rule"),
        access=_access(f.sub("access")),
        license=_license(f.sub("license")),
        citation=f.text("citation"),
        hq=f.get("hq", dict, optional=True, default={}),
    )


def load_file(path: Path) -> Source:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise CatalogError(f"{path}: not valid YAML: {exc}") from exc
    return parse_source(data, str(path))


def manifests_dir() -> Path:
    return Path(str(resources.files("m3e_manifests")))


TASKS_FILE = "_tasks.yaml"  # per-task m3e-hq thresholds; "_" files are not manifests


@cache
def load_catalog(directory: Path | None = None) -> dict[str, Source]:
    """All sources, by name, in file-name order."""
    directory = directory or manifests_dir()
    sources = [load_file(p) for p in sorted(directory.glob("*.yaml")) if not p.name.startswith("_")]
    if not sources:
        raise CatalogError(f"{directory}: no manifests found")
    return {s.name: s for s in sources}


@cache
def load_task_hq(directory: Path | None = None) -> dict[str, dict[str, Any]]:
    """Per-task m3e-hq thresholds ({task: {threshold: value}}) from the catalog's _tasks.yaml; threshold
    names and values are checked where they are applied (quality.resolve)."""
    path = (directory or manifests_dir()) / TASKS_FILE
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise CatalogError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise CatalogError(f"{path}: expected a mapping of task -> thresholds")
    for task, values in data.items():
        if task not in TASKS:
            raise CatalogError(f"{path}: {task!r} is not a task; expected one of {', '.join(TASKS)}")
        if not isinstance(values, dict):
            raise CatalogError(f"{path}: field '{task}' must be a mapping of thresholds")
    return data
