"""Self-describing, atomically written, checksum-verified pre-training checkpoints (nanoGPT/whisper style).

A checkpoint is a directory `RUN/checkpoints/step-00001000/` holding
  - `model.safetensors`: the whole `Pretrainer` state (encoder `encoder.*`, heads, EMA teacher, codebooks);
  - `state.pt`: optimizer, scheduler, grad scaler, RNG and data-loader position (plain tensors and numbers,
    read back with `torch.load(weights_only=True)`, never arbitrary pickles);
  - `meta.json`: format version, step, the resolved config, the codec metadata (`CodecInfo`), the label
    classes and the sha256 of both files.
It is written under a temporary name, every file fsync'ed, then renamed into place, so a killed writer
never leaves a half checkpoint under a real name. Loading verifies the checksums and names the damaged file.
`load_model(path)` rebuilds the `Codec2VecEncoder` for downstream stages from the checkpoint alone, with the front
end its config names (`model.frontend`, also `meta["frontend"]`): codec tokens `(B, K, T)` in, or 16 kHz audio
`(B, S)` for the waveform/mel baselines.

Every reader also takes an exported encoder folder (`features/export.py`: `config.json` + `model.safetensors`, encoder
weights only) or a hub model id `owner/name` (fetched with `huggingface_hub.snapshot_download`; with
`HF_HUB_OFFLINE=1` only the local hub cache is looked in).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from codec2vec.common.errors import StoreError
from codec2vec.common.files import atomic_dir, atomic_write, clean_stale, fsync_file, sha256_file, share_mode
from codec2vec.model import Codec2VecEncoder
from codec2vec.pretrain.config import config_from_dict

FORMAT = "codec2vec-checkpoint"
VERSION = 1
EXPORT_FORMAT = "codec2vec-encoder"  # an exported, encoder-only folder (`config.json`)
_STEP_DIR = re.compile(r"^step-(\d{8,})$")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class CheckpointError(StoreError):
    """A checkpoint is missing, incomplete or damaged (the message names the file)."""


def step_dir(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"step-{step:08d}"


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first (temporary and partial directories are ignored)."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [
        (int(m.group(1)), p) for p in root.iterdir() if (m := _STEP_DIR.match(p.name)) and (p / "meta.json").is_file()
    ]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def save_checkpoint(
    path: str | Path,
    *,
    weights: dict[str, torch.Tensor],
    state: dict[str, Any],
    meta: dict[str, Any],
) -> Path:
    """Write a checkpoint directory atomically (`files.atomic_dir`: built aside, fsynced, renamed; an existing
    checkpoint of the same step is replaced); `meta` must be JSON-able (config, codec, step, ...)."""
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    final = Path(path)
    clean_stale(final.parent)  # what a killed save left
    try:
        with atomic_dir(final, replace=True) as tmp:
            tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in weights.items()}
            save_file(tensors, str(tmp / "model.safetensors"))
            torch.save(state, tmp / "state.pt")
            files = {}
            for name in ("model.safetensors", "state.pt"):
                share_mode(tmp / name)  # safetensors writes 0600; a checkpoint is shared like any data file
                fsync_file(tmp / name)
                files[name] = sha256_file(tmp / name)
            full_meta = {"format": FORMAT, "version": VERSION, **meta, "files": files}
            atomic_write(tmp / "meta.json", json.dumps(full_meta, indent=1, sort_keys=False, default=str))
    except (OSError, RuntimeError, SafetensorError) as e:  # a full disk: torch and safetensors say it their way
        why = e.strerror if isinstance(e, OSError) and e.strerror else (str(e).strip().splitlines() or ["?"])[0]
        raise CheckpointError(
            f"{final}: cannot write the checkpoint ({why}); disk full? The run resumes from its newest checkpoint"
        ) from None
    return final


def read_meta(path: str | Path) -> dict[str, Any]:
    """The checkpoint's `meta.json`, after checking its format (an exported folder: its `config.json`, read as a
    checkpoint's meta: step, config, codec, frontend, files)."""
    if (Path(path) / "config.json").is_file() and not (Path(path) / "meta.json").is_file():
        return _export_meta(Path(path))
    p = Path(path) / "meta.json"
    if not p.is_file():
        raise CheckpointError(f"{p}: missing; {path} is not a complete codec2vec checkpoint")
    try:
        meta = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{p}: unreadable ({e})") from None
    if meta.get("format") != FORMAT or int(meta.get("version", -1)) > VERSION:
        raise CheckpointError(
            f"{p}: not a {FORMAT} version <= {VERSION} (found {meta.get('format')!r} {meta.get('version')!r})"
        )
    return meta


