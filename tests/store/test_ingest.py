"""Ingest policies: `tokenize` takes, keeps and rejects what the policy it is given says (clear, private, custom)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from codec2vec.common.errors import Codec2VecError
from codec2vec.corpora.audio import AudioItem
from codec2vec.privacy.private import PrivatePolicy
from codec2vec.store import TokenStore
from codec2vec.store.ingest import ClearPolicy, Intake
from codec2vec.store.store import open_or_create
from codec2vec.tokenize import TokenizeOptions, ingest_policy, tokenize


class EvenClipsRenamed:
    """A policy of our own: only the even clips (and one missing file), renamed, one fixed column, rejects aside."""

    private = False

    def __init__(self, rejects: Path) -> None:
        self.rejects = rejects

    def open(self, items: list[AudioItem], out: str | os.PathLike[str], codec: Any, coding: str) -> Intake:
        store = open_or_create(out, codec, coding)
        taken = [AudioItem(f"kept-{it.id}", it.path, {"speaker": "s1"}) for it in items if int(it.id[-1]) % 2 == 0]
        missing = AudioItem("kept-missing", str(Path(out).parent / "no-such.wav"))
        return Intake([*taken, missing], store, self.rejects)

    def row(
        self, item: AudioItem, codes: np.ndarray, *, seconds: float, source_bytes: int, frame_rate: float
    ) -> dict[str, Any]:
        return {"seconds": seconds, "source": "", "source_bytes": 0, "extra": {"policy": "even"}}


def test_tokenize_takes_keeps_and_rejects_what_the_given_policy_says(tmp_path: Path, short_clips: Path) -> None:
    out, aside = tmp_path / "store", tmp_path / "aside.rejects.jsonl"
    summary = tokenize([str(short_clips)], out, TokenizeOptions(codec="lyra"), policy=EvenClipsRenamed(aside))
    store = TokenStore.open(out)
    assert sorted(store.ids()) == ["kept-c0", "kept-c2", "kept-c4"]
    assert all(store.entry(u)["extra"] == {"policy": "even"} and store.entry(u)["source"] == "" for u in store.ids())
    assert summary["rejected"] == 1
    rows = [json.loads(line) for line in aside.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["kept-missing"] and "no-such.wav" in rows[0]["path"]
    assert not (out / "rejects.jsonl").exists()


def test_tokenize_refuses_a_clear_policy_when_private_is_asked(tmp_path: Path, short_clips: Path) -> None:
    out = tmp_path / "store"
    with pytest.raises(Codec2VecError, match="private"):
        tokenize([str(short_clips)], out, TokenizeOptions(codec="lyra", private=True), policy=ClearPolicy())
    assert not out.exists()


def test_the_options_choose_the_clear_or_the_private_policy() -> None:
    assert isinstance(ingest_policy(TokenizeOptions()), ClearPolicy)
    private = ingest_policy(TokenizeOptions(private=True, private_key="k", id_map="m", private_keep=("split", "spk")))
    assert private == PrivatePolicy(key_file="k", id_map="m", keep=("split", "spk")) and private.private


def test_rows_clear_keep_path_size_and_scalars_private_keep_neither() -> None:
    item = AudioItem("a", "/data/a.wav", {"split": "train", "text": "hi", "align": [1, 2], "id": "a"})
    codes = np.zeros((4, 7), np.uint16)  # (K, T): 7 frames
    clear = ClearPolicy().row(item, codes, seconds=0.1371, source_bytes=4410, frame_rate=50.0)
    assert clear == {"seconds": 0.1371, "source": "/data/a.wav", "source_bytes": 4410,
                     "extra": {"split": "train", "text": "hi"}}  # fmt: skip
    private = PrivatePolicy().row(item, codes, seconds=0.1371, source_bytes=4410, frame_rate=50.0)
    assert private["seconds"] == 7 / 50.0 and private["source"] == "" and private["source_bytes"] == 0
