"""Audio corpus -> token store: batched, in worker processes, resumable, rejecting bad inputs with reasons.

`tokenize(srcs, out, options)` scans files/folders/manifests (`audio.scan_sources`), skips utterances the
store already holds (and inputs rejected before, unless `retry_rejects`), encodes the rest in batches of
`batch_size` utterances in `workers` processes, and commits a shard every `shard_seconds` of audio. A
shard is committed by one atomic rename, so a run killed at any point leaves a store that verifies, and
running the same command again finishes the job without storing anything twice. Inputs that cannot be
used (unreadable, truncated, empty, NaN/inf, shorter than one codec frame, or failing in the codec) are
listed in `STORE/rejects.jsonl` with `path` and `reason`; all others are stored. Which inputs are taken under
which ids, which index fields are kept and where rejects go is the ingest policy's (`store/ingest.py`):
clear by default, private with `--private` (`privacy/private.py`).

`--shard I/N` keeps the I-th of N interleaved slices of the sorted input (for job arrays or torchrun
ranks), and `codec2vec merge` joins the slices' stores. `decode_store` turns codes back into audio.
"""

from __future__ import annotations

import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import torch

from codec2vec.codecs import CODECS, Codec, get_codec
from codec2vec.common.errors import AudioError, Codec2VecError
from codec2vec.common.files import atomic_file
from codec2vec.common.options import option
from codec2vec.common.progress import Progress
from codec2vec.corpora.audio import MAX_SECONDS, AudioItem, audio_blocks, audio_duration, load_audio, scan_sources
from codec2vec.privacy.private import PrivatePolicy
from codec2vec.store import ShardWriter, TokenStore
from codec2vec.store.ingest import ClearPolicy, IngestPolicy, Intake


@dataclass(frozen=True)
class TokenizeOptions:
    """How to tokenize (the flags of `codec2vec tokenize`, made from these fields by `cli/flags.py`)."""

    codec: str = option("lyra", help="codec backend", choices=tuple(CODECS))
    codec_path: str | None = option(None, help="weights: a local folder or a hub id")
    num_codebooks: int | None = option(None, help="levels to keep (Lyra: 1..46; EnCodec/Mimi: K)")
    workers: int = option(1, help="worker processes")
    batch_size: int = option(8, help="utterances per encode call")
    shard: str | None = option(None, help="I/N: tokenize only the I-th of N slices (0-based)")
    shard_seconds: float = option(600.0, help="audio seconds per committed shard")
    retry_rejects: bool = option(False, help="try inputs rejected by an earlier run again")
    device: str = option("cpu")
    # a new store's shard coding: "auto" (entropy-code when smaller), "packed" or always "rans"
    coding: str = option(
        "auto",
        choices=("auto", "packed", "rans"),
        help="a new store's shards: rANS-coded when smaller (auto), exact-width bit packing, or always rANS",
    )
    # longer files are rejected from their header, before reading (the flag is --max-hours)
    max_seconds: float = option(MAX_SECONDS, cli=False)
    # keyed ids, no paths or free text in the store (privacy/private.py)
    private: bool = option(False, help="keyed ids; no paths, names or free text in the store")
    private_key: str | None = option(None, help="--private: key file (created 0600; default OUT.key)")
    id_map: str | None = option(None, help="--private: hashed id -> source map (default OUT.ids.jsonl)")
    private_keep: tuple[str, ...] = option(
        ("split",),
        help="--private: manifest columns to keep, comma-separated (free text and names only if listed)",
    )


@dataclass
class Encoded:
    """What a worker returns for one input: codes `(K, T)` uint16, or the reason it was rejected."""

    item: AudioItem
    codes: np.ndarray | None
    seconds: float
    source_bytes: int
    reason: str | None = None
    retry: bool = False  # a codec failure (maybe ours, maybe transient) is tried again by the next run


def _codec_kwargs(opts: TokenizeOptions) -> dict[str, Any]:
    kw: dict[str, Any] = {"device": opts.device}
    if opts.codec_path is not None:
        kw["path"] = opts.codec_path
    if opts.num_codebooks is not None:
        kw["num_codebooks"] = opts.num_codebooks
    return kw


