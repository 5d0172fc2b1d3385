"""Forged stores: every checksum valid (recomputed), fields crafted. Readers and `verify` must never crash, never
decode silently to other codes, and name the shard, utterance and field in one line."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from codec2vec.cli import main
from codec2vec.common.errors import StoreError
from codec2vec.store import TokenStore
from codec2vec.store.container import FOOTER, read_container_index
from codec2vec.store.layout import read_contents, write_contents
from conftest import forge, payload_and_index, small_store

K, V = 4, 16


def forge_meta(root: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    meta = json.loads((root / "meta.json").read_text())
    edit(meta)
    raw = json.dumps(meta, indent=2).encode()
    (root / "meta.json").write_bytes(raw)
    doc = read_contents(root)
    assert doc is not None
    write_contents(root, {**doc, "meta_sha256": hashlib.sha256(raw).hexdigest()})


def wrapping_record(nb: int = (1 << 15) + 2) -> bytes:
    """A rANS record of `nb` one-frame blocks whose header's block lengths (2**48 + 2 words each for 2**15
    blocks) sum past 2**64 and wrap to exactly the record's size (model: bits_per_frame 0, so 3 words are
    predicted per block)."""
    m, rest = 1 << 15, 40000
    header = bytearray()
    for words in [(1 << 48) + 2] * m + [rest // 2] * 2:
        d = words - 3
        z = 2 * d
        while z >= 0x80:
            header.append(z & 0x7F | 0x80)
            z >>= 7
        header.append(z)
    body = 2 * ((1 << 16) + rest)  # 2 * sum(words) = 2**64 + body (mod 2**64)
    return bytes(header) + b"\x00\x01\x00\x00" * (body // 4)


_CRAFTED = r"""
import json, sys
from pathlib import Path
import numpy as np
from codec2vec.common.errors import Codec2VecError
from codec2vec.store import TokenStore, rans
root, record = Path(sys.argv[1]), Path(sys.argv[2]).read_bytes()
out = {}
try:
    TokenStore.open(root)
    out["open"] = "opened"
except Codec2VecError as e:
    out["open"] = str(e)
s = TokenStore.open(root, check=False)
out["ids"] = s.ids()
for uid in s.ids():
    try:
        s.read(uid, 1000, 1001) if s.num_frames(uid) > 1000 else s[uid]
    except Codec2VecError as e:
        out[uid] = str(e)
out["verify"] = s.verify()
model = rans.RansModel.from_dict(json.loads(sys.argv[3]))
try:
    rans.decode(np.frombuffer(record, np.uint8), model, 4, (1 << 15) + 2, 1000, 1001)
    out["kernel"] = "decoded"
except ValueError as e:
    out["kernel"] = str(e)
