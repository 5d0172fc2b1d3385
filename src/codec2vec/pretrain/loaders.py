"""Training loaders of every front end: audio crops for the continuous-input baselines (`model.frontend: waveform |
mel`), as a waveform pipeline reads them, and token-store crops for the codec front end, in worker processes.

The baselines train on the same utterances, splits, batch plan and k-means label sets as the codec model: the
token store gives the ids, their frame counts (50 Hz grid) and the label sets; the audio comes from the files
the store was made from (the `source` recorded per utterance, or a manifest: jsonl objects with `id` and
`path`, as `synth` and the corpus loaders write). `CropLoader`'s global, seeded plan picks crops in frames;
a crop of frames [a, b) reads samples [320 a, 320 b) at 16 kHz (resampled with soxr when the file has another
rate; zero past the file's end), so the audio and the frame labels stay aligned.

Reading happens in `data.workers` worker processes (`ProcessLoader`: a torch `DataLoader` over the planned
batches, in order, pinned for the GPU on CUDA); each batch carries the plan position after it, so `state_dict()`
is the position of the last batch the training loop took, and resuming is exact however far the workers had read
ahead. `data.workers: auto` reads in the training process on the CPU (compute is the limit there; a thread reads
`data.prefetch` batches ahead, overlapping the step's compute) and, on CUDA, starts as many processes as a GPU
needs (`loader_processes`): what a base model consumes on a GPU (`GPU_BASE_FRAMES_PER_S`, an estimate) over what
one process reads, timed after a warm-up batch (`read_speed`), with 25% to spare, at most the CPUs this process may
use less one. Workers also draw each batch's masks (`masker`), pinned and copied with it.

Shapes: `Batch.audio` (B, 320 T) float32, zero past each row's crop; `Batch.codes` (B, 0, T) (no codes, but
the frame count and device travel with it); `lengths` (B,) frames; labels (B, T) long padded with -100.
"""

from __future__ import annotations

import math
import os
import time
import weakref
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from codec2vec.common.errors import ConfigError
from codec2vec.corpora.audio import resample, scan_sources
from codec2vec.frontends.grid import HOP, SAMPLE_RATE
from codec2vec.pretrain.data import IGNORE, Batch, Crop, CropLoader, collate, dev_batches
from codec2vec.store import TokenStore


def audio_paths(store: TokenStore, manifest: str = "") -> dict[str, str]:
    """id -> audio file for every utterance of `store`: from `manifest` (jsonl/tsv/txt, see audio.py) when given,
    else the `source` path the store recorded. ConfigError names the first utterance without a readable file."""
    if manifest:
        if not os.path.isfile(manifest):
            raise ConfigError(f"data.audio: manifest {manifest} not found")
        paths = {it.id: it.path for it in scan_sources([manifest])}
    else:
        paths = {u: str(store.entry(u).get("source") or "") for u in store.ids()}
    for uid in store.ids():
        p = paths.get(uid, "")
        if not p or not os.path.isfile(p):
            where = f"manifest {manifest}" if manifest else f"store {store.root} (its recorded source)"
            raise ConfigError(
                f"data.audio: no audio file for utterance {uid!r} in {where} ({p or 'none'}); "
                "pass data.audio=MANIFEST.jsonl with id/path rows"
            )
    return paths