def ingest_policy(opts: TokenizeOptions) -> IngestPolicy:
    """The policy `opts` asks for: private (`--private`: keyed ids, allowed columns only) or clear."""
    if opts.private:
        return PrivatePolicy(key_file=opts.private_key, id_map=opts.id_map, keep=tuple(opts.private_keep))
    return ClearPolicy()


def parse_shard(spec: str | None) -> tuple[int, int]:
    """'I/N' -> (I, N) with 0 <= I < N; None -> (0, 1)."""
    if spec is None:
        return 0, 1
    try:
        i, n = (int(x) for x in spec.split("/"))
    except ValueError:
        raise Codec2VecError(f"--shard {spec!r}: expected I/N, e.g. 0/4") from None
    if not (n >= 1 and 0 <= i < n):
        raise Codec2VecError(f"--shard {spec!r}: need 0 <= I < N")
    return i, n


# --- encoding (runs in worker processes) ------------------------------------------------------------

_WORKER_CODEC: Codec | None = None


def _die_with_parent() -> None:
    """Linux: have the kernel SIGTERM this worker when its parent dies (e.g. a SIGKILLed tokenize)."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except OSError:
            pass


def _init_worker(name: str, kwargs: dict[str, Any]) -> None:
    global _WORKER_CODEC
    _die_with_parent()
    torch.set_num_threads(1)
    _WORKER_CODEC = get_codec(name, **kwargs)


LONG_SECONDS = 60.0  # longer inputs are encoded alone (never padded into a batch)


def encode_batch(codec: Codec, items: list[AudioItem], max_seconds: float = MAX_SECONDS) -> list[Encoded]:
    """Load, check and encode a batch; a failure is confined to the input that caused it. Inputs over a
    minute are encoded one at a time, without a padded copy: streamed block by block when the codec can
    (`encode_stream`, Lyra), so memory stays bounded whatever the length; else loaded whole (blocked reads)."""
    hop = codec.sample_rate / codec.frame_rate
    ready: list[tuple[AudioItem, np.ndarray, int]] = []
    out: dict[str, Encoded] = {}
    for it in items:
        try:
            size = os.path.getsize(it.path)
        except OSError:
            size = 0
        if hasattr(codec, "encode_stream") and audio_duration(it.path) > LONG_SECONDS:
            out[it.id] = _encode_streamed(codec, it, size, max_seconds)
            continue
        try:
            wav = load_audio(it.path, codec.sample_rate, max_seconds=max_seconds)
            if wav.shape[0] < hop:
                raise AudioError(
                    f"{it.path}: too short ({wav.shape[0]} samples at {codec.sample_rate} Hz, "
                    f"less than one {hop:g}-sample codec frame)"
                )
            ready.append((it, wav, size))
        except AudioError as e:
            out[it.id] = Encoded(it, None, 0.0, size, str(e))
    limit = LONG_SECONDS * codec.sample_rate
    short = [r for r in ready if r[1].shape[0] <= limit]
    groups = [short] if len(short) > 1 else []
    singles = [r for r in ready if r[1].shape[0] > limit] if groups else ready
    for group in groups:
        try:
            out.update({e.item.id: e for e in _encode_group(codec, group)})
        except Exception:  # isolate the failing input: one at a time
            singles = group + singles
    for one in singles:
        try:
            out.update({e.item.id: e for e in _encode_group(codec, [one])})
        except Exception as exc:  # a codec error on one input rejects that input only
            out[one[0].id] = _codec_failed(one[0], one[2], exc)
    return [out[it.id] for it in items]


def _codec_failed(it: AudioItem, size: int, exc: Exception) -> Encoded:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return Encoded(it, None, 0.0, size, f"{it.path}: codec failed ({msg})", retry=True)


def _encode_streamed(codec: Any, it: AudioItem, size: int, max_seconds: float) -> Encoded:
    """A long input read, resampled and encoded block by block (`audio_blocks` -> `codec.encode_stream`)."""
    samples = 0

    def counted() -> Iterator[np.ndarray]:
        nonlocal samples
        for block in audio_blocks(it.path, codec.sample_rate, max_seconds=max_seconds):
            samples += block.shape[0]
            yield block

    try:
        codes = codec.encode_stream(counted())  # (K, T)
    except AudioError as e:
        return Encoded(it, None, 0.0, size, str(e))
    except Exception as exc:  # a codec error rejects this input only
        return _codec_failed(it, size, exc)
    return Encoded(it, codes.astype(np.uint16), samples / codec.sample_rate, size)


def _encode_group(codec: Codec, group: list[tuple[AudioItem, np.ndarray, int]]) -> list[Encoded]:
    lengths = torch.tensor([w.shape[0] for _, w, _ in group], dtype=torch.long)
    if len(group) == 1:
        wav = torch.from_numpy(group[0][1])[None]  # (1, S), no copy
    else:
        wav = torch.zeros(len(group), int(lengths.max()))  # (B, S)
        for b, (_, w, _) in enumerate(group):
            wav[b, : w.shape[0]] = torch.from_numpy(w)
    with torch.inference_mode():
        encoded, frames = codec.encode(wav, lengths)  # (B, K, T), (B,)
    codes = encoded.cpu().numpy()
    return [
        Encoded(it, codes[b, :, : int(frames[b])].astype(np.uint16), w.shape[0] / codec.sample_rate, size)
        for b, (it, w, size) in enumerate(group)
    ]


def _worker_encode(items: list[AudioItem], max_seconds: float = MAX_SECONDS) -> list[Encoded]:
    assert _WORKER_CODEC is not None
    return encode_batch(_WORKER_CODEC, items, max_seconds)


def _batches(items: list[AudioItem], size: int) -> Iterator[list[AudioItem]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _encoded_stream(items: list[AudioItem], codec: Codec, opts: TokenizeOptions) -> Iterator[Encoded]:
    batches = list(_batches(items, max(1, opts.batch_size)))
    if opts.workers <= 1:
        for batch in batches:
            yield from encode_batch(codec, batch, opts.max_seconds)
        return
    import multiprocessing as mp

    ctx = mp.get_context("spawn")  # torch and TFLite state do not survive fork reliably
    with ProcessPoolExecutor(
        opts.workers, mp_context=ctx, initializer=_init_worker, initargs=(opts.codec, _codec_kwargs(opts))
    ) as pool:
        for result in pool.map(
            partial(_worker_encode, max_seconds=opts.max_seconds), batches
        ):  # in input order: same store for any worker count
            yield from result


# --- the driver -----------------------------------------------------------------------------------


Rejects = dict[tuple[str, str], dict[str, Any]]  # (path, id) -> {path, id, reason[, retry]}


def _read_rejects(path: Path) -> Rejects:
    """The rejects of earlier runs; a broken line (a hand edit, a foreign tool) is skipped with a warning,
    never an error: it only means that input is tried again."""
    rejects: Rejects = {}
    if not path.is_file():
        return rejects
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict) or not isinstance(row.get("path"), str):
                raise ValueError("no 'path'")
        except ValueError as e:
            print(f"codec2vec tokenize: warning: {path}:{n}: unreadable line skipped ({e})", file=sys.stderr)
            continue
        rejects[(row["path"], str(row.get("id", "")))] = row
    return rejects


def _write_rejects(path: Path, rejects: Rejects, secret: bool) -> None:
    with atomic_file(path) as f:  # secret: 0600 from the first byte (a private store's pair keyed ids with paths)
        if secret:
            os.fchmod(f.fileno(), 0o600)
        f.write("".join(json.dumps(r) + "\n" for r in rejects.values()).encode())


def tokenize(
    srcs: Iterable[str],
    out: str | os.PathLike[str],
    opts: TokenizeOptions = TokenizeOptions(),
    *,
    policy: IngestPolicy | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Tokenize `srcs` into the store `out`; returns a summary (counts, rejects, speed, `store.info()`).
    `policy` says which inputs are taken under which ids, which index fields are kept and where rejects go
    (`store/ingest.py`); by default the one `opts` asks for (`ingest_policy`).

    What is already stored is computed under the store's writer lock, from the store as re-read under it:
    a second `tokenize` that committed in the meantime is seen, and nothing is stored twice."""
    start = time.perf_counter()
    if not opts.max_seconds > 0:
        raise Codec2VecError(f"--max-hours: must be > 0, got {opts.max_seconds / 3600:g}")
    shard_i, shard_n = parse_shard(opts.shard)
    items = scan_sources(srcs)[shard_i::shard_n]
    policy = ingest_policy(opts) if policy is None else policy
    if opts.private and not policy.private:
        raise Codec2VecError("tokenize: --private asks for a private store; this ingest policy makes a clear one")
    codec = get_codec(opts.codec, **_codec_kwargs(opts))
    intake = policy.open(items, out, codec, opts.coding)
    items, store, rejects_path = intake.items, intake.store, intake.rejects
    with store.writer() as writer:  # takes the lock, then re-reads the store
        rejects = _read_rejects(rejects_path)
        known_bad = {key for key, r in rejects.items() if not r.get("retry")}
        bad_ids = [it for it in items if it.problem is not None]
        for it in bad_ids:
            rejects[(it.path, it.id)] = {"path": it.path, "id": it.id, "reason": it.problem}
        good = [it for it in items if it.problem is None]
        todo = [it for it in good if it.id not in store and (opts.retry_rejects or (it.path, it.id) not in known_bad)]
        stored = {it.id: os.stat(it.path).st_size if os.path.isfile(it.path) else 0 for it in good if it.id in store}
        skipped = len(stored)  # below: ids stored from a file of another size (private stores keep no sizes)
        differ = [i for i, n in stored.items() if n and store.entry(i).get("source_bytes") not in (0, None, n)]
        stats = _store_encoded(
            writer, todo, codec=codec, opts=opts, policy=policy, intake=intake, rejects=rejects, start=start,
            progress=progress,
        )  # fmt: skip
        _write_rejects(rejects_path, rejects, intake.secret)
    elapsed = time.perf_counter() - start
    rejected = [
        rejects[(it.path, it.id)] for it in items if (it.path, it.id) in rejects and (it.problem or it.id not in store)
    ]
    return {
        "inputs": len(items),
        "stored": stats["stored"],
        "skipped_already_stored": skipped,
        "skipped_other_audio": differ,
        "rejected": len(rejected),
        "rejected_this_run": stats["rejected"] + len(bad_ids),
        "rejects": rejected,
        "seconds_encoded": stats["seconds"],
        "elapsed_seconds": elapsed,
        "x_real_time": stats["seconds"] / elapsed if elapsed else 0.0,
        "options": asdict(opts),
        "store": TokenStore.open(store.root).info(),
    }


