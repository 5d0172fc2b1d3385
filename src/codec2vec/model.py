"""The Codec2Vec encoder: a front end (codec tokens, or audio for the baselines), then every Transformer layer.

Codec2Vec (Tseng & Harwath 2025) replaces HuBERT's waveform CNN with codec tokens:
  codes (B, K, T) -> front end (frontends/codec.py: sum_k E_k[codes[:, k]] -> LayerNorm -> Linear(D_codec, D))
                  -> dropout -> learned mask vector at masked frames
                  -> + convolutional positional embedding -> LayerNorm -> L post-LN Transformer layers (HuBERT Base)
`model.frontend` picks the front end: `codec` (the tables are initialised from the codec's codebook vectors
`(K, V, D_codec)`; quantizer dropout keeps the first `keep_levels[b]` levels of row b), or the continuous-input
baselines `waveform` (HuBERT's CNN) and `mel` (MelHuBERT's stacked log-mel), which read audio `(B, S)` at 16 kHz
and put their frames on the same 50 Hz grid (T = ceil(S / 320)).

`forward(inputs, lengths (B,) frames) -> (layers, lengths)`: `layers[0]` is the Transformer input (after
projection, masking and the positional conv), `layers[1..L]` each layer's output, all `(B, T, D)`. Padding
(`t >= lengths[b]`) never changes the valid frames' outputs. `TransformerEncoder(x, lengths, return_ffn=True)`
also returns each layer's FFN output before the residual add and LayerNorm (fairseq's `layer_result`, the
DinoSR/data2vec target point).

Initialisation (`model.init`): `bert` (default) is BERT's, as fairseq's `init_bert_params` and torchaudio's
HuBERT use for the Transformer: every Linear of the Transformer layers ~ N(0, 0.02) with zero biases
(LayerNorms at 1/0, the positional conv keeps its own wav2vec 2.0 init). `default` keeps PyTorch's init.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from codec2vec.common.errors import ConfigError
from codec2vec.frontends import build_frontend


@dataclass
class ModelConfig:
    """Encoder sizes and regularisation. Defaults are HuBERT Base (12 layers, 768 wide, 3072 FFN, 12 heads)."""

    num_layers: int = 12
    dim: int = 768
    ffn_dim: int = 3072
    num_heads: int = 12
    conv_pos_kernel: int = 128
    conv_pos_groups: int = 16
    dropout: float = 0.1
    attention_dropout: float = 0.1
    activation_dropout: float = 0.0
    input_dropout: float = 0.1  # HuBERT's dropout_input, after the projection
    layer_drop: float = 0.05
    freeze_embeddings: bool = False
    quantizer_dropout: float = 0.5  # probability per utterance
    quantizer_dropout_min_levels: int = 1
    quantizer_dropout_schedule: str = "constant"  # constant | decay: linearly to 0 at train.steps
    embed_norm: str = "layernorm"  # codec front end: layernorm | scale | none (frontends/codec.py)
    codebook_dim: int | None = None  # D_codec when no codebook vectors are given (None: = dim)
    init: str = "bert"  # bert: Transformer Linears ~ N(0, 0.02), zero biases (fairseq/torchaudio) | default
    frontend: str = "codec"  # codec | waveform | mel (frontends/); the baselines read audio


MODEL_PRESETS: dict[str, dict[str, Any]] = {
    # CPU tests and demos: ~0.5M Transformer parameters.
    "tiny": dict(
        num_layers=4,
        dim=128,
        ffn_dim=256,
        num_heads=4,
        conv_pos_kernel=16,
        conv_pos_groups=4,
        dropout=0.1,
        attention_dropout=0.1,
        input_dropout=0.1,
        layer_drop=0.0,
    ),
    # HuBERT Base: ~95M parameters (plus the K*V*D_codec tables).
    "base": dict(num_layers=12, dim=768, ffn_dim=3072, num_heads=12),
    # HuBERT Large sizes.
    "large": dict(num_layers=24, dim=1024, ffn_dim=4096, num_heads=16, dropout=0.0, input_dropout=0.0, layer_drop=0.0),
}


def model_config(preset: str, **overrides: Any) -> ModelConfig:
    """`ModelConfig` of a preset (`tiny`, `base`, `large`) with field overrides."""
    if preset not in MODEL_PRESETS:
        raise ValueError(f"unknown model preset {preset!r}; choose one of {sorted(MODEL_PRESETS)}")
    names = {f.name for f in fields(ModelConfig)}
    bad = sorted(set(overrides) - names)
    if bad:
        raise ValueError(f"unknown ModelConfig fields {bad}; known: {sorted(names)}")
    return ModelConfig(**{**MODEL_PRESETS[preset], **overrides})


def padding_mask(lengths: Tensor, max_len: int) -> Tensor:
    """`(B,)` lengths -> `(B, T)` bool, True at padding."""
    return torch.arange(max_len, device=lengths.device)[None, :] >= lengths[:, None]


class ConvPositionalEmbedding(nn.Module):
    """HuBERT/wav2vec 2.0 relative positions: grouped Conv1d (weight norm over time), GELU; even kernels drop
    the last output frame so the output keeps T frames."""

    def __init__(self, dim: int, kernel: int, groups: int, dropout: float = 0.0) -> None:
        super().__init__()
        conv = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=groups)
        nn.init.normal_(conv.weight, mean=0.0, std=math.sqrt(4.0 * (1.0 - dropout) / (kernel * dim)))
        if conv.bias is not None:
            nn.init.zeros_(conv.bias)
        self.conv = nn.utils.parametrizations.weight_norm(conv, name="weight", dim=2)
        self.trim = 1 if kernel % 2 == 0 else 0

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(x.transpose(1, 2))  # (B, D, T + trim)
        if self.trim:
            y = y[:, :, : -self.trim]
        return F.gelu(y).transpose(1, 2)  # (B, T, D)


class TransformerLayer(nn.Module):
    """Post-LayerNorm encoder layer (HuBERT Base): x = LN(x + MHA(x)); x = LN(x + FFN(x))."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        d = config.dim
        if d % config.num_heads:
            raise ValueError(f"model.dim={d} is not divisible by model.num_heads={config.num_heads}")
        self.num_heads = config.num_heads
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.attn_norm = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, config.ffn_dim)
        self.fc2 = nn.Linear(config.ffn_dim, d)
        self.ffn_norm = nn.LayerNorm(d)
        self.dropout = nn.Dropout(config.dropout)
        self.act_dropout = nn.Dropout(config.activation_dropout)
        self.attention_dropout = config.attention_dropout

    def forward(self, x: Tensor, attend: Tensor, return_ffn: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """x `(B, T, D)`; attend `(B, 1, 1, T)` bool, True for keys that may be attended to -> `(B, T, D)`, and
        with `return_ffn` also the FFN output before dropout, residual add and LayerNorm (fairseq's
        `layer_result`) `(B, T, D)`."""
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        p = self.attention_dropout if self.training else 0.0
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=attend, dropout_p=p)  # (B, H, T, D/H)
        a = self.out(a.transpose(1, 2).reshape(b, t, d))  # (B, T, D)
        x = self.attn_norm(x + self.dropout(a))
        h = self.fc2(self.act_dropout(F.gelu(self.fc1(x))))  # (B, T, D)
        out = self.ffn_norm(x + self.dropout(h))
        return (out, h) if return_ffn else out


