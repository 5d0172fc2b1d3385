"""The continuous-input baselines: HuBERT's waveform CNN and MelHuBERT's log-mel front end in the same encoder,
their audio data path, MFCC k-means, checkpoints; and the same model tests as the codec encoder (padding
invariance, zero/one-frame inputs, exact resume, torchrun equals one process)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from codec2vec.common.errors import ConfigError
from codec2vec.frontends import HOP, MelFrontend, WaveformFrontend, log_mel, mfcc, num_frames
from codec2vec.model import Codec2VecEncoder, model_config
from codec2vec.pretrain.config import load_config, save_config
from conftest import audio_config, kill_at, read_metrics

AUDIO_FRONTENDS = ("waveform", "mel", "melhubert")


def tiny_encoder(frontend: str) -> Codec2VecEncoder:
    cfg = model_config(
        "tiny", num_layers=2, dim=32, ffn_dim=64, num_heads=2, conv_pos_kernel=4, conv_pos_groups=2, frontend=frontend
    )
    torch.manual_seed(0)
    return Codec2VecEncoder(config=cfg).eval()


def test_waveform_cnn_is_hubert_s_feature_extractor() -> None:
    fe = WaveformFrontend(dim=768)
    convs = [(c.in_channels, c.out_channels, c.kernel_size[0], c.stride[0]) for c in fe.convs]
    assert convs == [(1, 512, 10, 5)] + [(512, 512, 3, 2)] * 4 + [(512, 512, 2, 2)] * 2
    assert all(c.bias is None for c in fe.convs)
    cnn = sum(p.numel() for n, p in fe.named_parameters() if n.startswith(("convs", "norm_")))
    assert cnn == 4_200_448  # torchaudio hubert_base's feature_extractor
    hop = int(np.prod([c.stride[0] for c in fe.convs]))
    field = 1
    for c in reversed(fe.convs):
        field = (field - 1) * c.stride[0] + c.kernel_size[0]
    assert (hop, field) == (HOP, 400)  # 20 ms hop, 25 ms receptive field
    for s in (1, 319, 320, 321, 3200, 16001):  # the codec grid: ceil(S / 320) frames
        x = fe(torch.randn(1, s))
        assert x.shape == (1, num_frames(s), 768) and num_frames(s) == -(-s // 320)


@pytest.mark.parametrize("frontend", AUDIO_FRONTENDS)
def test_padded_batch_equals_items_alone(frontend: str) -> None:
    enc = tiny_encoder(frontend)
    g = torch.Generator().manual_seed(1)
    samples = [320 * 9 - 17, 320, 320 * 4, 0, 320 * 2 - 300]  # frames 9, 1, 4, 0, 2
    frames = torch.tensor([num_frames(s) for s in samples])
    wav = torch.zeros(len(samples), 320 * int(frames.max()))
    for b, s in enumerate(samples):
        wav[b, :s] = torch.randn(s, generator=g)
    batch = wav.clone()
    batch[1, 320:] = 5.0  # garbage past a row's samples must not matter
    with torch.no_grad():
        layers, _ = enc(batch, frames)
        for b, s in enumerate(samples):
            alone, _ = enc(wav[b : b + 1, :s], frames[b : b + 1])
            for full, one in zip(layers, alone):
                assert one.shape[1] == int(frames[b])
                torch.testing.assert_close(full[b, : frames[b]], one[0], atol=2e-5, rtol=1e-4)
        empty, _ = enc(torch.zeros(2, 0), torch.zeros(2, dtype=torch.long))  # zero frames in the whole batch
    assert all(x.shape == (2, 0, 32) for x in empty)
    assert all(torch.isfinite(x).all() for x in layers)


def test_log_mel_and_mfcc_are_on_the_frame_grid() -> None:
    t = torch.arange(16000) / 16000
    tone = torch.sin(2 * torch.pi * 1000 * t)[None]  # (1, S) 1 kHz
    m = log_mel(tone, 80)
    assert m.shape == (1, (16000 - 400) // 160 + 1, 80)
    centre_hz = 700 * (10 ** (np.linspace(0, 2595 * np.log10(1 + 8000 / 700), 82)[1:-1] / 2595) - 1)
    assert abs(centre_hz[int(m[0].mean(0).argmax())] - 1000) < 60  # the loudest band is the tone's
    f = mfcc(tone[0], 50)
    assert f.shape == (50, 78) and torch.isfinite(f).all()
    assert MelFrontend(dim=16)(tone[:, :999]).shape == (1, num_frames(999), 16)


def test_reconstruction_is_refused_for_audio_front_ends() -> None:
    with pytest.raises(ConfigError, match="reconstruction"):
        load_config(None, ["model.frontend=waveform", "targets=reconstruction,online"])
    with pytest.raises(ConfigError, match="model.frontend"):
        load_config(None, ["model.frontend=spectrogram"])
    assert load_config(None, ["model.frontend=mel", "targets=online"]).model.frontend == "mel"


# --- the audio data path ------------------------------------------------------------------------------


def test_audio_crops_are_the_files_samples_and_resume_exactly(audio_store: Path) -> None:
    import soundfile as sf

    from codec2vec.pretrain.data import CropLoader
    from codec2vec.pretrain.loaders import AudioCropLoader, audio_paths
    from codec2vec.store import TokenStore

    store = TokenStore.open(audio_store)
    paths = audio_paths(store)

    def loader(workers: int) -> AudioCropLoader:
        plan = CropLoader(store, store.ids(), batch_frames=300, crop_frames=60, seed=4)
        return AudioCropLoader(plan, paths=paths, workers=workers)

    inline, workers = loader(0), loader(2)
    batches = [next(inline) for _ in range(8)]
    for a in batches:
        b = next(workers)  # worker processes deliver the same batches in the same order
        assert a.ids == b.ids and torch.equal(a.audio, b.audio) and torch.equal(a.seeds, b.seeds)
        assert a.codes.shape == (len(a.ids), 0, int(a.lengths.max())) and a.audio.shape[1] == HOP * a.codes.shape[2]
    b = batches[0]
    for j, uid in enumerate(b.ids):
        wav, _ = sf.read(paths[uid], dtype="float32")
        n = int(b.lengths[j])
        starts = [
            s for s in range(store.num_frames(uid) - n + 1) if np.allclose(wav[s * HOP : s * HOP + 64], b.audio[j, :64])
        ]
        assert starts, uid  # a frame-aligned window of the file
        got = b.audio[j, : n * HOP].numpy()
        want = np.zeros(n * HOP, dtype=np.float32)
        piece = wav[starts[0] * HOP : (starts[0] + n) * HOP]
        want[: len(piece)] = piece
        np.testing.assert_array_equal(got, want)
    torch.manual_seed(0)
    expect = torch.rand(3)
    torch.manual_seed(0)
    next(loader(2))  # starting workers leaves the global RNG (each step's dropout) alone
    assert torch.equal(torch.rand(3), expect)
    state = workers.state_dict()  # the workers have read ahead; the position is the last batch taken
    again = loader(2)
    again.load_state_dict(state)
    for _ in range(3):
        x, y = next(workers), next(again)
        assert x.ids == y.ids and torch.equal(x.audio, y.audio)


def test_missing_audio_is_a_config_error(audio_store: Path, tmp_path: Path) -> None:
    from codec2vec.pretrain.loaders import audio_paths
    from codec2vec.store import TokenStore

    store = TokenStore.open(audio_store)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"id": "utt000", "path": "nowhere.wav"}\n')
    with pytest.raises(ConfigError, match="utt000"):
        audio_paths(store, str(manifest))


@pytest.mark.parametrize(("source", "dim"), [("mfcc", 78), ("fbank", 80)])
def test_spectral_kmeans_labels_the_store_s_grid(audio_store: Path, tmp_path: Path, source: str, dim: int) -> None:
    import shutil

    from codec2vec.kmeans import KMeansOptions, run_kmeans
    from codec2vec.store import TokenStore

    root = tmp_path / "store"
    shutil.copytree(audio_store, root)
    out = run_kmeans(str(root), KMeansOptions(source=source, clusters=8, sample_frames=3000, name="km8"))
    assert out["dim"] == dim and out["clusters_used"] >= 6
    store = TokenStore.open(root)
    labels = store.labels("km8")
    for uid in store.ids()[:5]:
        assert labels.read(uid, 0, store.num_frames(uid)).shape == (store.num_frames(uid),)


def _knf_fbank(wav: np.ndarray) -> np.ndarray:
    """The reference: kaldi-native-fbank with MelHuBERT's settings (40 bins, Hamming window, no dither)."""
    import kaldi_native_fbank as knf

    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0.0
    opts.frame_opts.window_type = "hamming"
    opts.mel_opts.num_bins = 40
    fb = knf.OnlineFbank(opts)
    fb.accept_waveform(16000, wav.tolist())
    fb.input_finished()
    return np.stack([fb.get_frame(i) for i in range(fb.num_frames_ready)])


