"""Private stores: a clear store's named rejects do not survive going private, rejects beside the id map are
0600, and an id map that is not ours is refused before anything is written."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from codec2vec.cli import main
from codec2vec.store import TokenStore
from conftest import make_store, one_line_error


def test_private_into_an_empty_clear_store_drops_its_named_rejects(tmp_path: Path, short_clips: Path) -> None:
    from codec2vec.tokenize import TokenizeOptions, tokenize

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "secret_meeting_alice.wav").write_text("not audio")
    out = tmp_path / "st"
    tokenize([str(bad)], out, TokenizeOptions(codec="lyra"), progress=False)  # a clear store, empty, one reject
    assert "secret_meeting_alice" in (out / "rejects.jsonl").read_text()
    tokenize([str(short_clips)], out, TokenizeOptions(codec="lyra", private=True), progress=False)
    assert TokenStore.open(out).meta.get("private") and len(TokenStore.open(out)) == 6
    leaked = [p for p in out.rglob("*") if p.is_file() and b"secret_meeting" in p.read_bytes()]
    assert not leaked


def test_private_rejects_beside_the_id_map_are_0600(tmp_path: Path, short_clips: Path) -> None:
    from codec2vec.tokenize import TokenizeOptions, tokenize

    src = tmp_path / "src"
    src.mkdir()
    (src / "a.wav").write_bytes((short_clips / "c0.wav").read_bytes())
    (src / "broken.wav").write_text("not audio")
    out = tmp_path / "st"
    tokenize([str(src)], out, TokenizeOptions(codec="lyra", private=True), progress=False)
    rejects = tmp_path / "st.ids.rejects.jsonl"
    assert "broken.wav" in rejects.read_text()
    assert stat.S_IMODE(rejects.stat().st_mode) == 0o600


@pytest.mark.parametrize("content", ['{"id": "a", "path": "x.wav", "label": "yes"}\n', "this is not json\n"])
def test_an_id_map_that_is_not_ours_is_refused_before_anything_is_written(
    tmp_path: Path, short_clips: Path, capsys, content: str
) -> None:
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text(content)
    os.chmod(manifest, 0o644)
    out = tmp_path / "st"
    assert main(["tokenize", str(short_clips), "--out", str(out), "--private", "--id-map", str(manifest)]) == 2
    one_line_error(capsys, str(manifest), "not a codec2vec id map")
    assert manifest.read_text() == content and stat.S_IMODE(manifest.stat().st_mode) == 0o644
    assert not out.exists() and not (tmp_path / "st.key").exists()
    src = make_store(tmp_path / "src", {"u1": 20}).root
    argv = ["anonymize", str(src), "--out", str(tmp_path / "anon"), "--private", "--id-map", str(manifest)]
    assert main(argv) == 2
    one_line_error(capsys, "not a codec2vec id map")
    assert manifest.read_text() == content and not (tmp_path / "anon.key").exists()
