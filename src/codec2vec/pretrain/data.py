"""Pre-training data: random crops from a token store in frame-budget batches (HuBERT-style), per rank.

Every process computes the same global plan from the run seed (which utterances, in which order, which
crop) using only the store's index; each DDP rank then reads only its own rows (`rows[rank::world]`) from
the store. A batch is global: it holds as many crops as fit in `batch_frames` padded frames (rows x
longest crop), cut to a multiple of `data.row_multiple` rows (0: the world size) so the ranks share them evenly;
one process and N processes with the same `row_multiple` see the same rows for the same step. Every row carries a
seed made from (run seed, epoch, utterance id) so masks and quantizer dropout never depend on the rank.
Batches are length-bucketed (fairseq's `batch_by_size` on HuBERT's shuffled order): each epoch's shuffled
crops are cut into pools of `bucket_pool` crops, each pool is sorted by crop length and packed, and the
pool's batches are shuffled, so a batch holds crops of similar length and padding stays a few percent
(`bucket_pool=0`: pack in the shuffled order, padding every crop to the longest of a random batch).
The loader's position (epoch, batch) is plain data: `state_dict()` / `load_state_dict()` resume exactly.

The held-out dev split is deterministic: a manifest `split` field in `store.entry(id)["extra"]` when the
store has one (`dev`, `valid`, `validation`, `test` -> dev), otherwise a hash of the utterance id.

Shapes: `Batch.codes` LongTensor (B, K, T) padded with 0; `lengths` (B,) frames; `seeds` (B,) int64;
`labels[name]` (B, T) long padded with -100; for the audio baselines (loaders.py) `Batch.audio` (B, 320 T)
float and `codes` (B, 0, T).
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import torch
from torch import Tensor

from codec2vec.common.errors import ConfigError, StoreError
from codec2vec.store import TokenStore

DEV_SPLITS = ("dev", "valid", "validation", "test")
IGNORE = -100  # label of frames that no loss reads (padding, unmasked frames)


@dataclass
class Batch:
    """A collated batch. `seeds` are per-utterance (from run seed, epoch/step and utterance) so masks and
    quantizer dropout do not depend on the batch or rank an utterance lands in."""

    codes: Tensor  # (B, K, T) long
    lengths: Tensor  # (B,) frames
    seeds: Tensor  # (B,) int64
    labels: dict[str, Tensor] = field(default_factory=dict)  # name -> (B, T) long (k-means labels, ...)
    ids: list[str] = field(default_factory=list)
    audio: Tensor | None = None  # (B, 320 T) float 16 kHz, for the audio front ends (codes are then (B, 0, T))
    mask: Tensor | None = None  # (B, T) bool span mask, drawn on the CPU from the seeds (Pretrainer.prepare)
    keep: Tensor | None = None  # (B,) long quantizer-dropout levels, drawn with the mask (None: all levels)

    @property
    def inputs(self) -> Tensor:
        """What the encoder's front end reads: the audio when the batch has it, else the codes."""
        return self.audio if self.audio is not None else self.codes

    def _map(self, fn: Any) -> Batch:
        """The batch with `fn` applied to every tensor."""
        opt = lambda t: None if t is None else fn(t)  # noqa: E731
        return Batch(
            codes=fn(self.codes), lengths=fn(self.lengths), seeds=fn(self.seeds),
            labels={k: fn(v) for k, v in self.labels.items()}, ids=list(self.ids), audio=opt(self.audio),
            mask=opt(self.mask), keep=opt(self.keep),
        )  # fmt: skip

    def with_masks(self, masker: Any) -> Batch:
        """The batch with its span mask and quantizer-dropout levels drawn on the CPU by `masker` (masking.Masker)."""
        mask, keep = masker(self.lengths, self.codes.shape[-1], self.seeds)
        return dataclasses.replace(self, mask=mask, keep=keep)

    def to(self, device: torch.device | str) -> Batch:
        """The batch with its tensors on `device` (draw the masks first: they come from the CPU lengths and seeds;
        everything moves, so DDP has nothing left to copy, which it would do blocking)."""
        return self._map(lambda t: t.to(device, non_blocking=True))

    def pin_memory(self) -> Batch:
        """The batch in page-locked memory (a `DataLoader(pin_memory=True)` calls it in its pinning thread), so the
        copies of `to(cuda)` run asynchronously. Only CPU tensors can be pinned: call it before `to`."""
        return self._map(lambda t: t.pin_memory())


def hash64(*parts: Any) -> int:
    """A stable 63-bit integer from the parts (sha256; identical across processes and runs)."""
    blob = "\x1f".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "little") & ((1 << 63) - 1)


