"""The architecture, checked: public faces that hold what they promise, imports that point one way.

- Every package's ``__all__`` names exist, none is private, none is a module
  picked up by mistake, and none is listed twice.
- Every ``package.name`` and ``from package import name`` that the README or
  docs/ show a user exists in that package's public face.
- No module reaches into another package's private modules (``x._y``), and
  replay's sub-packages meet only through each other's ``__init__``.
- Imports point one way: ``properties -> replay -> projections -> eventstore``;
  ``adapters`` and ``load`` drive them (and ``native``) from outside; ``native`` imports
  nothing of ours.
"""

from __future__ import annotations

import ast
import importlib
import re
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("eventstore", "projections", "replay", "properties", "adapters", "native", "load")
PUBLIC_MODULES = (
    "eventstore", "eventstore.payloads", "eventstore.validation", "eventstore.workers", "eventstore.cli",
    "projections", "projections.payloads", "projections.reasons",
    "replay", "replay.core", "replay.log", "replay.trace",
    "properties", "load", "native",
)
# What each package may import of ours (besides itself).
ALLOWED = {
    "eventstore": set(),
    "projections": {"eventstore"},
    "replay": {"eventstore", "projections"},
    "properties": {"eventstore", "projections", "replay"},
    "adapters": {"eventstore", "projections", "replay", "properties"},
    "load": {"eventstore", "projections", "replay", "properties", "adapters", "native"},
    "native": set(),
}
REPLAY_PARTS = ("core", "log", "trace", "cli")


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_all_names_exist_are_public_and_unique(name):
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{name} has no __all__"
    assert len(exported) == len(set(exported)), f"{name}.__all__ repeats a name"
    for attr in exported:
        assert not attr.startswith("_"), f"{name}.__all__ exports private {attr!r}"
        value = getattr(module, attr)  # raises if missing
        assert not isinstance(value, types.ModuleType) or attr == "reasons", (
            f"{name}.__all__ exports the module {attr!r}, probably by mistake")


def _documented_names() -> set[tuple[str, str]]:
    """(module, name) pairs that README.md and docs/*.md show a user."""
    texts = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    found: set[tuple[str, str]] = set()
    modules = "|".join(re.escape(m) for m in sorted(PUBLIC_MODULES, key=len, reverse=True))
    for path in texts:
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(rf"from ({modules}) import (\([^)]*\)|[\w, ]+)", text):
            names = re.sub(r"\bas \w+", "", match.group(2))
            found.update((match.group(1), name) for name in re.findall(r"\w+", names))
        for match in re.finditer(rf"`({modules})\.([A-Za-z]\w*)(?![\w.])", text):
            found.add((match.group(1), match.group(2)))
    return found


def test_every_name_the_docs_use_is_public():
    missing = []
    for module_name, name in sorted(_documented_names()):
        module = importlib.import_module(module_name)
        public = set(getattr(module, "__all__", ()))
        if name in public:
            continue
        try:  # a public submodule, e.g. `eventstore.payloads`
            importlib.import_module(f"{module_name}.{name}")
        except ImportError:
            missing.append(f"{module_name}.{name}")
    assert not missing, f"the README or docs/ use names that are not public: {missing}"


def _imports(path: Path) -> list[tuple[int, str]]:
    """Absolute module names imported by one file, with line numbers (relative ones resolved)."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.append((node.lineno, target))
            out.extend((node.lineno, f"{target}.{alias.name}") for alias in node.names
                       if alias.name.startswith("_") and not alias.name.startswith("__"))
    return out


def _sources():
    for package in PACKAGES:
        yield from ((package, p) for p in sorted((ROOT / package).rglob("*.py")))


def test_packages_meet_only_through_public_modules():
    bad = []
    for package, path in _sources():
        where = path.relative_to(ROOT)
        for line, target in _imports(path):
            top, *rest = target.split(".")
            if top not in PACKAGES or top == package:
                continue
            if any(part.startswith("_") for part in rest):
                bad.append(f"{where}:{line} imports {target}")
    assert not bad, "private modules used across packages:\n" + "\n".join(bad)


def test_replay_parts_meet_only_through_their_init():
    bad = []
    for part in REPLAY_PARTS:
        for path in sorted((ROOT / "replay" / part).rglob("*.py")):
            for line, target in _imports(path):
                parts = target.split(".")
                if (len(parts) > 2 and parts[0] == "replay" and parts[1] in REPLAY_PARTS
                        and parts[1] != part and parts[2].startswith("_")):
                    bad.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    assert not bad, "replay's parts reach into each other:\n" + "\n".join(bad)


def test_imports_point_one_way():
    bad = []
    for package, path in _sources():
        for line, target in _imports(path):
            top = target.split(".")[0]
            if top in PACKAGES and top != package and top not in ALLOWED[package]:
                bad.append(f"{path.relative_to(ROOT)}:{line}: {package} imports {top}")
    assert not bad, "imports against the layering:\n" + "\n".join(bad)


def test_every_error_derives_from_the_one_root():
    from eventstore import UnbrokenError

    seen = []
    for name in PUBLIC_MODULES:
        module = importlib.import_module(name)
        for attr in getattr(module, "__all__", ()):
            value = getattr(module, attr)
            if isinstance(value, type) and issubclass(value, Exception):
                seen.append(value)
                assert issubclass(value, UnbrokenError), f"{name}.{attr} is not an UnbrokenError"
    assert len(seen) >= 10