def _export_meta(folder: Path) -> dict[str, Any]:
    p = folder / "config.json"
    try:
        cfg = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{p}: unreadable ({e})") from None
    if not isinstance(cfg, dict) or cfg.get("format") != EXPORT_FORMAT or int(cfg.get("version", -1)) > VERSION:
        raise CheckpointError(f"{p}: not a {EXPORT_FORMAT} version <= {VERSION} config (codec2vec export writes one)")
    missing = [k for k in ("training_config", "codec", "frontend", "files") if k not in cfg]
    if missing:
        raise CheckpointError(f"{p}: no {missing[0]!r}; not a complete codec2vec export")
    keys = ("step", "codec", "frontend", "files", "label_classes", "encoder_params")
    meta = {"format": EXPORT_FORMAT, "version": cfg["version"], "config": cfg["training_config"], "exported": True}
    return {**meta, **{k: cfg[k] for k in keys if k in cfg}}


def _verified(path: Path, meta: dict[str, Any], name: str) -> Path:
    f = path / name
    if not f.is_file():
        raise CheckpointError(f"{f}: missing")
    want = meta.get("files", {}).get(name)
    if want is None or sha256_file(f) != want:
        raise CheckpointError(f"{f}: checksum mismatch; the file is damaged")
    return f


def resolve(path: str | Path) -> Path:
    """A checkpoint directory from a checkpoint directory, its meta.json, a run directory (newest), an exported
    folder or a hub model id (downloaded, or found in the hub cache)."""
    p = Path(path)
    if not p.exists() and _HUB_ID.match(str(path)):
        p = hub_snapshot(str(path))
    if p.is_file() and p.name in ("meta.json", "model.safetensors", "state.pt", "config.json"):
        p = p.parent
    if (p / "meta.json").is_file() or (p / "config.json").is_file():
        return p
    latest = latest_checkpoint(p)
    if latest is None:
        raise CheckpointError(
            f"{p}: no checkpoint found (expected DIR/meta.json, RUN/checkpoints/step-*/ or an exported DIR/config.json)"
        )
    return latest


def hub_snapshot(repo_id: str) -> Path:
    """The local folder of hub model `repo_id` (`huggingface_hub.snapshot_download`); with `HF_HUB_OFFLINE` set,
    only the local cache is looked in, and a model not there is a one-line error."""
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise CheckpointError(
            f"{repo_id}: no such folder; loading it as a hub model id needs huggingface_hub (pip install 'codec2vec[hf]')"
        ) from None
    try:
        return Path(snapshot_download(repo_id, local_files_only=offline))
    except Exception as e:  # noqa: BLE001 (offline, unknown repo, network: all end in the same advice)
        why = "HF_HUB_OFFLINE is set and it is not in the local hub cache" if offline else f"{type(e).__name__}: {e}"
        raise CheckpointError(
            f"{repo_id}: no such folder, and not loadable as a hub model id ({why}); "
            f"`hf download {repo_id}` while online puts it in the cache"
        ) from None