def utterance_seed(seed: int, epoch: int | str, utt_id: str) -> int:
    """The per-utterance seed of `utt_id` in `epoch` of a run seeded with `seed`."""
    return hash64("utt", seed, epoch, utt_id)


def split_ids(store: TokenStore, dev_fraction: float) -> tuple[list[str], list[str]]:
    """(train ids, dev ids), deterministic: a manifest `split` field if any entry has one, else id hashes.

    With at least two utterances and `dev_fraction > 0`, dev is never empty (the lowest-hash id is
    taken) and train is never empty.
    """
    ids = list(store.ids())
    splits = {}
    for i in ids:
        extra = store.entry(i).get("extra") or {}
        if "split" in extra:
            splits[i] = str(extra["split"]).lower()
    if splits:
        dev = [i for i in ids if splits.get(i, "train") in DEV_SPLITS]
        train = [i for i in ids if splits.get(i, "train") not in DEV_SPLITS]
        return train, dev
    if dev_fraction <= 0 or len(ids) < 2:
        return ids, []
    h = {i: hash64("split", i) / float(1 << 63) for i in ids}
    dev = [i for i in ids if h[i] < dev_fraction]
    if not dev:
        dev = [min(ids, key=h.__getitem__)]
    if len(dev) == len(ids):
        dev.remove(max(dev, key=h.__getitem__))
    dev_set = set(dev)
    return [i for i in ids if i not in dev_set], dev


def open_stores(data: Any) -> tuple[TokenStore, TokenStore, list[str], list[str]]:
    """(train store, dev store, train ids, dev ids) of a `DataConfig`; the store must hold `data.codec`'s codes."""
    store = TokenStore.open(data.store)
    if data.codec and store.codec.name != data.codec:
        raise ConfigError(
            f"data.codec: the config expects {data.codec!r} tokens, {data.store} holds {store.codec.name!r}"
        )
    dev_store = TokenStore.open(data.dev_store) if data.dev_store else store
    train_ids, dev_ids = split_ids(store, 0.0 if data.dev_store else data.dev_fraction)
    if data.dev_store:
        dev_ids = list(dev_store.ids())
    return store, dev_store, train_ids, dev_ids


@dataclass
class Crop:
    utt_id: str
    start: int
    stop: int
    seed: int


def collate(
    store: TokenStore, crops: Sequence[Crop], label_names: Sequence[str] = (), label_sets: dict[str, Any] | None = None
) -> Batch:
    """Read the crops of one rank and pad them into a `Batch`."""
    k = store.codec.num_codebooks
    lengths = torch.tensor([c.stop - c.start for c in crops], dtype=torch.long)  # (B,)
    t_max = int(lengths.max()) if len(crops) else 0
    codes = torch.zeros(len(crops), k, t_max, dtype=torch.long)  # (B, K, T)
    labels = {n: torch.full((len(crops), t_max), IGNORE, dtype=torch.long) for n in label_names}  # (B, T)
    for b, c in enumerate(crops):
        codes[b, :, : c.stop - c.start] = store.read(c.utt_id, c.start, c.stop)
        for n in label_names:
            assert label_sets is not None, "label_names need label_sets"
            labels[n][b, : c.stop - c.start] = label_sets[n].read(c.utt_id, c.start, c.stop)  # (T,)
    seeds = torch.tensor([c.seed for c in crops], dtype=torch.long)  # (B,)
    return Batch(codes=codes, lengths=lengths, seeds=seeds, labels=labels, ids=[c.utt_id for c in crops])


def _open_labels(store: TokenStore, label_names: Sequence[str], ids: Sequence[str] = ()) -> dict:
    """The named label sets, each checked to cover every utterance in `ids` (a store appended to after
    `kmeans` would otherwise fail mid-run)."""
    have = store.label_names()
    for n in label_names:
        if n not in have:
            raise StoreError(
                f"{store.root}: no label set {n!r} (has: {', '.join(have) or 'none'}); run `codec2vec kmeans` first"
            )
    sets = {n: store.labels(n) for n in label_names}
    for n, labels in sets.items():
        missing = [i for i in ids if i not in labels]
        if missing:
            raise StoreError(
                f"{store.root}: label set {n!r} covers {len(ids) - len(missing)} of {len(ids)} "
                f"utterances (missing e.g. {missing[0]!r}); rerun `codec2vec kmeans --name {n}`"
            )
    return sets


