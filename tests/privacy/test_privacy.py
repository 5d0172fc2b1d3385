"""Privacy: keyed permutations, private stores (no path, name or free text anywhere), anonymised stores (the
original untouched, the key restores the codes exactly, training with the keyed init equals training on the
clear codes), and the audit (read only; lists the metadata; SID probe and decoder check)."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from codec2vec.codecs.base import CodecInfo, config_hash
from codec2vec.privacy.keys import (
    PrivacyError,
    inverse,
    key_check,
    keyed_id,
    load_key,
    permutations,
    scramble,
    unscramble,
)

KEY = bytes(range(32))


def checksums(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


def fake_store(path: Path, *, n: int = 48, k: int = 6, v: int = 16, speakers: int = 4, seed: int = 0):
    """Structured fake codes: levels 0-1 follow a per-speaker code distribution, the others a 'phone' sequence
    of 4-12 frame segments (predictable from context, so a tiny model learns)."""
    from codec2vec.store import TokenStore

    cfg = {"fake": True, "num_codebooks": k}
    info = CodecInfo(name="lyra", sample_rate=16000, frame_rate=50.0, num_codebooks=k, codebook_size=v, config=cfg,
                     config_hash=config_hash(cfg))  # fmt: skip
    g = torch.Generator().manual_seed(seed)
    store = TokenStore.create(path, info, torch.randn(k, v, 12, generator=g))
    with store.writer() as w:
        for i in range(n):
            spk = i % speakers
            t = int(torch.randint(60, 200, (), generator=g))
            seg = torch.randint(4, 13, (t,), generator=g)
            phones = torch.randint(0, v, (t,), generator=g).repeat_interleave(seg)[:t]  # (T,)
            voice = (torch.randint(0, 3, (2, t), generator=g) + 4 * spk) % v  # (2, T)
            codes = torch.cat([voice, torch.stack([(phones * (j + 1) + j) % v for j in range(k - 2)])])  # (K, T)
            w.add(f"spk{spk}-utt{i:03d}", codes, seconds=t / 50.0, source=f"/data/spk{spk}/utt{i:03d}.wav",
                  extra={"speaker": f"spk{spk}", "split": "dev" if i % 8 == 0 else "train", "text": "hello there"})  # fmt: skip
    return TokenStore.open(path)


# --- keys -----------------------------------------------------------------------------------------------------


def test_permutations_are_secret_keyed_and_deterministic() -> None:
    p = permutations(KEY, 46, 16)
    assert p.shape == (46, 16)
    assert all(sorted(row) == list(range(16)) for row in p.tolist())
    assert np.array_equal(p, permutations(KEY, 46, 16))  # a key fixes them
    other = permutations(bytes(32), 46, 16)
    assert (p != other).any(axis=1).sum() >= 40  # another key: (almost) every level differs
    assert len({tuple(r) for r in p.tolist()}) == 46  # levels are not all shuffled the same way
    assert np.array_equal(permutations(KEY, 4, 16), p[:4])  # level k's permutation does not depend on K
    assert keyed_id(KEY, "spk1/utt1") != keyed_id(bytes(32), "spk1/utt1") and len(keyed_id(KEY, "a")) == 32
    assert key_check(KEY) != key_check(bytes(32))


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 8), st.integers(0, 40), st.sampled_from([2, 16, 1024]), st.integers(0, 2**31))
def test_unscramble_restores_codes_exactly(k: int, t: int, v: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, v, size=(k, t))
    perms = permutations(KEY, k, v)
    s = scramble(codes, perms)
    assert np.array_equal(unscramble(s, perms), codes)
    assert np.array_equal(inverse(inverse(perms)), perms)
    ts = scramble(torch.from_numpy(codes)[None], perms)  # (1, K, T) tensors too
    assert torch.equal(ts[0], torch.from_numpy(np.asarray(s)))


def test_key_file_is_created_private_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "k.key"
    key = load_key(path, create=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(key) == 32
    assert load_key(path) == key
    os.chmod(path, 0o644)
    with pytest.raises(PrivacyError, match="readable by others"):
        load_key(path)
    bad = tmp_path / "bad.key"
    bad.write_text("not hex")
    os.chmod(bad, 0o600)
    with pytest.raises(PrivacyError, match="not a codec2vec key"):
        load_key(bad)
    with pytest.raises(PrivacyError, match="no such key"):
        load_key(tmp_path / "absent.key")


# --- private stores -------------------------------------------------------------------------------------------


def store_bytes(root: Path) -> list[bytes]:
    """Every file of a store, raw, plus every container's index decompressed (and read back as JSON)."""
    from codec2vec.store.container import FOOTER, read_container_index

    out = []
    for p in sorted(root.rglob("*")):
        if not p.is_file():
            continue
        raw = p.read_bytes()
        out.append(raw)
        if p.suffix in (".c2s", ".c2l"):
            import zlib

            _, off, length, _ = FOOTER.unpack(raw[-FOOTER.size :])
            out.append(zlib.decompress(raw[off : off + length]))
            out.append(json.dumps(read_container_index(p), ensure_ascii=False).encode())
    return out


