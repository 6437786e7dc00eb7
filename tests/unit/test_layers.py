"""The shape of the code: services and all below them know nothing of Flask; SDKs stay inside storage."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from devstack.services import ROOT

APP = ROOT / "app"
WEB_FRAMEWORKS = ("flask", "flask_cors", "werkzeug")
# The service layer and everything it stands on.
CORE = (
    "app.uploads.service",
    "app.uploads.files",
    "app.uploads.multipart",
    "app.uploads.recorder",
    "app.maintenance.sweep",
    "app.maintenance.reconcile",
)


def module_path(name: str) -> Path:
    path = ROOT.joinpath(*name.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def imports_of(name: str) -> set[str]:
    """Every module ``name`` imports (absolute names), from its source."""
    path = module_path(name)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            found.add(base)
            # "from . import x" and "from .storage import s3" may name modules.
            found.update(
                f"{base}.{alias.name}" for alias in node.names if module_path(f"{base}.{alias.name}").exists()
            )
    return found


def reachable_from(name: str) -> dict[str, set[str]]:
    """The app modules ``name`` stands on (itself included), each with what it imports."""
    seen: dict[str, set[str]] = {}
    todo = [name]
    while todo:
        current = todo.pop()
        if current in seen or current == "app":  # app/__init__.py is create_app: the top, not a dependency
            continue
        seen[current] = imports_of(current)
        todo += [m for m in seen[current] if m.startswith("app.") and module_path(m).exists()]
        # Importing a.b.c runs a/__init__.py and a/b/__init__.py.
        parts = current.split(".")
        todo += [
            package
            for package in (".".join(parts[:i]) for i in range(2, len(parts)))
            if module_path(package).exists()  # a namespace package (no __init__.py) runs nothing
        ]
    return seen


@pytest.mark.parametrize("service", CORE)
def test_the_service_layer_and_all_below_it_never_import_the_web_framework(service: str) -> None:
    offenders = {
        module: sorted(m for m in imported if m.split(".")[0] in WEB_FRAMEWORKS)
        for module, imported in reachable_from(service).items()
    }
    assert {m: found for m, found in offenders.items() if found} == {}


def test_nothing_outside_storage_imports_a_concrete_provider() -> None:
    concrete = {"app.storage.s3", "app.storage.azure", "app.storage.sigv4", "app.storage.http"}
    for path in APP.rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        if name.startswith("app.storage"):
            continue
        assert not imports_of(name) & concrete, name
