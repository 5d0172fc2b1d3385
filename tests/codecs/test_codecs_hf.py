"""The `transformers` codec backends (codecs/hf.py): DAC, EnCodec and Mimi behind the `Codec` protocol.

DAC is built with the real `descript/dac_16khz` layout and random weights (no weights can be downloaded here);
EnCodec and Mimi with small random models on their real frame grids. Each test states what would break.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from codec2vec.cli import main
from codec2vec.codecs import Codec, codec_info, get_codec
from codec2vec.codecs.hf import (
    DacCodec,
    EncodecCodec,
    MimiCodec,
    dac_16khz_config,
    dac_24khz_config,
    dac_44khz_config,
    encodec_24khz_config,
    mimi_config,
    random_model,
    tiny_dac_config,
    tiny_encodec_config,
    tiny_mimi_config,
)
from codec2vec.common.errors import Codec2VecError
from conftest import SPEECH, one_line_error

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def dac16() -> DacCodec:
    return DacCodec(model=random_model(dac_16khz_config()))


@pytest.fixture(scope="module")
def encodec() -> EncodecCodec:
    return EncodecCodec(model=random_model(tiny_encodec_config()))


@pytest.fixture(scope="module")
def mimi() -> MimiCodec:
    return MimiCodec(model=random_model(tiny_mimi_config()))


@pytest.fixture(scope="module", params=["dac16", "encodec", "mimi"])
def codec(request: pytest.FixtureRequest) -> Codec:
    return request.getfixturevalue(request.param)


@pytest.fixture(scope="module")
def speech16() -> torch.Tensor:
    """Real speech at 16 kHz (1.2 s), or seeded noise if the shared recordings are absent."""
    import soundfile as sf

    path = Path(__file__).resolve().parents[3] / "shared" / "speech" / "lyra_sample1_16kHz.wav"
    if path.is_file():
        wav, sr = sf.read(path, dtype="float32", always_2d=True)
        assert sr == 16000
        return torch.from_numpy(wav[8000:27200, 0].copy())
    return 0.1 * torch.randn(19200, generator=torch.Generator().manual_seed(0))


def _audio(codec: Codec, lengths: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    wav = 0.1 * torch.randn(len(lengths), max(lengths), generator=gen)  # (B, S), garbage past each length
    return wav, torch.tensor(lengths)


# ------------------------------------------------------------------------------------------ declared grid
def test_dac_16khz_layout_is_the_papers_codec(dac16: DacCodec) -> None:
    cfg = dac16.model.config
    assert list(cfg.downsampling_ratios) == [2, 4, 5, 8] and cfg.hidden_size == 1024
    assert (dac16.sample_rate, dac16.frame_rate, dac16.num_codebooks, dac16.codebook_size) == (16000, 50.0, 12, 1024)
    assert codec_info(dac16).kbps == pytest.approx(6.0)  # 50 Hz x 12 x 10 bits
    assert 70e6 < sum(p.numel() for p in dac16.model.parameters()) < 80e6


@pytest.mark.parametrize(
    "make, grid",
    [
        (dac_24khz_config, (24000, 75.0, 32)),
        (dac_44khz_config, (44100, 44100 / 512, 9)),
        (encodec_24khz_config, (24000, 75.0, 32)),
        (mimi_config, (24000, 12.5, 32)),
    ],
)
def test_other_real_layouts(make, grid) -> None:
    cfg = make()
    rate = cfg.sampling_rate
    hop = math.prod(getattr(cfg, "downsampling_ratios", None) or cfg.upsampling_ratios)
    hop *= cfg.latent_stride if cfg.model_type == "mimi" else 1
    levels = cfg.n_codebooks if cfg.model_type == "dac" else cfg.num_quantizers
    assert (rate, rate / hop, levels) == grid


def test_declared_grid_matches_encode(codec: Codec) -> None:
    assert isinstance(codec, Codec)
    hop = round(codec.sample_rate / codec.frame_rate)
    assert hop * codec.frame_rate == codec.sample_rate
    seconds = {"dac": 0.5, "encodec": 1.0, "mimi": 2.0}[codec.name]  # a whole number of frames
    lengths = [round(seconds * codec.sample_rate), hop * 3 + 1, hop - 1, 1]
    wav, lens = _audio(codec, lengths)
    codes, frames = codec.encode(wav, lens)
    assert int(frames[0]) == seconds * codec.frame_rate  # the declared rate, measured on encode output
    assert codes.dtype == torch.long and codes.shape[:2] == (len(lengths), codec.num_codebooks)
    assert frames.tolist() == [math.ceil(n / hop) for n in lengths]
    assert codes.shape[2] == max(frames.tolist())
    assert 0 <= int(codes.min()) and int(codes.max()) < codec.codebook_size
    for b, t in enumerate(frames.tolist()):
        assert not codes[b, :, t:].any()  # padding frames are zeroed, not left as junk
    info = codec_info(codec)
    json.dumps(info.to_dict())
    assert (info.num_codebooks, info.codebook_size, info.frame_rate) == (
        codec.num_codebooks, codec.codebook_size, codec.frame_rate,
    )  # fmt: skip


def test_codes_are_informative(codec: Codec) -> None:
    """Random test models must not give constant codes, or the equality tests below would prove nothing."""
    codes, _ = codec.encode(*_audio(codec, [codec.sample_rate // 2 if codec.name == "dac" else codec.sample_rate]))
    for k in range(codec.num_codebooks):
        assert codes[0, k].unique().numel() > 1 or codes.shape[2] < 3, f"level {k} is constant"


def test_empty_inputs(codec: Codec) -> None:
    codes, frames = codec.encode(torch.zeros(2, 0), torch.tensor([0, 0]))
    assert codes.shape == (2, codec.num_codebooks, 0) and frames.tolist() == [0, 0]
    wav, samples = codec.decode(codes, frames)
    assert wav.shape == (2, 0) and samples.tolist() == [0, 0]


def test_bad_shapes_are_refused(encodec: EncodecCodec) -> None:
    with pytest.raises(ValueError, match=r"\(B, S\)"):
        encodec.encode(torch.zeros(1, 1, 10), torch.tensor([10]))
    with pytest.raises(ValueError, match="lengths"):
        encodec.encode(torch.zeros(2, 10), torch.tensor([11, 3]))
    with pytest.raises(ValueError, match="codes must lie"):
        encodec.decode(torch.full((1, 8, 2), encodec.codebook_size), torch.tensor([2]))


# ------------------------------------------------------------------------------------------ codebook vectors
def _summed(codec: Codec, codes: torch.Tensor) -> torch.Tensor:
    vectors = codec.codebook_vectors()  # (K, V, D)
    k = torch.arange(codes.shape[1])[None, :, None]
    return vectors[k, codes].sum(dim=1).transpose(1, 2)  # (B, D, T)


def test_dac_codebook_vectors_sum_to_its_quantized_latent(dac16: DacCodec, speech16: torch.Tensor) -> None:
    codes, _ = dac16.encode(speech16[None, :8000], torch.tensor([8000]))
    vectors = dac16.codebook_vectors()
    assert vectors.shape == (12, 1024, 1024)
    model = dac16.model
    with torch.no_grad():
        own = model.quantizer.from_codes(codes)[0]  # (1, 1024, T): what DacModel.decode feeds its decoder
        tail = torch.zeros(2 * dac16.lookahead_frames * dac16.hop_length)  # the silence `encode` appends
        x = torch.cat([speech16[:8000], tail])[None, None]
        encoded = model.encode(x).quantized_representation[..., : codes.shape[-1]]  # (1, 1024, T): encode path
    ours = _summed(dac16, codes)
    assert torch.allclose(ours, own, atol=1e-5 * own.abs().max().item())
    assert torch.allclose(ours, encoded, atol=1e-4 * encoded.abs().max().item())


def test_encodec_codebook_vectors_sum_to_its_quantized_latent(encodec: EncodecCodec) -> None:
    codes, _ = encodec.encode(*_audio(encodec, [4800, 3000]))
    assert encodec.codebook_vectors().shape == (8, 1024, 16)
    with torch.no_grad():
        own = encodec.model.quantizer.decode(codes.transpose(0, 1))  # (B, D, T), as EncodecModel._decode_frame
    assert torch.allclose(_summed(encodec, codes), own, atol=1e-6)


def test_mimi_codebook_vectors_sum_to_its_quantized_latent(mimi: MimiCodec) -> None:
    codes, _ = mimi.encode(*_audio(mimi, [24000, 10000]))
    assert mimi.codebook_vectors().shape == (8, 256, 32)  # semantic and acoustic levels, both projected to H
    with torch.no_grad():
        own = mimi.model.quantizer.decode(codes)  # (B, H, T): what MimiModel.decode feeds its decoder
    assert torch.allclose(_summed(mimi, codes), own, atol=1e-5 * own.abs().max().item())


# ------------------------------------------------------------------------------------------ padded batches
@pytest.mark.parametrize("name", ["encodec", "mimi"])
def test_causal_codecs_padded_batch_equals_items_alone(name: str, request: pytest.FixtureRequest) -> None:
    """EnCodec and Mimi are causal: every frame of every item is the same in a padded batch and alone."""
    codec = request.getfixturevalue(name)
    hop = codec.hop_length
    lengths = [1, hop, hop + 1, 3 * hop - 5, 6 * hop, 7 * hop + 3, 20 * hop + 11]
    wav, lens = _audio(codec, lengths, seed=3)
    codes, frames = codec.encode(wav, lens)
    for b, n in enumerate(lengths):
        alone, t = codec.encode(wav[b : b + 1, :n], torch.tensor([n]))
        assert int(t[0]) == int(frames[b]) == alone.shape[2]
        assert torch.equal(alone[0], codes[b, :, : int(t[0])]), f"item {b} ({n} samples)"


def test_dac_padded_batch_equals_items_alone(dac16: DacCodec, speech16: torch.Tensor) -> None:
    """DAC is not causal, but the silent tail that `encode` appends makes every frame batch-independent."""
    assert dac16.lookahead_frames == 9  # half of the 16 kHz encoder's ~5300-sample receptive field, in frames
    lengths = [12800, 8000, 4800 + 17]
    wav = torch.stack([speech16[:12800], speech16[6400:19200], speech16[:12800].flip(0)])  # (3, 12800)
    codes, frames = dac16.encode(wav, torch.tensor(lengths))
    assert frames.tolist() == [40, 25, 16]
    for b, n in enumerate(lengths):
        alone, t = dac16.encode(wav[b : b + 1, :n], torch.tensor([n]))
        assert int(t[0]) == int(frames[b])
        assert torch.equal(alone[0], codes[b, :, : int(t[0])]), f"item {b}"


# ------------------------------------------------------------------------------------------ levels
def test_fewer_levels_are_a_prefix_of_more(speech16: torch.Tensor) -> None:
    """Residual VQ: K levels are the first K of the full stream (and the codec reports K)."""
    full = DacCodec(model=random_model(tiny_dac_config()))
    three = DacCodec(model=full.model, num_codebooks=3)
    x, n = speech16[None, :6400], torch.tensor([6400])
    assert torch.equal(three.encode(x, n)[0], full.encode(x, n)[0][:, :3])
    assert three.codebook_vectors().shape == (3, 64, 64)
    assert three.config()["num_codebooks"] == 3 and codec_info(three).config_hash != codec_info(full).config_hash
    with pytest.raises(Codec2VecError, match="num_codebooks"):
        DacCodec(model=full.model, num_codebooks=5)


def test_encodec_levels_follow_bandwidths(encodec: EncodecCodec) -> None:
    assert (encodec.num_codebooks, encodec.bandwidth) == (8, 6.0)  # the default: 6 kbps like DAC 16 kHz
    two = EncodecCodec(model=encodec.model, num_codebooks=2)
    assert two.bandwidth == 1.5 and two.config()["bandwidth_kbps"] == 1.5
    wav, lens = _audio(encodec, [9600])
    assert torch.equal(two.encode(wav, lens)[0], encodec.encode(wav, lens)[0][:, :2])
    with pytest.raises(Codec2VecError, match=r"2 \(1.5 kbps\).*32 \(24 kbps\)"):
        EncodecCodec(model=encodec.model, num_codebooks=5)


def test_mimi_levels(mimi: MimiCodec) -> None:
    one = MimiCodec(model=mimi.model, num_codebooks=1)  # the semantic level alone
    wav, lens = _audio(mimi, [24000])
    assert torch.equal(one.encode(wav, lens)[0], mimi.encode(wav, lens)[0][:, :1])
    with pytest.raises(Codec2VecError, match="num_codebooks"):
        MimiCodec(model=mimi.model, num_codebooks=9)


# ------------------------------------------------------------------------------------------ decode
def test_decode_returns_the_frames_worth_of_samples(codec: Codec) -> None:
    hop = round(codec.sample_rate / codec.frame_rate)
    lengths = [2 * hop + 5, hop] if codec.name != "dac" else [1600, 700]
    codes, frames = codec.encode(*_audio(codec, lengths))
    wav, samples = codec.decode(codes, frames)
    assert samples.tolist() == [int(f) * hop for f in frames]
    assert wav.shape == (len(lengths), int(frames.max()) * hop) and wav.dtype == torch.float32
    assert wav[0].abs().sum() > 0 and not wav[1, int(samples[1]) :].any()
    # decoding an item alone gives the same samples as in the padded batch for the causal decoders
    if codec.name != "dac":
        alone, n = codec.decode(codes[1:, :, : int(frames[1])], frames[1:])
        assert torch.allclose(alone[0], wav[1, : int(n[0])], atol=1e-3)


# ------------------------------------------------------------------------------------------ loading and config
def test_save_pretrained_folder_loads_and_is_identified(tmp_path: Path, mimi: MimiCodec) -> None:
    mimi.model.save_pretrained(tmp_path / "mimi-tiny")
    loaded = get_codec("mimi", path=str(tmp_path / "mimi-tiny"))
    assert isinstance(loaded, MimiCodec)
    wav, lens = _audio(mimi, [30000])
    assert torch.equal(loaded.encode(wav, lens)[0], mimi.encode(wav, lens)[0])
    cfg = loaded.config()
    assert cfg["path"] == str((tmp_path / "mimi-tiny").resolve()) and cfg["model_class"] == "MimiModel"
    assert cfg["weights_sha256"] == mimi.config()["weights_sha256"]
    assert json.loads(json.dumps(cfg)) == cfg


def test_weights_hash_tells_models_apart() -> None:
    a = EncodecCodec(model=random_model(tiny_encodec_config(), seed=0))
    b = EncodecCodec(model=random_model(tiny_encodec_config(), seed=0))
    c = EncodecCodec(model=random_model(tiny_encodec_config(), seed=1))
    assert codec_info(a).config_hash == codec_info(b).config_hash != codec_info(c).config_hash


def test_missing_local_folder_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "dac_16khz"
    for name in ("dac", "encodec", "mimi"):
        with pytest.raises(Codec2VecError) as err:
            get_codec(name, path=str(missing))
        assert str(missing) in str(err.value) and "--codec-path" in str(err.value)


def test_folder_without_config_or_of_another_model(tmp_path: Path, encodec: EncodecCodec) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(Codec2VecError, match="no config.json.*--codec-path"):
        DacCodec(path=str(tmp_path / "empty"))
    encodec.model.config.save_pretrained(tmp_path / "enc")
    with pytest.raises(Codec2VecError, match="'encodec' model, not 'dac'"):
        DacCodec(path=str(tmp_path / "enc"))


def test_unreachable_hub_id_is_a_clear_error() -> None:
    with pytest.raises(Codec2VecError) as err:
        DacCodec(path="descript/dac_16khz", local_files_only=True)  # no network here: nothing in the cache
    assert "descript/dac_16khz" in str(err.value) and "--codec-path" in str(err.value)


def test_a_model_of_another_codec_is_refused(encodec: EncodecCodec) -> None:
    with pytest.raises(Codec2VecError, match="'encodec' model"):
        DacCodec(model=encodec.model)


def test_encodec_48khz_is_refused() -> None:
    from transformers import EncodecConfig

    cfg = EncodecConfig(hidden_size=8, num_filters=2, normalize=True, chunk_length_s=1.0, overlap=0.01,
                        sampling_rate=48000, audio_channels=2)  # fmt: skip
    with pytest.raises(Codec2VecError, match="scales"):
        EncodecCodec(model=random_model(cfg))


def test_tiny_dac_runs_the_same_code_path() -> None:
    small = DacCodec(model=random_model(tiny_dac_config()))
    codes, frames = small.encode(*_audio(small, [3200, 1000]))
    assert codes.shape == (2, 4, 10) and frames.tolist() == [10, 4]


def test_import_does_not_load_transformers() -> None:
    code = "import sys, codec2vec.codecs.hf, codec2vec.codecs; assert 'transformers' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_tokenize_and_decode_a_store_with_a_local_folder(
    tmp_path: Path, mimi: MimiCodec, speech16: torch.Tensor
) -> None:
    """The pipeline path: `codec2vec tokenize --codec mimi --codec-path FOLDER`, then decode from the store's metadata."""
    import soundfile as sf

    from codec2vec.corpora.audio import load_audio
    from codec2vec.store import TokenStore
    from codec2vec.store.decode import decode_store
    from codec2vec.tokenize import TokenizeOptions, tokenize

    mimi.model.save_pretrained(tmp_path / "mimi")
    src = tmp_path / "src"
    src.mkdir()
    for i, n in enumerate([16000, 9000, 12345]):
        sf.write(src / f"u{i}.wav", speech16[:n].numpy(), 16000)
    summary = tokenize([str(src)], tmp_path / "store", TokenizeOptions(codec="mimi", codec_path=str(tmp_path / "mimi"),
                                                                       batch_size=3), progress=False)  # fmt: skip
    assert summary["stored"] == 3
    store = TokenStore.open(tmp_path / "store")
    assert (store.codec.frame_rate, store.codec.num_codebooks, store.codec.codebook_size) == (12.5, 8, 256)
    assert torch.equal(store.codebook_vectors(), mimi.codebook_vectors())
    for uid in store.ids():
        wav = torch.from_numpy(load_audio(store.entry(uid)["source"], 24000))[None]  # (1, S)
        alone, _ = mimi.encode(wav, torch.tensor([wav.shape[1]]))
        assert torch.equal(store[uid], alone[0])  # batched in tokenize, yet the codes of the item alone
    assert decode_store(tmp_path / "store", tmp_path / "decoded") == 3
    out = sorted((tmp_path / "decoded").rglob("*.wav"))
    assert len(out) == 3 and all(sf.info(p).samplerate == 24000 for p in out)