def _store_encoded(
    writer: ShardWriter,
    todo: list[AudioItem],
    *,
    codec: Codec,
    opts: TokenizeOptions,
    policy: IngestPolicy,
    intake: Intake,
    rejects: Rejects,
    start: float,
    progress: bool,
) -> dict[str, Any]:
    """Encode `todo` and queue the codes; commit a shard (and the rejects so far) every `shard_seconds`."""
    stored, seconds, new_rejects = 0, 0.0, 0
    bar = Progress("tokenize", len(todo), unit="utt", enabled=progress and bool(todo))  # nothing new: no line
    for enc in _encoded_stream(todo, codec, opts):
        if enc.codes is None:
            key = (enc.item.path, enc.item.id)
            rejects[key] = {"path": enc.item.path, "id": enc.item.id, "reason": enc.reason}
            if enc.retry:
                rejects[key]["retry"] = True
            new_rejects += 1
        else:
            rejects.pop((enc.item.path, enc.item.id), None)
            row = policy.row(
                enc.item, enc.codes, seconds=enc.seconds, source_bytes=enc.source_bytes, frame_rate=codec.frame_rate
            )
            writer.add(enc.item.id, enc.codes, **row)
            stored += 1
            seconds += enc.seconds
        x_real = seconds / max(1e-9, time.perf_counter() - start)
        bar.update(1, f"{seconds / 3600:.2f} h audio, {x_real:.1f}x real time, {new_rejects} rejected")
        if writer.seconds >= opts.shard_seconds:
            writer.commit()
            _write_rejects(intake.rejects, rejects, intake.secret)
    writer.commit()
    bar.close()
    return {"stored": stored, "seconds": seconds, "rejected": new_rejects}
