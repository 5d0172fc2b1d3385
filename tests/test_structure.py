"""The package's shape: no import cycles, no TYPE_CHECKING detours, and the README's Layout tree is the file tree."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "src" / "codec2vec"


def _module_name(path: Path, pkg: Path = PKG) -> str:
    parts = list(path.relative_to(pkg.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The package module an import names (`a.b.c` -> the longest prefix that is one of ours)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def _origins(init: Path, modules: dict[str, Path]) -> dict[str, str]:
    """Names a package's `__init__` imports from one of our modules (a re-export), each with that module."""
    found: dict[str, str] = {}
    for node in ast.walk(ast.parse(init.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:
                origin = _resolve(f"{node.module}.{a.name}", modules)
                if origin:
                    found[a.asname or a.name] = origin
    return found


def _imports(path: Path, modules: dict[str, Path], pkg: Path = PKG) -> set[str]:
    """Our modules that `path` imports anywhere: at module level and inside functions (`ast.walk`).

    `from a import b` counts `a.b` when that is a module. A module that imports a name from its own package
    (`from codec2vec.store import TokenStore` inside `store/`) counts the `__init__` only when the `__init__`
    defines that name itself; a name it re-exports counts the module it comes from, so a package `__init__`
    re-exporting its own submodules is not a circle."""
    me = _module_name(path, pkg)
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [_resolve(a.name, modules) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and (node.module or node.level):
            base = node.module or ""
            if node.level:  # relative import
                pkg = me if path.name == "__init__.py" else me.rpartition(".")[0]
                for _ in range(node.level - 1):
                    pkg = pkg.rpartition(".")[0]
                base = f"{pkg}.{base}" if base else pkg
            targets = [_from_target(me, base, a.name, modules) for a in node.names]
        else:
            continue
        found |= {t for t in targets if t and t != me}
    return found


def _from_target(me: str, base: str, name: str, modules: dict[str, Path]) -> str | None:
    """The module `from base import name` in module `me` depends on."""
    if f"{base}.{name}" in modules:
        return f"{base}.{name}"
    target = _resolve(base, modules)
    if target and me.startswith(target + ".") and modules[target].name == "__init__.py":
        return _origins(modules[target], modules).get(name, target)  # own package: only what it defines itself
    return target


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


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per group of modules that import each other (a strongly connected component), so a failure
    names every circle at once."""
    out: list[list[str]] = []
    done: set[str] = set()
    while found := _cycle({m: {n for n in e if n not in done} for m, e in graph.items() if m not in done}):
        out.append(found)
        done |= set(found)
    return out


def _graph(pkg: Path) -> dict[str, set[str]]:
    modules = {_module_name(p, pkg): p for p in pkg.rglob("*.py")}
    return {m: _imports(p, modules, pkg) for m, p in modules.items()}


def test_no_import_circle_counting_imports_inside_functions() -> None:
    """No circle between modules, counting every import: those at the top and those inside functions. An import
    may stay inside a function for start-up time (torch, the codecs) or an optional dependency (faiss,
    transformers, matplotlib), never to hide a circle: the code moves to the module that owns it instead."""
    circles = _cycles(_graph(PKG))
    assert not circles, "import circles: " + "; ".join(" -> ".join(c) for c in circles)


def test_the_import_reader_sees_imports_inside_functions(tmp_path: Path) -> None:
    pkg = tmp_path / "codec2vec"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from codec2vec.b import f\n")
    (pkg / "b.py").write_text("def f():\n    from codec2vec import a\n    return a\n")  # hidden in a function
    (pkg / "sub" / "__init__.py").write_text("from codec2vec.sub.x import X\n\nLIMIT = 3\n")
    (pkg / "sub" / "x.py").write_text("from codec2vec.sub import LIMIT\n\nX = LIMIT\n")  # defined by the __init__
    (pkg / "sub" / "y.py").write_text("from codec2vec.sub import X\n")  # re-exported: y -> sub.x, not a circle
    graph = _graph(pkg)
    assert graph["codec2vec.b"] == {"codec2vec.a"} and graph["codec2vec.sub.y"] == {"codec2vec.sub.x"}
    assert sorted(sorted(set(c)) for c in _cycles(graph)) == [
        ["codec2vec.a", "codec2vec.b"],
        ["codec2vec.sub", "codec2vec.sub.x"],
    ]


def test_the_cycle_finder_finds_cycles() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"c"}, "e": {"a"}}) == [["a", "b", "a"], ["c", "d", "c"]]


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


def test_modules_and_functions_stay_small() -> None:
    """No module over 400 lines and no function (decorators included) over 80: small files a reader takes in whole."""
    big_modules, big_functions = [], []
    for path in sorted(PKG.rglob("*.py")):
        text = path.read_text()
        if len(text.splitlines()) > 400:
            big_modules.append(f"{path.relative_to(ROOT)} ({len(text.splitlines())} lines)")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno is not None:
                first = node.decorator_list[0].lineno if node.decorator_list else node.lineno
                if node.end_lineno - first + 1 > 80:
                    big_functions.append(f"{path.relative_to(ROOT)}:{node.name} ({node.end_lineno - first + 1} lines)")
    assert not big_modules and not big_functions, f"over 400 lines: {big_modules}; over 80 lines: {big_functions}"


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
