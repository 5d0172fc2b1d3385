"""`demo` writes only into its own folder: a user's folder is refused untouched, a new one is claimed with the
marker, an old demo folder is adopted."""

from __future__ import annotations

from pathlib import Path

from codec2vec.cli import main
from conftest import one_line_error


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_demo_refuses_a_users_folder_before_writing_anything(tmp_path: Path, capsys) -> None:
    user = tmp_path / "mine"
    (user / "tasks" / "pr").mkdir(parents=True)
    (user / "tasks" / "pr" / "train.jsonl").write_text('{"id": "precious"}\n')
    (user / "corpus").mkdir()
    (user / "corpus" / "thesis.wav").write_bytes(b"RIFF....")
    (user / "results.json").write_text("{}")
    before = _tree(user)
    assert main(["demo", "--out", str(user), "--small"]) == 2
    one_line_error(capsys, str(user), "not a codec2vec demo folder")
    assert _tree(user) == before
    (tmp_path / "afile").write_text("x")
    assert main(["demo", "--out", str(tmp_path / "afile"), "--small"]) == 2
    one_line_error(capsys, "not a folder")
    from codec2vec.demo.stages import MARKER, claim_folder

    fresh = tmp_path / "fresh"  # absent (or empty): claimed with the marker, then resumable
    claim_folder(fresh)
    assert (fresh / MARKER).is_file()
    (fresh / "stages").mkdir()
    (fresh / "stages" / "synth.json").write_text("{}")
    claim_folder(fresh)  # its own folder: resumed
    old = tmp_path / "old_demo"  # a demo folder of a version before the marker
    (old / "stages").mkdir(parents=True)
    (old / "corpus").mkdir()
    (old / "stages" / "synth.json").write_text("{}")
    claim_folder(old)
    assert (old / MARKER).is_file()