def pack(crops: Sequence[Crop], batch_frames: int, multiple: int = 1) -> list[list[Crop]]:
    """Greedy packing in order: a batch grows while rows x longest crop stays within `batch_frames`; with
    `multiple` > 1 a full batch keeps a multiple of `multiple` rows (its last rows start the next batch) and the
    tail is cut to one, so every rank gets the same number of rows."""
    batches: list[list[Crop]] = []
    cur: list[Crop] = []
    longest = 0
    for c in crops:
        n = c.stop - c.start
        if cur and (len(cur) + 1) * max(longest, n) > batch_frames:
            cut = len(cur) - len(cur) % multiple if len(cur) >= multiple else len(cur)
            batches.append(cur[:cut])
            cur = cur[cut:]
            longest = max((x.stop - x.start for x in cur), default=0)
        cur.append(c)
        longest = max(longest, n)
    cut = len(cur) - len(cur) % multiple
    if cut:
        batches.append(cur[:cut])
    return batches


def real_frame_share(batch: Batch) -> float:
    """Valid frames / padded frames (rows x longest) of a collated batch."""
    padded = batch.codes.shape[0] * batch.codes.shape[-1]
    return float(batch.lengths.sum()) / padded if padded else 1.0


class CropLoader:
    """Endless random-crop batches for one rank; the plan is global and seeded, reading is per rank."""

    def __init__(
        self,
        store: TokenStore,
        ids: Sequence[str],
        *,
        batch_frames: int,
        crop_frames: int,
        min_frames: int = 1,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        label_names: Sequence[str] = (),
        bucket_pool: int = 2048,
        row_multiple: int = 0,
    ) -> None:
        """`row_multiple`: every batch's rows are a multiple of it (0: the world size), so ranks get equal rows;
        the plan depends on it, not on the world size, so a run may resume on any world size that divides it."""
        self.store = store
        self.batch_frames = int(batch_frames)
        self.crop_frames = int(crop_frames)
        self.seed = int(seed)
        self.rank, self.world_size = int(rank), int(world_size)
        self.label_names = list(label_names)
        self.bucket_pool = int(bucket_pool)
        self.label_sets = _open_labels(store, self.label_names, ids)
        frames = {i: int(store.num_frames(i)) for i in ids}
        self.ids = sorted(i for i in ids if frames[i] >= min_frames)  # sorted: independent of store order
        self.frames = [frames[i] for i in self.ids]
        if not self.ids:
            raise ConfigError(f"data.min_frames: no training utterance has >= {min_frames} frames")
        self.row_multiple = int(row_multiple) or self.world_size
        if self.row_multiple % self.world_size:
            raise ConfigError(
                f"data.row_multiple: {self.row_multiple} rows cannot be shared evenly by {self.world_size} processes; "
                "use a multiple of the world size (or 0: the world size)"
            )
        rows_min = max(1, self.batch_frames // self.crop_frames)
        if rows_min < self.row_multiple:
            raise ConfigError(
                f"data.batch_frames: {self.batch_frames} frames hold {rows_min} crop(s) of {self.crop_frames}, "
                f"fewer than the {self.row_multiple} rows a batch must share evenly among processes "
                "(data.row_multiple, 0: the world size); raise data.batch_frames or lower data.crop_frames"
            )
        self.workers = 0  # it reads in the training process (loaders.ProcessLoader reads a plan in processes)
        self.epoch = 0
        self.cursor = 0  # next batch of the epoch's plan
        self._plan = self._epoch_plan(0)

    def _permutation(self, epoch: int) -> list[int]:
        g = torch.Generator().manual_seed(hash64("perm", self.seed, epoch))
        return torch.randperm(len(self.ids), generator=g).tolist()

    def _crop(self, epoch: int, index: int) -> Crop:
        utt = self.ids[index]
        n = self.frames[index]
        c = min(n, self.crop_frames)
        r = hash64("crop", self.seed, epoch, utt)
        start = r % (n - c + 1)
        return Crop(utt, start, start + c, utterance_seed(self.seed, epoch, utt))

    def _epoch_plan(self, epoch: int) -> list[list[Crop]]:
        """Every global batch of `epoch`, from the seed and the index only; each batch's rows are a multiple of
        `row_multiple` (a pool's tail is cut to one, or dropped when shorter)."""
        crops = [self._crop(epoch, i) for i in self._permutation(epoch)]
        if self.bucket_pool <= 1:
            batches = pack(crops, self.batch_frames, self.row_multiple)
        else:
            batches = []
            for p0 in range(0, len(crops), self.bucket_pool):
                pool = sorted(crops[p0 : p0 + self.bucket_pool], key=lambda c: c.stop - c.start)  # stable
                packed = pack(pool, self.batch_frames, self.row_multiple)
                g = torch.Generator().manual_seed(hash64("pool", self.seed, epoch, p0))
                batches += [packed[i] for i in torch.randperm(len(packed), generator=g).tolist()]
        return [b for b in batches if len(b) >= self.row_multiple]

    def next_plan(self) -> list[Crop]:
        """The next global batch as crops (all ranks), advancing the position."""
        while self.cursor >= len(self._plan):
            self.epoch += 1
            self.cursor = 0
            self._plan = self._epoch_plan(self.epoch)
        crops = self._plan[self.cursor]
        self.cursor += 1
        return crops

    def peek(self, n: int) -> list[list[Crop]]:
        """Up to `n` of the next global batches as crops, without moving the position."""
        rest = self._plan[self.cursor : self.cursor + n]
        return rest if rest else self._epoch_plan(self.epoch + 1)[:n]

    def __iter__(self) -> Iterator[Batch]:
        return self

    def __next__(self) -> Batch:
        crops = self.next_plan()
        return collate(self.store, crops[self.rank :: self.world_size], self.label_names, self.label_sets)

    def state_dict(self) -> dict[str, int]:
        return {
            "epoch": self.epoch,
            "batch": self.cursor,
            "seed": self.seed,
            "num_ids": len(self.ids),
            "bucket_pool": self.bucket_pool,
            "row_multiple": self.row_multiple,
            "world_size": self.world_size,
        }

    def load_state_dict(self, state: dict[str, int]) -> None:
        if int(state["num_ids"]) != len(self.ids) or int(state["seed"]) != self.seed:
            raise ConfigError(
                f"data: cannot resume the data position: the checkpoint saw {state['num_ids']} training utterances "
                f"with seed {state['seed']}, this run has {len(self.ids)} with seed {self.seed}"
            )
        if "batch" not in state or int(state.get("bucket_pool", -1)) != self.bucket_pool:
            raise ConfigError(
                "data: cannot resume the data position: the checkpoint was made with another batching "
                f"(bucket_pool {state.get('bucket_pool', 'none')}, this run {self.bucket_pool}); use a new run.dir"
            )
        self.epoch, self.cursor = int(state["epoch"]), int(state["batch"])
        self._plan = self._epoch_plan(self.epoch)

    def plan_change(self, state: dict[str, int]) -> str | None:
        """What differs from the run a saved position (`state_dict`) came from, for a warning: another world size
        with another `row_multiple` changes the batch plan from the resumed position on; None when it does not."""
        old_world = int(state.get("world_size", self.world_size))
        if "row_multiple" not in state and old_world > 1:  # saved before rows were cut to a multiple of the world
            return (f"resuming a run saved by {old_world} processes by an earlier version: batches are now cut to "
                    f"a multiple of {self.row_multiple} rows, so the batch plan differs from epoch {state['epoch']} "
                    f"batch {state['batch']} on")  # fmt: skip
        old_multiple = int(state.get("row_multiple", old_world))
        if old_world == self.world_size and old_multiple == self.row_multiple:
            return None
        plan = "the same batch plan" if old_multiple == self.row_multiple else (
            f"another batch plan from epoch {state['epoch']} batch {state['batch']} on (rows a multiple of "
            f"{self.row_multiple}, not {old_multiple}; set data.row_multiple to keep one plan across world sizes)"
        )  # fmt: skip
        return f"resuming a run saved by {old_world} process(es) on {self.world_size}: {plan}"


def dev_plan(
    store: TokenStore, ids: Sequence[str], *, batch_frames: int, crop_frames: int, seed: int
) -> list[list[Crop]]:
    """Fixed evaluation batches: each dev utterance's first `crop_frames` frames, grouped by length."""
    crops = [Crop(i, 0, min(int(store.num_frames(i)), crop_frames), utterance_seed(seed, "dev", i)) for i in ids]
    crops = [c for c in crops if c.stop > 0]
    crops.sort(key=lambda c: (-(c.stop - c.start), c.utt_id))
    batches: list[list[Crop]] = []
    cur: list[Crop] = []
    for c in crops:  # longest first, so a batch's first crop is its longest
        if cur and (len(cur) + 1) * (cur[0].stop - cur[0].start) > batch_frames:
            batches.append(cur)
            cur = []
        cur.append(c)
    if cur:
        batches.append(cur)
    return batches


def dev_batches(
    store: TokenStore,
    plan: Sequence[Sequence[Crop]],
    *,
    rank: int = 0,
    world_size: int = 1,
    label_names: Sequence[str] = (),
) -> Iterator[Batch | None]:
    """This rank's rows of each planned dev batch (None where the rank has no rows in a batch)."""
    label_sets = _open_labels(store, label_names, sorted({c.utt_id for crops in plan for c in crops}))
    for crops in plan:
        mine = list(crops[rank::world_size])
        yield collate(store, mine, label_names, label_sets) if mine else None