@pytest.fixture()
def named_corpus(tmp_path: Path, speech_dir: Path) -> tuple[Path, list[str]]:
    """Three 1 s clips with telling names in a telling folder, and a manifest with a transcript and speaker names;
    returns (manifest, the strings that must not reach a private store)."""
    import soundfile as sf

    wav, sr = sf.read(speech_dir / "lyra_sample1_16kHz.wav", dtype="float32")
    folder = tmp_path / "secret_clinic_ward7" / "patient_records"
    folder.mkdir(parents=True)
    names = ["alice_smith_interview", "bob_jones_session", "carol_white_intake"]
    rows = []
    for i, name in enumerate(names):
        sf.write(folder / f"{name}.wav", wav[i * 8000 : i * 8000 + sr], sr)
        rows.append({"path": f"secret_clinic_ward7/patient_records/{name}.wav", "speaker": name.split("_")[0] + "_x",
                     "text": f"the patient complains of headache number {i}", "split": "train"})  # fmt: skip
    rows.append({"path": "secret_clinic_ward7/patient_records/missing_dave_brown.wav", "split": "train"})
    manifest = tmp_path / "visits.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    parts = [c for c in str(folder).split(os.sep) if len(c) >= 4] + names + ["missing_dave_brown", "visits"]
    parts += ["alice_x", "bob_x", "carol_x", "complains of headache", str(tmp_path)]
    return manifest, parts


def test_private_store_holds_no_path_name_or_free_text(named_corpus, tmp_path: Path) -> None:
    from codec2vec.store import TokenStore
    from codec2vec.tokenize import TokenizeOptions, tokenize

    manifest, secrets_ = named_corpus
    out = tmp_path / "s" / "store"
    opts = TokenizeOptions(codec="lyra", private=True)
    summary = tokenize([str(manifest)], out, opts, progress=False)
    assert summary["stored"] == 3 and summary["rejected"] == 1  # the missing file is rejected, outside the store
    blobs = store_bytes(out)
    assert len(blobs) >= 5
    for s in secrets_:
        for blob in blobs:
            assert s.lower().encode() not in blob.lower(), f"{s!r} found in the private store"
    store = TokenStore.open(out)
    info = store.info()
    assert info["private"] is True and store.meta["private"]["columns_kept"] == ["split"]
    key = load_key(out.with_name("store.key"))
    id_map = [json.loads(x) for x in out.with_name("store.ids.jsonl").read_text().splitlines()]
    assert {r["id"] for r in id_map} >= set(store.ids())
    assert {keyed_id(key, r["source_id"]) for r in id_map} == {r["id"] for r in id_map}
    for u in store.ids():
        e = store.entry(u)
        assert e["source"] == "" and e["extra"] == {"split": "train"} and e["source_bytes"] == 0
        assert e["seconds"] == e["frames"] / 50.0  # on the frame grid, not the exact sample count
    assert "missing_dave_brown" in out.with_name("store.ids.rejects.jsonl").read_text()
    assert store.ids() == sorted(store.ids())  # order of hashed ids, not of file names
    from codec2vec.privacy.audit import run_audit

    audit = run_audit(out, labels=str(manifest), id_map=str(out.with_name("store.ids.jsonl")), decode_files=3)
    ids_row = next(m for m in audit["metadata"] if m["where"] == "shard index: id")
    assert ids_row["count"] == 0 and ids_row["hashed"] == 3  # only keyed hashes
    where = {m["where"]: m for m in audit["metadata"]}
    assert set(where) == {"shard index: id", "shard index: extra.split", "shard index: seconds"}
    assert "frame grid" in where["shard index: seconds"]["note"]
    assert audit["private"] and audit["decode"]["files"] == 3  # the id map (kept by the user) finds the sources
    again = tokenize([str(manifest)], out, opts, progress=False)  # resumable: same key, same ids
    assert again["stored"] == 0 and again["skipped_already_stored"] == 3
    with pytest.raises(PrivacyError, match="outside the store"):
        tokenize([str(manifest)], out, TokenizeOptions(private=True, private_key=str(out / "k.key")), progress=False)