def test_kaldi_fbank_equals_kaldi_native_fbank_on_real_speech() -> None:
    import soundfile as sf

    from codec2vec.frontends import kaldi_fbank
    from conftest import SPEECH

    files = sorted(SPEECH.glob("*16kHz.wav"))
    assert files, f"no real speech in {SPEECH}"
    for path in files:
        wav, sr = sf.read(path, dtype="float32")
        assert sr == 16000
        ref = _knf_fbank(wav)  # (F, 40)
        ours = kaldi_fbank(torch.from_numpy(wav)[None])[0].numpy()
        assert ours.shape == ref.shape == (1 + (len(wav) - 400) // 160, 40)
        assert np.abs(ours - ref).max() < 1e-3, path  # log-mel values span about -15..16 here


def test_melhubert_statistics_are_the_training_audio_s_and_travel_with_the_checkpoint(
    audio_store: Path, tmp_path: Path
) -> None:
    """Corpus mean/variance normalisation: fitted once over the training utterances, saved in the checkpoint,
    not refitted on resume."""
    from codec2vec.frontends import kaldi_fbank
    from codec2vec.pretrain.checkpoint import load_model
    from codec2vec.pretrain.data import open_stores
    from codec2vec.pretrain.loaders import AudioSource, audio_paths
    from codec2vec.pretrain.loop import pretrain

    run = tmp_path / "run"
    cfg = audio_config(audio_store, run, "melhubert", "train.steps=1")
    pretrain(cfg)
    front = load_model(run)[0].frontend
    store, _, train_ids, dev_ids = open_stores(cfg.data)
    assert train_ids and dev_ids
    src = AudioSource(store_root=str(audio_store), paths=audio_paths(store))
    frames = torch.cat([kaldi_fbank(torch.from_numpy(src.read(u, 0, store.num_frames(u)))[None])[0] for u in train_ids])
    assert bool(front.fitted)
    torch.testing.assert_close(front.mean, frames.mean(0), atol=1e-3, rtol=0)  # the training utterances' frames
    torch.testing.assert_close(front.std, frames.std(0, unbiased=False), atol=1e-3, rtol=1e-3)
    saved = front.mean.clone()
    pretrain(audio_config(audio_store, run, "melhubert", "train.steps=2"))  # resumes: the statistics stay
    torch.testing.assert_close(load_model(run)[0].frontend.mean, saved)


# --- training, checkpoints, resume, torchrun ------------------------------------------------------------


@pytest.mark.parametrize("frontend", AUDIO_FRONTENDS)
def test_baseline_trains_and_its_checkpoint_loads(audio_store: Path, tmp_path: Path, frontend: str) -> None:
    from codec2vec.frontends import MelFrontend, MelHuBERTFrontend, WaveformFrontend
    from codec2vec.pretrain.checkpoint import load_model
    from codec2vec.pretrain.loop import pretrain

    run = tmp_path / "run"
    summary = pretrain(audio_config(audio_store, run, frontend, "train.steps=4"))
    assert summary["step"] == 4 and np.isfinite(summary["last"]["loss"]) and "acc_online" in summary["dev"]
    encoder, meta = load_model(run)
    assert meta["frontend"] == frontend and meta["config"]["model"]["frontend"] == frontend
    kinds = {"waveform": WaveformFrontend, "mel": MelFrontend, "melhubert": MelHuBERTFrontend}
    assert isinstance(encoder.frontend, kinds[frontend])
    layers, lengths = encoder(torch.randn(2, 320 * 30), torch.tensor([30, 12]))
    assert len(layers) == 3 and layers[-1].shape == (2, 30, 32)
    # The next k-means round clusters a layer of the baseline, computed from the store's audio.
    import shutil

    from codec2vec.kmeans import KMeansOptions, run_kmeans
    from codec2vec.store import TokenStore

    shutil.copytree(audio_store, tmp_path / "store")
    out = run_kmeans(str(tmp_path / "store"), KMeansOptions(source=f"{run}:1", clusters=4, sample_frames=500))
    assert out["dim"] == 32 and out["layer"] == 1 and out["frames"] == TokenStore.open(audio_store).info()["frames"]


@pytest.mark.slow
def test_waveform_sigkill_then_resume_matches_uninterrupted(audio_store: Path, tmp_path: Path) -> None:
    from codec2vec.pretrain.loop import pretrain

    extra = ("train.steps=16", "data.workers=2")  # dropout on and workers reading ahead: both must resume
    pretrain(audio_config(audio_store, tmp_path / "ref", "waveform", *extra))
    ref_rows, ref_dev = read_metrics(tmp_path / "ref")
    run = tmp_path / "killed"
    cfg = audio_config(audio_store, run, "waveform", *extra)
    save_config(cfg, tmp_path / "killed.yaml")
    first = run / "checkpoints" / "step-00000004" / "meta.json"
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    code, err, _ = kill_at(["pretrain", str(tmp_path / "killed.yaml")], first.exists, timeout=240, env=env)
    assert code == -signal.SIGKILL, err[-2000:]
    pretrain(cfg)
    rows, dev = read_metrics(run)
    assert [r["step"] for r in rows] == [r["step"] for r in ref_rows]
    for a, b in zip(rows + dev, ref_rows + ref_dev):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5, abs=1e-6), (a, b)


