"""Codec backends served by Hugging Face `transformers`: DAC, EnCodec and Mimi behind the `Codec` protocol.

- `DacCodec`: Descript Audio Codec (Kumar et al. 2023), `DacModel`; `descript/dac_16khz` is the codec of Codec2Vec
  (Tseng & Harwath 2025): 12 residual codebooks x 1024 at 50 frames/s (hop 320 at 16 kHz).
- `EncodecCodec`: EnCodec (Defossez et al. 2022), `EncodecModel`; the bandwidth chooses K (24 kHz: 75 frames/s,
  750 bit/s per level, so 6 kbps = 8 levels).
- `MimiCodec`: Mimi (Kyutai, Moshi 2024), `MimiModel`; split RVQ: level 0 is the semantic quantizer, the rest
  acoustic, each half with its own output projection; 12.5 frames/s at 24 kHz.

Shapes: `encode(wav (B, S) float, lengths (B,) samples) -> (codes LongTensor (B, K, T), frames (B,))` and
`decode(codes (B, K, T), frames (B,)) -> (wav (B, T * hop), samples (B,))`; `codebook_vectors() -> (K, V, D)` in
the latent the codec's decoder network consumes (DAC: hidden 1024 after each level's `out_proj`; EnCodec: the
codebook space; Mimi: hidden 512 after the semantic/acoustic `output_proj`), so that summing the K rows a frame
selects gives the codec's own quantized latent.

Frame grid. Every item is zero-padded to a whole number of hops (as DAC's own preprocessing does), so an item of
S samples has exactly ceil(S / hop) frames, hop = product of the encoder strides read from the model config.
EnCodec and Mimi are causal (causal convolutions, a unidirectional LSTM / causal sliding-window attention), so
the codes of a padded batch equal the codes of each item encoded alone. DAC's encoder is not causal: its
receptive field reaches `lookahead_frames` frames (9 for the 16/24 kHz layouts, 8 for 44 kHz) to the right, and
the last `lookahead_frames` frames of an item in a padded batch can differ from encoding it alone (the batch
pads with computed activations of silence where the single item hits the convolutions' zero padding).
Batch by similar lengths (or one item per call) when those last frames must be bit-exact.

Loading: `path` is a hub id or a local folder written by `save_pretrained`; `transformers` is imported only
when a codec is built. `model=` takes an already-built model (tests build small random ones with
`random_model(tiny_dac_config())` etc.; `dac_16khz_config()` gives the real layout of `descript/dac_16khz`).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from codec2vec.errors import Codec2VecError

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")  # "org/name" or "name", as on the hub


# ----------------------------------------------------------------------------------------------- configs
def dac_16khz_config() -> Any:
    """`DacConfig` with the real layout of `descript/dac_16khz` (hop 2*4*5*8 = 320, 12 x 1024, 16 kHz)."""
    from transformers import DacConfig

    return DacConfig(
        encoder_hidden_size=64, downsampling_ratios=[2, 4, 5, 8], decoder_hidden_size=1536,
        n_codebooks=12, codebook_size=1024, codebook_dim=8, sampling_rate=16000,
    )  # fmt: skip


def dac_24khz_config() -> Any:
    """`DacConfig` of `descript/dac_24khz` (hop 320, 32 x 1024, 24 kHz, 75 frames/s)."""
    from transformers import DacConfig

    return DacConfig(
        encoder_hidden_size=64, downsampling_ratios=[2, 4, 5, 8], decoder_hidden_size=1536,
        n_codebooks=32, codebook_size=1024, codebook_dim=8, sampling_rate=24000,
    )  # fmt: skip


def dac_44khz_config() -> Any:
    """`DacConfig` of `descript/dac_44khz` (hop 2*4*8*8 = 512, 9 x 1024, 44.1 kHz, ~86.1 frames/s)."""
    from transformers import DacConfig

    return DacConfig(
        encoder_hidden_size=64, downsampling_ratios=[2, 4, 8, 8], decoder_hidden_size=1536,
        n_codebooks=9, codebook_size=1024, codebook_dim=8, sampling_rate=44100,
    )  # fmt: skip


def encodec_24khz_config() -> Any:
    """`EncodecConfig` of `facebook/encodec_24khz` (its defaults: hop 320, up to 32 x 1024, 24 kHz)."""
    from transformers import EncodecConfig

    return EncodecConfig()


def tiny_dac_config() -> Any:
    """A small DAC (hop 320 at 16 kHz like the real one, 4 x 64 codebooks) for fast tests."""
    from transformers import DacConfig

    return DacConfig(
        encoder_hidden_size=4, downsampling_ratios=[2, 4, 5, 8], decoder_hidden_size=32,
        n_codebooks=4, codebook_size=64, codebook_dim=4, sampling_rate=16000,
    )  # fmt: skip


def tiny_encodec_config() -> Any:
    """A small EnCodec with the 24 kHz grid (hop 320, 75 frames/s, 32 x 1024 levels of dimension 16)."""
    from transformers import EncodecConfig

    return EncodecConfig(hidden_size=16, num_filters=4, num_lstm_layers=1, codebook_size=1024)


def tiny_mimi_config() -> Any:
    """A small Mimi with the real grid (hop 1920 at 24 kHz, 12.5 frames/s; 1 semantic + 7 acoustic x 256)."""
    from transformers import MimiConfig

    return MimiConfig(
        hidden_size=32, num_filters=4, num_hidden_layers=1, intermediate_size=64, num_attention_heads=2,
        num_key_value_heads=2, codebook_size=256, codebook_dim=16, vector_quantization_hidden_dimension=16,
        num_quantizers=8, upsample_groups=32, sliding_window=32,
    )  # fmt: skip


def random_model(config: Any, *, seed: int = 0) -> Any:
    """A randomly initialised `DacModel` / `EncodecModel` / `MimiModel` for `config`, in eval mode.

    EnCodec and Mimi initialise their (k-means / EMA trained) codebooks to zeros, which would make every code 0;
    here each level's centroids are drawn from a Gaussian fitted to what that level quantizes (the encoder's
    output on seeded noise, minus the levels before), so that codes at every level are informative. DAC's random codebooks are already usable (cosine nearest neighbour).
    """
    import transformers

    classes = {"dac": "DacModel", "encodec": "EncodecModel", "mimi": "MimiModel"}
    torch.manual_seed(seed)
    model = getattr(transformers, classes[config.model_type])(config).eval()
    if config.model_type == "dac":
        return model
    gen = torch.Generator().manual_seed(seed)
    hop = math.prod(config.upsampling_ratios) * (config.latent_stride if config.model_type == "mimi" else 1)
    noise = 0.1 * torch.randn(1, config.audio_channels, 48 * hop, generator=gen)  # 48 frames of noise
    with torch.no_grad():
        if config.model_type == "encodec":
            latent = model.encoder(noise)  # (1, D, T)
            _fill_levels([lv.codebook for lv in model.quantizer.layers], latent, gen, field="embed")
        else:
            latent = model.encoder(noise).latents  # (1, H, T)
            for rvq in (model.quantizer.semantic_residual_vector_quantizer,
                        model.quantizer.acoustic_residual_vector_quantizer):  # fmt: skip
                z = rvq.input_proj(latent) if rvq.input_proj is not None else latent  # (1, D, T)
                _fill_levels([lv.codebook for lv in rvq.layers], z, gen, field="embed_sum")
    return model


def _fill_levels(codebooks: list[Any], latent: Tensor, gen: torch.Generator, *, field: str) -> None:
    """Draw each residual level's centroids from a Gaussian fitted to the residual the levels before it leave."""
    residual = latent[0].t()  # (T, D)
    for cb in codebooks:
        size = getattr(cb, field).shape[0]
        mean, std = residual.mean(0), residual.std(0) + 1e-6  # (D,)
        centroids = mean + std * torch.randn(size, residual.shape[1], generator=gen)  # (V, D)
        getattr(cb, field).copy_(centroids)
        if field == "embed_sum":  # Mimi: centroid = embed_sum / cluster_usage, cached in `_embed`
            cb.cluster_usage.fill_(1.0)
            cb._embed = None
        elif hasattr(cb, "embed_avg"):
            cb.embed_avg.copy_(centroids)
        nearest = torch.cdist(residual, centroids).argmin(dim=1)  # (T,)
        residual = residual - centroids[nearest]


