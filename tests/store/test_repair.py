"""`verify --repair` never loses the only copy of anything and never re-blesses a shard whose records fail;
`tokenize` says when an id it skips was stored from other audio."""

from __future__ import annotations

import shutil
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from codec2vec.cli import main
from codec2vec.cli.store import format_summary
from codec2vec.common.errors import StoreError
from codec2vec.store import TokenStore
from codec2vec.store.container import read_container_index
from codec2vec.tokenize import TokenizeOptions, tokenize
from conftest import forge, make_store, payload_and_index, small_store


def _foreign_codes(root: Path) -> dict[str, np.ndarray]:
    """Codes of every utterance in the shard-format containers under `STORE/foreign/`."""
    out = {}
    for p in sorted((root / "foreign").glob("*.c2s*")):
        probe = root.parent / f"probe-{p.name}"
        shutil.copytree(root, probe, ignore=shutil.ignore_patterns("shards", "foreign", "contents.json", ".lock"))
        (probe / "shards").mkdir()
        shutil.copy(p, probe / "shards" / "000000.c2s")
        s = TokenStore.open(probe, check=False)
        out.update({u: s[u].numpy() for u in s.ids()})
    return out


def test_repair_keeps_colliding_ids_with_other_codes(tmp_path: Path, capsys) -> None:
    """Two utterances with the same id but different codes are not duplicates: repair deleted the second
    ("rewrote ... without 1 duplicate copies") and said sound. Now it is moved to foreign/ and named; a true
    duplicate (same codes) is still dropped."""
    a = make_store(tmp_path / "a", {"x": 5, "y": 7})
    b = make_store(tmp_path / "b", {"x": 5, "y": 8, "z": 9}, seed=1)  # other codes under 'x' and 'y'
    c = make_store(tmp_path / "c", {"x": 5})  # the same codes as a's 'x'
    shutil.copy(b.shard_paths()[0], a.root / "shards" / "000001.c2s")
    shutil.copy(c.shard_paths()[0], a.root / "shards" / "000002.c2s")
    capsys.readouterr()
    assert main(["verify", str(a.root), "--repair"]) == 0
    err = capsys.readouterr().err
    assert "foreign" in err and "'x', 'y'" in err, err
    fixed = TokenStore.open(a.root)
    assert sorted(fixed.ids()) == ["x", "y", "z"] and fixed.verify() == []
    for uid in ("x", "y"):
        assert np.array_equal(fixed[uid].numpy(), a[uid].numpy())
    moved = _foreign_codes(a.root)
    assert sorted(moved) == ["x", "y"]  # b's copies, byte for byte; c's identical 'x' was dropped
    for uid in ("x", "y"):
        assert np.array_equal(moved[uid], b[uid].numpy())
    assert not (a.root / "shards" / "000002.c2s").exists()


def test_repair_never_reblesses_a_shard_whose_records_fail(tmp_path: Path, capsys) -> None:
    """A shard changed on disk (records replaced, payload and index checksums recomputed): repair recorded its
    new SHA-256 and verify then said sound while reads failed. Now verify checks each record's CRC-32 and decodes
    rANS records, and repair keeps the old record and names the shard."""
    for coding, edit in (("packed", "crc"), ("rans", "decode")):
        store, codes = small_store(tmp_path / coding, coding)
        path = store.shard_paths()[0]
        records, index = payload_and_index(path)
        records[2] = bytes(len(records[2]))
        if edit == "decode":  # checksums all valid: only decoding shows the damage
            index["entries"]["crc32"] = [zlib.crc32(r) for r in records]
        old_record = (store.root / "contents.json").read_text()
        from codec2vec.store.container import write_container

        write_container(path, records, index)  # contents.json still holds the old SHA-256
        capsys.readouterr()
        assert main(["verify", str(store.root), "--repair"]) == 1, coding
        err = capsys.readouterr().err
        assert "not repaired" in err and "'u2'" in err, (coding, err)
        assert (store.root / "contents.json").read_text() == old_record
        assert main(["verify", str(store.root)]) == 1
        s = TokenStore.open(store.root, check=False)
        assert np.array_equal(s["u0"].numpy(), codes["u0"])


def test_repair_records_a_changed_shard_whose_records_all_check(tmp_path: Path) -> None:
    """A shard rewritten whole and sound (e.g. a repair killed between rewriting a shard and the record) is
    recorded again."""
    store, codes = small_store(tmp_path / "s", "rans")
    path = store.shard_paths()[0]
    records, index = payload_and_index(path)
    from codec2vec.store.container import write_container

    index["extra_field"] = 1
    write_container(path, records, index)
    assert any("SHA-256 differs" in p for p in TokenStore.open(store.root, check=False).verify())
    assert main(["verify", str(store.root), "--repair"]) == 0
    assert TokenStore.open(store.root).verify() == []