@pytest.mark.slow
@pytest.mark.parametrize("frontend", ["mel", "melhubert"])  # melhubert: corpus statistics, rank 0's on every rank
def test_mel_torchrun_two_processes_match_one(audio_store: Path, tmp_path: Path, frontend: str) -> None:
    from codec2vec.pretrain.loop import pretrain

    extra = ("train.steps=4", "model.dropout=0", "model.attention_dropout=0", "model.input_dropout=0")
    extra += ("data.row_multiple=2",)  # the plan 2 processes share evenly, for one process too
    pretrain(audio_config(audio_store, tmp_path / "one", frontend, *extra))
    cfg = audio_config(audio_store, tmp_path / "two", frontend, *extra)
    save_config(cfg, tmp_path / "two.yaml")
    out = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
        + ["-m", "codec2vec", "pretrain", str(tmp_path / "two.yaml")],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    (one, one_dev), (two, two_dev) = read_metrics(tmp_path / "one"), read_metrics(tmp_path / "two")
    assert [r["step"] for r in two] == [r["step"] for r in one] == [1, 2, 3, 4]
    for a, b in zip(one + one_dev, two + two_dev):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4, abs=1e-5), (a, b)
        assert b["acc_online"] == pytest.approx(a["acc_online"], abs=1e-5)
