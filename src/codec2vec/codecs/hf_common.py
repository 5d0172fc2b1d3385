"""What the `transformers` codec backends (dac.py, encodec.py, mimi.py) share: loading a checkpoint from a folder
or a hub id with actionable errors (`open_model`: the constructors' common part and keywords, `LoadOptions`), the frame grid (zero-pad each item to whole hops), output checks, weight hashes.

Shapes: waveforms `(B, S)` -> model input `(B, 1, T * hop)`; codes `(B, K, T)` long; lengths `(B,)`.
An internal module: `codecs/hf.py` is the public face of these backends.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypedDict, Unpack

import torch
from torch import Tensor

from codec2vec.common.errors import Codec2VecError

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")  # "org/name" or "name", as on the hub


class LoadOptions(TypedDict, total=False):
    """The keywords every `transformers` backend takes after `path` and `num_codebooks`."""

    device: str | torch.device  # where the model runs (default "cpu")
    model: Any  # a model built in memory (tests, benchmarks): used as it is, `path` ignored
    revision: str | None  # a hub revision (commit, tag or branch)
    local_files_only: bool  # never reach the hub: its cache or a folder only


@dataclass(frozen=True)
class OpenModel:
    """A loaded, frozen codec model with its source and frame grid (`open_model`)."""

    model: Any
    path: str | None  # the absolute folder, the hub id, or None for a model built in memory
    device: torch.device
    revision: str | None
    grid: tuple[int, int, float, int]  # sample rate (Hz), hop (samples), frame rate (frames/s), codebook size V


def open_model(
    path: str | None, model_type: str, class_name: str, hop: Callable[[Any], int], **opts: Unpack[LoadOptions]
) -> OpenModel:
    """The constructors' common part: the model (`load_model`) and its grid; `hop(config)` is the model's samples
    per frame."""
    device = opts.get("device", "cpu")
    model, source = load_model(
        opts.get("model"), path, class_name=class_name, model_type=model_type, revision=opts.get("revision"),
        local_files_only=opts.get("local_files_only", False), device=device,
    )  # fmt: skip
    cfg = model.config
    rate, samples = int(cfg.sampling_rate), int(hop(cfg))
    grid = (rate, samples, rate / samples, int(cfg.codebook_size))
    return OpenModel(model, source, torch.device(device), opts.get("revision"), grid)


def load_model(
    model: Any,
    path: str | None,
    *,
    class_name: str,
    model_type: str,
    revision: str | None,
    local_files_only: bool,
    device: str | torch.device,
) -> tuple[Any, str | None]:
    """The model to run (given, or `<class_name>.from_pretrained(path)`), frozen on `device`, and its source.

    The source is the absolute folder, the hub id, or None for a model built in memory.
    """
    if model is None:
        if path is None:
            raise Codec2VecError(f"{model_type}: give a hub id or a folder (--codec-path), or a built model")
        model, path = _from_pretrained(
            class_name, model_type, path, revision=revision, local_files_only=local_files_only
        )
    else:
        path = None
    if model.config.model_type != model_type:
        raise Codec2VecError(f"{model_type}: got a {model.config.model_type!r} model")
    return model.eval().requires_grad_(False).to(device), path


def _from_pretrained(
    class_name: str, model_type: str, path: str, *, revision: str | None, local_files_only: bool
) -> tuple[Any, str]:
    folder = Path(path).expanduser()
    if folder.is_dir():
        config_file = folder / "config.json"
        if not config_file.is_file():
            raise Codec2VecError(
                f"{model_type}: codec folder {str(folder)!r} has no config.json; pass --codec-path a folder "
                f"written by {class_name}.save_pretrained (config.json + model.safetensors)"
            )
        try:
            found = json.loads(config_file.read_text()).get("model_type")
        except (OSError, ValueError) as e:
            raise Codec2VecError(f"{model_type}: cannot read {str(config_file)!r}: {e}") from None
        if found != model_type:
            raise Codec2VecError(
                f"{model_type}: {str(config_file)!r} describes a {found!r} model, not {model_type!r}; "
                f"pass --codec-path a {model_type} checkpoint folder"
            )
        source = str(folder.resolve())
    elif folder.exists() or not _HUB_ID.match(path) or path.startswith((".", "~")):
        raise Codec2VecError(
            f"{model_type}: codec folder {path!r} not found; pass --codec-path a folder written by "
            f"{class_name}.save_pretrained (config.json + model.safetensors), or a hub id"
        )
    else:
        source = path
    import transformers
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # "Loading weights" bars: noise in tokenize logs
    try:
        model = getattr(transformers, class_name).from_pretrained(
            source, revision=revision, local_files_only=local_files_only
        )
    except pickle.UnpicklingError:  # torch.load(weights_only=True) met an object that is not plain tensors
        raise Codec2VecError(
            f"{model_type}: refused the weights of {source!r}: a pickle holding more than tensors (loading it could "
            "run code); use a folder with model.safetensors"
        ) from None
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        where = f"folder {source!r}" if folder.is_dir() else f"hub id {source!r} (not cached here; hub unreachable?)"
        raise Codec2VecError(
            f"{model_type}: cannot load {class_name} weights from {where}: {first}. Download the checkpoint on a "
            f"connected machine (hf download {path} --local-dir FOLDER) and pass --codec-path FOLDER; offline, set "
            "HF_HUB_OFFLINE=1 so the hub is not retried"
        ) from None
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    return model, source


def weights_sha256(model: torch.nn.Module) -> str:
    """sha256 over the state dict (names, dtypes, shapes, bytes): identifies the exact weights."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def describe(codec: Any, path: str | None, revision: str | None) -> dict[str, Any]:
    """The JSON-able fields every backend reports in `config()`."""
    return {
        "backend": "transformers",
        "model_class": type(codec.model).__name__,
        "path": path,
        "revision": revision or getattr(codec.model.config, "_commit_hash", None),
        "sample_rate": codec.sample_rate,
        "hop_length": codec.hop_length,
        "num_codebooks": codec.num_codebooks,
        "codebook_size": codec.codebook_size,
    }


