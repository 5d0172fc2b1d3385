"""Flags made from options dataclasses, and the one converter that flags, config overrides and the demo's
environment variables share: the same string gives the same value, a bad one the same one-line error."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from codec2vec.cli import VERBS, build_parser, main
from codec2vec.common.errors import ConfigError


def from_args(*args: Any) -> Any:  # imported when called, so the behaviour tests also run against older code
    from codec2vec.cli.flags import from_args

    return from_args(*args)


def option(*args: Any, **kw: Any) -> Any:
    from codec2vec.common.options import option

    return option(*args, **kw)


def _toy() -> Any:
    """A dataclass with every kind of field a verb's options have."""

    @dataclass(frozen=True)
    class Toy:
        batch_frames: int = option(4375, help="frames per batch")
        rate: float = option(0.5)
        mode: str = option("fast", choices=("fast", "slow"), help="how")
        retry: bool = option(False, help="try again")
        cache: bool = option(True, help="skip the cache")
        sizes: list[str] = option(factory=lambda: ["tiny", "base"], help="presets")
        keep: tuple[str, ...] = option(("split",))
        levels: int | None = option(None, help="levels to keep")
        hours: float = option(4.0, flag="--max-hours")
        hidden: int = option(7, cli=False)

    return Toy


def _parser(Toy: Any, sparse: bool = False) -> argparse.ArgumentParser:
    from codec2vec.cli import _HelpFormatter
    from codec2vec.cli.flags import add_options

    p = argparse.ArgumentParser(prog="toy", formatter_class=_HelpFormatter)
    add_options(p, Toy, sparse=sparse)
    return p


def test_flags_are_made_from_the_fields() -> None:
    Toy = _toy()
    p = _parser(Toy)
    assert from_args(Toy, p.parse_args([])) == Toy()  # the defaults are the dataclass's
    args = p.parse_args(
        ["--batch-frames", "2_000", "--rate", "1e-3", "--mode", "slow", "--retry", "--no-cache", "--sizes", "a,b,c",
         "--keep", "split,text", "--levels", "3", "--max-hours", "2"]
    )  # fmt: skip
    assert from_args(Toy, args) == Toy(2000, 0.001, "slow", True, False, ["a", "b", "c"], ("split", "text"), 3, 2.0)
    text = " ".join(p.format_help().split())
    assert "--batch-frames BATCH_FRAMES frames per batch (default: 4375)" in text
    assert "--mode {fast,slow} how (default: fast)" in text
    assert "--retry try again" in text and "--no-cache skip the cache" in text  # switches show no default
    assert "--sizes SIZES presets (default: tiny,base)" in text and "--keep KEEP" in text
    assert "--levels LEVELS levels to keep" in text and "(default: None)" not in text
    assert "--max-hours MAX_HOURS" in text and "--hours" not in text and "--hidden" not in text
    with pytest.raises(SystemExit):
        p.parse_args(["--mode", "medium"])  # choices from the metadata
    from codec2vec.cli.flags import add_options

    clash = dataclasses.make_dataclass("Clash", [("rate_", float, option(1.0, flag="--rate"))])
    with pytest.raises(ValueError, match="Clash.rate_: --rate already sets rate"):
        add_options(p, clash)  # one flag for two settings is refused when the parser is made


def test_sparse_flags_keep_the_base_values() -> None:
    Toy = _toy()
    p = _parser(Toy, sparse=True)
    base = Toy(rate=0.25, sizes=["x"])
    assert from_args(Toy, p.parse_args([]), base) == base
    assert from_args(Toy, p.parse_args(["--rate", "2"]), base) == dataclasses.replace(base, rate=2.0)
    assert "frames per batch (default: 4375)" in " ".join(p.format_help().split())