class AudioSource:
    """Reads frame-aligned audio crops (and their label rows) into a `Batch`; picklable for worker processes
    (the store and file headers are opened lazily in each process)."""

    def __init__(self, *, store_root: str, paths: dict[str, str], label_names: Sequence[str] = ()) -> None:
        self.store_root = str(store_root)
        self.paths = dict(paths)
        self.label_names = list(label_names)
        self._labels: dict[str, Any] | None = None
        self._rates: dict[str, int] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_labels": None, "_rates": {}}

    def label_sets(self) -> dict[str, Any]:
        if self._labels is None:
            store = TokenStore.open(self.store_root)
            self._labels = {n: store.labels(n) for n in self.label_names}
        return self._labels

    def read(self, uid: str, start: int, stop: int) -> np.ndarray:
        """Samples [320 start, 320 stop) of `uid` at 16 kHz, mono float32, zero-padded past the file's end."""
        import soundfile as sf

        path = self.paths[uid]
        if path not in self._rates:
            self._rates[path] = int(sf.info(path).samplerate)
        sr = self._rates[path]
        want = (stop - start) * HOP
        a, b = start * HOP * sr // SAMPLE_RATE, -(-stop * HOP * sr // SAMPLE_RATE)
        data, _ = sf.read(path, start=a, stop=b, dtype="float32", always_2d=True)  # (s, C)
        wav = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]  # (s,)
        if sr != SAMPLE_RATE:
            wav = resample(wav, sr, SAMPLE_RATE)
        out = np.zeros(want, dtype=np.float32)
        out[: min(want, len(wav))] = wav[:want]
        return out

    def collate(self, crops: Sequence[Crop]) -> Batch:
        """Read and pad the crops of one rank into a `Batch` with `audio (B, 320 T)`."""
        lengths = torch.tensor([c.stop - c.start for c in crops], dtype=torch.long)  # (B,)
        t_max = int(lengths.max()) if len(crops) else 0
        audio = torch.zeros(len(crops), t_max * HOP)  # (B, S)
        labels = {n: torch.full((len(crops), t_max), IGNORE, dtype=torch.long) for n in self.label_names}  # (B, T)
        sets = self.label_sets() if self.label_names else {}
        for b, c in enumerate(crops):
            audio[b, : (c.stop - c.start) * HOP] = torch.from_numpy(self.read(c.utt_id, c.start, c.stop))
            for n in self.label_names:
                labels[n][b, : c.stop - c.start] = sets[n].read(c.utt_id, c.start, c.stop)  # (T,)
        return Batch(
            codes=torch.zeros(len(crops), 0, t_max, dtype=torch.long),
            lengths=lengths,
            seeds=torch.tensor([c.seed for c in crops], dtype=torch.long),
            labels=labels,
            ids=[c.utt_id for c in crops],
            audio=audio,
        )


class StoreSource:
    """Reads token-store crops (and their label rows) into a `Batch` (data.collate); picklable for worker
    processes (the store is opened lazily in each process)."""

    def __init__(self, *, store_root: str, label_names: Sequence[str] = ()) -> None:
        self.store_root = str(store_root)
        self.label_names = list(label_names)
        self._store: TokenStore | None = None
        self._labels: dict[str, Any] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_store": None, "_labels": {}}

    def collate(self, crops: Sequence[Crop]) -> Batch:
        if self._store is None:
            self._store = TokenStore.open(self.store_root)
            self._labels = {n: self._store.labels(n) for n in self.label_names}
        return collate(self._store, crops, self.label_names, self._labels)


class _Plans:
    """The planned global batches of one rank, each with the plan position after it (a DataLoader sampler)."""

    def __init__(self, plan: CropLoader) -> None:
        self.plan = plan

    def __iter__(self) -> Iterator[tuple[dict[str, int], list[Crop]]]:
        while True:
            crops = self.plan.next_plan()
            yield self.plan.state_dict(), crops[self.plan.rank :: self.plan.world_size]


class _Reader(torch.utils.data.Dataset):
    def __init__(self, source: AudioSource, masker: Any = None) -> None:
        self.source, self.masker = source, masker

    def __getitem__(self, item: tuple[dict[str, int], list[Crop]]) -> tuple[dict[str, int], Batch]:
        batch = self.source.collate(item[1])
        return item[0], batch if self.masker is None else batch.with_masks(self.masker)


def _as_is(x: Any) -> Any:
    return x


