"""The Codec2Vec encoder: discrete codec tokens in, every Transformer layer's hidden states out.

Codec2Vec (Tseng & Harwath 2025) replaces HuBERT's waveform CNN with codec tokens:
  codes (B, K, T) -> sum_k E_k[codes[:, k]]      one fused lookup into a (K*V, D_codec) table, offset k*V
                  -> LayerNorm -> Linear(D_codec, D) -> dropout -> learned mask vector at masked frames
                  -> + convolutional positional embedding -> LayerNorm -> L post-LN Transformer layers (HuBERT Base)
The tables are initialised from the codec's codebook vectors `(K, V, D_codec)`, so before the LayerNorm the
sum equals the codec's quantized latent (`embed`). Quantizer dropout keeps the first `keep_levels[b]` levels of
row b (weights 0/1 in the same fused `embedding_bag`).

`forward(codes (B, K, T), lengths (B,)) -> (layers, lengths)`: `layers[0]` is the Transformer input (after
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
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from codec2vec.errors import ConfigError


@dataclass
class ModelConfig:
    """Encoder sizes and regularisation. Defaults are HuBERT Base (REFERENCE.md, backbone)."""

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
    codebook_dim: int | None = None  # D_codec when no codebook vectors are given (None: = dim)
    init: str = "bert"  # bert: Transformer Linears ~ N(0, 0.02), zero biases (fairseq/torchaudio) | default


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
    """Summed per-codebook embeddings (codec-initialised) -> LayerNorm -> projection -> mask -> Transformer."""

    def __init__(
        self,
        *,
        config: ModelConfig,
        num_codebooks: int,
        codebook_size: int,
        codebook_vectors: Tensor | None = None,
        codebook_dim: int | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.num_codebooks, self.codebook_size = int(num_codebooks), int(codebook_size)
        k, v = self.num_codebooks, self.codebook_size
        if codebook_vectors is not None:
            if codebook_vectors.ndim != 3 or tuple(codebook_vectors.shape[:2]) != (k, v):
                raise ValueError(f"codebook_vectors must be (K={k}, V={v}, D), got {tuple(codebook_vectors.shape)}")
            codebook_dim = int(codebook_vectors.shape[-1])
        dc = int(codebook_dim or config.codebook_dim or config.dim)
        self.codebook_dim = dc
        # One (K*V, D_codec) table: level k's rows live at k*V .. k*V+V-1, so the K lookups are one embedding_bag.
        self.table = nn.Parameter(torch.empty(k * v, dc), requires_grad=not config.freeze_embeddings)
        if codebook_vectors is not None:
            with torch.no_grad():
                self.table.copy_(codebook_vectors.reshape(k * v, dc).float())
        else:
            nn.init.normal_(self.table, std=1.0 / math.sqrt(k))
        self.register_buffer("level_offsets", torch.arange(k) * v, persistent=False)  # (K,)
        self.embed_norm = nn.LayerNorm(dc)
        self.proj = nn.Linear(dc, config.dim)
        self.input_dropout = nn.Dropout(config.input_dropout)
        self.mask_embedding = nn.Parameter(torch.empty(config.dim).uniform_())
        self.transformer = TransformerEncoder(config)

    @classmethod
    def from_state_dict(
        cls, state: dict[str, Tensor], *, config: ModelConfig, num_codebooks: int, codebook_size: int, prefix: str = ""
    ) -> Codec2VecEncoder:
        """Build an encoder whose table width matches `state[prefix + "table"]`, then load `state`."""
        dc = int(state[prefix + "table"].shape[-1])
        enc = cls(config=config, num_codebooks=num_codebooks, codebook_size=codebook_size, codebook_dim=dc)
        own = {k[len(prefix) :]: t for k, t in state.items() if k.startswith(prefix)}
        enc.load_state_dict(own)
        return enc

    def embed(self, codes: Tensor, keep_levels: Tensor | None = None) -> Tensor:
        """codes `(B, K, T)` -> summed table rows `(B, T, D_codec)`, before LayerNorm/projection.
        `keep_levels (B,)`: use only the first `keep_levels[b]` levels of row b (quantizer dropout)."""
        b, k, t = codes.shape
        if k != self.num_codebooks:
            raise ValueError(f"codes have K={k} codebooks; the model was built for K={self.num_codebooks}")
        idx = (codes.long() + self.level_offsets[None, :, None]).transpose(1, 2).reshape(b * t, k)  # (B*T, K)
        weights = None
        if keep_levels is not None:
            keep = torch.arange(k, device=codes.device)[None, :] < keep_levels[:, None]  # (B, K)
            weights = keep[:, None, :].expand(b, t, k).reshape(b * t, k).to(self.table.dtype)  # (B*T, K)
        e = F.embedding_bag(idx, self.table, mode="sum", per_sample_weights=weights)  # (B*T, D_codec)
        return e.view(b, t, self.codebook_dim)

    def features(self, codes: Tensor, keep_levels: Tensor | None = None) -> Tensor:
        """Projected input `(B, T, D)` without dropout or masking (the EMA teacher's input)."""
        return self.proj(self.embed_norm(self.embed(codes, keep_levels)))

    def forward(
        self, codes: Tensor, lengths: Tensor, *, mask: Tensor | None = None, keep_levels: Tensor | None = None
    ) -> tuple[list[Tensor], Tensor]:
        """codes `(B, K, T)`, lengths `(B,)` -> (`[L + 1] x (B, T, D)`, lengths). `mask (B, T)`: True frames
        are replaced by the learned mask vector."""
        x = self.input_dropout(self.features(codes, keep_levels))  # (B, T, D)
        if mask is not None:
            x = torch.where(mask[..., None], self.mask_embedding.to(x.dtype), x)
        return self.transformer(x, lengths), lengths


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