# ----------------------------------------------------------------------------------------------- helpers
def _load_pretrained(
    class_name: str, model_type: str, path: str, *, revision: str | None, local_files_only: bool, codec: str
) -> tuple[Any, str]:
    """`<class>.from_pretrained(path)` for a local folder or a hub id, with errors that say what to do.

    Returns the model (eval mode) and the source it came from: the absolute folder, or the hub id.
    """
    folder = Path(path).expanduser()
    if folder.is_dir():
        config_file = folder / "config.json"
        if not config_file.is_file():
            raise Codec2VecError(
                f"{codec}: codec folder {str(folder)!r} has no config.json; pass --codec-path a folder "
                f"written by {class_name}.save_pretrained (config.json + model.safetensors)"
            )
        try:
            found = json.loads(config_file.read_text()).get("model_type")
        except (OSError, ValueError) as e:
            raise Codec2VecError(f"{codec}: cannot read {str(config_file)!r}: {e}") from None
        if found != model_type:
            raise Codec2VecError(
                f"{codec}: {str(config_file)!r} describes a {found!r} model, not {model_type!r}; "
                f"pass --codec-path a {model_type} checkpoint folder"
            )
        source = str(folder.resolve())
    elif folder.exists() or not _HUB_ID.match(path) or path.startswith((".", "~")):
        raise Codec2VecError(
            f"{codec}: codec folder {path!r} not found; pass --codec-path a folder written by "
            f"{class_name}.save_pretrained (config.json + model.safetensors), or a hub id"
        )
    else:
        source = path
    import transformers

    try:
        model = getattr(transformers, class_name).from_pretrained(
            source, revision=revision, local_files_only=local_files_only
        )
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        where = f"folder {source!r}" if folder.is_dir() else f"hub id {source!r} (not in the local cache, hub unreachable?)"
        raise Codec2VecError(
            f"{codec}: cannot load {class_name} weights from {where}: {first}. Download the checkpoint on a "
            f"connected machine (huggingface-cli download {path}) and pass --codec-path FOLDER"
        ) from None
    return model.eval(), source


