"""`codec2vec privacy-audit`: what a token store gives away, measured. The store is only read, never written.

1. Speaker identification (SID) by an attacker who can label a little of the store's speech: per utterance,
   mean-pooled codec embeddings (the sum over levels of the store's codebook rows, `(D,)`: SUPERB's SID head is
   mean-pooling + a linear classifier) and, as a second attacker, per-level code histograms `(K*V,)` (a linear
   probe on those is blind to any per-level permutation, so scrambling cannot lower it); a multinomial logistic
   regression is fitted on `train_per_speaker` utterances per speaker and tested on the rest; chance is the
   majority speaker's share of the test set. With `clear` (the same utterances in clear codes, standing for the
   attacker's own tokens of labelled recordings of these speakers), also a probe trained on clear tokens and
   tested on this store: the attacker without the key (and after the frequency attack, for a scrambled store).
2. Audio through the public decoder: log-spectrogram (512-point STFT, hop 10 ms, log(|X| + 1e-5)) Pearson
   correlation between the decoded codes and the source audio, averaged over utterances whose source is at hand,
   as stored; for a scrambled store also with the key (`key`) and after a frequency-analysis attack (per-level
   code frequencies of `reference`, the attacker's own clear tokens, rank-matched to this store's); the floor is
   the same correlation between the sources of two unrelated utterances of different speakers.
3. Every piece of identifying metadata the store holds (`metadata_report`), listed with examples.

This is our own small probe: a linear classifier on mean-pooled features is the function class of SUPERB's SID
head (Linear(D, 256) -> mean -> Linear(256, C) is linear too); an L2-regularised logistic regression fits it in
a second, without the `codec2vec probe` machinery (checkpoints, layer weights, early stopping).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from codec2vec.common.options import option
from codec2vec.corpora.audio import manifest_rows, scan_sources
from codec2vec.privacy.keys import load_key, permutations, unscramble
from codec2vec.privacy.leakage import code_counts, decode_leakage, frequency_attack
from codec2vec.privacy.private import read_id_map
from codec2vec.store import TokenStore
from codec2vec.store.decode import codec_for_store

HASHED_ID = re.compile(r"^[0-9a-f]{32}$")
KNOWN_FILES = {"meta.json", "contents.json", "codebooks.safetensors", "rejects.jsonl", ".lock"}


# --- 3. metadata --------------------------------------------------------------------------------------------


def _examples(values: list[Any], n: int = 3) -> list[str]:
    return [s if len(s) <= 60 else "..." + s[-57:] for s in map(str, values[:n])]  # a path's end names the file


def _item(where: str, count: int, examples: list[Any], note: str, **more: Any) -> dict[str, Any]:
    return {"where": where, "count": count, "examples": _examples(examples), "note": note, **more}


def metadata_report(store: TokenStore) -> list[dict[str, Any]]:
    """Every field of the store that can name a person, a place or a file, with counts and examples."""
    ids = store.ids()
    entries = [store.entry(u) for u in ids]
    items: list[dict[str, Any]] = []
    if ids:
        plain = [u for u in ids if not HASHED_ID.match(u)]
        note = "utterance names as given (often speaker/file names)" if plain else "keyed hashes"
        items.append(_item("shard index: id", len(plain), plain, note, hashed=len(ids) - len(plain)))
    sources = [e["source"] for e in entries if e.get("source")]
    if sources:
        items.append(_item("shard index: source", len(sources), sources, "source file paths"))
    columns: dict[str, list[Any]] = {}
    for e in entries:
        for c, v in (e.get("extra") or {}).items():
            columns.setdefault(c, []).append(v)
    for c, vals in sorted(columns.items()):
        distinct = sorted({str(v) for v in vals})
        items.append(_item(f"shard index: extra.{c}", len(vals), distinct, "manifest column", distinct=len(distinct)))
    if entries:
        on_grid = all(abs(e["seconds"] * store.codec.frame_rate - e["frames"]) < 1e-6 for e in entries)
        note = "durations on the frame grid (what the codes show)" if on_grid else (
            "exact durations (a sample count can single out a file of a known corpus)")  # fmt: skip
        items.append(_item("shard index: seconds", len(entries), [f"{e['seconds']:.5f} s" for e in entries], note))
    sizes = [e["source_bytes"] for e in entries if e.get("source_bytes")]
    if sizes:
        items.append(_item("shard index: source_bytes", len(sizes), sizes, "source file sizes (can single out a file)"))
    location = [f"{k}={v}" for k, v in store.codec.config.items() if k in ("path", "device")]
    if location:
        items.append(_item("meta.json: codec.config", len(location), location, "where the codec weights were loaded"))
    for name in store.label_names():
        note = "frame labels (k-means labels of the clear latent describe the clear codes)"
        items.append(_item(f"labels/{name}", len(store.labels(name)), [], note))
    rejects = store.root / "rejects.jsonl"
    if rejects.is_file() and rejects.stat().st_size:
        rows = [json.loads(x) for x in rejects.read_text().splitlines() if x.strip()]
        items.append(_item("rejects.jsonl", len(rows), [r.get("path") for r in rows], "paths of rejected inputs"))
    other = [p.name for p in store.root.iterdir() if p.name not in KNOWN_FILES | {"shards", "labels"}]
    if other:
        items.append(_item("other files", len(other), other, "not part of the store format"))
    return items


# --- 1. speaker identification ------------------------------------------------------------------------------


def utterance_features(store: TokenStore, ids: list[str], kind: str, undo: np.ndarray | None = None) -> np.ndarray:
    """`embedding`: mean over frames of the summed codebook rows `(N, D)`; `histogram`: per-level code
    frequencies `(N, K*V)`. `undo`: permutations `(K, V)` to unscramble the codes with first (an attacker's guess)."""

    k, v = store.codec.num_codebooks, store.codec.codebook_size
    table = store.codebook_vectors().numpy() if kind == "embedding" else None  # (K, V, D)
    rows = []
    for uid in ids:
        codes = store.read_numpy(uid)  # (K, T)
        if undo is not None:
            codes = np.asarray(unscramble(codes, undo))
        counts = np.zeros((k, v))
        np.add.at(counts, (np.arange(k)[:, None], codes), 1.0)
        counts /= max(1, codes.shape[1])  # (K, V) frequencies
        rows.append(np.einsum("kv,kvd->d", counts, table) if table is not None else counts.ravel())
    return np.stack(rows)


def attacker_split(
    ids: list[str], speakers: dict[str, str], per_speaker: int, seed: int = 0
) -> tuple[list[str], list[str]]:
    """(attacker's labelled ids: `per_speaker` per speaker, test ids: the rest), seeded."""
    rng = np.random.default_rng(seed)
    by: dict[str, list[str]] = {}
    for u in ids:
        if u in speakers:
            by.setdefault(speakers[u], []).append(u)
    train: list[str] = []
    for spk in sorted(by):
        group = sorted(by[spk])
        train += [group[i] for i in rng.permutation(len(group))[:per_speaker]]
    chosen = set(train)
    return train, [u for u in ids if u in speakers and u not in chosen]


def linear_probe(x_train: np.ndarray, y_train: list[str], x_test: np.ndarray, y_test: list[str]) -> dict[str, float]:
    """Standardised features -> multinomial logistic regression; accuracy and chance (majority test class)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x_train)
    clf = LogisticRegression(max_iter=3000, C=1.0).fit(scaler.transform(x_train), y_train)
    pred = clf.predict(scaler.transform(x_test))
    _, counts = np.unique(np.asarray(y_test), return_counts=True)
    return {"accuracy": float(np.mean(pred == np.asarray(y_test))), "chance": float(counts.max() / len(y_test)),
            "train": len(y_train), "test": len(y_test), "speakers": len(set(y_train))}  # fmt: skip


def sid_audit(
    store: TokenStore,
    speakers: dict[str, str],
    *,
    per_speaker: int = 8,
    clear: TokenStore | None = None,
    attack: np.ndarray | None = None,
) -> dict[str, Any]:
    """SID accuracy of the two attackers (and, with `clear`, the clear codes of the same utterances, of one
    trained on clear tokens; with `attack`, the permutations a frequency-analysis attacker estimated, also after
    unscrambling with those)."""
    train, test = attacker_split(store.ids(), speakers, per_speaker)
    if len({speakers[u] for u in train}) < 2 or not test:
        return {"error": "fewer than two labelled speakers, or nothing left to test on"}
    out: dict[str, Any] = {"per_speaker": per_speaker}
    for kind in ("embedding", "histogram"):
        out[kind] = linear_probe(utterance_features(store, train, kind), [speakers[u] for u in train],
                                 utterance_features(store, test, kind), [speakers[u] for u in test])  # fmt: skip
    if clear is not None:
        ref_train = [u for u in train if u in clear]
        if ref_train:
            x_ref, y_ref = utterance_features(clear, ref_train, "embedding"), [speakers[u] for u in ref_train]
            y_test = [speakers[u] for u in test]
            out["embedding_from_clear"] = linear_probe(
                x_ref, y_ref, utterance_features(store, test, "embedding"), y_test
            )
            if attack is not None:
                x_guess = utterance_features(store, test, "embedding", undo=attack)
                out["embedding_from_clear_after_frequency_attack"] = linear_probe(x_ref, y_ref, x_guess, y_test)
    return out


def read_speakers(
    manifest: str | os.PathLike[str] | None, store: TokenStore, id_map: dict[str, dict[str, Any]] | None = None
) -> dict[str, str]:
    """id -> speaker, from a manifest (`.jsonl`/`.tsv` with `id` and `speaker` or `label`) or the store's own
    `speaker` column; a private store's hashed ids are matched to the manifest's through its id map."""
    field = "speaker"
    out: dict[str, str] = {}
    if manifest:
        for row in manifest_rows(Path(manifest)):
            spk = row.get(field, row.get("label"))
            if row.get("id") and spk is not None:
                out[str(row["id"])] = str(spk)
    for hid, row in (id_map or {}).items():
        if row.get("source_id") in out:
            out[hid] = out[row["source_id"]]
    for u in store.ids():
        spk = (store.entry(u).get("extra") or {}).get(field)
        if spk is not None:
            out.setdefault(u, str(spk))
    return out


# --- the audit ----------------------------------------------------------------------------------------------


def find_sources(
    store: TokenStore, source_dir: str | None, id_map: dict[str, dict[str, Any]] | None = None
) -> dict[str, str]:
    """id -> source audio file: from `source_dir` (a folder or manifest, ids as `tokenize` makes them), a
    private store's id map, or the store's own `source` column where that file exists."""

    found = {it.id: it.path for it in scan_sources([source_dir])} if source_dir else {}
    for hid, row in (id_map or {}).items():
        path = found.get(row.get("source_id", ""), row.get("path", ""))
        if path and os.path.isfile(path):
            found[hid] = path
    out = {}
    for u in store.ids():
        src = found.get(u) or store.entry(u).get("source") or ""
        if src and os.path.isfile(src):
            out[u] = src
    return out


@dataclass(frozen=True)
class AuditOptions:
    """What `codec2vec privacy-audit` is given (its flags, made from these fields by `cli/flags.py`); `run_audit`
    takes them as keywords (`scramble_key` as `key_file`)."""

    labels: str | None = option(None, help="manifest with id and speaker columns (for the SID probe)")
    source_dir: str | None = option(None, help="the source audio: a folder or manifest (decoded audio check)")
    id_map: str | None = option(None, help="a private store's id map (matches labels and sources)")
    scramble_key: str | None = option(None, help="a scrambled store's key: also decode with the key")
    reference: str | None = option(None, help="the attacker's own clear tokens (same codec): frequency attack")
    clear: str | None = option(None, help="the same utterances in clear codes: SID probe trained on clear tokens")
    codec_path: str | None = option(None)
    per_speaker: int = option(8, help="labelled utterances per speaker the attacker has")
    decode_files: int = option(40, help="utterances to decode (0: skip the decoder check)")


def run_audit(
    store_path: str | os.PathLike[str],
    *,
    labels: str | None = None,
    source_dir: str | None = None,
    id_map: str | None = None,
    key_file: str | None = None,
    reference: str | None = None,
    clear: str | None = None,
    codec_path: str | None = None,
    per_speaker: int = 8,
    decode_files: int = 40,
) -> dict[str, Any]:
    """The whole audit of one store (read only): SID, decoded audio (when `decode_files` > 0), metadata.
    `reference`: the attacker's own clear tokens of any speech (for the frequency attack on a scrambled store);
    `clear`: the same utterances in clear codes (the store this one was made from), standing for the attacker's
    own tokens of labelled recordings of these speakers (for a SID probe trained on clear tokens)."""

    store = TokenStore.open(store_path)
    ref = TokenStore.open(reference) if reference else None
    clear_store = TokenStore.open(clear) if clear else None
    rows = read_id_map(id_map) if id_map else {}
    speakers = read_speakers(labels, store, rows)
    report: dict[str, Any] = {
        "store": str(store.root), "utterances": len(store), "codec": store.codec.name,
        "levels": store.codec.num_codebooks, "private": bool(store.meta.get("private")),
        "scrambled": bool(store.meta.get("scrambled")), "metadata": metadata_report(store),
    }  # fmt: skip
    attack = None
    if report["scrambled"] and ref is not None:
        attack = frequency_attack(code_counts(store), code_counts(ref))
    if speakers:
        report["sid"] = sid_audit(store, speakers, per_speaker=per_speaker, clear=clear_store, attack=attack)
    else:
        report["sid"] = {"error": "no speaker labels (pass --labels MANIFEST with id and speaker columns)"}
    if decode_files > 0:
        perms = None
        if report["scrambled"] and key_file:
            perms = permutations(load_key(key_file), store.codec.num_codebooks, store.codec.codebook_size)
        sources = find_sources(store, source_dir, rows)
        report["decode"] = decode_leakage(store, sources, codec_for_store(store, codec_path), speakers=speakers,
                                          perms=perms, attack=attack, max_files=decode_files)  # fmt: skip
    return report


def format_audit(r: dict[str, Any]) -> str:
    """Human-readable `codec2vec privacy-audit`."""
    lines = [f"store      {r['store']}: {r['utterances']} utterances, {r['codec']} at {r['levels']} levels, "
             f"private: {'yes' if r['private'] else 'no'}, scrambled: {'yes' if r['scrambled'] else 'no'}"]  # fmt: skip
    sid = r["sid"]
    if "error" in sid:
        lines.append(f"SID        {sid['error']}")
    for kind in (
        "embedding",
        "histogram",
        "embedding_from_clear",
        "embedding_from_clear_after_frequency_attack",
    ):
        if kind in sid:
            s = sid[kind]
            lines.append(f"SID        {kind:<44} accuracy {s['accuracy']:.3f} vs chance {s['chance']:.3f} "
                         f"({s['speakers']} speakers, {s['train']} labelled, {s['test']} tested)")  # fmt: skip
    dec = r.get("decode", {})
    if "error" in dec:
        lines.append(f"decode     {dec['error']}")
    for key in ("as_stored", "with_key", "frequency_attack", "floor_unrelated"):
        if key in dec:
            lines.append(f"decode     {key:<44} log-spectrogram correlation {dec[key]:.3f} ({dec['files']} files)")
    if "frequency_attack_codes_recovered" in dec:
        lines.append(f"decode     frequency attack recovers {dec['frequency_attack_codes_recovered']:.1%} of codes")
    for m in r["metadata"]:
        ex = "; ".join(m["examples"])
        lines.append(f"metadata   {m['where']}: {m['count']} ({m['note']}){': ' + ex if ex else ''}")
    return "\n".join(lines)
