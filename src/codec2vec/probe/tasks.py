"""The probing tasks: what each reads from a manifest row, its head, its loss, and its metric (the TASKS dict).

SUPERB (Yang et al. 2021): PR and ASR are frame-level CTC tasks scored by edit
distance (PER over phones, WER over words, greedy decoding, no LM); KS, SID, ER, the synthetic speaking-style
task and IC are utterance-level classification (mean-pool + linear; IC one linear per slot, right only when
every slot is). Every task reports a corpus-level statistic built from per-item `(numerator, denominator)`
pairs, so that `metrics.bootstrap_ci` can resample test items.

Manifest rows (corpora/manifest.py): PR `phones`; ASR `text`; KS/SID/ER/style `label`; IC `action`,
`object`, `location`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from codec2vec.common.errors import ConfigError
from codec2vec.corpora.manifest import jsonl_rows
from codec2vec.probe import heads
from codec2vec.probe.metrics import ctc_greedy, edit_distance

Row = dict[str, Any]


@dataclass(frozen=True)
class TaskSpec:
    """One probing task. `units(row)` are the target symbols: one sequence (CTC tasks) or one label per slot."""

    name: str
    level: str  # "frame" (CTC over units) | "utterance" (one class per slot)
    metric: str  # "per" | "wer" | "accuracy"
    units: Callable[[Row], list[str]]
    lr: float
    batch: int  # utterances per batch (frame level: also at most runner.MAX_FRAMES padded frames)
    lstm: bool = False  # ASR's BiLSTM head

    @property
    def lower_is_better(self) -> bool:
        return self.metric != "accuracy"


def _phones(row: Row) -> list[str]:
    phones = row["phones"]
    if not isinstance(phones, list):
        raise TypeError(f"'phones' is a {type(phones).__name__}, not a list")
    return [str(p) for p in phones if p != "sil"]


def _chars(row: Row) -> list[str]:
    return list(" ".join(str(row["text"]).lower().split()))


def _label(row: Row) -> list[str]:
    return [str(row["label"])]


def _slots(row: Row) -> list[str]:
    return [str(row["action"]), str(row["object"]), str(row["location"])]


MIX_LR = 0.05  # our protocol's rate for the layer-mixing logits (see `Protocol`)
TASKS: dict[str, TaskSpec] = {
    "pr": TaskSpec("pr", "frame", "per", _phones, lr=1e-2, batch=16),
    "asr": TaskSpec("asr", "frame", "wer", _chars, lr=2e-3, batch=16, lstm=True),
    "ks": TaskSpec("ks", "utterance", "accuracy", _label, lr=1e-3, batch=32),
    "sid": TaskSpec("sid", "utterance", "accuracy", _label, lr=1e-3, batch=32),
    "er": TaskSpec("er", "utterance", "accuracy", _label, lr=1e-3, batch=32),
    "style": TaskSpec("style", "utterance", "accuracy", _label, lr=1e-3, batch=32),
    "ic": TaskSpec("ic", "utterance", "accuracy", _slots, lr=1e-3, batch=32),
}


# The row fields each task reads (ABX reads the frame alignments, `align`, where rows have them: checked by abx).
FIELDS: dict[str, tuple[str, ...]] = {
    "pr": ("phones",), "asr": ("text",), "ks": ("label",), "sid": ("label",), "er": ("label",),
    "style": ("label",), "ic": ("action", "object", "location"), "abx": (),
}  # fmt: skip


def _folder_task(data: Path) -> str | None:
    """The task a folder's meta.json names, if it names one."""
    import json

    try:
        return str(json.loads((data / "meta.json").read_text())["task"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def check_task_folder(task: str, data: str | Path) -> None:
    """Refuse, before any feature is extracted or written, a task folder that is not one (no
    `{train,dev,test}.jsonl`) or whose rows lack what `task` reads (e.g. `probe pr` on a KS folder)."""
    data = Path(data)
    if not data.is_dir():
        raise ConfigError(f"{data}: no such task folder (one with train.jsonl, dev.jsonl, test.jsonl)")
    need = FIELDS[task]
    for split in ("dev", "test") if task == "abx" else ("train", "dev", "test"):  # ABX reads no train split
        path = data / f"{split}.jsonl"
        if not path.is_file():
            raise ConfigError(f"{path}: missing; a task folder holds train.jsonl, dev.jsonl and test.jsonl")
        for n, row in jsonl_rows(path):
            missing = [k for k in need if not isinstance(row, dict) or k not in row]
            if missing:
                what = f" (a {_folder_task(data)} folder)" if _folder_task(data) else ""
                raise ConfigError(f"{path}:{n}: task {task} needs {', '.join(missing)} in every row{what}")


PROTOCOLS = ("ours", "superb")


@dataclass(frozen=True)
class Protocol:
    """How a head is trained. `ours` (the default) is tuned for short CPU probes; `superb` follows s3prl's
    downstream configs (as we know them: `downstream/*/config.yaml` of s3prl):

    | task             | optimizer | lr    | schedule | batch | head                                   |
    | ---------------- | --------- | ----- | -------- | ----- | -------------------------------------- |
    | PR               | Adam      | 1e-2  | constant | 32    | linear + CTC                           |
    | ASR              | Adam      | 1e-4  | constant | 32    | 2-layer BiLSTM, 1024 per direction     |
    | KS, IC           | Adam      | 1e-4  | constant | 32    | mean-pool + linear (IC: one per slot)  |
    | SID              | AdamW     | 1e-4  | constant | 32    | mean-pool + linear (s3prl: 8 x 4 accum)|
    | ER, style        | AdamW     | 1e-4  | constant | 32    | mean-pool + linear                     |

    Under `superb` the layer weights learn at the head's rate on the raw hidden states (s3prl's Featurizer,
    no layer norm) and pooled features are not centred. Under `ours` the heads' rates are `TaskSpec.lr`, falling
    linearly to a tenth over `max_epochs`, the layer weights learn at `mix_lr` on standardised layers and the
    ASR BiLSTM is 128 wide: s3prl's settings assume 100k-200k steps, and a CPU probe of a few hundred steps at
    lr 1e-4 ends far from converged (and with the layer weights still equal)."""

    name: str
    optimizer: str  # "adam" | "adamw"
    lr: float
    decay: bool  # the rate falls linearly to a tenth over max_epochs
    mix_lr: float | None  # the layer-mixing logits' rate (None: the head's)
    standardise: bool  # layers standardised before the weighted sum, pooled features centred
    batch: int
    lstm_hidden: int


def get_protocol(spec: TaskSpec, name: str = "ours") -> Protocol:
    """The training settings of `spec` under the protocol `name` (see `Protocol`)."""
    if name == "ours":
        return Protocol("ours", "adam", spec.lr, True, MIX_LR, True, spec.batch, 128)
    if name == "superb":
        lr = 1e-2 if spec.name == "pr" else 1e-4
        optimizer = "adamw" if spec.name in ("sid", "er", "style") else "adam"
        return Protocol("superb", optimizer, lr, False, None, False, 32, 1024)
    raise ConfigError(f"--protocol {name}: choose one of {', '.join(PROTOCOLS)}")


def get_task(name: str) -> TaskSpec:
    if name not in TASKS:
        raise ConfigError(f"unknown probe task {name!r}; choose one of {', '.join(TASKS)}")
    return TASKS[name]


def check_rows(spec: TaskSpec, rows: dict[str, list[Row]], data: Any) -> None:
    """Every manifest row has what the task reads (PR `phones`, ASR `text`, IC its slots, the others `label`):
    ConfigError naming the manifest, the row and the field, not a KeyError deep in training."""
    for split, split_rows in rows.items():
        for n, row in enumerate(split_rows, 1):
            try:
                spec.units(row)
            except (KeyError, TypeError) as e:
                raise ConfigError(
                    f"{data}/{split}.jsonl: row {n} ({row.get('id', '?')}): a {spec.name} probe needs "
                    f"{', '.join(FIELDS.get(spec.name, ('label',)))} ({e}); is this the task's folder?"
                ) from None


def vocabularies(spec: TaskSpec, rows: Sequence[Row]) -> list[list[str]]:
    """The symbol inventory: one list for a CTC task, one per slot for a classification task (sorted, from all
    splits: the label sets are closed)."""
    if spec.level == "frame":
        return [sorted({u for r in rows for u in spec.units(r)})]
    n = len(spec.units(rows[0])) if rows else 1
    return [sorted({spec.units(r)[s] for r in rows}) for s in range(n)]


def targets(spec: TaskSpec, rows: Sequence[Row], vocabs: list[list[str]]) -> list[list[int]]:
    """Per row: CTC label ids (1-based; 0 is the blank) or one class id per slot."""
    if spec.level == "frame":
        index = {u: i + 1 for i, u in enumerate(vocabs[0])}
        return [[index[u] for u in spec.units(r)] for r in rows]
    maps = [{u: i for i, u in enumerate(v)} for v in vocabs]
    return [[maps[s][u] for s, u in enumerate(spec.units(r))] for r in rows]


def make_head(spec: TaskSpec, *, num_layers: int, dim: int, vocabs: list[list[str]], hidden: int = 128) -> nn.Module:
    """The task's head; `hidden`: the ASR BiLSTM's width per direction."""
    if spec.level == "frame":
        if spec.lstm:
            return heads.LSTMCTCHead(num_layers=num_layers, dim=dim, num_classes=len(vocabs[0]), hidden=hidden)
        return heads.CTCHead(num_layers=num_layers, dim=dim, num_classes=len(vocabs[0]))
    if len(vocabs) == 1:
        return heads.PoolHead(num_layers=num_layers, dim=dim, num_classes=len(vocabs[0]))
    return heads.SlotHead(num_layers=num_layers, dim=dim, num_classes=[len(v) for v in vocabs])


def loss(spec: TaskSpec, out: Tensor | list[Tensor], tgt: list[list[int]], lengths: Tensor | None) -> Tensor:
    """CTC (blank 0, `zero_infinity` as in s3prl) or the summed cross-entropy of every slot."""
    if spec.level == "frame":
        assert isinstance(out, Tensor) and lengths is not None
        logp = out.log_softmax(-1).transpose(0, 1)  # (T, B, C + 1)
        flat = torch.tensor([u for t in tgt for u in t], dtype=torch.long)
        tlen = torch.tensor([len(t) for t in tgt], dtype=torch.long)
        return F.ctc_loss(logp, flat, lengths, tlen, blank=0, zero_infinity=True)
    outs = [out] if isinstance(out, Tensor) else out
    y = torch.tensor(tgt, dtype=torch.long)  # (B, slots)
    return sum((F.cross_entropy(o, y[:, s]) for s, o in enumerate(outs)), torch.zeros(()))


def item_stats(
    spec: TaskSpec, out: Tensor | list[Tensor], tgt: list[list[int]], lengths: Tensor | None, vocabs: list[list[str]]
) -> np.ndarray:
    """Per item `(numerator, denominator)`: `(edits, reference length)` for PER/WER, `(correct, 1)` else."""
    if spec.level == "frame":
        assert isinstance(out, Tensor) and lengths is not None
        hyps = ctc_greedy(out, lengths, blank=0)
        if spec.metric == "wer":
            sym = ["<b>", *vocabs[0]]
            words = [
                ("".join(sym[i] for i in h).split(), "".join(sym[i] for i in t).split()) for h, t in zip(hyps, tgt)
            ]
            return np.array([[edit_distance(r, h), len(r)] for h, r in words], dtype=np.float64).reshape(-1, 2)
        return np.array([[edit_distance(t, h), len(t)] for h, t in zip(hyps, tgt)], dtype=np.float64).reshape(-1, 2)
    outs = [out] if isinstance(out, Tensor) else out
    pred = torch.stack([o.argmax(-1) for o in outs], 1)  # (B, slots)
    right = (pred == torch.tensor(tgt, dtype=torch.long)).all(1).double()  # (B,)
    return torch.stack([right, torch.ones_like(right)], 1).numpy()


__all__ = [
    "PROTOCOLS",
    "TASKS",
    "Protocol",
    "TaskSpec",
    "check_rows",
    "check_task_folder",
    "get_protocol",
    "get_task",
    "item_stats",
    "loss",
    "make_head",
    "targets",
    "vocabularies",
]