INITS = ("bert", "default")


def init_bert_(module: nn.Module) -> None:
    """BERT initialisation of every Linear in `module` (fairseq `init_bert_params`): N(0, 0.02), zero bias."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class TransformerEncoder(nn.Module):
    """Positional conv + LayerNorm + Transformer layers; returns the input and every layer's output."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.pos_conv = ConvPositionalEmbedding(
            config.dim, config.conv_pos_kernel, config.conv_pos_groups, config.dropout
        )
        self.norm = nn.LayerNorm(config.dim)
        self.dropout = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(TransformerLayer(config) for _ in range(config.num_layers))
        self.layer_drop = config.layer_drop
        if config.init not in INITS:
            raise ConfigError(f"model.init: unknown initialisation {config.init!r}; allowed: {', '.join(INITS)}")
        if config.init == "bert":
            init_bert_(self.layers)

    def forward(
        self, x: Tensor, lengths: Tensor, return_ffn: bool = False
    ) -> list[Tensor] | tuple[list[Tensor], list[Tensor]]:
        """x `(B, T, D)`, lengths `(B,)` -> `[input, layer 1, ..., layer L]`, each `(B, T, D)`; with `return_ffn`
        also `[ffn 1, ..., ffn L]`, each layer's FFN output before its residual add (a dropped layer's is 0)."""
        if x.shape[1] == 0:  # zero frames: nothing to attend to or convolve
            empty = [x] * (len(self.layers) + 1)
            return (empty, empty[1:]) if return_ffn else empty
        pad = padding_mask(lengths, x.shape[1])  # (B, T)
        x = x.masked_fill(pad[..., None], 0.0)  # padding must not leak into valid frames through the conv
        x = self.dropout(self.norm(x + self.pos_conv(x)))
        # Rows with no valid frame attend everywhere (their outputs are padding; this avoids NaN softmax).
        attend = (~pad | (lengths == 0)[:, None])[:, None, None, :]  # (B, 1, 1, T)
        out, ffn = [x], []
        for layer in self.layers:
            if self.training and self.layer_drop > 0 and float(torch.rand(())) < self.layer_drop:
                h = torch.zeros_like(x)  # a dropped layer adds nothing to the residual stream
            else:
                x, h = layer(x, attend, return_ffn=True)
            out.append(x)
            ffn.append(h)
        return (out, ffn) if return_ffn else out


