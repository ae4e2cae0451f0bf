"""Reads Stratus's own imports from the source (ast, nothing is imported) and checks them against the layout of
docs/architecture-notes.md ("Layout: floors, and what may import what"). tests/unit/test_layering.py runs it."""
from __future__ import annotations

import ast
import dataclasses
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("core", "scheduler", "drivers", "tasks", "app", "metadata", "proxies", "harness", "bench", "tests")
ROOT_MODULES = ("celeryconfig", "gunicorn.conf")

# What each package may import of Stratus (a prefix allows the module and everything under it).
ALLOWED: dict[str, tuple[str, ...]] = {
    "core": ("core",),
    "scheduler": ("scheduler",),
    "drivers": ("drivers", "core.settings", "core.power_state", "core.metadata_docs", "core.file_lock"),
    "tasks": ("core", "scheduler", "drivers", "tasks", "celeryconfig"),
    "app": ("core", "scheduler", "drivers", "tasks", "app"),
    "metadata": ("core", "scheduler", "drivers", "tasks", "metadata"),
    "proxies": ("core", "scheduler", "drivers", "tasks", "proxies"),
    "celeryconfig": ("core",),
    "bench": ("core", "scheduler", "drivers", "tasks", "app", "metadata", "proxies", "harness", "bench"),
}
# Packages that never import a web framework, directly or through another module.
NO_FLASK = ("core", "scheduler", "drivers", "tasks")
FLASK_MODULES = ("flask", "flask_migrate", "flask_sqlalchemy", "werkzeug", "marshmallow", "apispec")
# The conductor's write helpers, and who may call them: the conductor, the beat tasks it runs, the conductor's
# side of start-up reconciliation, the `flask stratus` commands and the claim benchmark.
# Compute hosts have no database (issue 25): the modules a compute worker loads (tasks/compute_worker.py's
# COMPUTE_MODULES, the drivers) and every Stratus module they reach through imports, nested ones included, import
# neither the DB layer nor a database library.
COMPUTE_SIDE = ("tasks.compute_worker", "tasks.compute", "tasks.compute_actions", "drivers")
DB_LAYER = ("core.db", "core.models", "core.writes")
DB_LIBRARIES = ("sqlalchemy", "flask_sqlalchemy", "flask_migrate", "alembic", "psycopg", "psycopg2", "pymysql",
                "MySQLdb", "sqlite3")
WRITE_HELPERS = "core.writes"
WRITERS = ("core.writes", "tasks.conductor", "tasks.periodic", "tasks.reconcile", "app.cli", "bench")


@dataclasses.dataclass(frozen=True)
class Import:
    source: str  # importing module
    target: str  # imported Stratus module (the most specific module file that exists)
    names: tuple[str, ...]  # names taken with `from target import ...` (empty for `import target`)
    line: int
    nested: bool  # inside a function or class body


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def sources(root: Path = ROOT, packages: Iterable[str] = PACKAGES) -> dict[str, Path]:
    found = {module_name(p, root): p for pkg in packages for p in sorted((root / pkg).rglob("*.py"))}
    for name in ROOT_MODULES:
        path = root / f"{name}.py"
        if path.is_file():
            found[name] = path
    return found


def _resolve(dotted: str, known: dict[str, Path]) -> str | None:
    """The Stratus module `dotted` names, or its nearest existing parent; None for outside code."""
    parts = dotted.split(".")
    while parts:
        name = ".".join(parts)
        if name in known:
            return name
        parts.pop()
    return None


def _absolute(node: ast.ImportFrom, module: str, path: Path) -> str:
    if not node.level:
        return node.module or ""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = package[:len(package) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(module: str, path: Path, known: dict[str, Path]) -> list[Import]:
    tree = ast.parse(path.read_text(), str(path))
    typing_only = {n.lineno for block in ast.walk(tree) if isinstance(block, ast.If) and _is_type_checking(block.test)
                   for stmt in block.body for n in ast.walk(stmt)}
    nested_lines = {n.lineno for fn in ast.walk(tree)
                    if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                    for n in ast.walk(fn) if isinstance(n, (ast.Import, ast.ImportFrom)) and n is not fn}
    found = []
    for node in ast.walk(tree):
        if getattr(node, "lineno", 0) in typing_only:  # annotations only: never run (import-linter skips them too)
            continue
        nested = getattr(node, "lineno", 0) in nested_lines
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _resolve(alias.name, known)
                if target:
                    found.append(Import(module, target, (), node.lineno, nested))
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, module, path)
            for alias in node.names:
                submodule = _resolve(f"{base}.{alias.name}", known)
                if submodule == f"{base}.{alias.name}":  # `from pkg import module`
                    found.append(Import(module, submodule, (), node.lineno, nested))
                else:
                    target = _resolve(base, known)
                    if target:
                        found.append(Import(module, target, (alias.name,), node.lineno, nested))
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return getattr(test, "id", getattr(test, "attr", None)) == "TYPE_CHECKING"