def test_offline_hint_names_hf_download_and_hub_offline() -> None:
    """Offline, the error says how to fetch the weights with today's CLI (`hf download`) and how to skip the hub's
    retries (`HF_HUB_OFFLINE=1`); `huggingface-cli` is gone from current huggingface_hub installs."""
    with pytest.raises(Codec2VecError) as err:
        DacCodec(path="nobody-here/no-such-dac", local_files_only=True)
    msg = str(err.value)
    assert "hf download nobody-here/no-such-dac" in msg and "HF_HUB_OFFLINE=1" in msg
    assert "huggingface-cli" not in msg


@pytest.mark.slow  # imports transformers
def test_a_dac_folder_whose_pickle_is_refused_is_one_line(tmp_path: Path, capsys) -> None:
    import transformers

    folder = tmp_path / "dac"
    transformers.DacConfig(n_codebooks=2, codebook_size=16, codebook_dim=4).save_pretrained(folder)

    class Evil:
        def __reduce__(self):
            return (os.getcwd, ())

    torch.save({"x": Evil()}, folder / "pytorch_model.bin")
    clip = SPEECH / "lyra_sample1_16kHz.wav"
    argv = ["tokenize", str(clip), "--out", str(tmp_path / "st"), "--codec", "dac", "--codec-path", str(folder)]
    assert main(argv) == 2
    one_line_error(capsys, "refused the weights", "safetensors")
    assert not (tmp_path / "st").exists()
