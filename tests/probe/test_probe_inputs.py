"""`probe` inputs: task rows without the task's field and bad epoch counts are one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

from codec2vec.cli import main
from conftest import one_line_error, tiny_checkpoint


def _task_folder(root: Path, rows: list[dict]) -> Path:
    root.mkdir(parents=True)
    for split in ("train", "dev", "test"):
        (root / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def test_probe_rows_without_the_tasks_field_and_bad_epochs_are_one_line(tmp_path: Path, capsys) -> None:
    ckpt = tiny_checkpoint(tmp_path / "ckpt")
    sid = _task_folder(tmp_path / "sid", [{"id": "a", "path": "a.wav", "label": "s1"}, {"id": "b", "path": "b.wav"}])
    assert main(["probe", "sid", "--ckpt", str(ckpt), "--data", str(sid), "--cache-dir", str(tmp_path / "c")]) == 2
    one_line_error(capsys, "train.jsonl:2", "label")
    assert main(["probe", "pr", "--ckpt", str(ckpt), "--data", str(sid), "--cache-dir", str(tmp_path / "c")]) == 2
    one_line_error(capsys, "train.jsonl", "phones")
    for epochs in ("0", "-1"):
        argv = ["probe", "sid", "--ckpt", str(ckpt), "--data", str(sid), "--max-epochs", epochs]
        assert main(argv) == 2
        one_line_error(capsys, "--max-epochs")