def outside_imports(path: Path) -> set[str]:
    """Top-level names of the non-Stratus packages a file imports (anywhere in it)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.split(".")[0])
    return names


def private_attribute_uses(module: str, path: Path, known: dict[str, Path]) -> list[str]:
    """`alias._name` where alias is bound by an import to another Stratus module."""
    tree = ast.parse(path.read_text())
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.asname and a.name in known:
                    aliases[a.asname] = a.name
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, module, path)
            for a in node.names:
                if f"{base}.{a.name}" in known:
                    aliases[a.asname or a.name] = f"{base}.{a.name}"
    return [f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}:{node.lineno} "
            f"{node.value.id}.{node.attr}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
            and aliases[node.value.id] != module and node.attr.startswith("_") and not node.attr.startswith("__")]


def defines_blueprint(path: Path) -> bool:
    return any(isinstance(n, ast.Call) and getattr(n.func, "id", getattr(n.func, "attr", None)) == "Blueprint"
               for n in ast.walk(ast.parse(path.read_text())))


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module, or a module importing itself (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in edges.get(v, ()):
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def _package(module: str) -> str:
    return module.split(".")[0]


def _within(module: str, prefixes: Iterable[str]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def violations(root: Path = ROOT) -> dict[str, list[str]]:
    """Every broken rule, by rule name; empty lists when the tree keeps the layout."""
    known = sources(root)
    product = {m: p for m, p in known.items() if _package(m) not in ("tests",)}
    imports = [imp for m, p in product.items() for imp in imports_of(m, p, known)]
    views = {m for m, p in product.items() if _package(m) in ("app", "metadata") and defines_blueprint(p)}
    where = {m: p.relative_to(root) for m, p in known.items()}

    def at(imp: Import) -> str:
        return f"{where[imp.source]}:{imp.line} imports {imp.target}" + (f" ({', '.join(imp.names)})" if imp.names
                                                                          else "")
    found: dict[str, list[str]] = {}
    found["upward or sideways import"] = [
        at(i) for i in imports
        if _package(i.source) in ALLOWED and _package(i.source) != "harness"
        and not _within(i.target, ALLOWED[_package(i.source)])]
    found["import of a web framework below the HTTP layer"] = [
        f"{where[m]} imports {sorted(outside_imports(p) & set(FLASK_MODULES))}" for m, p in product.items()
        if _package(m) in NO_FLASK and outside_imports(p) & set(FLASK_MODULES)]
    found["views module imported outside create_app"] = [  # app/__init__.py and metadata/__init__.py
        at(i) for i in imports if i.target in views and i.source not in ("app", "metadata")]
    found["private name imported from another module"] = [
        at(i) for i in imports if any(n.startswith("_") and not n.startswith("__") for n in i.names)
        and i.target != i.source]
    found["private attribute of another module"] = [
        use for m, p in product.items() for use in private_attribute_uses(m, p, known)]
    found["write helpers imported outside the conductor"] = [
        at(i) for i in imports if _within(i.target, (WRITE_HELPERS,)) and not _within(i.source, WRITERS)]
    found["bench imports tests"] = [at(i) for i in imports if _package(i.source) == "bench"
                                    and _package(i.target) == "tests"]
    edges: dict[str, set[str]] = {}
    for i in imports:
        if i.target != i.source:
            edges.setdefault(i.source, set()).add(i.target)
    found["import cycle"] = [" -> ".join(c) for c in cycles(edges)]
    found["database on the compute side"] = compute_side_db_imports(product, edges)
    return found


def compute_side_db_imports(product: dict[str, Path], edges: dict[str, set[str]]) -> list[str]:
    """Each module a compute worker reaches (from COMPUTE_SIDE, through Stratus imports) that is the DB layer or
    imports a database library, with the chain of imports that reaches it."""
    parent: dict[str, str | None] = {m: None for m in product if _within(m, COMPUTE_SIDE)}
    todo = sorted(parent)
    while todo:
        m = todo.pop()
        for target in sorted(edges.get(m, ())):
            if target not in parent:
                parent[target] = m
                todo.append(target)

    def chain(m: str) -> str:
        path = [m]
        while parent[path[-1]] is not None:
            path.append(parent[path[-1]])
        return " -> ".join(reversed(path))
    found = []
    for m in sorted(parent):
        libraries = sorted(outside_imports(product[m]) & set(DB_LIBRARIES)) if m in product else []
        if _within(m, DB_LAYER) or libraries:
            found.append(f"{chain(m)}" + (f" imports {', '.join(libraries)}" if libraries else " (the DB layer)"))
    return found