class _Prefetch:
    """Items of `items` read `depth` ahead by a daemon thread (reading overlaps the step's compute, which releases
    the GIL); `close()` stops the thread, so whoever owns the plan may move it again."""

    def __init__(self, items: Iterator[Any], depth: int) -> None:
        import queue
        import threading

        self.queue: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=depth)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(items,), daemon=True, name="codec2vec-prefetch")
        self.thread.start()

    def _run(self, items: Iterator[Any]) -> None:
        import queue

        try:
            for item in items:
                while not self.stop.is_set():
                    try:
                        self.queue.put((True, item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self.stop.is_set():
                    return
        except BaseException as e:  # noqa: BLE001 -- handed to the reader, raised there
            self.queue.put((False, e))

    def __next__(self) -> Any:
        ok, item = self.queue.get()
        if not ok:
            raise item
        return item

    def close(self) -> None:
        self.stop.set()
        self.thread.join()


class ProcessLoader:
    """Endless batches for one rank: `CropLoader`'s plan, read by `source.collate` in `workers` processes (in this
    process when 0), pinned for asynchronous copies to the GPU when `pin_memory`."""

    def __init__(
        self, plan: CropLoader, *, source: Any, workers: int = 0, pin_memory: bool = False, prefetch: int = 0,
        masker: Any = None,
    ) -> None:  # fmt: skip
        """`plan`: the codec loader whose crops (ids, frame ranges, seeds) this loader reads; `source`: an
        `AudioSource` or `StoreSource`; `prefetch`: with no workers, batches a thread reads ahead (0: none);
        `masker`: draws each batch's masks where it is read (masking.Masker; None: the training loop does)."""
        self.plan, self.source, self.masker = plan, source, masker
        self.workers, self.pin_memory, self.prefetch = int(workers), bool(pin_memory), int(prefetch)
        self._state = self.plan.state_dict()
        self._it: Any = None  # an iterator of (plan position after the batch, batch)

    def _iterator(self) -> Any:
        if self.workers == 0:
            reader, plans = _Reader(self.source, self.masker), _Plans(self.plan)  # the thread must not hold `self`
            items = iter(reader[item] for item in plans)
            if self.prefetch == 0:
                return items
            ahead = _Prefetch(items, self.prefetch)
            weakref.finalize(self, ahead.stop.set)  # a loader dropped without close() stops its thread too
            return ahead
        loader = torch.utils.data.DataLoader(
            _Reader(self.source, self.masker),
            batch_size=None,
            sampler=_Plans(self.plan),  # type: ignore[arg-type]
            num_workers=self.workers,
            collate_fn=_as_is,
            prefetch_factor=4,  # batches read ahead per worker
            pin_memory=self.pin_memory,  # Batch.pin_memory: page-locked, so `.to(cuda, non_blocking=True)` overlaps
            persistent_workers=False,
            # own generator: starting workers must not draw from the global RNG that seeds each step's dropout
            generator=torch.Generator().manual_seed(self.plan.seed),
        )
        return iter(loader)

    def __iter__(self) -> Iterator[Batch]:
        return self

    def __next__(self) -> Batch:
        if self._it is None:
            self._it = self._iterator()
        self._state, batch = next(self._it)
        return batch

    def state_dict(self) -> dict[str, int]:
        return dict(self._state)

    def close(self) -> None:
        """Stop reading ahead (the prefetch thread; worker processes end with their iterator)."""
        if isinstance(self._it, _Prefetch):
            self._it.close()
        self._it = None

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.close()  # a prefetch thread moves the plan
        self.plan.load_state_dict(state)
        self._state = dict(state)  # workers that read ahead of the restored position were dropped


class AudioCropLoader(ProcessLoader):
    """`ProcessLoader` over the utterances' audio files (`paths`: id -> file), for the audio baselines (bench)."""

    def __init__(self, plan: CropLoader, *, paths: dict[str, str], workers: int = 0, pin_memory: bool = False) -> None:
        source = AudioSource(store_root=str(plan.store.root), paths=paths, label_names=plan.label_names)
        super().__init__(plan, source=source, workers=workers, pin_memory=pin_memory)


# --- how many loader processes --------------------------------------------------------------------

GPU_BASE_FRAMES_PER_S = 98_500.0  # lyra_base on one H200, bf16, after warm-up: measured by benchmarks/gpu_check.py
SPARE = 1.25  # loader capacity over consumption, so read-time bursts do not reach the training loop


def loader_processes(consumes_frames_per_s: float, reads_frames_per_s: float) -> int:
    """Loader processes that deliver `consumes_frames_per_s` with 25% to spare, each reading `reads_frames_per_s`."""
    return max(1, math.ceil(SPARE * consumes_frames_per_s / max(reads_frames_per_s, 1e-9)))


def read_speed(source: Any, plan: CropLoader, *, seconds: float = 0.5, max_batches: int = 16) -> float:
    """Real frames per second one process reads through `source` on this rank's rows of the plan's next batches
    (the plan's position does not move); the first batch warms up (numba's first compile, file headers) untimed."""
    for crops in (batches := plan.peek(max_batches + 1))[:1]:
        source.collate(crops[plan.rank :: plan.world_size])  # the warm-up, untimed
    frames, t0 = 0, time.perf_counter()
    for crops in batches[1:] or batches:
        frames += int(source.collate(crops[plan.rank :: plan.world_size]).lengths.sum())
        if time.perf_counter() - t0 > seconds:
            break
    return frames / max(time.perf_counter() - t0, 1e-9)


def resolve_workers(
    setting: int | str,
    *,
    device_type: str,
    measure: Any,
    consumes_frames_per_s: float = GPU_BASE_FRAMES_PER_S,
    cpus: int | None = None,
    local_processes: int = 1,
) -> int:
    """`data.workers` as a number: itself when given; `auto`: 0 on the CPU, and on CUDA the `loader_processes`
    for `consumes_frames_per_s` at the speed `measure()` returns (frames/s of one process), at most this rank's
    share of the CPUs less one (the training process)."""
    if setting != "auto":
        return int(setting)
    if device_type != "cuda":
        return 0
    cpus = cpus if cpus is not None else len(os.sched_getaffinity(0))
    return min(loader_processes(consumes_frames_per_s, measure()), max(1, cpus // max(1, local_processes) - 1))


def audio_dev_batches(
    source: AudioSource, plan: Sequence[Sequence[Crop]], *, rank: int = 0, world_size: int = 1
) -> Iterator[Batch | None]:
    """This rank's rows of each planned dev batch, as audio (None where the rank has no rows in a batch)."""
    for crops in plan:
        mine = list(crops[rank::world_size])
        yield source.collate(mine) if mine else None


def make_loaders(
    cfg: Any,
    store: TokenStore,
    train_ids: Sequence[str],
    *,
    rank: int,
    world_size: int,
    label_names: Sequence[str],
    device_type: str = "cpu",
    masker: Any = None,
) -> tuple[Any, Any]:
    """(training loader, dev-batch function `(dev_store, plan, rank, world) -> batches`) for `cfg.model.frontend`:
    store crops for the codec front end, audio crops for the baselines, read in `data.workers` processes
    (`resolve_workers`; when 0, by a thread `data.prefetch` batches ahead, or on request), which also draw the
    masks with `masker` (masking.Masker). The loader's `workers` says how many processes it uses."""
    d = cfg.data
    plan = CropLoader(
        store, train_ids, batch_frames=d.batch_frames, crop_frames=d.crop_frames, min_frames=d.min_frames,
        seed=cfg.train.seed, rank=rank, world_size=world_size, label_names=label_names, bucket_pool=d.bucket_pool,
        row_multiple=d.row_multiple,
    )  # fmt: skip
    if cfg.model.frontend == "codec":
        source: Any = StoreSource(store_root=str(store.root), label_names=label_names)

        def dev(dev_store: TokenStore, plan: Any, r: int, w: int) -> Iterator[Batch | None]:
            return dev_batches(dev_store, plan, rank=r, world_size=w, label_names=label_names)

    else:
        check_audio_store(store, cfg.model.frontend)
        paths = audio_paths(store, d.audio)
        source = AudioSource(store_root=str(store.root), paths=paths, label_names=label_names)

        def dev(dev_store: TokenStore, plan: Any, r: int, w: int) -> Iterator[Batch | None]:
            dev_paths = paths if dev_store is store else audio_paths(dev_store, "")
            src = AudioSource(store_root=str(dev_store.root), paths=dev_paths, label_names=label_names)
            return audio_dev_batches(src, plan, rank=r, world_size=w)

    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    workers = resolve_workers(
        d.workers, device_type=device_type, measure=lambda: read_speed(source, plan), local_processes=local
    )
    if cfg.model.frontend == "codec" and workers == 0 and d.prefetch == 0:
        return plan, dev  # reading in this process when asked: the plan reads its own crops
    pin = device_type == "cuda"
    return ProcessLoader(plan, source=source, workers=workers, pin_memory=pin, prefetch=d.prefetch, masker=masker), dev


def check_audio_store(store: TokenStore, frontend: str) -> None:
    """The audio front ends put frames on a 16 kHz, 50 Hz grid: the store's frames must be that grid."""
    codec = store.codec
    if int(codec.sample_rate) != SAMPLE_RATE or abs(float(codec.frame_rate) - SAMPLE_RATE / HOP) > 1e-6:
        raise ConfigError(
            f"model.frontend={frontend}: needs a store on the 16 kHz / 50 Hz frame grid (its frames index the audio "
            f"and the labels); {store.root} holds {codec.name} at {codec.sample_rate} Hz, {codec.frame_rate} frames/s"
        )


__all__ = [
    "GPU_BASE_FRAMES_PER_S",
    "AudioCropLoader",
    "AudioSource",
    "ProcessLoader",
    "StoreSource",
    "audio_dev_batches",
    "audio_paths",
    "check_audio_store",
    "loader_processes",
    "make_loaders",
    "read_speed",
    "resolve_workers",
]