def _weights_sha256(model: torch.nn.Module) -> str:
    """sha256 over the state dict (names, dtypes, shapes, bytes): identifies the exact weights."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _pad_to_hop(
    wav: Tensor, lengths: Tensor, hop: int, device: torch.device, min_frames: int = 1
) -> tuple[Tensor, Tensor]:
    """Zero everything past each item's length, pad to a whole number (>= min_frames) of hops.

    Returns the model input `(B, 1, max(T, min_frames) * hop)` and the frame lengths `(B,)` = ceil(S / hop).
    """
    if wav.dim() != 2:
        raise ValueError(f"wav must be (B, S), got shape {tuple(wav.shape)}")
    lengths = torch.as_tensor(lengths, dtype=torch.long).to("cpu")
    if lengths.shape != (wav.shape[0],):
        raise ValueError(f"lengths must be ({wav.shape[0]},), got shape {tuple(lengths.shape)}")
    if bool((lengths < 0).any()) or bool((lengths > wav.shape[1]).any()):
        raise ValueError(f"lengths must lie in [0, {wav.shape[1]}], got {lengths.tolist()}")
    frames = (lengths + hop - 1) // hop  # (B,) = ceil(S / hop)
    total = max(int(frames.max()), min_frames) * hop if len(frames) and int(frames.max()) else 0
    x = torch.zeros(wav.shape[0], total, dtype=torch.float32)
    keep = min(total, wav.shape[1])
    x[:, :keep] = wav[:, :keep].detach().to("cpu", torch.float32)
    x = x * (torch.arange(total)[None, :] < lengths[:, None])  # (B, S') silence past each length
    return x[:, None, :].to(device), frames


def _finish_codes(codes: Tensor, frames: Tensor, padded_frames: int, num_codebooks: int, name: str) -> Tensor:
    """Check the model's output against the declared grid, crop, and zero the codes past each item's frames."""
    expected = (len(frames), num_codebooks, padded_frames)
    if tuple(codes.shape) != expected:
        raise RuntimeError(f"{name}: encode returned codes {tuple(codes.shape)}, the declared grid says {expected}")
    codes = codes[..., : int(frames.max())].to("cpu", torch.long)
    return codes * (torch.arange(codes.shape[-1])[None, None, :] < frames[:, None, None])  # (B, K, T)


def _check_codes(codes: Tensor, lengths: Tensor, num_codebooks: int, codebook_size: int) -> Tensor:
    """Validate `(B, k<=K, T)` codes and `(B,)` frame lengths; returns lengths as a CPU LongTensor."""
    if codes.dim() != 3 or not 1 <= codes.shape[1] <= num_codebooks:
        raise ValueError(f"codes must be (B, K<={num_codebooks}, T), got shape {tuple(codes.shape)}")
    lengths = torch.as_tensor(lengths, dtype=torch.long).to("cpu")
    if lengths.shape != (codes.shape[0],) or bool((lengths < 0).any()) or bool((lengths > codes.shape[2]).any()):
        raise ValueError(f"frame lengths must be ({codes.shape[0]},) in [0, {codes.shape[2]}], got {lengths.tolist()}")
    if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= codebook_size):
        raise ValueError(f"codes must lie in [0, {codebook_size}), got [{int(codes.min())}, {int(codes.max())}]")
    return lengths


def _finish_wav(wav: Tensor, frames: Tensor, hop: int, out_device: torch.device) -> tuple[Tensor, Tensor]:
    """Decoder output `(B, [1,] S)` -> `(B, T*hop)` with silence past each item's `frames*hop` samples."""
    wav = wav.reshape(wav.shape[0], -1).to("cpu", torch.float32)
    total = (int(frames.max()) if len(frames) else 0) * hop
    wav = torch.nn.functional.pad(wav, (0, max(0, total - wav.shape[1])))[:, :total]  # (B, T*hop)
    samples = frames * hop
    wav = wav * (torch.arange(total)[None, :] < samples[:, None])
    return wav.to(out_device), samples.to(out_device)