print(json.dumps(out))
"""


def test_wrapping_block_lengths_are_refused_not_read(tmp_path: Path) -> None:
    """A self-consistent crafted rANS shard whose block lengths wrap int64 to the record's size: readers
    crashed (SIGSEGV) and verify said sound. Now: StoreError naming shard, utterance and field, and the kernel
    itself refuses a block longer than the record."""
    store, _ = small_store(tmp_path / "s", "rans")
    path = store.shard_paths()[0]
    records, index = payload_and_index(path)
    record = wrapping_record()
    index["rans"].update(block_frames=1, bits_per_frame_q256=0)
    index["entries"] = {k: v[:1] for k, v in index["entries"].items()}  # u0 alone
    index["entries"].update(frames=[(1 << 15) + 2], nbytes=[len(record)], crc32=[zlib.crc32(record)])
    forge(path, [record], index)
    (tmp_path / "record").write_bytes(record)
    run = subprocess.run(
        [sys.executable, "-c", _CRAFTED, str(store.root), str(tmp_path / "record"), json.dumps(index["rans"])],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, f"reader died (rc {run.returncode}): {run.stderr[-2000:]}"
    out = json.loads(run.stdout)
    assert "000000.c2s" in out["u0"] and "'u0'" in out["u0"] and "header" in out["u0"]  # a read names all three
    assert out["open"] == "opened" or "000000.c2s" in out["open"]
    assert any("000000.c2s" in p and "'u0'" in p for p in out["verify"])
    assert out["kernel"].startswith("rANS data:")


def test_model_fields_are_bounded(tmp_path: Path) -> None:
    """bits_per_frame_q256 above 16 bits per coded row, and pairs of V * V > MAX_SYMBOLS, are refused."""
    store, _ = small_store(tmp_path / "s", "rans")
    path = store.shard_paths()[0]
    records, index = payload_and_index(path)
    index["rans"]["bits_per_frame_q256"] = 1 << 60
    forge(path, records, index)
    with pytest.raises(StoreError, match="000000.c2s.*bits_per_frame"):
        TokenStore.open(store.root)
    from codec2vec.store.rans import RansModel

    doc = {**index["rans"], "codebook_size": 1 << 13, "pairs": True, "bits_per_frame_q256": 0}
    with pytest.raises(ValueError, match="V \\* V"):
        RansModel.from_dict(doc)


def test_bad_index_tables_are_one_line_errors(tmp_path: Path, capsys) -> None:
    """Unequal column lengths, `entries` null or a list, frame counts the record cannot hold: `verify` names the
    shard and the field (it printed "unexpected ..." or said sound)."""
    cases: dict[str, Callable[[dict[str, Any]], None]] = {
        "unequal": lambda ix: ix["entries"]["frames"].pop(),
        "null": lambda ix: ix.update(entries=None),
        "list": lambda ix: ix.update(entries=[]),
        "frames": lambda ix: ix["entries"]["frames"].__setitem__(2, 10**12),
    }
    for name, edit in cases.items():
        store, _ = small_store(tmp_path / name, "rans")
        path = store.shard_paths()[0]
        records, index = payload_and_index(path)
        edit(index)
        forge(path, records, index)
        with pytest.raises(StoreError, match="000000.c2s: damaged index"):
            TokenStore.open(store.root)
        capsys.readouterr()
        assert main(["verify", str(store.root)]) == 1, name
        err = capsys.readouterr().err
        assert "000000.c2s: damaged index" in err and "unexpected" not in err, (name, err)


def test_verify_decodes_every_record_and_checks_ids(tmp_path: Path) -> None:
    """A rANS record replaced by other bytes (CRC recomputed) and ids that ingest refuses: verify said sound."""
    store, _ = small_store(tmp_path / "s", "rans")
    path = store.shard_paths()[0]
    records, index = payload_and_index(path)
    records[2] = bytes(len(records[2]))  # zeros: a header and states that cannot decode
    index["entries"]["crc32"] = [zlib.crc32(r) for r in records]
    index["entries"]["id"][:3] = ["../../..", "/tmp/x", "a/../../b"]
    forge(path, records, index)
    problems = TokenStore.open(store.root, check=False).verify()
    assert any("'a/../../b' cannot be decoded" in p for p in problems), problems
    for bad in ("'../../..'", "'/tmp/x'", "'a/../../b'"):
        assert any(bad in p and "id" in p for p in problems if "decoded" not in p), (bad, problems)


def test_forged_contents_and_codebooks_are_one_line_errors(tmp_path: Path, capsys) -> None:
    """`contents.json` a list or missing keys (self-hash recomputed); a safetensors header that overflows."""
    from codec2vec.store import layout

    store, _ = small_store(tmp_path / "c", "packed")
    root = store.root
    doc = read_contents(root)
    assert doc is not None
    rec = next(iter(doc["shards"].values()))
    del rec["utterances"]
    write_contents(root, doc)
    for verb in (["verify", str(root)], ["info", str(root)]):
        capsys.readouterr()
        assert main(verb) in (1, 2)
        err = capsys.readouterr().err
        assert "contents.json: damaged" in err and "unexpected" not in err, err
    (root / "contents.json").write_text(json.dumps([{"sha256": layout._self_hash({})}]))
    with pytest.raises(StoreError, match="contents.json: damaged"):
        TokenStore.open(root)

    store, _ = small_store(tmp_path / "cb", "packed")
    blob = (1 << 63).to_bytes(8, "little") + b"{}"
    (store.root / "codebooks.safetensors").write_bytes(blob)
    forge_meta(store.root, lambda m: m["codebooks"].update(sha256=hashlib.sha256(blob).hexdigest()))
    capsys.readouterr()
    assert main(["verify", str(store.root)]) == 1
    err = capsys.readouterr().err
    assert "codebooks.safetensors: damaged" in err and "unexpected" not in err, err


def test_read_api_bad_frames_are_clear_errors(tmp_path: Path) -> None:
    """`read(id, start, stop)` with non-integers or a range outside the utterance: a StoreError that is also a
    TypeError / IndexError, naming the utterance (it raised a bare TypeError from slicing)."""
    for coding in ("packed", "rans"):
        store, codes = small_store(tmp_path / coding, coding)
        for start, stop, kind in [(1.5, 3, TypeError), (0, "9", TypeError), (True, 2, TypeError), (0, 10**30, IndexError), (-1, 2, IndexError), (5, 4, IndexError)]:  # fmt: skip
            with pytest.raises(StoreError, match="'u0'") as e:
                store.read("u0", start, stop)  # type: ignore[arg-type]
            assert isinstance(e.value, kind), (coding, start, stop)
        assert np.array_equal(store.read("u0", np.int64(3), np.int32(9)).numpy(), codes["u0"][:, 3:9])


def test_footer_and_index_payload_size_must_agree(tmp_path: Path) -> None:
    """An index whose `payload_bytes` disagrees with the footer's offset is damaged."""
    store, _ = small_store(tmp_path / "s", "packed")
    path = store.shard_paths()[0]
    raw = path.read_bytes()
    magic, off, length, _ = FOOTER.unpack(raw[-FOOTER.size :])
    index = json.loads(zlib.decompress(raw[off : off + length]))
    index["payload_bytes"] += 1
    blob = zlib.compress(json.dumps(index).encode())
    path.write_bytes(raw[:off] + blob + FOOTER.pack(magic, off, len(blob), zlib.crc32(blob)))
    with pytest.raises(StoreError, match="payload_bytes"):
        read_container_index(path)


