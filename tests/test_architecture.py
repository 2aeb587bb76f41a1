"""Layers point one way: no import cycle, no private name imported across modules, small modules and functions.

Read from the source with :mod:`ast` (nothing is imported). Every import counts, those inside
functions too: a cycle through a function-level import is still a cycle. The allow-lists name
today's offenders in files being rewritten; each must shrink to empty, and an entry that no
longer offends must be removed (:func:`test_allow_lists_name_only_current_offenders`).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from tests.conftest import ROOT

#: Source folder → the import namespace it installs under (``pyproject.toml`` package-dir).
PACKAGES = {"service": "slicelab.service", "workers": "slicelab.workers",
            "calibration": "slicelab.calibration", "prompts": "slicelab.prompts"}
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80

@dataclass
class Module:
    """One source file: its import name, path (``rel``: from the repository root), syntax tree, length
    and what it imports from slicelab (``private_imports``: ``(module, name)`` of private names)."""

    name: str
    path: Path
    rel: str
    tree: ast.Module
    lines: int
    imports: set[str] = field(default_factory=set)
    private_imports: set[tuple[str, str]] = field(default_factory=set)


def load_modules(root: Path = ROOT) -> dict[str, Module]:
    """Every slicelab module under ``root`` by import name, with its imports resolved to slicelab modules."""
    modules = {}
    for folder, namespace in PACKAGES.items():
        for path in sorted((root / folder).rglob("*.py")):
            parts = list(path.relative_to(root / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            name = ".".join([namespace, *parts])
            text = path.read_text(encoding="utf-8")
            modules[name] = Module(name, path, path.relative_to(root).as_posix(), ast.parse(text, str(path)),
                                   len(text.splitlines()))
    for module in modules.values():
        _resolve_imports(module, modules)
    return modules


def _resolve_imports(module: Module, modules: dict[str, Module]) -> None:
    """Fill ``module.imports`` and ``module.private_imports`` from every import statement in it."""
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            targets = [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(module, node)
            # ``from pkg import sub`` imports the submodule; ``from mod import name`` a name of mod
            targets = [(f"{base}.{a.name}", None) if f"{base}.{a.name}" in modules else (base, a.name)
                       for a in node.names]
        else:
            continue
        for target, name in targets:
            owner = _owning_module(target, modules)
            if owner is None or owner == module.name:
                continue
            module.imports.add(owner)
            if name and name.startswith("_") and not name.startswith("__") and owner == target:
                module.private_imports.add((owner, name))


def _absolute(module: Module, node: ast.ImportFrom) -> str:
    """The absolute module name a ``from ... import`` statement reads from."""
    if not node.level:
        return node.module or ""
    package = module.name.split(".")
    if module.path.name != "__init__.py":
        package.pop()
    package = package[: len(package) - (node.level - 1)]
    return ".".join(package + ([node.module] if node.module else []))


def _owning_module(target: str, modules: dict[str, Module]) -> str | None:
    """``target`` or its nearest enclosing slicelab module; None outside slicelab."""
    while target not in modules and "." in target:
        target = target.rsplit(".", 1)[0]
    return target if target in modules else None


def import_cycles(modules: dict[str, Module]) -> list[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan 1972, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []
    for start in modules:
        if start in index:
            continue
        work = [(start, iter(sorted(modules[start].imports)))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            nxt = next((s for s in successors if s not in index or s in on_stack), None)
            if nxt is not None and nxt not in index:
                index[nxt] = low[nxt] = len(index)
                stack.append(nxt)
                on_stack.add(nxt)
                work.append((nxt, iter(sorted(modules[nxt].imports))))
            elif nxt is not None:
                low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        cycles.append(frozenset(component))
    return cycles


def long_functions(module: Module) -> dict[str, int]:
    """``path::qualified name`` → lines of every function (methods and nested ones too) over the limit."""
    out = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                qualname = f"{prefix}{child.name}"
                length = child.end_lineno - child.lineno + 1
                if not isinstance(child, ast.ClassDef) and length > MAX_FUNCTION_LINES:
                    out[f"{module.rel}::{qualname}"] = length
                visit(child, qualname + ".")
            else:
                visit(child, prefix)

    visit(module.tree, "")
    return out


MODULES = load_modules()


@cache
def _offenders() -> dict[str, set]:
    """Today's offences in the repository, by check."""
    return {
        "cycles": set(import_cycles(MODULES)),
        "private": {(m.name, *imp) for m in MODULES.values() for imp in m.private_imports},
        "modules": {m.rel for m in MODULES.values() if m.lines > MAX_MODULE_LINES},
        "functions": {f for m in MODULES.values() for f in long_functions(m)},
    }


def test_the_checks_see_every_kind_of_import(tmp_path):
    """Function-level, relative and package imports count; imports from outside slicelab do not."""
    long_body = "".join(f"    x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES))
    files = {
        "service/__init__.py": "",
        "service/a.py": "import json\n\n\ndef f():\n    from slicelab.service import b\n" + long_body,
        "service/b.py": "import numpy\n\nfrom .a import _x, f\n",
        "service/sub/__init__.py": "from slicelab.service.sub.c import thing\n",
        "service/sub/c.py": "from .. import a\nfrom slicelab.service.b import __doc__\n",
        "workers/__init__.py": "import slicelab.service.sub.c\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    for folder in ("calibration", "prompts"):
        (tmp_path / folder).mkdir()
    modules = load_modules(tmp_path)
    imports = {name: m.imports for name, m in modules.items()}
    assert imports == {
        "slicelab.service": set(),
        "slicelab.service.a": {"slicelab.service.b"},
        "slicelab.service.b": {"slicelab.service.a"},
        "slicelab.service.sub": {"slicelab.service.sub.c"},
        "slicelab.service.sub.c": {"slicelab.service.a", "slicelab.service.b"},
        "slicelab.workers": {"slicelab.service.sub.c"},
    }
    assert modules["slicelab.service.b"].private_imports == {("slicelab.service.a", "_x")}
    assert import_cycles(modules) == [frozenset({"slicelab.service.a", "slicelab.service.b"})]
    assert long_functions(modules["slicelab.service.a"]) == {"service/a.py::f": MAX_FUNCTION_LINES + 2}


def test_no_import_cycles():
    new = [sorted(c) for c in _offenders()["cycles"]]
    assert not new, f"import cycles (break them; a function-level import counts too): {new}"


def test_no_private_name_is_imported_from_another_module():
    new = sorted(_offenders()["private"])
    assert not new, f"private names imported across modules (make them public where shared): {new}"


def test_modules_stay_under_the_line_limit():
    sizes = {m.rel: m.lines for m in MODULES.values()}
    new = {rel: sizes[rel] for rel in sorted(_offenders()["modules"])}
    assert not new, f"modules over {MAX_MODULE_LINES} lines (split them by concern): {new}"


def test_functions_stay_under_the_line_limit():
    lengths = {f: n for m in MODULES.values() for f, n in long_functions(m).items()}
    new = {f: lengths[f] for f in sorted(_offenders()["functions"])}
    assert not new, f"functions over {MAX_FUNCTION_LINES} lines: {new}"


def test_statistics_module_imports_nothing_from_slicelab_but_errors():
    assert MODULES["slicelab.service.stats"].imports <= {"slicelab.service.errors"}