def _empty_codes(batch: int, num_codebooks: int, device: torch.device) -> tuple[Tensor, Tensor]:
    return torch.zeros(batch, num_codebooks, 0, dtype=torch.long, device=device), torch.zeros(
        batch, dtype=torch.long, device=device
    )


def _describe(codec: Any, model: Any, path: str | None, revision: str | None) -> dict[str, Any]:
    """The JSON-able fields every backend reports in `config()`."""
    return {
        "backend": "transformers",
        "model_class": type(model).__name__,
        "path": path,
        "revision": revision or getattr(model.config, "_commit_hash", None),
        "sample_rate": codec.sample_rate,
        "hop_length": codec.hop_length,
        "num_codebooks": codec.num_codebooks,
        "codebook_size": codec.codebook_size,
    }


# ----------------------------------------------------------------------------------------------- DAC
class DacCodec:
    """Descript Audio Codec through `transformers.DacModel` (default `descript/dac_16khz`, 12 x 1024, 50 Hz)."""

    name = "dac"

    def __init__(
        self,
        *,
        path: str | None = "descript/dac_16khz",
        num_codebooks: int | None = None,
        device: str | torch.device = "cpu",
        model: Any = None,
        revision: str | None = None,
        local_files_only: bool = False,
    ) -> None:
        if model is None:
            if path is None:
                raise Codec2VecError("dac: give a hub id or folder (--codec-path) or a built model")
            model, path = _load_pretrained(
                "DacModel", "dac", path, revision=revision, local_files_only=local_files_only, codec="dac"
            )
        else:
            path = None
        cfg = model.config
        self.model = model.eval().requires_grad_(False).to(device)
        self.device = torch.device(device)
        self.path, self.revision = path, revision
        self.sample_rate = int(cfg.sampling_rate)
        self.hop_length = math.prod(int(r) for r in cfg.downsampling_ratios)
        self.frame_rate = self.sample_rate / self.hop_length
        self.codebook_size = int(cfg.codebook_size)
        k = int(cfg.n_codebooks) if num_codebooks is None else int(num_codebooks)
        if not 1 <= k <= int(cfg.n_codebooks):
            raise Codec2VecError(f"dac: num_codebooks must be in 1..{cfg.n_codebooks}, got {num_codebooks}")
        self.num_codebooks = k
        self.lookahead_frames = _dac_lookahead_frames(cfg)
        self._weights_hash: str | None = None

    def encode(self, wav: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """`(B, S)` at `sample_rate`, `(B,)` samples -> codes `(B, K, T)`, frames `(B,)` = ceil(samples / hop)."""
        x, frames = _pad_to_hop(wav, lengths, self.hop_length, self.device)  # (B, 1, T*hop)
        if x.shape[-1] == 0:
            return _empty_codes(wav.shape[0], self.num_codebooks, wav.device)
        with torch.inference_mode():
            codes = self.model.encode(x, n_quantizers=self.num_codebooks).audio_codes  # (B, K, T)
        codes = _finish_codes(codes, frames, x.shape[-1] // self.hop_length, self.num_codebooks, self.name)
        return codes.to(wav.device), frames.to(wav.device)

    def decode(self, codes: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """codes `(B, k<=K, T)`, frames `(B,)` -> waveform `(B, T*hop)`, samples `(B,)` = frames * hop."""
        frames = _check_codes(codes, lengths, self.num_codebooks, self.codebook_size)
        if codes.shape[-1] == 0:
            return torch.zeros(codes.shape[0], 0, device=codes.device), frames.to(codes.device)
        with torch.inference_mode():
            wav = self.model.decode(audio_codes=codes.to(self.device, torch.long)).audio_values  # (B, S)
        return _finish_wav(wav, frames, self.hop_length, codes.device)

    def codebook_vectors(self) -> Tensor:
        """`(K, V, 1024)`: level k's entry v through that level's `out_proj` (its bias included)."""
        rows = []
        with torch.no_grad():
            for q in self.model.quantizer.quantizers[: self.num_codebooks]:
                rows.append(q.out_proj(q.codebook.weight.t()[None])[0].t())  # (V, D)
        return torch.stack(rows).to("cpu", torch.float32)  # (K, V, D)

    def quantized_latent(self, codes: Tensor) -> Tensor:
        """The codec's own quantized latent `(B, D, T)` for codes `(B, K, T)` (`quantizer.from_codes`)."""
        with torch.no_grad():
            return self.model.quantizer.from_codes(codes.to(self.device))[0].to("cpu", torch.float32)

    def config(self) -> dict[str, Any]:
        if self._weights_hash is None:
            self._weights_hash = _weights_sha256(self.model)
        cfg = self.model.config
        return {
            **_describe(self, self.model, self.path, self.revision),
            "downsampling_ratios": [int(r) for r in cfg.downsampling_ratios],
            "weights_sha256": self._weights_hash,
        }


def _dac_lookahead_frames(cfg: Any) -> int:
    """Frames past an item's end that DAC's (non-causal) encoder still sees: half its receptive field."""
    field, jump = 1 + 6, 1  # first conv, kernel 7
    for stride in cfg.downsampling_ratios:
        field += sum(6 * d * jump for d in (1, 3, 9))  # residual units: kernel 7, dilations 1, 3, 9
        field += (2 * stride - 1) * jump  # strided conv, kernel 2*stride
        jump *= stride
    field += 2 * jump  # last conv, kernel 3
    return math.ceil(field / 2 / jump)


# ----------------------------------------------------------------------------------------------- EnCodec
class EncodecCodec:
    """EnCodec through `transformers.EncodecModel` (default `facebook/encodec_24khz`; K=8 levels = 6 kbps)."""

    name = "encodec"

    def __init__(
        self,
        *,
        path: str | None = "facebook/encodec_24khz",
        num_codebooks: int | None = None,
        device: str | torch.device = "cpu",
        model: Any = None,
        revision: str | None = None,
        local_files_only: bool = False,
    ) -> None:
        if model is None:
            if path is None:
                raise Codec2VecError("encodec: give a hub id or folder (--codec-path) or a built model")
            model, path = _load_pretrained(
                "EncodecModel", "encodec", path, revision=revision, local_files_only=local_files_only, codec="encodec"
            )
        else:
            path = None
        cfg = model.config
        if cfg.normalize or cfg.chunk_length_s is not None:
            raise Codec2VecError(
                f"encodec: {path or 'this model'} normalises or chunks its input (the 48 kHz model); its decoder needs "
                "per-chunk scales that a token store does not keep. Use facebook/encodec_24khz"
            )
        if cfg.audio_channels != 1:
            raise Codec2VecError(f"encodec: only mono models are supported, this one has {cfg.audio_channels} channels")
        self.model = model.eval().requires_grad_(False).to(device)
        self.device = torch.device(device)
        self.path, self.revision = path, revision
        self.sample_rate = int(cfg.sampling_rate)
        self.hop_length = math.prod(int(r) for r in cfg.upsampling_ratios)
        self.frame_rate = self.sample_rate / self.hop_length
        self.codebook_size = int(cfg.codebook_size)
        rvq = self.model.quantizer
        levels = {rvq.get_num_quantizers_for_bandwidth(float(bw)): float(bw) for bw in cfg.target_bandwidths}
        k = num_codebooks if num_codebooks is not None else (8 if 8 in levels else max(levels))
        if k not in levels:
            raise Codec2VecError(
                f"encodec: num_codebooks={num_codebooks} matches no bandwidth of this model; choose one of "
                + ", ".join(f"{n} ({bw:g} kbps)" for n, bw in sorted(levels.items()))
            )
        self.num_codebooks, self.bandwidth = int(k), levels[k]
        self.lookahead_frames = 0  # causal encoder (causal convolutions, unidirectional LSTM)
        # Its convolutions reflect-pad on the left; the last one (kernel 7 at the frame rate) reads 6 frames ahead
        # of frame 0, so short inputs are padded to 7 frames to stay independent of the batch they come in.
        self.min_frames = int(cfg.last_kernel_size)
        self._weights_hash: str | None = None

    def encode(self, wav: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """`(B, S)` at `sample_rate`, `(B,)` samples -> codes `(B, K, T)`, frames `(B,)` = ceil(samples / hop)."""
        x, frames = _pad_to_hop(wav, lengths, self.hop_length, self.device, self.min_frames)
        if x.shape[-1] == 0:
            return _empty_codes(wav.shape[0], self.num_codebooks, wav.device)
        with torch.inference_mode():
            codes = self.model.encode(x, bandwidth=self.bandwidth).audio_codes[0]  # (chunks=1, B, K, T) -> (B, K, T)
        codes = _finish_codes(codes, frames, x.shape[-1] // self.hop_length, self.num_codebooks, self.name)
        return codes.to(wav.device), frames.to(wav.device)

    def decode(self, codes: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """codes `(B, k<=K, T)`, frames `(B,)` -> waveform `(B, T*hop)`, samples `(B,)` = frames * hop."""
        frames = _check_codes(codes, lengths, self.num_codebooks, self.codebook_size)
        if codes.shape[-1] == 0:
            return torch.zeros(codes.shape[0], 0, device=codes.device), frames.to(codes.device)
        with torch.inference_mode():
            wav = self.model.decode(codes.to(self.device, torch.long)[None], [None]).audio_values  # (B, 1, S)
        return _finish_wav(wav, frames, self.hop_length, codes.device)

    def codebook_vectors(self) -> Tensor:
        """`(K, V, D)`: the euclidean codebooks themselves (the decoder consumes their sum directly)."""
        layers = self.model.quantizer.layers[: self.num_codebooks]
        return torch.stack([lv.codebook.embed.detach() for lv in layers]).to("cpu", torch.float32)

    def quantized_latent(self, codes: Tensor) -> Tensor:
        """The codec's own quantized latent `(B, D, T)` for codes `(B, K, T)` (`quantizer.decode`)."""
        with torch.no_grad():
            return self.model.quantizer.decode(codes.to(self.device).transpose(0, 1)).to("cpu", torch.float32)

    def config(self) -> dict[str, Any]:
        if self._weights_hash is None:
            self._weights_hash = _weights_sha256(self.model)
        return {
            **_describe(self, self.model, self.path, self.revision),
            "bandwidth_kbps": self.bandwidth,
            "weights_sha256": self._weights_hash,
        }


# ----------------------------------------------------------------------------------------------- Mimi
class MimiCodec:
    """Mimi through `transformers.MimiModel` (default `kyutai/mimi`, 8 of 32 levels as Moshi uses, 12.5 Hz)."""

    name = "mimi"

    def __init__(
        self,
        *,
        path: str | None = "kyutai/mimi",
        num_codebooks: int | None = None,
        device: str | torch.device = "cpu",
        model: Any = None,
        revision: str | None = None,
        local_files_only: bool = False,
    ) -> None:
        if model is None:
            if path is None:
                raise Codec2VecError("mimi: give a hub id or folder (--codec-path) or a built model")
            model, path = _load_pretrained(
                "MimiModel", "mimi", path, revision=revision, local_files_only=local_files_only, codec="mimi"
            )
        else:
            path = None
        cfg = model.config
        if cfg.audio_channels != 1:
            raise Codec2VecError(f"mimi: only mono models are supported, this one has {cfg.audio_channels} channels")
        self.model = model.eval().requires_grad_(False).to(device)
        self.device = torch.device(device)
        self.path, self.revision = path, revision
        self.sample_rate = int(cfg.sampling_rate)
        # SEANet strides, then the downsampling conv from the SEANet rate to the latent rate (stride 2 for Mimi)
        self.hop_length = math.prod(int(r) for r in cfg.upsampling_ratios) * int(cfg.latent_stride)
        self.frame_rate = self.sample_rate / self.hop_length
        self.codebook_size = int(cfg.codebook_size)
        total, semantic = int(cfg.num_quantizers), int(cfg.num_semantic_quantizers)
        k = min(8, total) if num_codebooks is None else int(num_codebooks)
        if not max(1, semantic) <= k <= total:
            raise Codec2VecError(f"mimi: num_codebooks must be in {max(1, semantic)}..{total}, got {num_codebooks}")
        self.num_codebooks = k
        self.lookahead_frames = 0  # causal convolutions and causal attention
        self._weights_hash: str | None = None

    def encode(self, wav: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """`(B, S)` at `sample_rate`, `(B,)` samples -> codes `(B, K, T)`, frames `(B,)` = ceil(samples / hop)."""
        x, frames = _pad_to_hop(wav, lengths, self.hop_length, self.device)  # (B, 1, T*hop)
        if x.shape[-1] == 0:
            return _empty_codes(wav.shape[0], self.num_codebooks, wav.device)
        with torch.inference_mode():
            codes = self.model.encode(x, num_quantizers=self.num_codebooks).audio_codes  # (B, K, T)
        codes = _finish_codes(codes, frames, x.shape[-1] // self.hop_length, self.num_codebooks, self.name)
        return codes.to(wav.device), frames.to(wav.device)

    def decode(self, codes: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """codes `(B, k<=K, T)`, frames `(B,)` -> waveform `(B, T*hop)`, samples `(B,)` = frames * hop."""
        frames = _check_codes(codes, lengths, self.num_codebooks, self.codebook_size)
        if codes.shape[-1] == 0:
            return torch.zeros(codes.shape[0], 0, device=codes.device), frames.to(codes.device)
        with torch.inference_mode():
            wav = self.model.decode(codes.to(self.device, torch.long)).audio_values  # (B, 1, S)
        return _finish_wav(wav, frames, self.hop_length, codes.device)

    def codebook_vectors(self) -> Tensor:
        """`(K, V, H)`: each level's centroids through its half's `output_proj` (semantic or acoustic, no bias)."""
        quantizer = self.model.quantizer
        semantic = quantizer.num_semantic_quantizers
        halves = [(quantizer.semantic_residual_vector_quantizer, range(min(semantic, self.num_codebooks)))]
        halves.append((quantizer.acoustic_residual_vector_quantizer, range(self.num_codebooks - semantic)))
        rows = []
        with torch.no_grad():
            for rvq, levels in halves:
                for i in levels:
                    embed = rvq.layers[i].codebook.embed  # (V, d)
                    proj = rvq.output_proj(embed.t()[None])[0].t() if rvq.output_proj is not None else embed
                    rows.append(proj)  # (V, H)
        return torch.stack(rows).to("cpu", torch.float32)  # (K, V, H)

    def quantized_latent(self, codes: Tensor) -> Tensor:
        """The codec's own quantized latent `(B, H, T)` for codes `(B, K, T)` (`quantizer.decode`)."""
        with torch.no_grad():
            return self.model.quantizer.decode(codes.to(self.device)).to("cpu", torch.float32)

    def config(self) -> dict[str, Any]:
        if self._weights_hash is None:
            self._weights_hash = _weights_sha256(self.model)
        return {
            **_describe(self, self.model, self.path, self.revision),
            "num_semantic_codebooks": int(self.model.config.num_semantic_quantizers),
            "weights_sha256": self._weights_hash,
        }


__all__ = [
    "DacCodec",
    "EncodecCodec",
    "MimiCodec",
    "dac_16khz_config",
    "dac_24khz_config",
    "dac_44khz_config",
    "encodec_24khz_config",
    "random_model",
    "tiny_dac_config",
    "tiny_encodec_config",
    "tiny_mimi_config",
]
