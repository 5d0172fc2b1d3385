"""The package's shape: no import cycles, no TYPE_CHECKING detours, and the README's Layout tree is the file tree."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "src" / "codec2vec"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PKG.rglob("*.py")}


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The package module an import names (`a.b.c` -> the longest prefix that is one of ours)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def _imports(path: Path, modules: dict[str, Path], *, top_level_only: bool) -> set[str]:
    """codec2vec modules imported by `path` (`from a import b` counts `a.b` when that is a module)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    me = _module_name(path)
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module
            if node.level:  # relative import
                pkg = me if path.name == "__init__.py" else me.rpartition(".")[0]
                for _ in range(node.level - 1):
                    pkg = pkg.rpartition(".")[0]
                base = f"{pkg}.{node.module}"
            names = [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for n in names:
            target = _resolve(n, modules)
            if target and target != me:
                found.add(target)
    return found


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle_among_modules() -> None:
    """Module-level imports form no cycle (a package's `__init__` re-exporting its own modules is not a cycle:
    the edge from a module back to its parent package is what we forbid)."""
    modules = _modules()
    graph = {m: _imports(p, modules, top_level_only=True) for m, p in modules.items()}
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_the_cycle_finder_finds_cycles() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_type_checking_detours() -> None:
    offenders = [str(p.relative_to(ROOT)) for p in PKG.rglob("*.py") if "TYPE_CHECKING" in p.read_text()]
    assert not offenders, f"imports hidden behind TYPE_CHECKING (import the module at the top): {offenders}"


def _layout_block() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Layout", 1)[1]
    block = re.search(r"```(?:text)?\n(.*?)```", section, re.S)
    assert block, "README's Layout section holds the tree in a fenced block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_readme_layout_is_the_file_tree() -> None:
    """One line per top-level file, one line per folder listing its modules; nothing missing, nothing extra."""
    lines = _layout_block()
    assert lines[0].strip() == "src/codec2vec/"
    listed_top: set[str] = set()
    for line in lines[1:]:
        name = line.split()[0]
        listed_top.add(name)
        if name.endswith("/"):
            folder = PKG / name.rstrip("/")
            # "store/  store writer labels ... : what the folder is for" lists its modules before the colon
            modules = set(line.split(":", 1)[0].split()[1:])
            actual = {p.stem for p in folder.glob("*.py") if p.stem != "__init__"} | {
                p.name + "/" for p in folder.iterdir() if p.is_dir() and p.name != "__pycache__"
            }
            assert modules == actual, f"README lists {sorted(modules)} in {name}, the folder has {sorted(actual)}"
    actual_top = {p.name + ("/" if p.is_dir() else "") for p in PKG.iterdir() if p.name != "__pycache__"}
    assert listed_top == actual_top, (
        f"missing from README: {sorted(actual_top - listed_top)}; not in the tree: {sorted(listed_top - actual_top)}"
    )


def test_no_store_parameter_is_typed_any() -> None:
    """A store is a `TokenStore` (or the store's own `StoreHandle` Protocol), never `Any`: no parameter, attribute
    or return annotation of a store (`store`, `dev_store`, `self._store`, `stores: dict[str, Any]`, a function
    `*_store` returning `Any`) names `Any`, written plainly or as a string."""
    pkg = Path(__file__).resolve().parents[1] / "src" / "codec2vec"
    store_name = re.compile(r"^_?(\w+_)?stores?$")

    def says_any(annotation: ast.expr | None) -> bool:
        if annotation is None:
            return False
        text = annotation.value if isinstance(annotation, ast.Constant) else ast.unparse(annotation)
        return bool(re.search(r"\bAny\b", str(text)))

    found = []
    for path in sorted(pkg.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.arg) and store_name.match(node.arg) and says_any(node.annotation):
                found.append(f"{path.relative_to(pkg)}:{node.lineno}: {node.arg}")
            elif isinstance(node, ast.AnnAssign) and says_any(node.annotation):
                target = node.target.attr if isinstance(node.target, ast.Attribute) else ast.unparse(node.target)
                if store_name.match(target):
                    found.append(f"{path.relative_to(pkg)}:{node.lineno}: {target}")
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and store_name.match(node.name):
                if says_any(node.returns) and not ast.unparse(node.returns or node).startswith("dict"):
                    found.append(f"{path.relative_to(pkg)}:{node.lineno}: {node.name}() ->")
    assert not found, "stores typed Any (use TokenStore or store.handle.StoreHandle): " + "; ".join(found)


def test_no_private_name_is_imported_from_another_module() -> None:
    """`from codec2vec.x import _name` only inside x itself: what another module needs is public (documented in
    its module) or lives in the module that uses it. Dunders (`__version__`) are not private."""
    pkg = Path(__file__).resolve().parents[1] / "src" / "codec2vec"

    def module(path: Path) -> str:
        parts = list(path.relative_to(pkg.parent).with_suffix("").parts)
        return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)

    found = []
    for path in sorted(pkg.rglob("*.py")):
        me = module(path)
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom) or node.level or not (node.module or "").startswith("codec2vec"):
                continue
            for alias in node.names:
                private = alias.name.startswith("_") and not alias.name.startswith("__")
                if private and node.module != me:
                    found.append(f"{path.relative_to(pkg)}:{node.lineno}: from {node.module} import {alias.name}")
    assert not found, "private names imported across modules: " + "; ".join(found)