# --- the store-level fuzz ----------------------------------------------------------------------------------

_FUZZ = r"""
import json, random, shutil, sys, zlib
from pathlib import Path
import numpy as np
from codec2vec.common.errors import Codec2VecError
from codec2vec.store import TokenStore
from conftest import forge, payload_and_index

work, seed, cases = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(seed)
pristine = {c: (work / c, dict(np.load(work / f"{c}.npz"))) for c in ("rans", "packed")}
HUGE = [-1, 0, 1, 2**31, 2**32 + 7, 2**48, 2**62, 2**63 - 1, 2**64 + 3, 1.5, "7", None, True]

def num(x):
    return rng.choice([x + 1, x - 1, 2 * x, x // 2, rng.randrange(0, 2**17), rng.choice(HUGE)])

def varint(d):
    z, out = (2 * d if d >= 0 else -2 * d - 1), bytearray()
    while z >= 0x80:
        out.append(z & 0x7F | 0x80)
        z >>= 7
    return bytes(out + bytes([z]))

def mutate(records, ix):
    cols, model, j = ix["entries"], ix.get("rans"), rng.randrange(len(records))
    what = rng.choice(["frames", "nbytes", "bits", "block", "pairs", "coding", "header", "bytes", "column", "entries"])
    if what == "frames":
        cols["frames"][j] = num(cols["frames"][j])
    elif what == "nbytes" and "nbytes" in cols:
        i, n = rng.randrange(len(records)), rng.choice([1, 2, 9, 100, 2**40])
        if rng.random() < 0.5:  # move bytes between records: the sum still tiles the payload
            cols["nbytes"][j] += n
            cols["nbytes"][i] -= n
        else:
            cols["nbytes"][j] = num(cols["nbytes"][j])
    elif what == "bits" and model:
        model["bits_per_frame_q256"] = num(model["bits_per_frame_q256"])
    elif what == "block" and model:
        model["block_frames"] = num(model["block_frames"])
    elif what == "pairs" and model:
        model["pairs"] = not model["pairs"]
    elif what == "coding":
        ix["coding"] = rng.choice(["packed", "rans", "huffman", "zzz", 5, None])
    elif what in ("header", "bytes") and model and records[j]:
        r = bytearray(records[j])
        if what == "header":  # a block length: anything from -2**48 to 2**48 words off its prediction
            d = rng.choice([-(2**48), -5, -1, 1, 3, 2**20, 2**48 - 1, rng.randrange(-(2**40), 2**40)])
            r = bytearray(varint(d)) + r[1:]
        else:
            for _ in range(rng.randrange(1, 4)):
                r[rng.randrange(len(r))] ^= 1 << rng.randrange(8)
        records[j] = bytes(r)
        if "nbytes" in cols:
            cols["nbytes"][j] = len(records[j])
    elif what == "column":
        rng.choice([cols["frames"], cols["crc32"], cols["id"]]).pop()
    elif what == "entries":
        ix["entries"] = rng.choice([None, [], "x", {}])
    return what

failures, outcomes = [], {}
for case in range(cases):
    coding = rng.choice(["rans", "packed"])
    src, originals = pristine[coding]
    root = work / f"case-{seed}-{case}"
    shutil.copytree(src, root)
    path = sorted((root / "shards").glob("*.c2s"))[0]
    records, ix = payload_and_index(path)
    whats = []
    for _ in range(rng.randrange(1, 4)):
        try:
            whats.append(mutate(records, ix))
        except (IndexError, KeyError, TypeError, AttributeError):  # an earlier mutation removed what this one edits
            pass
    cols = ix["entries"] if isinstance(ix.get("entries"), dict) else {}
    if isinstance(cols.get("crc32"), list) and len(cols["crc32"]) == len(records):
        cols["crc32"] = [zlib.crc32(r) for r in records]  # valid checksums: a forgery, not damage
    forge(path, records, ix)
    tag = f"seed {seed} case {case} ({coding}: {', '.join(whats)})"
    try:
        try:
            TokenStore.open(root)
        except Codec2VecError:
            pass
        s = TokenStore.open(root, check=False)
        sound = s.verify() == []
        for uid in s.ids():
            want = originals.get(uid)
            for a, b in [(0, None), (min(3, s.num_frames(uid)), s.num_frames(uid))]:
                try:
                    got = s.read_numpy(uid, a, b)
                except Codec2VecError as e:
                    if sound:
                        failures.append(f"{tag}: verify says sound, but reading {uid!r} fails: {e}")
                    continue
                if want is None or got.shape != want[:, a:b].shape or not np.array_equal(got, want[:, a:b]):
                    failures.append(f"{tag}: {uid!r} [{a}, {b}) decoded silently to other codes")
        outcomes[tag] = "sound" if sound else "damaged"
    except Exception as e:  # anything but a one-line error is a failure
        failures.append(f"{tag}: {type(e).__name__}: {e}")
    shutil.rmtree(root)
print(json.dumps({"failures": failures, "damaged": sum(v == "damaged" for v in outcomes.values()), "cases": cases}))
"""