@pytest.mark.parametrize(
    "argv, message",
    [
        (["kmeans", "STORE", "--clusters", "x"], "codec2vec kmeans: error: --clusters: expected an integer, got 'x'"),
        (["synth", "OUT", "--hours", "lots"], "codec2vec synth: error: --hours: expected a number, got 'lots'"),
        (["tokenize", "a.wav", "--out", "S", "--max-hours", "1h"], "--max-hours: expected a number, got '1h'"),
        (["bench", "--steps", "2.5"], "codec2vec bench: error: --steps: expected an integer, got '2.5'"),
        (["bench", "--quality", "--seeds", "three"], "--seeds: expected an integer, got 'three'"),
        (["demo", "--out", "D", "--steps", "ten"], "codec2vec demo: error: --steps: expected an integer, got 'ten'"),
    ],
)
def test_a_bad_flag_value_is_one_line_and_exit_2(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert list(tmp_path.iterdir()) == []  # refused before anything was made


def test_one_converter_for_flags_overrides_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """`demo --steps`, `CODEC2VEC_DEMO_STEPS` and `train.steps=` read a string the same way, and refuse a bad
    one with the same reason."""
    from codec2vec.demo import DemoSettings, settings_from_env
    from codec2vec.pretrain.config import load_config

    demo = next(a for a in build_parser()._actions if a.dest == "verb").choices["demo"]  # type: ignore[union-attr]

    def three_ways(text: str) -> list[Any]:
        monkeypatch.setenv("CODEC2VEC_DEMO_STEPS", text)
        return [
            from_args(DemoSettings, demo.parse_args(["--out", "D", "--steps", text]), DemoSettings()).steps,
            settings_from_env(DemoSettings()).steps,
            load_config(None, [f"train.steps={text}"]).train.steps,
        ]

    assert three_ways("1_000") == [1000, 1000, 1000]
    reasons = []
    for read in (
        lambda: from_args(DemoSettings, demo.parse_args(["--out", "D", "--steps", "ten"])),
        lambda: settings_from_env(DemoSettings()),
        lambda: load_config(None, ["train.steps=ten"]),
    ):
        monkeypatch.setenv("CODEC2VEC_DEMO_STEPS", "ten")
        with pytest.raises(ConfigError) as e:
            read()
        key, _, reason = str(e.value).partition(": ")
        assert key in ("--steps", "CODEC2VEC_DEMO_STEPS", "train.steps")
        reasons.append(reason)
    assert reasons == ["expected an integer, got 'ten'"] * 3
    monkeypatch.delenv("CODEC2VEC_DEMO_STEPS")
    monkeypatch.setenv("CODEC2VEC_DEMO_PER_LAYER", "off")
    assert settings_from_env(DemoSettings()).per_layer is False
    monkeypatch.setenv("CODEC2VEC_DEMO_PER_LAYER", "maybe")  # not read as "false" any more: refused
    with pytest.raises(ConfigError, match="CODEC2VEC_DEMO_PER_LAYER: expected true or false, got 'maybe'"):
        settings_from_env(DemoSettings())


def test_demo_flags_win_over_the_environment_and_small(monkeypatch: pytest.MonkeyPatch) -> None:
    import codec2vec.demo

    seen: list[Any] = []
    monkeypatch.setattr(codec2vec.demo, "run_demo", lambda out, s, progress: seen.append(s) or {"probes": []})
    monkeypatch.setenv("CODEC2VEC_DEMO_STEPS", "50")
    monkeypatch.setenv("CODEC2VEC_DEMO_HOURS", "0.2")
    assert main(["demo", "--out", "D", "--small", "--steps", "7", "--no-per-layer", "--config", "c.yaml"]) == 0
    small = codec2vec.demo.DemoSettings.small()
    assert seen == [dataclasses.replace(small, steps=7, hours=0.2, per_layer=False, config="c.yaml")]


def test_bench_flags_are_the_dataclasses(monkeypatch: pytest.MonkeyPatch) -> None:
    """`bench` and `bench --quality` build the same options as before; a new options field is a new flag."""
    import codec2vec.bench
    import codec2vec.bench.quality as quality

    seen: list[Any] = []
    monkeypatch.setattr(quality, "run_quality", lambda opts, progress: seen.append(opts) or {})
    monkeypatch.setattr(quality, "format_quality", lambda r: "")
    assert main(["bench", "--quality", "--quick", "--seeds", "4", "--no-control", "--budget", "cpu"]) == 0
    assert main(["bench", "--quality", "--out", "Q", "--threads", "2", "--frontends", "codec,mel"]) == 0
    assert seen == [
        quality.QualityOptions.quick(seeds=4, control=False, budget="cpu"),
        quality.QualityOptions(out="Q", threads=2, frontends=["codec", "mel"]),
    ]
    monkeypatch.setattr(codec2vec.bench, "run_bench", lambda src, opts, progress: seen.append(opts) or {})
    monkeypatch.setattr(codec2vec.bench, "format_report", lambda r: "")
    assert main(["bench", "--no-dac", "--sizes", "tiny", "--steps", "2"]) == 0
    assert seen[-1] == codec2vec.bench.BenchOptions(dac=False, sizes=["tiny"], steps=2)
    # A field added to BenchOptions is all a new flag takes.
    extended = dataclasses.make_dataclass(
        "BenchOptions",
        [("frontier_points", int, option(5, help="points on the frontier"))],
        bases=(codec2vec.bench.BenchOptions,),
    )
    monkeypatch.setattr(codec2vec.bench, "BenchOptions", extended)
    assert main(["bench", "--frontier-points", "9"]) == 0
    assert seen[-1] == extended(frontier_points=9)


def test_tokenize_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    import codec2vec.tokenize

    seen: list[Any] = []
    summary = {"rejected": 0}
    monkeypatch.setattr(codec2vec.tokenize, "tokenize", lambda src, out, opts, progress: seen.append(opts) or summary)
    assert main(["tokenize", "a.wav", "--out", "S", "--json", "--id-map", "m.jsonl", "--private-keep", "split,text",
                 "--max-hours", "0.5", "--num-codebooks", "12", "--coding", "rans"]) == 0  # fmt: skip
    opts = codec2vec.tokenize.TokenizeOptions(
        private=True, id_map="m.jsonl", private_keep=("split", "text"), max_seconds=1800.0, num_codebooks=12,
        coding="rans",
    )  # fmt: skip
    assert seen == [opts]  # naming an id map (or a key) means private, as before


@pytest.mark.parametrize("verb", list(VERBS))
def test_every_verb_has_help(verb: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([verb, "--help"]) == 0
    assert f"usage: codec2vec {verb}" in capsys.readouterr().out


def test_probe_extract_and_audit_flags_reach_the_library(monkeypatch: pytest.MonkeyPatch) -> None:
    import codec2vec.features.upstream as upstream
    import codec2vec.privacy.audit as audit
    import codec2vec.probe.command as command

    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr(command, "probe_command", lambda *a, **kw: calls.append((a, kw)) or {})
    monkeypatch.setattr(command, "format_result", lambda r: "")
    assert main(["probe", "abx", "--ckpt", "C", "--data", "D", "--other", "o1", "o2", "--references", "",
                 "--layer", "2", "--items", "phoneme", "--cache-dir", "cache"]) == 0  # fmt: skip
    (task,), kw = calls.pop()
    assert task == "abx" and (kw["references"], kw["others"], kw["layer"], kw["items"]) == (
        [],
        ["o1", "o2"],
        2,
        "phoneme",
    )
    assert (kw["store"], kw["per_layer"], kw["seed"], kw["max_epochs"], kw["protocol"]) == (None, False, 0, 100, "ours")
    assert kw["cache_dir"] == Path("cache")
    assert main(["probe", "sid", "--ckpt", "C", "--data", "D"]) == 0
    assert calls.pop()[1]["references"] == ["codec", "random"]

    monkeypatch.setattr(upstream, "extract_to_dir", lambda *a, **kw: calls.append((a, kw)) or {"rejected": 0})
    assert main(["extract", "C", "S", "--out", "F", "--layers", "0", "4", "--format", "npy", "--json"]) == 0
    a, kw = calls.pop()
    assert a == ("C", ["S"], Path("F")) and (kw["layers"], kw["fmt"], kw["codec_path"]) == ([0, 4], "npy", None)

    monkeypatch.setattr(audit, "run_audit", lambda *a, **kw: calls.append((a, kw)) or {})
    assert main(["privacy-audit", "S", "--scramble-key", "K", "--per-speaker", "3", "--json"]) == 0
    a, kw = calls.pop()
    assert a == ("S",) and kw == dict(labels=None, source_dir=None, id_map=None, key_file="K", reference=None,
                                      clear=None, codec_path=None, per_speaker=3, decode_files=40)  # fmt: skip