def run_encode(
    codec: Any,
    wav: Tensor,
    lengths: Tensor,
    encode: Callable[[Tensor], Tensor],
    min_frames: int = 1,
    tail_frames: int = 0,
) -> tuple[Tensor, Tensor]:
    """Pad `(B, S)` to whole hops plus `tail_frames` frames of silence (at least `min_frames` in all), run
    `encode((B, 1, S')) -> (B, K, T')`, check, crop.

    Returns codes `(B, K, T)` (zero past each item's frames) and frames `(B,)` = ceil(S / hop), on `wav`'s device.
    """
    hop, k = codec.hop_length, codec.num_codebooks
    if wav.dim() != 2:
        raise ValueError(f"wav must be (B, S), got shape {tuple(wav.shape)}")
    n = torch.as_tensor(lengths, dtype=torch.long).to("cpu")
    if n.shape != (wav.shape[0],) or bool((n < 0).any()) or bool((n > wav.shape[1]).any()):
        raise ValueError(f"lengths must be ({wav.shape[0]},) in [0, {wav.shape[1]}], got {n.tolist()}")
    frames = (n + hop - 1) // hop  # (B,) = ceil(S / hop)
    longest = int(frames.max()) if len(frames) else 0
    if longest == 0:
        return torch.zeros(len(n), k, 0, dtype=torch.long, device=wav.device), frames.to(wav.device)
    padded = max(longest + tail_frames, min_frames)
    x = torch.zeros(len(n), padded * hop)  # (B, S')
    keep = min(x.shape[1], wav.shape[1])
    x[:, :keep] = wav[:, :keep].detach().to("cpu", torch.float32)
    x = x * (torch.arange(x.shape[1])[None, :] < n[:, None])  # silence past each length
    with torch.inference_mode():
        codes = encode(x[:, None, :].to(codec.device))  # (B, K, T')
    if tuple(codes.shape) != (len(n), k, padded):
        raise RuntimeError(f"{codec.name}: encode gave codes {tuple(codes.shape)}, the grid says {(len(n), k, padded)}")
    codes = codes[..., :longest].to("cpu", torch.long)
    codes = codes * (torch.arange(longest)[None, None, :] < frames[:, None, None])  # (B, K, T)
    return codes.to(wav.device), frames.to(wav.device)


def run_decode(codec: Any, codes: Tensor, lengths: Tensor, decode: Callable[[Tensor], Tensor]) -> tuple[Tensor, Tensor]:
    """Check `(B, k<=K, T)` codes, run `decode(codes) -> (B, [1,] S')`, return `(B, T*hop)` and samples `(B,)`.

    Samples past each item's `frames * hop` are zero. Fewer levels than K decode the coarser residual stream.
    """
    hop, k, v = codec.hop_length, codec.num_codebooks, codec.codebook_size
    if codes.dim() != 3 or not 1 <= codes.shape[1] <= k:
        raise ValueError(f"codes must be (B, K<={k}, T), got shape {tuple(codes.shape)}")
    frames = torch.as_tensor(lengths, dtype=torch.long).to("cpu")
    if frames.shape != (codes.shape[0],) or bool((frames < 0).any()) or bool((frames > codes.shape[2]).any()):
        raise ValueError(f"frame lengths must be ({codes.shape[0]},) in [0, {codes.shape[2]}], got {frames.tolist()}")
    if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= v):
        raise ValueError(f"codes must lie in [0, {v}), got [{int(codes.min())}, {int(codes.max())}]")
    total = (int(frames.max()) if len(frames) else 0) * hop
    samples = frames * hop
    if total == 0:
        return torch.zeros(codes.shape[0], 0, device=codes.device), samples.to(codes.device)
    with torch.inference_mode():
        wav = decode(codes[..., : total // hop].to(codec.device, torch.long))  # (B, [1,] S')
    wav = wav.reshape(wav.shape[0], -1).to("cpu", torch.float32)
    wav = torch.nn.functional.pad(wav, (0, max(0, total - wav.shape[1])))[:, :total]  # (B, T*hop)
    wav = wav * (torch.arange(total)[None, :] < samples[:, None])
    return wav.to(codes.device), samples.to(codes.device)