def load_checkpoint(
    path: str | Path, *, with_state: bool = True
) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]:
    """(weights, state, meta) from a verified checkpoint; `state` is {} when `with_state` is False."""
    from safetensors.torch import load_file

    p = resolve(path)
    meta = read_meta(p)
    weights = load_file(str(_verified(p, meta, "model.safetensors")))
    state: dict[str, Any] = {}
    if meta.get("exported"):
        if with_state:
            raise CheckpointError(f"{p}: an exported encoder has no training state; resume from the run's checkpoint")
        return {f"encoder.{k}": v for k, v in weights.items()}, state, meta
    if with_state:
        try:
            state = torch.load(_verified(p, meta, "state.pt"), map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 (an unpicklable object means a file we did not write)
            raise CheckpointError(f"{p / 'state.pt'}: cannot be read safely ({e})") from None
    return weights, state, meta


def prune_checkpoints(run_dir: str | Path, keep: int) -> None:
    """Delete all but the newest `keep` checkpoints (keep <= 0 keeps all)."""
    if keep <= 0:
        return
    for p in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(p, ignore_errors=True)


def weight_shapes(path: Path, limit: int = 100 << 20) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape from a safetensors file's header alone (no tensor is read); CheckpointError if the
    header is not one (its length field past the file or over `limit` bytes, not JSON, no shapes)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        if size < 8 or not 2 <= n <= min(limit, size - 8):
            raise CheckpointError(f"{path}: not a safetensors file (header length {n}, file {size} bytes)")
        try:
            header = json.loads(f.read(n))
            shapes = {k: tuple(int(d) for d in v["shape"]) for k, v in header.items() if k != "__metadata__"}
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            raise CheckpointError(f"{path}: unreadable safetensors header ({e})") from None
    return shapes


def check_architecture(path: str | Path) -> dict[str, Any]:
    """The checkpoint's meta, after checking that the encoder its config describes has exactly the shapes of
    its stored weights (read from the header, nothing built): a `meta.json` edited to a huge model is refused
    before any memory is allocated. For sources built from the config alone (the random reference)."""
    p = resolve(path)
    meta = read_meta(p)
    f = _verified(p, meta, "model.safetensors")
    prefix = "" if meta.get("exported") else "encoder."  # an export holds the encoder's weights alone
    shapes = {k[len(prefix) :]: v for k, v in weight_shapes(f).items() if k.startswith(prefix)}
    _check_encoder(f, shapes, meta)
    return meta


def _check_encoder(f: Path, shapes: dict[str, tuple[int, ...]], meta: dict[str, Any]) -> None:
    try:
        cfg = config_from_dict(meta["config"])
        codec = meta["codec"]
        Codec2VecEncoder.check_shapes(
            shapes, config=cfg.model, num_codebooks=int(codec["num_codebooks"]),
            codebook_size=int(codec["codebook_size"]),
        )  # fmt: skip
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{f}: encoder weights do not fit the config in meta.json ({e})") from None


def load_model(path: str | Path) -> tuple[Codec2VecEncoder, dict[str, Any]]:
    """The pre-trained encoder (eval mode, CPU) and the checkpoint's meta (config, codec, step, ...). Baselines
    (`meta["frontend"]` waveform or mel) take audio `(B, S)` at 16 kHz and frame lengths, not codes.

    `path`: a checkpoint directory, a run directory (its newest checkpoint), an exported folder or a hub id.
    """
    weights, _, meta = load_checkpoint(path, with_state=False)
    cfg = config_from_dict(meta["config"])
    codec = meta["codec"]
    try:
        encoder = Codec2VecEncoder.from_state_dict(
            weights,
            config=cfg.model,
            num_codebooks=int(codec["num_codebooks"]),
            codebook_size=int(codec["codebook_size"]),
            prefix="encoder.",
        )
    except (KeyError, RuntimeError) as e:
        raise CheckpointError(
            f"{resolve(path)}/model.safetensors: encoder weights do not fit the config ({e})"
        ) from None
    encoder.eval()
    return encoder, meta