@pytest.mark.slow
def test_store_fuzz_forged_indexes_never_crash_or_decode_wrong(tmp_path: Path) -> None:
    """Random self-consistent index fields (frames, block lengths, bits per frame, pairs, coding, columns) and
    record bytes, every checksum recomputed: the process never dies of a signal, every failure is a one-line
    `Codec2VecError`, nothing decodes silently to other codes, and a store `verify` calls sound reads whole.
    Cases run in batches, one subprocess each: a crash names the batch's seed."""
    for coding in ("rans", "packed"):
        store, codes = small_store(tmp_path / coding, coding)
        assert read_container_index(store.shard_paths()[0])["coding"] == coding
        np.savez(tmp_path / f"{coding}.npz", **codes)
    tests = str(Path(__file__).resolve().parents[1])
    env = {**__import__("os").environ}
    env["PYTHONPATH"] = tests + ":" + env.get("PYTHONPATH", "")
    for seed in range(2):
        run = subprocess.run(
            [sys.executable, "-c", _FUZZ, str(tmp_path), str(seed), "100"],
            capture_output=True,
            text=True,
            timeout=600,
            env=env,
        )
        assert run.returncode == 0, f"batch seed {seed} died (rc {run.returncode}): {run.stderr[-3000:]}"
        out = json.loads(run.stdout.splitlines()[-1])
        assert out["failures"] == [], "\n".join(out["failures"][:20])
        assert out["damaged"] > out["cases"] // 2  # the forgeries are mostly caught, not just survived