class Codec2VecEncoder(nn.Module):
    """Front end (frontends/: codec tokens, or audio for the baselines) -> mask -> Transformer."""

    config: ModelConfig
    num_codebooks: int  # K of the codec front end (0 for the audio baselines)
    codebook_size: int

    def __init__(
        self,
        *,
        config: ModelConfig,
        num_codebooks: int = 0,
        codebook_size: int = 0,
        codebook_vectors: Tensor | None = None,
        codebook_dim: int | None = None,
    ) -> None:

        super().__init__()
        self.config = config
        self.frontend = build_frontend(
            config.frontend,
            dim=config.dim,
            num_codebooks=num_codebooks,
            codebook_size=codebook_size,
            codebook_vectors=codebook_vectors,
            codebook_dim=codebook_dim or config.codebook_dim,
            freeze=config.freeze_embeddings,
            embed_norm=config.embed_norm,
        )
        self.num_codebooks = int(cast(int, self.frontend.num_codebooks))
        self.codebook_size = int(cast(int, self.frontend.codebook_size))
        self.input_dropout = nn.Dropout(config.input_dropout)
        self.mask_embedding = nn.Parameter(torch.empty(config.dim).uniform_())
        self.transformer = TransformerEncoder(config)
        self._register_load_state_dict_pre_hook(_old_codec_keys)

    # The codec front end's parts, under the names they had before front ends were modules.
    @property
    def table(self) -> nn.Parameter:
        return cast(nn.Parameter, self.frontend.table)

    @property
    def proj(self) -> nn.Linear:
        return cast(nn.Linear, self.frontend.proj)

    @property
    def embed_norm(self) -> nn.Module:
        return cast(nn.Module, self.frontend.embed_norm)

    @property
    def codebook_dim(self) -> int:
        return int(cast(int, self.frontend.codebook_dim))

    @classmethod
    def from_state_dict(
        cls,
        state: dict[str, Tensor],
        *,
        config: ModelConfig,
        num_codebooks: int = 0,
        codebook_size: int = 0,
        prefix: str = "",
    ) -> Codec2VecEncoder:
        """Build an encoder (codec table width from the state) for `config.frontend`, then load `state`."""
        own = {k[len(prefix) :]: t for k, t in state.items() if k.startswith(prefix)}
        own = {_OLD_KEYS.get(k.split(".")[0], "") + k: t for k, t in own.items()}
        cls.check_shapes({k: tuple(t.shape) for k, t in own.items()}, config=config, num_codebooks=num_codebooks,
                         codebook_size=codebook_size)  # fmt: skip
        dc = int(own["frontend.table"].shape[-1]) if config.frontend == "codec" else None
        enc = cls(config=config, num_codebooks=num_codebooks, codebook_size=codebook_size, codebook_dim=dc)
        enc.load_state_dict(own)
        return enc

    @classmethod
    def check_shapes(
        cls, shapes: dict[str, tuple[int, ...]], *, config: ModelConfig, num_codebooks: int, codebook_size: int
    ) -> None:
        """Check the architecture `config` describes against the weights' tensor shapes (keys as in `state_dict`,
        the codec table width taken from the weights) before anything is allocated: the skeleton is built on the
        meta device. RuntimeError naming the first tensor that differs."""
        dc = int(shapes["frontend.table"][-1]) if config.frontend == "codec" and "frontend.table" in shapes else None
        with torch.device("meta"):
            skeleton = cls(config=config, num_codebooks=num_codebooks, codebook_size=codebook_size, codebook_dim=dc)
        want = {k: tuple(t.shape) for k, t in skeleton.state_dict().items()}
        bad = sorted(k for k in set(want) | set(shapes) if want.get(k) != (tuple(shapes[k]) if k in shapes else None))
        if bad:
            k = bad[0]
            raise RuntimeError(
                f"{k}: the config makes {want.get(k)}, the weights hold {shapes.get(k)} ({len(bad)} tensors differ)"
            )

    def embed(self, codes: Tensor, keep_levels: Tensor | None = None) -> Tensor:
        """codes `(B, K, T)` -> summed table rows `(B, T, D_codec)` (codec front end only)."""
        return cast(Tensor, self.frontend.embed(codes, keep_levels))  # type: ignore[operator]

    def features(self, inputs: Tensor, lengths: Tensor | None = None, keep_levels: Tensor | None = None) -> Tensor:
        """Projected input `(B, T, D)` without dropout or masking (the EMA teacher's input). `inputs`: codes
        `(B, K, T)` for the codec front end, audio `(B, S)` for the others; `lengths (B,)` in frames."""
        return self.frontend(inputs, lengths, keep_levels)

    def forward(
        self, inputs: Tensor, lengths: Tensor, *, mask: Tensor | None = None, keep_levels: Tensor | None = None
    ) -> tuple[list[Tensor], Tensor]:
        """codes `(B, K, T)` (or audio `(B, S)`, T = ceil(S / 320)), lengths `(B,)` frames -> (`[L + 1] x
        (B, T, D)`, lengths). `mask (B, T)`: True frames are replaced by the learned mask vector."""
        x = self.input_dropout(self.features(inputs, lengths, keep_levels))  # (B, T, D)
        if mask is not None:
            x = torch.where(mask[..., None], self.mask_embedding.to(x.dtype), x)
        return self.transformer(x, lengths), lengths


# Checkpoints written before front ends were modules keep the codec front end's parts at the top level.
_OLD_KEYS = {"table": "frontend.", "embed_norm": "frontend.", "proj": "frontend."}


def _old_codec_keys(state: dict[str, Tensor], prefix: str, *args: Any) -> None:
    for key in [k for k in state if k.startswith(prefix)]:
        head = key[len(prefix) :].split(".")[0]
        if head in _OLD_KEYS:
            state[prefix + _OLD_KEYS[head] + key[len(prefix) :]] = state.pop(key)


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (optionally only those with requires_grad)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


__all__ = [
    "MODEL_PRESETS",
    "Codec2VecEncoder",
    "ModelConfig",
    "TransformerEncoder",
    "count_parameters",
    "init_bert_",
    "model_config",
    "padding_mask",
]