# --- anonymised stores ----------------------------------------------------------------------------------------


def test_anonymize_keeps_the_original_and_the_key_restores_codes(tmp_path: Path) -> None:
    from codec2vec.privacy.anonymize import anonymize_store
    from codec2vec.store import TokenStore

    src = fake_store(tmp_path / "clear")
    before = checksums(src.root)
    anonymize_store(src.root, tmp_path / "l2", levels=2)
    anonymize_store(src.root, tmp_path / "scr", key=KEY)
    anonymize_store(tmp_path / "scr", tmp_path / "scr3", levels=3)  # truncating keeps it scrambled
    anonymize_store(tmp_path / "scr", tmp_path / "back", key=KEY, unscramble_codes=True)
    assert checksums(src.root) == before  # the original is never written to
    l2, scr, scr3, back = (TokenStore.open(tmp_path / n) for n in ("l2", "scr", "scr3", "back"))
    perms = permutations(KEY, 6, 16)
    for uid in src.ids():
        clear = src[uid]
        assert torch.equal(l2[uid], clear[:2]) and torch.equal(back[uid], clear)
        assert torch.equal(scr[uid], scramble(clear, perms)) and not torch.equal(scr[uid], clear)
        assert torch.equal(scr3[uid], scr[uid][:3])
        assert scr.entry(uid)["source"] == "" and scr.entry(uid)["extra"] == {"split": src.entry(uid)["extra"]["split"]}
    assert l2.codec.num_codebooks == 2 and l2.codec.config["num_codebooks"] == 2 and l2.codebook_vectors().shape[0] == 2
    assert scr.info()["scrambled"] and scr3.info()["scrambled"] and not back.info()["scrambled"]
    meta = (tmp_path / "scr" / "meta.json").read_text()
    assert KEY.hex() not in meta and key_check(KEY) in meta
    assert torch.equal(scr.codebook_vectors(), src.codebook_vectors())  # the public table, never a permuted one
    anonymize_store(src.root, tmp_path / "priv", levels=4, id_key=KEY, id_map=tmp_path / "ids.jsonl")
    priv = TokenStore.open(tmp_path / "priv")
    rows = {r["id"]: r for r in map(json.loads, (tmp_path / "ids.jsonl").read_text().splitlines())}
    assert priv.info()["private"] and priv.ids() == sorted(priv.ids()) and set(priv.ids()) == set(rows)
    for hid in priv.ids():
        old = rows[hid]["source_id"]
        assert hid == keyed_id(KEY, old) and torch.equal(priv[hid], src[old][:4])
        assert rows[hid]["path"] == src.entry(old)["source"] and priv.entry(hid)["source_bytes"] == 0
    assert b"spk" not in b"".join(store_bytes(tmp_path / "priv"))  # no speaker-bearing id or path left
    assert stat.S_IMODE((tmp_path / "ids.jsonl").stat().st_mode) == 0o600
    with pytest.raises(PrivacyError, match="another key"):
        anonymize_store(tmp_path / "scr", tmp_path / "x", key=bytes(32), unscramble_codes=True)
    with pytest.raises(PrivacyError, match="already scrambled"):
        anonymize_store(tmp_path / "scr", tmp_path / "y", key=KEY)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def _tiny_run(store: Path, run: Path, *extra: str):
    from codec2vec.pretrain.config import load_config

    return load_config(None, [
        f"data.store={store}", f"run.dir={run}", "data.crop_frames=100", "data.batch_frames=400", "data.min_frames=8",
        "train.device=cpu", "train.lr=2e-3", "train.warmup_steps=3", "train.steps=8", "train.log_every=1",
        "train.eval_every=8", "train.ckpt_every=8", "run.progress=off", "run.tensorboard=false",
        "model.num_layers=2", "model.dim=32", "model.ffn_dim=64", "model.num_heads=2", "model.conv_pos_kernel=8",
        "model.conv_pos_groups=2", "targets.online_top_k=2", "targets.online_codewords=8",
        "targets=reconstruction,online", *extra,
    ])  # fmt: skip


def _losses(run: Path) -> list[float]:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows]


