"""`synth` writes only into an empty folder or its own finished corpus."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codec2vec.common.errors import ConfigError
from conftest import make_store


def test_synth_refuses_a_folder_that_is_not_its_corpus(tmp_path: Path) -> None:
    from codec2vec.corpora.synth import GENERATOR, SynthOptions, synth_corpus

    s = make_store(tmp_path / "store", {"a": 3})
    meta = (s.root / "meta.json").read_bytes()
    with pytest.raises(ConfigError, match="not a synth corpus"):
        synth_corpus(s.root, SynthOptions(hours=0.001), progress=False)
    assert (s.root / "meta.json").read_bytes() == meta
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("...")
    with pytest.raises(ConfigError, match="not empty"):
        synth_corpus(tmp_path / "mine", SynthOptions(hours=0.001), progress=False)
    done = tmp_path / "done"  # a finished corpus of the same settings: nothing to do, nothing rewritten
    done.mkdir()
    summary = {"generator": GENERATOR, "options": {**SynthOptions(hours=0.001).__dict__, "workers": 1}, "clips": 3}
    (done / "meta.json").write_text(json.dumps(summary))
    assert synth_corpus(done, SynthOptions(hours=0.001, workers=2), progress=False)["clips"] == 3
    assert sorted(p.name for p in done.iterdir()) == ["meta.json"]
