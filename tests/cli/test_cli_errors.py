"""Refusals of the verbs that write: an `--out` naming a file, an output, key file or id map inside an input
store (nothing written, one line), and a `rejects.jsonl` with broken lines."""

from __future__ import annotations

from pathlib import Path

from codec2vec.cli import main
from codec2vec.store import TokenStore
from codec2vec.tokenize import tokenize
from conftest import lyra_options, make_store, one_line_error


def test_an_out_naming_a_file_is_refused_and_broken_rejects_lines_are_skipped(
    tmp_path: Path, short_clips: Path, capsys
) -> None:
    a_file = tmp_path / "a_file"
    a_file.write_text("mine")
    assert main(["tokenize", str(short_clips / "c0.wav"), "--out", str(a_file)]) == 2
    s = make_store(tmp_path / "s", {"a": 3})
    assert main(["decode", str(s.root), "--out", str(a_file)]) == 2
    assert main(["merge", str(s.root), "--out", str(a_file)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all("a_file" in e and "unexpected" not in e for e in err)
    assert a_file.read_text() == "mine"
    store = tmp_path / "store"
    tokenize([str(short_clips / "c0.wav")], store, lyra_options(), progress=False)
    (store / "rejects.jsonl").write_text('{"path": "x.wav", "reason": "r"}\n{"path": broken\n')
    summary = tokenize([str(short_clips)], store, lyra_options(), progress=False)
    assert summary["stored"] == 5 and "unreadable line skipped" in capsys.readouterr().err


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_no_output_lands_inside_an_input_store(tmp_path: Path, capsys) -> None:
    src = make_store(tmp_path / "src", {"u1": 20, "u2": 30}).root
    other = make_store(tmp_path / "other", {"u3": 20}).root
    before = _files(src)
    calls = [
        ["anonymize", str(src), "--out", str(tmp_path / "a"), "--scramble-key", str(src / "shards" / "key.c2s")],
        ["anonymize", str(src), "--out", str(tmp_path / "a"), "--private-key", str(src / "k.key")],
        ["anonymize", str(src), "--out", str(tmp_path / "a"), "--private", "--id-map", str(src / "ids.jsonl")],
        ["anonymize", str(src), "--out", str(src / "labels" / "anon")],
        ["merge", str(src), str(other), "--out", str(src / "merged")],
        ["decode", str(src), "--out", str(src / "shards")],
    ]
    for argv in calls:
        assert main(argv) == 2, argv
        one_line_error(capsys, "inside the input")
        assert _files(src) == before, argv
    assert not TokenStore.open(src).verify()


def test_a_reader_that_leaves_early_is_no_traceback(tmp_path: Path) -> None:
    """`codec2vec info STORE | head -1`: stdout's reader has gone before the verb prints."""
    import os
    import subprocess
    import sys

    s = make_store(tmp_path / "s", {"a": 3})
    read_end, write_end = os.pipe()
    os.close(read_end)  # every write to the pipe now fails with EPIPE
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "codec2vec", "info", str(s.root)], stdout=write_end, stderr=subprocess.PIPE
        )
    finally:
        os.close(write_end)
    assert proc.returncode == 141 and b"Traceback" not in proc.stderr and b"BrokenPipe" not in proc.stderr
