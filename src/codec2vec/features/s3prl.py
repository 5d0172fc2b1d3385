"""A Codec2Vec checkpoint as an s3prl upstream (s3prl/upstream/interfaces.py and upstream/example/expert.py).

s3prl's contract: `UpstreamExpert(ckpt, model_config=None, **kwargs)` is an `nn.Module` whose
`forward(wavs: list of unpadded (S,) float tensors at 16 kHz)` returns a dict with at least
`"hidden_states"`: a list of padded `(B, T, D)` tensors of one shape (s3prl's Featurizer takes their
softmax-weighted sum) and `"last_hidden_state"`; `get_downsample_rates(key) -> int` gives input samples per
output frame (320 here: 50 frames/s at 16 kHz). This module does not import s3prl; to use it there, copy
the three lines below into `s3prl/upstream/codec2vec/expert.py` (and `hubconf.py`):

    from codec2vec.features.s3prl import UpstreamExpert  # noqa: F401

    # hubconf.py
    def codec2vec_local(ckpt, *args, **kwargs):
        return UpstreamExpert(ckpt, *args, **kwargs)

then `python run_downstream.py -m train -u codec2vec_local -k RUN/checkpoints/step-00010000 -d ctc ...`.
Outside s3prl it works on its own:

    expert = UpstreamExpert("runs/lyra_tiny")
    out = expert([torch.randn(16000), torch.randn(8000)])
    out["hidden_states"][0].shape   # (2, 50, 128): the input layer, then one per Transformer layer
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor, nn

from codec2vec.features.upstream import Upstream


class UpstreamExpert(nn.Module):
    """s3prl-style upstream: list of 16 kHz waveforms -> {"hidden_states": [L + 1] x (B, T, D), ...}."""

    def __init__(self, ckpt: str | Path, model_config: str | None = None, **kwargs: Any) -> None:
        """`ckpt`: a checkpoint directory, a run directory (its newest checkpoint), an exported folder
        (`codec2vec export`) or a hub model id of one. `model_config` is
        ignored (checkpoints describe themselves); `codec_path=` locates the codec's weights; other s3prl
        keyword arguments are accepted and ignored."""
        super().__init__()
        self.upstream = Upstream.from_checkpoint(ckpt, codec_path=kwargs.get("codec_path"))

    def get_downsample_rates(self, key: str) -> int:
        """Input samples per frame of every returned key (320 for a 50 Hz codec at 16 kHz)."""
        return self.upstream.downsample_rate

    def forward(self, wavs: list[Tensor]) -> dict[str, Any]:
        layers, lengths = self.upstream(wavs)
        return {"hidden_states": layers, "last_hidden_state": layers[-1], "lengths": lengths}


__all__ = ["UpstreamExpert"]
