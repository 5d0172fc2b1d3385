"""`codec2vec labels export|import`: a store's label set <-> HuBERT's `.km` + `dict.km.txt` (+ ids, fairseq tsv)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import fake_info


def _store(root: Path):
    from codec2vec.store import TokenStore

    store = TokenStore.create(root, fake_info(4, 16, name="lyra", config={"k": 4}), torch.randn(4, 16, 3))
    rng = np.random.default_rng(0)
    frames = {"spk1/b": 31, "spk1/a": 12, "spk2/c": 50, "spk2/d": 7}
    with store.writer() as w:
        for n, (uid, t) in enumerate(frames.items()):
            split = "dev" if n == 3 else "train"
            w.add(uid, rng.integers(0, 16, (4, t)), seconds=t / 50, source=f"/corpus/{uid}.wav", extra={"split": split})
    labels = {uid: rng.integers(0, 7, t) for uid, t in frames.items()}
    store.write_labels("km", labels, 7)
    return TokenStore.open(root), labels


def test_export_then_import_round_trips(tmp_path: Path) -> None:
    from codec2vec.cli import main
    from codec2vec.store import TokenStore

    store, labels = _store(tmp_path / "store")
    inside = tmp_path / "store" / "labels"  # an output inside the store would be a foreign file there
    assert main(["labels", "export", str(tmp_path / "store"), "--name", "km", "--out", str(inside)]) == 2
    assert not list(inside.glob("*.km"))
    assert main(["labels", "export", str(tmp_path / "store"), "--name", "km", "--out", str(tmp_path / "hub")]) == 0
    km = (tmp_path / "hub" / "all.km").read_text().splitlines()
    ids = (tmp_path / "hub" / "all.ids").read_text().splitlines()
    assert ids == store.ids() == ["spk1/b", "spk1/a", "spk2/c", "spk2/d"]  # the store's (manifest) order
    for uid, line in zip(ids, km, strict=True):
        assert [int(x) for x in line.split()] == labels[uid].tolist()
    vocab = [line.split() for line in (tmp_path / "hub" / "dict.km.txt").read_text().splitlines()]
    assert [int(s) for s, _ in vocab] == list(range(7))
    assert sum(int(c) for _, c in vocab) == sum(len(v) for v in labels.values())
    tsv = (tmp_path / "hub" / "all.tsv").read_text().splitlines()
    assert tsv[0] == "/corpus" and tsv[1] == "spk1/b.wav\t9920"  # 31 frames at 50/s = 0.62 s at 16 kHz

    s = str(tmp_path / "store")
    hub = tmp_path / "hub"
    assert main(["labels", "import", s, "--km", str(hub / "all.km"), "--ids", str(hub / "all.ids"), "--name", "a"]) == 0
    assert main(["labels", "import", s, "--km", str(hub / "all.km"), "--tsv", str(hub / "all.tsv"), "--name", "b"]) == 0
    again = TokenStore.open(s)
    for name in ("a", "b"):
        assert again.labels(name).num_classes == 7
        for uid, lab in labels.items():
            assert again.labels(name)[uid].tolist() == lab.tolist()
    assert again.verify() == []

    assert main(["labels", "export", s, "--name", "km", "--out", str(tmp_path / "dev"), "--split", "dev"]) == 0
    assert (tmp_path / "dev" / "dev.ids").read_text() == "spk2/d\n"


def test_import_errors_name_the_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from codec2vec.cli import main
    from codec2vec.store import TokenStore

    _store(tmp_path / "store")
    s = str(tmp_path / "store")
    main(["labels", "export", s, "--name", "km", "--out", str(tmp_path / "hub")])
    km, ids = tmp_path / "hub" / "all.km", str(tmp_path / "hub" / "all.ids")
    lines = km.read_text().splitlines()
    before = (tmp_path / "store" / "contents.json").read_bytes()

    def fails(text: str, want: str) -> None:
        km.write_text(text)
        capsys.readouterr()
        assert main(["labels", "import", s, "--km", str(km), "--ids", ids, "--name", "x"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and want in err, err

    fails("\n".join([lines[0], lines[1] + " 3", *lines[2:]]) + "\n", "all.km:2: 13 labels for 'spk1/a', which has 12")
    fails("\n".join(lines[:3]) + "\n", "all.km: 3 lines for 4 utterances")
    fails("\n".join([lines[0], "1 x 2", *lines[2:]]) + "\n", "all.km:2: labels must be whole numbers")
    fails("\n".join([lines[0].replace("0", "9"), *lines[1:]]) + "\n", "label 9 is not in")
    assert (tmp_path / "store" / "contents.json").read_bytes() == before  # nothing was written
    assert "x" not in TokenStore.open(s).label_names()
    assert main(["labels", "export", s, "--name", "km", "--out", str(tmp_path / "o"), "--split", "test"]) == 2
