"""The codec backends served by Hugging Face `transformers`: DAC, EnCodec and Mimi behind the `Codec` protocol.

One file per backend (`dac.py`, `encodec.py`, `mimi.py`, sharing `hf_common.py`); this module is their public
face (`CODECS` in `codecs/__init__.py` builds them from here) and builds random test models.

| backend | class | default checkpoint | rate | frames/s | K x V (default K) |
| --- | --- | --- | --- | --- | --- |
| `dac` | `DacCodec` | `descript/dac_16khz` (the Codec2Vec codec) | 16 kHz | 50 | 12 x 1024 (12) |
| `encodec` | `EncodecCodec` | `facebook/encodec_24khz` | 24 kHz | 75 | 32 x 1024 (8 = 6 kbps) |
| `mimi` | `MimiCodec` | `kyutai/mimi` | 24 kHz | 12.5 | 32 x 2048 (8, level 0 semantic) |

Shapes: `encode(wav (B, S) float, lengths (B,) samples) -> (codes LongTensor (B, K, T), frames (B,))`,
`decode(codes (B, K, T), frames (B,)) -> (wav (B, T * hop), samples (B,))`, `codebook_vectors() -> (K, V, D)`
in the latent the codec's decoder network consumes, so that the K rows a frame selects sum to the codec's own
quantized latent (`quantized_latent(codes)`, `(B, D, T)`, computes that latent the codec's own way).

Frame grid: each item is zero-padded to a whole number of hops (as DAC's own preprocessing does), so S samples
give exactly ceil(S / hop) frames; hop is the product of the encoder strides in the model config and
`frame_rate = sample_rate / hop`. EnCodec and Mimi are causal: a padded batch gives each item exactly its codes
alone. DAC is not: the last `lookahead_frames` (9 at 16 kHz) frames of a padded item may differ (see dac.py).

Loading: `path=` is a hub id or a local folder written by `save_pretrained`; nothing is downloaded where the hub
cannot be reached, and a missing folder or id raises `Codec2VecError` naming it and suggesting `--codec-path`.
`model=` takes a built model. `transformers` is imported only when a codec or config is built.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from codec2vec.codecs.dac import DacCodec, dac_16khz_config, dac_24khz_config, dac_44khz_config, tiny_dac_config
from codec2vec.codecs.encodec import EncodecCodec, encodec_24khz_config, tiny_encodec_config
from codec2vec.codecs.mimi import MimiCodec, mimi_config, tiny_mimi_config


def random_model(config: Any, *, seed: int = 0) -> Any:
    """A randomly initialised `DacModel` / `EncodecModel` / `MimiModel` for `config`, in eval mode.

    EnCodec and Mimi initialise their (k-means / EMA trained) codebooks to zeros, which would make every code 0;
    here each level's centroids are drawn from a Gaussian fitted to what that level quantizes (the encoder's
    output on seeded noise, minus the levels before), so that codes at every level are informative. DAC's random
    codebooks are already usable (cosine nearest neighbour).
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
            _fill_levels([lv.codebook for lv in model.quantizer.layers], latent, gen)
        else:
            latent = model.encoder(noise).latents  # (1, H, T)
            for rvq in (model.quantizer.semantic_residual_vector_quantizer,
                        model.quantizer.acoustic_residual_vector_quantizer):  # fmt: skip
                z = rvq.input_proj(latent) if rvq.input_proj is not None else latent  # (1, D, T)
                _fill_levels([lv.codebook for lv in rvq.layers], z, gen)
    return model


def _fill_levels(codebooks: list[Any], latent: Tensor, gen: torch.Generator) -> None:
    """Draw each residual level's centroids from a Gaussian fitted to the residual the levels before it leave."""
    residual = latent[0].t()  # (T, D)
    for cb in codebooks:
        mimi = hasattr(cb, "embed_sum")  # Mimi: centroid = embed_sum / cluster_usage, cached in `_embed`
        size = (cb.embed_sum if mimi else cb.embed).shape[0]
        mean, std = residual.mean(0), residual.std(0) + 1e-6  # (D,)
        centroids = mean + std * torch.randn(size, residual.shape[1], generator=gen)  # (V, D)
        if mimi:
            cb.embed_sum.copy_(centroids)
            cb.cluster_usage.fill_(1.0)
            cb._embed = None
        else:
            cb.embed.copy_(centroids)
            cb.embed_avg.copy_(centroids)
        nearest = torch.cdist(residual, centroids).argmin(dim=1)  # (T,)
        residual = residual - centroids[nearest]


__all__ = [
    "DacCodec",
    "EncodecCodec",
    "MimiCodec",
    "dac_16khz_config",
    "dac_24khz_config",
    "dac_44khz_config",
    "encodec_24khz_config",
    "mimi_config",
    "random_model",
    "tiny_dac_config",
    "tiny_encodec_config",
    "tiny_mimi_config",
]
