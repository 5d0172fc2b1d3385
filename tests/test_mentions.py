"""What the docs name exists: every file of the project that a docstring or comment in `src/`, the README or
`docs/*.md` mentions is in the repo, and none of them points at notes outside it.

The rule for a mention such as `pretrain/loop.py`, `configs/demo.yaml` or `tests/store/test_repair.py`:

- checked: names of the project's own kinds of files (`.py`, `.yaml`, `.yml`, `.md`, `.sh`, `.toml`,
  `.sbatch`), and any name under one of the repo's top folders (`src/`, `tests/`, `docs/`, `configs/`,
  `benchmarks/`, `examples/`) whatever its kind;
- a mention resolves relative to the mentioning file's folder (a module's package folder, `docs/`, the repo
  root for the README), to `src/codec2vec/` or to the repo root, or, failing those, as the tail of exactly one
  path under `src/`, `benchmarks/` or `examples/` (`online.py`, `targets/online.py`,
  `tokenize.sbatch`); a tail that two files share must be qualified;
- not checked: data and artifact names (`.json`, `.jsonl`, `.png`, `.safetensors`, ...: files in a user's
  store or run folder); names with a placeholder or pattern (`STORE/`, `OUT/`, `*`, `<id>`).
- allowed without a file here: `ARTIFACTS` (files of that kind a run or an export writes) and `EXTERNAL`
  (files of other projects the code follows or plugs into).
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "codec2vec"
CODE_KINDS = (".py", ".yaml", ".yml", ".md", ".sh", ".toml", ".sbatch")
TOP_FOLDERS = ("src/", "tests/", "docs/", "configs/", "benchmarks/", "examples/")
# Files of these names are written by a run, an export or a demo (not files of the repo).
ARTIFACTS = {"config.yaml", "README.md"}
# Files of other projects: fairseq's HuBERT and wav2vec recipes, DinoSR, s3prl's upstream interface.
EXTERNAL = {
    "simple_kmeans/learn_kmeans.py",
    "dump_mfcc_feature.py",
    "wav2vec_manifest.py",
    "models/dinosr.py",
    "hubconf.py",
    "run_downstream.py",
    "s3prl/upstream/interfaces.py",
    "s3prl/upstream/codec2vec/expert.py",
    "upstream/example/expert.py",
}
MENTION = re.compile(r"(?<![\w./<>{}*$-])((?:[\w.-]+/)*[\w-][\w.-]*\.[a-z][a-z0-9]*)(?![\w/*<>{}])")
PLACEHOLDER = re.compile(r"(^|/)[A-Z][A-Z_]*(/|\.)")  # STORE/, OUT/, DIR/, ROOT/, RUN/, OUT.key, ...
# Notes outside the repo: `../shared/codecs/` (the Lyra weights and speech the `run` script and the tests use
# when present) is a real lookup location, any other `shared/` is a pointer outside the project.
OUTSIDE = re.compile(r"\bissue\s*#?\s*\d+|DESIGN\.md|REFERENCE\.md|(?<!\.\./)\bshared/", re.IGNORECASE)


def _python_texts(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every comment and docstring (module, class, function) of a Python file."""
    source = path.read_text()
    out = [
        (tok.start[0], tok.string)
        for tok in tokenize.generate_tokens(io.StringIO(source).readline)
        if tok.type == tokenize.COMMENT
    ]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=False)
            if doc is not None:
                out.append((node.body[0].lineno, doc))
    return out


def _texts() -> list[tuple[Path, int, str]]:
    """(file, line, text) of the prose the checks read: src comments and docstrings, README, docs."""
    out = [(p, line, t) for p in sorted(PACKAGE.rglob("*.py")) for line, t in _python_texts(p)]
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        out += [(doc, n, line) for n, line in enumerate(doc.read_text().splitlines(), 1)]
    return out


def _checked(name: str) -> bool:
    if PLACEHOLDER.search(name) or name in ARTIFACTS or name in EXTERNAL:
        return False
    return name.endswith(CODE_KINDS) or name.startswith(TOP_FOLDERS)


def _resolves(name: str, mentioned_in: Path, tails: dict[str, int]) -> bool:
    for base in (mentioned_in.parent, PACKAGE, ROOT):
        if (base / name).exists():
            return True
    return tails.get(name.lstrip("./"), 0) == 1


def _tails() -> dict[str, int]:
    """Every path tail (`online.py`, `targets/online.py`, ...) of the files under `src/`, `benchmarks/` and
    `examples/` -> how many files end so."""
    counts: dict[str, int] = {}
    files = [p for top in ("src", "benchmarks", "examples") for p in (ROOT / top).rglob("*")]
    for p in files:
        if p.is_file() and "__pycache__" not in p.parts:
            parts = p.relative_to(ROOT).parts[1:]
            for i in range(len(parts)):
                tail = "/".join(parts[i:])
                counts[tail] = counts.get(tail, 0) + 1
    return counts


def test_every_file_the_docs_mention_exists() -> None:
    tails = _tails()
    stale = [
        f"{path.relative_to(ROOT)}:{line}: {name}"
        for path, line, text in _texts()
        for name in MENTION.findall(text)
        if _checked(name) and not _resolves(name, path, tails)
    ]
    assert not stale, "mentions of files that are not in the repo:\n" + "\n".join(stale)


def test_the_mention_rule_catches_stale_and_ambiguous_names() -> None:
    tails = _tails()
    here = PACKAGE / "pretrain" / "loop.py"
    found = MENTION.findall("see `pretrain/loop.py`, targets/online.py, (store.py) and STORE/meta.json; store.open()")
    assert found == ["pretrain/loop.py", "targets/online.py", "store.py", "STORE/meta.json", "store.open"]
    assert [_checked(n) for n in found] == [True, True, True, False, False]
    assert _resolves("pretrain/loop.py", here, tails) and _resolves("targets/online.py", here, tails)
    assert not _resolves("store.py", here, tails)  # store/store.py and cli/store.py: qualify it
    assert _resolves("store.py", PACKAGE / "cli" / "__init__.py", tails)  # the mentioning package's own
    assert not _resolves("pretrain/frontends.py", here, tails) and not _resolves("tests/test_nothing.py", here, tails)
    assert not _checked("STORE/meta.json") and not _checked("metrics.jsonl") and _checked("tests/data/x.json")


def test_no_docstring_comment_or_doc_points_outside_the_repo() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line}: {m.group(0)}"
        for path, line, text in _texts()
        for m in OUTSIDE.finditer(text)
    ]
    assert not found, "pointers to notes outside the repo:\n" + "\n".join(found)
    assert OUTSIDE.search("see Issue 12") and OUTSIDE.search("as in DESIGN.md") and OUTSIDE.search("shared/x")
    assert not OUTSIDE.search("uses ../shared/codecs/lyra-v2 when present; copy_shared_modules")
