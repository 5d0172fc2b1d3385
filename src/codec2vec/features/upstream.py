"""Features from any checkpoint: every layer of the frozen encoder, from codes or straight from audio.

SUPERB (Yang et al. 2021) probes a frozen upstream through all its hidden states; this module is that upstream.

- `extract(model, codes (B, K, T), lengths (B,)) -> ([L + 1] x (B, T, D), lengths (B,))` (the pretrained
  feature source's computation, defined in `sources.py` and used here): eval mode, no gradient, all K levels (no quantizer dropout), no masking; `layers[0]` is the Transformer input (projected
  embeddings + positional conv), `layers[i]` the i-th layer's output. Padding frames are zeroed, and the valid
  frames do not depend on the padding (tested).
- `Upstream`: owns the checkpoint's codec and encoder, so users never tokenize by hand:
  `Upstream.from_checkpoint(ckpt)(wavs: list of (S,) at 16 kHz) -> (layers, lengths)`, one frame per
  `16000 / frame_rate` samples (320 for Lyra v2 and DAC 16 kHz). `Upstream.from_pretrained(folder_or_hub_id)`
  loads an exported model (`features/export.py`) the same way.
- `extract_to_dir(ckpt, srcs, out)`: the `codec2vec extract` verb: features of a token store or of audio
  files/folders/manifests into a memory-mappable feature folder (`features/cache.py: FeatureDir`), resumable.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from codec2vec.codecs import codec_info, get_codec
from codec2vec.codecs.base import Codec, CodecInfo
from codec2vec.common.errors import Codec2VecError, ConfigError
from codec2vec.common.files import atomic_file, check_outside
from codec2vec.common.options import option
from codec2vec.corpora.audio import AudioItem, resample, scan_sources
from codec2vec.features.cache import FeatureDir, codes_for_sources, is_store
from codec2vec.features.inputs import ClipAudio, StoreCodes
from codec2vec.features.sources import AUDIO_BATCH_FRAMES, checkpoint_source, extract
from codec2vec.model import Codec2VecEncoder
from codec2vec.pretrain.checkpoint import load_model
from codec2vec.store import TokenStore

INPUT_RATE = 16000  # Hz of the waveforms `Upstream` takes (s3prl's convention)


def codec_for_checkpoint(meta: dict[str, Any], codec_path: str | None = None) -> Codec:
    """The codec that made the checkpoint's training codes, rebuilt from its meta (weights from `codec_path`,
    the codec's own default location, or `CODEC2VEC_LYRA_DIR` for Lyra); the config hash must match unless
    `codec_path` names the weights explicitly."""

    info = CodecInfo.from_dict(meta["codec"])
    kw: dict[str, Any] = {"num_codebooks": info.num_codebooks}
    path = codec_path if codec_path is not None else info.config.get("path")
    if path is not None:
        kw["path"] = path
    codec = get_codec(info.name, **kw)
    built = codec_info(codec)
    if built.config_hash != info.config_hash and codec_path is None:  # as `store.decode.codec_for_store`
        raise ConfigError(
            f"the codec built for this checkpoint ({built.config}) is not the one it was trained on "
            f"({info.config}); pass codec_path / --codec-path"
        )
    return codec


class Upstream(nn.Module):
    """A frozen Codec2Vec upstream on raw audio: the codec tokenizes, the encoder returns every layer.

    `forward(wavs: list of 1-D float tensors at 16 kHz) -> ([L + 1] x (B, T, D), lengths (B,))`.
    """

    def __init__(self, model: Codec2VecEncoder, codec: Codec, meta: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.model = model.eval()
        self.codec = codec
        self.meta = dict(meta or {})
        for p in self.model.parameters():
            p.requires_grad_(False)

    @classmethod
    def from_checkpoint(cls, ckpt: str | Path, *, codec_path: str | None = None) -> Upstream:
        """Load a checkpoint (directory or run directory) and the codec it was trained on."""
        model, meta = load_model(ckpt)
        return cls(model, codec_for_checkpoint(meta, codec_path), meta)

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, *, codec_path: str | None = None) -> Upstream:
        """Load an exported folder (`codec2vec export`), a hub model id of one (`owner/name`, fetched with
        huggingface_hub; `HF_HUB_OFFLINE=1` reads only the local cache), a checkpoint or a run directory."""
        return cls.from_checkpoint(name_or_path, codec_path=codec_path)

    @property
    def num_layers(self) -> int:
        """Hidden states returned: the Transformer input plus one per layer."""
        return int(self.model.config.num_layers) + 1

    @property
    def dim(self) -> int:
        return int(self.model.config.dim)

    @property
    def downsample_rate(self) -> int:
        """Input samples (16 kHz) per output frame: 320 for a 50 Hz codec."""
        return round(INPUT_RATE / float(self.codec.frame_rate))

    def encode(self, wavs: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        """list of `(S,)` at 16 kHz -> codes `(B, K, T)`, frame lengths `(B,)`."""

        sr = int(self.codec.sample_rate)
        xs = []
        for i, w in enumerate(wavs):
            w = torch.as_tensor(w).detach().float().cpu()
            if w.ndim != 1:
                raise Codec2VecError(f"wavs[{i}]: expected a 1-D waveform, got shape {tuple(w.shape)}")
            xs.append(w if sr == INPUT_RATE else torch.from_numpy(resample(w.numpy(), INPUT_RATE, sr)))
        lengths = torch.tensor([len(x) for x in xs], dtype=torch.long)
        batch = torch.zeros(len(xs), int(lengths.max()) if xs else 0)  # (B, S)
        for b, x in enumerate(xs):
            batch[b, : len(x)] = x
        return self.codec.encode(batch, lengths)

    def forward(self, wavs: Sequence[Tensor]) -> tuple[list[Tensor], Tensor]:
        codes, frames = self.encode(wavs)
        device = next(self.model.parameters()).device
        return extract(self.model, codes.to(device), frames.to(device))


@dataclass(frozen=True)
class ExtractOptions:
    """What `codec2vec extract` keeps (its flags, made from these fields by `cli/flags.py`)."""

    layers: list[int] | None = option(None, nargs="+", help="hidden states to keep (0 = input; default all)")
    codec_path: str | None = option(None, help="the codec's weights (a local folder or a hub id)")
    format: str = option("features", choices=("features", "npy"), help="npy: OUT/<id>.npy (T, D) float32, one layer")


def extract_to_dir(
    ckpt: str | Path,
    srcs: list[str],
    out: Path,
    *,
    layers: list[int] | None = None,
    codec_path: str | None = None,
    batch_frames: int = 20_000,
    progress: bool = False,
    fmt: str = "features",
) -> dict[str, Any]:
    """Features of every utterance of a token store (one SRC that is a store) or of audio files, folders and
    manifests into the feature folder `out` (float16, memory-mappable, with an index; see
    `features.cache.FeatureDir`). A rerun skips utterances already there. A waveform or mel baseline's features
    come from the audio (a store's recorded source files). Returns a summary dict (`rejected`: inputs that could
    not be used, with reasons in `rejects`).
    `fmt="npy"` (one layer) also writes `out/<id>.npy`, one `(T, D)` float32 array per utterance at 20 ms
    frames (the layout zerospeech-libriabx2 and fastabx read); the float16 folder is then `out/.features`."""

    t0 = time.monotonic()
    check_outside({"--out": out}, [s for s in srcs if (Path(s) / "meta.json").is_file()])  # stores are never written
    if fmt not in ("features", "npy"):
        raise ConfigError(f"--format {fmt}: choose features or npy")
    source = checkpoint_source(ckpt)
    chosen = list(range(source.num_layers)) if layers is None else [int(i) for i in layers]
    bad = [i for i in chosen if not 0 <= i < source.num_layers]
    if bad:
        raise ConfigError(f"--layers {bad}: the checkpoint has layers 0..{source.num_layers - 1}")
    # Inputs are checked before OUT exists: a store of another codec, a missing path, a format we do not read.
    if fmt == "npy" and len(chosen) != 1:
        raise ConfigError(f"--format npy: one layer per folder (--layers L), not {len(chosen)}")
    one_store = len(srcs) == 1 and is_store(srcs[0])
    rejects: list[dict[str, Any]] = []
    items = _audio_items(srcs, rejects) if source.reads == "audio" else None  # waveform/mel baselines read audio
    given = codes_for_sources(srcs, meta=source.meta) if one_store and items is None else None
    if not one_store and items is None:
        scan_sources(srcs)
    where = out / ".features" if fmt == "npy" else out
    fdir = FeatureDir.open_or_create(where, key=source.key, layers=chosen, dim=source.dim, describe=source.describe())
    if items is not None:
        todo = [it.id for it in items if it.id not in fdir]
        clips = ClipAudio([it for it in items if it.id not in fdir], rejects)  # unreadable files: rejects
        done = fdir.fill(source, clips, clips.ids, batch_frames=AUDIO_BATCH_FRAMES, progress=progress)
        inputs = len(items)
    else:  # audio is tokenized once into OUT/codes (a token store, resumable like `tokenize`); a store is read as is
        store = given or codes_for_sources(
            srcs, meta=source.meta, cache=out / "codes", codec_path=codec_path, progress=progress, rejects=rejects
        )
        ids = [uid for uid in store.ids() if uid not in fdir]
        done = fdir.fill(source, StoreCodes(store), ids, batch_frames=batch_frames, progress=progress)
        inputs, todo = len(store.ids()), ids
    if fmt == "npy":
        _write_npy(fdir, out)
    summary = {
        "out": str(out),
        "utterances": len(fdir),
        "extracted": done,
        "skipped_already_done": inputs - len(todo),
        "rejected": len(rejects),
        "rejects": rejects,
        "layers": chosen,
        "dim": source.dim,
        "frames": fdir.total_frames,
        "elapsed_seconds": round(time.monotonic() - t0, 2),
    }
    if progress:
        print(f"extract: {done} utterances extracted, {summary['skipped_already_done']} already done", file=sys.stderr)
    return summary


def _audio_items(srcs: list[str], rejects: list[dict[str, Any]]) -> list[AudioItem]:
    """The audio of `srcs` for an audio upstream: a token store's recorded source files (a private store records
    none: refused), or audio files, folders and manifests; items whose id cannot be used go to `rejects`."""
    if len(srcs) == 1 and (Path(srcs[0]) / "meta.json").is_file():
        store = TokenStore.open(srcs[0])
        items = [AudioItem(uid, str(store.entry(uid).get("source") or "")) for uid in store.ids()]
        if any(not it.path for it in items):
            raise ConfigError(
                f"{srcs[0]}: an audio baseline reads audio, and this store records no source file for some "
                "utterances (a private store); give the audio files, folders or a manifest instead"
            )
        return items
    items = scan_sources(srcs)
    rejects += [{"path": it.path, "id": it.id, "reason": it.problem} for it in items if it.problem is not None]
    return [it for it in items if it.problem is None]


def _write_npy(fdir: FeatureDir, out: Path) -> None:
    """`out/<id>.npy`: each utterance's `(T, D)` float32 frames of the folder's one layer (atomic; present
    files are kept, so a rerun writes only what is missing)."""
    for uid in fdir.ids:
        path = out / f"{uid}.npy"
        if not path.resolve().is_relative_to(out.resolve()):
            raise ConfigError(f"{uid!r}: an utterance id that would write outside {out}")
        if not path.exists():
            with atomic_file(path) as f:
                np.save(f, np.ascontiguousarray(fdir.get(uid)[:, 0], dtype=np.float32))


__all__ = ["INPUT_RATE", "Upstream", "codec_for_checkpoint", "extract", "extract_to_dir", "load_model"]