def test_training_on_scrambled_codes_with_the_key_equals_training_on_clear_codes(tmp_path: Path) -> None:
    from codec2vec.common.errors import Codec2VecError
    from codec2vec.pretrain.loop import pretrain
    from codec2vec.privacy.anonymize import anonymize_store

    src = fake_store(tmp_path / "clear")
    anonymize_store(src.root, tmp_path / "scr", key=KEY, keep=("split",))
    anonymize_store(src.root, tmp_path / "plain", keep=("split",))  # same metadata, clear codes
    key_file = tmp_path / "k.key"
    key_file.write_text(KEY.hex())
    os.chmod(key_file, 0o600)
    pretrain(_tiny_run(tmp_path / "plain", tmp_path / "r_clear"))
    pretrain(_tiny_run(tmp_path / "scr", tmp_path / "r_key", f"data.codebook_key={key_file}"))
    pretrain(_tiny_run(tmp_path / "scr", tmp_path / "r_nokey"))  # a third party: random embeddings
    clear, keyed, nokey = (_losses(tmp_path / r) for r in ("r_clear", "r_key", "r_nokey"))
    assert len(clear) >= 9 and clear[-1] < clear[0]
    np.testing.assert_allclose(keyed, clear, rtol=1e-5, atol=1e-6)
    assert not np.allclose(nokey, clear, rtol=1e-3)  # without the key it is a different run
    wrong = tmp_path / "wrong.key"
    wrong.write_text(bytes(32).hex())
    os.chmod(wrong, 0o600)
    with pytest.raises(Codec2VecError, match="another key"):
        pretrain(_tiny_run(tmp_path / "scr", tmp_path / "r_wrong", f"data.codebook_key={wrong}"))


# --- the audit ------------------------------------------------------------------------------------------------


def test_histogram_sid_probe_is_blind_to_scrambling_and_embedding_probe_beats_chance(tmp_path: Path) -> None:
    from codec2vec.privacy.anonymize import anonymize_store
    from codec2vec.privacy.audit import read_speakers, sid_audit
    from codec2vec.store import TokenStore

    src = fake_store(tmp_path / "clear", n=64, speakers=4)
    anonymize_store(src.root, tmp_path / "scr", key=KEY)
    scr = TokenStore.open(tmp_path / "scr")
    speakers = read_speakers(None, src)  # the clear store's own `speaker` column; the scrambled one dropped it
    assert len(speakers) == 64 and not read_speakers(None, scr)
    clear, scrambled = sid_audit(src, speakers, per_speaker=4), sid_audit(scr, speakers, per_speaker=4, clear=src)
    assert clear["embedding"]["chance"] == pytest.approx(0.25) and clear["embedding"]["accuracy"] >= 0.9
    assert scrambled["histogram"]["accuracy"] == pytest.approx(clear["histogram"]["accuracy"])  # blind to keys
    assert scrambled["embedding_from_clear"]["test"] == clear["embedding"]["test"] == 48


def test_audit_never_writes_and_lists_what_identifies(tmp_path: Path, speech_dir: Path) -> None:
    """A real Lyra store of real speech: the audit leaves it untouched, lists ids, paths and columns, and the
    public decoder gives back audio close to the source for clear codes, and not for scrambled ones."""
    import soundfile as sf

    from codec2vec.cli import main
    from codec2vec.privacy.anonymize import anonymize_store
    from codec2vec.tokenize import TokenizeOptions, tokenize

    wavs = [sf.read(speech_dir / n, dtype="float32")[0] for n in ("lyra_sample1_16kHz.wav", "lyra_sample2_16kHz.wav")]
    (tmp_path / "audio").mkdir()
    rows = []
    for i in range(4):
        w = wavs[i % 2][i * 4000 : i * 4000 + 24077]  # not a whole number of frames
        sf.write(tmp_path / "audio" / f"talk{i}.wav", w, 16000)
        rows.append({"path": f"audio/talk{i}.wav", "id": f"talk{i}", "speaker": f"s{i % 2}", "text": "some words"})
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tokenize([str(manifest)], tmp_path / "clear", TokenizeOptions(codec="lyra"), progress=False)
    anonymize_store(tmp_path / "clear", tmp_path / "scr", key=KEY)
    key_file = tmp_path / "k.key"
    key_file.write_text(KEY.hex())
    os.chmod(key_file, 0o600)
    before = {n: checksums(tmp_path / n) for n in ("clear", "scr")}
    reports = {}
    for name in ("clear", "scr"):
        out = tmp_path / f"{name}.json"
        argv = [str(tmp_path / name), "--labels", str(manifest), "--source-dir", str(manifest), "--json",
                "--per-speaker", "1", "--scramble-key", str(key_file), "--reference", str(tmp_path / "clear"),
                "--clear", str(tmp_path / "clear")]  # fmt: skip
        import contextlib
        import io

        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            assert main(["privacy-audit", *argv]) == 0
        out.write_text(buf.getvalue())
        reports[name] = json.loads(buf.getvalue())
    assert {n: checksums(tmp_path / n) for n in ("clear", "scr")} == before  # auditing never writes
    where = {m["where"]: m for m in reports["clear"]["metadata"]}
    assert where["shard index: source"]["count"] == 4 and "talk0" in where["shard index: source"]["examples"][0]
    assert {
        "shard index: id",
        "shard index: extra.speaker",
        "shard index: extra.text",
        "shard index: source_bytes",
    } <= set(where)
    assert "exact durations" in where["shard index: seconds"]["note"]
    scr_where = {m["where"] for m in reports["scr"]["metadata"]}
    assert "shard index: source" not in scr_where and "shard index: extra.text" not in scr_where
    clear, scr = reports["clear"]["decode"], reports["scr"]["decode"]
    assert clear["files"] == 4 and clear["as_stored"] >= 0.85  # the public decoder gives the audio back
    assert scr["with_key"] == pytest.approx(clear["as_stored"], abs=1e-6)  # the key gives exactly the clear codes
    assert scr["as_stored"] < scr["floor_unrelated"] < 0.6  # no key: no closer than another speaker's utterance
    assert "frequency_attack" in scr and 0.0 <= scr["frequency_attack_codes_recovered"] <= 1.0
    assert reports["scr"]["scrambled"] and "embedding" in reports["clear"]["sid"]
    assert "embedding_from_clear_after_frequency_attack" in reports["scr"]["sid"]