def test_repair_moves_unreadable_shards_out_and_goes_on(tmp_path: Path, capsys) -> None:
    """One unreadable `.c2s` in shards/ made `--repair` abort ("damaged (bad footer)", exit 2)."""
    store = make_store(tmp_path / "s", {"x": 5, "y": 7})
    (store.root / "shards" / "000007.c2s").write_bytes(b"not a container" * 10)
    truncated = store.root / "shards" / "000008.c2s"
    truncated.write_bytes(store.shard_paths()[0].read_bytes()[:-3])
    capsys.readouterr()
    assert main(["verify", str(store.root), "--repair"]) == 0
    err = capsys.readouterr().err
    assert "000007.c2s" in err and "000008.c2s" in err and "foreign" in err
    assert (store.root / "foreign" / "shards-000007.c2s").read_bytes() == b"not a container" * 10
    assert (store.root / "foreign" / "shards-000008.c2s").is_file()
    assert sorted(TokenStore.open(store.root).ids()) == ["x", "y"]
    (store.root / "shards" / "notes.txt").write_text("second")  # a name already in foreign/: never overwritten
    (store.root / "shards" / "000007.c2s").write_bytes(b"again" * 10)
    assert main(["verify", str(store.root), "--repair"]) == 0
    assert (store.root / "foreign" / "shards-000007.c2s.1").read_bytes() == b"again" * 10
    assert (store.root / "foreign" / "shards-000007.c2s").read_bytes() == b"not a container" * 10


def test_repair_moves_a_recorded_shard_with_bad_fields_and_names_it_once(tmp_path: Path, capsys) -> None:
    """A recorded shard whose (checksummed) index is out of bounds goes to foreign/; it is not called lost."""
    store, _ = small_store(tmp_path / "s", "packed")
    path = store.shard_paths()[0]
    records, index = payload_and_index(path)
    index["entries"]["frames"][0] = 10**9
    forge(path, records, index)
    capsys.readouterr()
    assert main(["verify", str(store.root), "--repair"]) == 0
    err = capsys.readouterr().err
    assert "field 'frames'" in err and "foreign" in err and "lost" not in err, err
    assert (store.root / "foreign" / "shards-000000.c2s").is_file() and TokenStore.open(store.root).ids() == []


def test_tokenize_says_when_a_skipped_id_holds_other_audio(tmp_path: Path, short_clips: Path) -> None:
    """A second corpus with the same file names but other audio was skipped as "N already stored" with no hint."""
    first, second = tmp_path / "one", tmp_path / "two"
    shutil.copytree(short_clips, first)
    second.mkdir()
    for p in sorted(first.glob("*.wav")):
        wav, sr = sf.read(p, dtype="float32")
        sf.write(second / p.name, np.concatenate([wav, wav]) if p.name != "c0.wav" else wav, sr)
    store = tmp_path / "store"
    opts = TokenizeOptions(codec="lyra", batch_size=4, shard_seconds=1.0)
    tokenize([str(first)], store, opts, progress=False)
    summary = tokenize([str(second)], store, opts, progress=False)
    assert summary["skipped_already_stored"] == 6 and summary["stored"] == 0
    assert sorted(summary["skipped_other_audio"]) == ["c1", "c2", "c3", "c4", "c5"]
    text = format_summary(summary)
    assert "5 were stored from a file of another size" in text and "'c1'" in text
    assert read_container_index(TokenStore.open(store).shard_paths()[0])["kind"] == "shard"


def test_repair_keeps_one_copy_of_a_duplicated_utterance(tmp_path: Path) -> None:
    a = make_store(tmp_path / "a", {"x": 5, "y": 7})
    b = make_store(tmp_path / "b", {"y": 7, "z": 9})  # same codec and seed: 'y' has the same codes
    shutil.copy(b.shard_paths()[0], a.root / "shards" / "000001.c2s")  # y twice, z only here
    with pytest.raises(StoreError, match="also stored"):
        TokenStore.open(a.root)
    assert main(["verify", str(a.root)]) == 1
    assert main(["verify", str(a.root), "--repair"]) == 0
    fixed = TokenStore.open(a.root)
    assert sorted(fixed.ids()) == ["x", "y", "z"] and fixed.verify() == []
    assert np.array_equal(fixed["z"].numpy(), b["z"].numpy())
    (a.root / "shards" / "000000.c2s").unlink()  # x and y lost: repair names the loss, drops the record
    assert main(["verify", str(a.root), "--repair"]) == 0
    assert sorted(TokenStore.open(a.root).ids()) == ["z"]


def test_repair_store_takes_the_open_store_as_verify_store_does(tmp_path: Path) -> None:
    """`repair_store(store)` and `verify_store(store)` take the same open handle (opened without checks)."""
    from codec2vec.store.repair import repair_store
    from codec2vec.store.verify import verify_store

    store = make_store(tmp_path / "s", {"x": 5, "y": 7})
    (store.root / "shards" / "notes.txt").write_text("not a shard")
    damaged = TokenStore.open(store.root, check=False)
    assert any("foreign file" in line for line in verify_store(damaged))
    actions = repair_store(damaged)
    assert any("moved foreign file" in a and "notes.txt" in a for a in actions), actions
    assert verify_store(TokenStore.open(store.root)) == []
    assert (store.root / "foreign" / "shards-notes.txt").read_text() == "not a shard"
