"""What a recipe is, and how the framework finds one.

A recipe is a module in `recipes/` (installed as `m3e_recipes`) named after its catalog entry. It defines

    def to_pairs(row: dict, ctx: Context) -> Iterable[Pair]

which turns one raw row into zero, one or several pairs (raise `Skip("reason")` for a row the source's rule
leaves out, so that the drop is counted by name). Optional module attributes:

    OPTIONS = {"best_answer_only": False}   # user-settable with --option <source>.<key>=<value>
    GROUP_BY = "sentence1"                  # rows sharing this field arrive together as ctx.group
    def read(located, split, ctx): ...      # rows of a split, when the recipe reads files itself
                                            # (a `custom` layout, side files); else the framework
                                            # reads the layout's format; `located.rows(split)` is that
    READ_IF = "best_answer_only"            # `read` only when this option is true; without it the
                                            # framework reads, and may cut a large JSON-lines file
                                            # into byte ranges (Ray), which a recipe's `read` forbids

Everything else (reading, batching, ids, validation, writing, counting) is the framework's.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import pkgutil
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from types import ModuleType
from typing import Any

RECIPES_PACKAGE = "m3e_recipes"


@dataclass(slots=True)
class Pair:
    """One unified example as a recipe produces it; the framework adds ids and catalog constants."""

    query: str
    positive: str
    negatives: list[str] = field(default_factory=list)
    key: str | None = None  # the source's own row key, when it has one; else the row's position


class Skip(Exception):  # noqa: N818 - it is a signal, not an error
    """Raised by `to_pairs` for a row the source's rule leaves out; the reason is counted."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Context:
    """What a recipe may know besides the row."""

    source: str
    split: str
    options: dict[str, Any]
    layout: str = ""
    layout_options: dict[str, Any] = field(default_factory=dict)
    group: list[dict[str, Any]] | None = None
    located: Any = None  # m3e_data.stages.normalize.locate.Located, for recipes that read side files


@dataclass(frozen=True)
class Recipe:
    name: str
    module: ModuleType

    @property
    def to_pairs(self) -> Callable[[dict[str, Any], Context], Iterable[Pair]]:
        return self.module.to_pairs

    @property
    def options(self) -> dict[str, Any]:
        return dict(getattr(self.module, "OPTIONS", {}))

    @property
    def group_by(self) -> str | Callable[[dict[str, Any]], Any] | None:
        return getattr(self.module, "GROUP_BY", None)

    @property
    def read(self) -> Callable[..., Iterator[Any]] | None:
        return getattr(self.module, "read", None)

    def reader(self, options: dict[str, Any]) -> Callable[..., Iterator[Any]] | None:
        """The recipe's `read` where these (resolved) options need it; None where the framework reads."""
        read_if = getattr(self.module, "READ_IF", None)
        return None if read_if is not None and not options.get(read_if) else self.read

    @property
    def doc(self) -> str:
        return inspect.getdoc(self.module) or ""

    @property
    def version(self) -> str:
        """Changes whenever the recipe's code changes, so that a rebuild redoes its source; that includes
        other recipe modules it borrows from (cspider and zhuiyi_nl2sql use dusql's `sql_pair`)."""
        h = hashlib.blake2b(inspect.getsource(self.module).encode(), digest_size=8)
        for name in sorted(_borrowed_recipe_modules(self.module)):
            h.update(inspect.getsource(sys.modules[name]).encode())
        return h.hexdigest()

    def resolve_options(self, given: dict[str, str]) -> dict[str, Any]:
        """Defaults overridden by user strings, each parsed as the type of its default."""
        resolved = self.options
        for key, text in given.items():
            if key not in resolved:
                known = ", ".join(sorted(resolved)) or "none"
                raise ValueError(f"recipe {self.name} has no option {key!r} (options: {known})")
            resolved[key] = parse_option(text, resolved[key], f"{self.name}.{key}")
        return resolved


def _borrowed_recipe_modules(module: ModuleType) -> set[str]:
    """Names of the other m3e_recipes modules whose objects `module` imported."""
    prefix = f"{RECIPES_PACKAGE}."
    found = set()
    for value in vars(module).values():
        owner = value.__name__ if isinstance(value, ModuleType) else getattr(value, "__module__", None)
        if isinstance(owner, str) and owner.startswith(prefix) and owner != module.__name__ and owner in sys.modules:
            found.add(owner)
    return found


def parse_option(text: str, default: Any, name: str) -> Any:
    if isinstance(default, bool):
        lowered = text.strip().lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
        raise ValueError(f"option {name} wants true/false, got {text!r}")
    if isinstance(default, int) or (default is None and text.strip().isdigit()):
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"option {name} wants an integer, got {text!r}") from None
    if isinstance(default, float):
        return float(text)
    if isinstance(default, (list, tuple)):
        return [x.strip() for x in text.split(",") if x.strip()]
    return text


@cache
def recipe_names() -> tuple[str, ...]:
    package = importlib.import_module(RECIPES_PACKAGE)
    return tuple(sorted(m.name for m in pkgutil.iter_modules(package.__path__) if not m.name.startswith("_")))


def load_recipe(name: str) -> Recipe | None:
    """The recipe for a catalog entry, or None when it has not been written."""
    if name not in recipe_names():
        return None
    module = importlib.import_module(f"{RECIPES_PACKAGE}.{name}")
    if not callable(getattr(module, "to_pairs", None)):
        raise TypeError(f"recipe {name} defines no to_pairs(row, ctx)")
    return Recipe(name, module)