def test_cli_anonymize_round_trip_and_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from codec2vec.cli import main
    from codec2vec.store import TokenStore

    src = fake_store(tmp_path / "clear", n=8)
    key = tmp_path / "keys" / "scramble.key"
    assert main(["anonymize", str(src.root), "--out", str(tmp_path / "scr"), "--scramble-key", str(key)]) == 0
    assert stat.S_IMODE(key.stat().st_mode) == 0o600  # created, private
    argv = ["anonymize", str(tmp_path / "scr"), "--out", str(tmp_path / "back"), "--unscramble", "--scramble-key"]
    assert main([*argv, str(key), "--levels", "3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["levels"] == 3
    back = TokenStore.open(tmp_path / "back")
    assert all(torch.equal(back[u], src[u][:3]) for u in src.ids())
    other = tmp_path / "other.key"
    load_key(other, create=True)
    assert main([*argv[:3], str(tmp_path / "back2"), *argv[4:], str(other)]) == 2  # the wrong key: refused
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "another key" in err
    assert (
        main(["anonymize", str(src.root), "--out", str(tmp_path / "z"), "--scramble-key", str(tmp_path / "z" / "k")])
        == 2
    )
    assert main(["info", str(tmp_path / "scr")]) == 0 and "scrambled: yes" in capsys.readouterr().out


def test_permuted_codebook_rows_would_give_the_permutation_away(lyra_codec) -> None:
    """Why a scrambled store carries the public table and the key holder permutes it at training time: anyone
    holding permuted rows and the public codec recovers every level's permutation by nearest-row matching."""
    table = lyra_codec.codebook_vectors()  # (K, V, D), public
    perms = permutations(KEY, table.shape[0], table.shape[1])
    permuted = torch.empty_like(table)
    permuted[torch.arange(table.shape[0])[:, None], torch.from_numpy(perms)] = table  # row perms[k, v] = table[k, v]
    recovered = torch.cdist(table, permuted).argmin(-1).numpy()  # (K, V): clear v -> the row that matches it
    assert np.array_equal(recovered, perms)


def test_cli_tokenize_private_keeps_only_the_columns_allowed(named_corpus, tmp_path: Path, capsys) -> None:
    from codec2vec.cli import main
    from codec2vec.store import TokenStore

    manifest, _ = named_corpus
    out, key, ids = tmp_path / "st", tmp_path / "mine" / "k.key", tmp_path / "mine" / "ids.jsonl"
    argv = ["tokenize", str(manifest), "--out", str(out), "--private-key", str(key), "--id-map", str(ids)]
    assert main([*argv, "--private-keep", "split,speaker", "--json"]) == 3  # the missing file: rejected
    capsys.readouterr()
    store = TokenStore.open(out)
    assert {json.dumps(store.entry(u)["extra"], sort_keys=True) for u in store.ids()} == {
        json.dumps({"speaker": s, "split": "train"}, sort_keys=True) for s in ("alice_x", "bob_x", "carol_x")
    }
    assert stat.S_IMODE(key.stat().st_mode) == stat.S_IMODE(ids.stat().st_mode) == 0o600
    assert main(["info", str(out), "--json"]) == 0 and json.loads(capsys.readouterr().out)["private"] is True
    assert main([*argv, "--private-keep", "split"]) == 2  # another column set than the store's: refused
    assert "columns" in capsys.readouterr().err
