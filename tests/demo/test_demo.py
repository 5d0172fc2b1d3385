"""`codec2vec demo`: stage bookkeeping, the corpus it makes, and its report.

The report test renders a hand-made results dict (fast); the slow test runs the small demo end to end (through
`./run demo` when the tests themselves run in `run`'s environment, as in CI), checks results.json against the
HTML number by number, that a rerun redoes nothing, and opens the page in headless chromium.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from codec2vec.common.errors import ConfigError
from codec2vec.demo import DemoSettings, settings_from_env
from codec2vec.demo.report import compare, fmt, lookup, write_report
from codec2vec.demo.stages import _deal, _Run

ROOT = Path(__file__).resolve().parents[2]
NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?(?![\w])")


class _Numbers(HTMLParser):
    """Collects (data-key, text) of every `span.num`, and the visible text outside them (a `blockquote` quotes a
    text of a results file verbatim and `code` an identifier from it, such as `codec-46`: their tests check them
    as a whole)."""

    def __init__(self) -> None:
        super().__init__()
        self.spans: list[tuple[str, str]] = []
        self.outside: list[str] = []
        self.images: list[str] = []
        self._key: str | None = None
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "span" and a.get("class") == "num":
            self._key = a["data-key"]
            self.spans.append((str(self._key), ""))
        if tag in ("style", "script", "blockquote", "code"):
            self._skip += 1
        if tag == "img":
            self.images.append(str(a["src"]))

    def handle_endtag(self, tag: str) -> None:
        if tag == "span":
            self._key = None
        if tag in ("style", "script", "blockquote", "code"):
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if self._key is not None:
            key, text = self.spans[-1]
            self.spans[-1] = (key, text + data)
        elif not self._skip:
            self.outside.append(data)


def check_numbers(page: Path, results: dict[str, Any]) -> int:
    """Every number in the page is a span whose text is `fmt` of the value at its key in results; returns
    how many there are."""
    parser = _Numbers()
    parser.feed(page.read_text())
    for key, text in parser.spans:
        assert text == fmt(lookup(results, key)), key
        assert float(text) == pytest.approx(float(lookup(results, key)), rel=1e-3, abs=1e-12)
    stray = [m for chunk in parser.outside for m in NUMBER.findall(chunk)]
    assert not stray, f"numbers in the page that do not come from results.json: {stray}"
    for src in parser.images:
        assert (page.parent / src).is_file(), src
    return len(parser.spans)


def _results() -> dict[str, Any]:
    probes = []
    for task, metric, vals in (("pr", "per", (0.31, 0.52, 0.64)), ("ks", "accuracy", (0.9, 0.93, 0.6))):
        for model, v in zip(("pretrained", "codec", "random"), vals):
            probes.append({"task": task, "model": model, "metric": metric, "value": v, "ci": [v - 0.04, v + 0.03]})
    probes[0] |= {
        "layer_weights": [0.1, 0.2, 0.3, 0.25, 0.15],
        "per_layer": [{"layer": i, "value": 0.5} for i in range(5)],
    }
    probes.append({"task": "abx_across", "model": "pretrained", "metric": "abx_error", "value": 0.12, "ci": None})
    return {
        "settings": {"hours": 1.5, "speakers": 24, "degraded": 0.5, "snr": 10.0, "steps": 600, "seed": 0},
        "ci_level": 0.95,
        "corpus": {"splits": {"pr": {"train": 400, "dev": 80, "test": 314}}},
        "probes": probes,
        "per_vs_steps": [{"step": s, "metric": "per", "value": 0.7 - s / 1000, "ci": [0.65 - s / 1000, 0.75 - s / 1000]} for s in (0, 300, 600)],
        "storage": {"utterances": 900, "hours": 1.1, "kbps": 8.71, "ratio_to_source": 29.3, "ratio_to_pcm16": 29.4,
                    "source_bytes": 120_000_000, "pcm16_bytes": 126_000_000, "bytes": 4_300_000},
        "stage_seconds": {"synth": 95.2, "pretrain": 401.0},
    }  # fmt: skip


def test_report_numbers_are_the_results_and_images_exist(tmp_path: Path) -> None:
    results = _results()
    metrics = tmp_path / "metrics.jsonl"
    rows = [{"step": s, "loss": 6 - s / 100, "acc_online": s / 1000} for s in range(10, 110, 10)]
    metrics.write_text("".join(json.dumps(r) + "\n" for r in rows + [{"step": 100, "split": "dev", "loss": 5.2}]))
    page = write_report(tmp_path, results, metrics=metrics)
    assert check_numbers(page, results) > 40
    text = page.read_text()
    for name in ("curves", "per_vs_steps", "layer_weights", "per_layer", "storage"):
        assert f"src='{name}.png'" in text and (tmp_path / f"{name}.png").stat().st_size > 5000
    # a number typed into the page by hand, not from results.json, is caught
    bad = tmp_path / "bad.html"
    bad.write_text(text.replace("<h2>Storage</h2>", "<h2>Storage (3 bars)</h2>"))
    with pytest.raises(AssertionError, match="do not come from results"):
        check_numbers(bad, results)
    # the best model of each row is bold: lowest PER (pretrained), highest KS accuracy (codec)
    assert re.search(r"<td class='best'><span class=\"num\" data-key=\"probes\.0\.value\">", text)
    assert re.search(r"<td class='best'><span class=\"num\" data-key=\"probes\.4\.value\">", text)


def test_report_has_the_frontier_when_it_was_run_beside_it(tmp_path: Path) -> None:
    """`bench --frontier --corpus OUT --out OUT/frontier` leaves frontier.json there: the report shows its plot,
    every number of its table traced to the file, and its verdict word for word; without it, no section."""
    import html

    results = _results()
    page = write_report(tmp_path, results)
    assert "Storage-quality frontier" not in page.read_text()
    point = {
        "name": "codec-46",
        "kbps": 12.07,
        "train_cpu_seconds": 6.5,
        "data_seconds": 0.41,
        "metrics": {"per": {"mean": 0.61, "ci": [0.58, 0.64]}, "accuracy": {"mean": 0.33, "ci": [0.3, 0.36]}},
    }
    frontier = {"points": [point, point | {"name": "mel-flac", "kbps": 163.2}],
                "recipes": [point | {"name": "qd-off", "metrics": {"per": {"mean": 0.57, "ci": [0.55, 0.6]}}}],
                "budget": {"amount": 100.0, "unit": "steps"}, "seeds": 3,
                "verdict": "At equal compute mel-flac beats codec-46 on PER (+0.037 [+0.010, +0.069])."}  # fmt: skip
    (tmp_path / "frontier").mkdir()
    (tmp_path / "frontier" / "frontier.json").write_text(json.dumps(frontier))
    (tmp_path / "frontier" / "frontier.png").write_bytes(b"\x89PNG\r\n")
    text = write_report(tmp_path, results).read_text()
    assert "<h2>Storage-quality frontier</h2>" in text and "src='frontier/frontier.png'" in text
    assert check_numbers(tmp_path / "report.html", results | {"frontier": frontier}) > 40 + 3 * 4
    for key in ("frontier.points.1.kbps", "frontier.recipes.0.metrics.per.ci.1", "frontier.points.0.data_seconds"):
        assert f'data-key="{key}"' in text
    assert re.findall(r"<tr><td><code>([^<]+)</code>", text) == ["codec-46", "mel-flac", "qd-off"]
    quoted = re.search(r"<blockquote id='frontier-verdict'>(.*?)</blockquote>", text, re.S)
    assert quoted and html.unescape(quoted.group(1)) == frontier["verdict"]


def test_fmt_and_compare() -> None:
    assert fmt(3) == "3" and fmt(0.123456) == "0.1235" and fmt(1234.5) == "1234" and fmt(2e-5) == "2e-05"
    a, b = {"value": 0.3, "ci": [0.25, 0.35]}, {"value": 0.6, "ci": [0.5, 0.7]}
    assert compare(a, b, "per") == "better, beyond the intervals"
    assert compare(a, b, "accuracy") == "worse, beyond the intervals"
    assert compare(a, {"value": 0.33, "ci": [0.3, 0.36]}, "per") == "better, within the intervals"


def test_deal_keeps_shares_per_key() -> None:
    keys = [f"spk{i % 24}" for i in range(24 * 30)]
    splits = _deal(keys, {"test": 0.45, "dev": 0.1}, np.random.default_rng(0))
    assert splits.count("test") == pytest.approx(0.45 * len(keys), abs=24)
    assert splits.count("dev") == pytest.approx(0.1 * len(keys), abs=24)
    for spk in set(keys):  # every speaker in every split, in about the same shares
        mine = [s for s, k in zip(splits, keys) if k == spk]
        assert 11 <= mine.count("test") <= 16 and 1 <= mine.count("dev") <= 5


def test_full_setting_meets_the_test_set_sizes() -> None:
    """At the full setting the planned clip counts give >= 300 test clips for KS and SID and >= 100 for PR."""
    from codec2vec.corpora.synth import SynthOptions, plan

    s = DemoSettings()
    _, clips = plan(SynthOptions(hours=s.hours, speakers=s.speakers, seed=s.seed))
    sent = [c.speaker for c in clips if c.group == "sent"]
    ks = [dict(c.fields)["label"] for c in clips if c.group == "ks"]
    shares = {"test": s.test_share, "dev": s.dev_share}
    assert s.speakers >= 24 and 0 < s.degraded < 1 and s.snr is not None
    assert _deal(sent, shares, np.random.default_rng([s.seed, 11, 0])).count("test") >= 300
    assert _deal(ks, shares, np.random.default_rng([s.seed, 11, 1])).count("test") >= 300


def test_degraded_share_leaves_the_rest_clean(tmp_path: Path) -> None:
    from codec2vec.corpora.synth import SynthOptions, is_degraded, plan, render

    opts = SynthOptions(hours=0.05, speakers=4, seed=2, snr=5.0, reverb=True, degraded=0.5)
    _, clips = plan(opts)
    flags = [is_degraded(c, opts) for c in clips]
    assert 0.3 < np.mean(flags) < 0.7
    clean, noisy = clips[flags.index(False)], clips[flags.index(True)]
    import soundfile as sf

    for clip, degraded in ((clean, False), (noisy, True)):
        row = render(clip, tmp_path, opts)
        wav, sr = sf.read(tmp_path / row["path"][3:])
        lead = np.sqrt(np.mean(wav[: sr // 10] ** 2))  # the first 0.1 s is silence (+ dither) before the speech
        assert (lead > 1e-2) if degraded else (lead < 1e-3), (clip.id, lead)
        assert len(row["align"]) == -(-len(wav) // 320)


def test_stages_resume_and_refuse_other_settings(tmp_path: Path) -> None:
    calls = []
    run = _Run(tmp_path, DemoSettings.small(), progress=False)
    assert run.stage("a", 1, 1, lambda: calls.append(1) or {"x": 1}) == {"x": 1}
    again = _Run(tmp_path, DemoSettings.small(), progress=False)
    assert again.stage("a", 1, 1, lambda: calls.append(2) or {"x": 2}) == {"x": 1}  # done: not redone
    assert calls == [1]
    other = _Run(tmp_path, DemoSettings(), progress=False)
    with pytest.raises(ConfigError, match="other demo settings"):
        other.stage("a", 1, 1, dict)


def test_changed_probe_settings_redo_only_the_probes(tmp_path: Path) -> None:
    from dataclasses import replace

    small = DemoSettings.small()
    run = _Run(tmp_path, small, progress=False)
    run.stage("pretrain", 1, 2, lambda: 1)
    run.stage("probe-pr", 2, 2, lambda: 1)
    again = _Run(tmp_path, replace(small, probe_epochs=99, workers=1), progress=False)
    assert again.stage("pretrain", 1, 2, lambda: 2) == 1  # probe settings (and workers) do not touch pre-training
    assert again.stage("probe-pr", 2, 2, lambda: 2) == 2  # redone
    with pytest.raises(ConfigError, match="steps"):
        _Run(tmp_path, replace(small, steps=7), progress=False).stage("pretrain", 1, 2, lambda: 3)


def test_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODEC2VEC_DEMO_STEPS", "123")
    monkeypatch.setenv("CODEC2VEC_DEMO_PER_LAYER", "false")
    s = settings_from_env(DemoSettings.small())
    assert s.steps == 123 and s.per_layer is False and s.hours == DemoSettings.small().hours
    monkeypatch.setenv("CODEC2VEC_DEMO_HOURS", "lots")
    with pytest.raises(ConfigError, match="CODEC2VEC_DEMO_HOURS"):
        settings_from_env(DemoSettings())


# --- the small demo, end to end ------------------------------------------------------------------------------


def _demo_command(out: Path) -> tuple[list[str], dict[str, str]]:
    """`./run demo --small` when these tests run in `run`'s set-up environment (CI), else the CLI directly."""
    env = dict(os.environ)
    if (Path(sys.prefix) / ".codec2vec-setup").is_file():
        env["CODEC2VEC_VENV"] = sys.prefix
        return [str(ROOT / "run"), "demo", "--small", "--out", str(out)], env
    return [sys.executable, "-m", "codec2vec", "demo", "--small", "--out", str(out)], env


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("demo") / "out"
    cmd, env = _demo_command(out)
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc.stderr


@pytest.mark.slow
def test_small_demo_writes_results_and_a_matching_report(small_demo: tuple[Path, str]) -> None:
    out, log = small_demo
    for n, stage in enumerate(("synth", "tasks", "tokenize", "pretrain", "probe-pr"), 1):
        assert f"demo: [{n}/11] {stage}: done in" in log  # a progress line per stage
    results = json.loads((out / "results.json").read_text())
    got = {(p["task"], p["model"]) for p in results["probes"]}
    tasks = ("pr", "ks", "sid", "abx_within", "abx_across")
    assert got == {(t, m) for t in tasks for m in ("pretrained", "codec", "random")}
    for p in results["probes"]:
        assert {"task", "model", "metric", "value", "ci"} <= set(p)
        assert p["ci"] is None or p["ci"][0] <= p["value"] <= p["ci"][1]
    steps = [r["step"] for r in results["per_vs_steps"]]
    assert steps[0] == 0 and steps[-1] == results["settings"]["steps"] and len(steps) >= 5
    pr = next(p for p in results["probes"] if p["task"] == "pr" and p["model"] == "pretrained")
    assert results["per_vs_steps"][-1]["value"] == pr["value"]
    assert check_numbers(out / "report.html", results) > 60
    for name in ("curves", "per_vs_steps", "layer_weights", "per_layer", "storage"):
        assert (out / f"{name}.png").stat().st_size > 5000
    # the model never saw a test clip: no probe test id is in the pre-training store
    from codec2vec.store import TokenStore

    stored = set(TokenStore.open(out / "store").ids())
    test_ids = {json.loads(line)["id"] for t in ("pr", "ks", "sid") for line in open(out / "tasks" / t / "test.jsonl")}
    assert test_ids and not stored & test_ids


@pytest.mark.slow
def test_small_demo_rerun_redoes_nothing(small_demo: tuple[Path, str]) -> None:
    out, _ = small_demo
    before = (out / "results.json").read_text()
    cmd, env = _demo_command(out)
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count("done before") == 10 and "pretrain: starting" not in proc.stderr
    assert (out / "results.json").read_text() == before


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.slow
def test_report_renders_in_headless_chromium(small_demo: tuple[Path, str]) -> None:
    browser = _chromium()
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing in CI (.ci/run installs it)")
        pytest.skip("chromium not installed (apt-get install chromium)")
    out, _ = small_demo
    page, shot = (out / "report.html").resolve(), out / "report.png"  # the screenshot stays beside the report
    base = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1200,2000"]
    subprocess.run([*base, f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=180, check=True)
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert pixels.shape == (2000, 1200)
    assert pixels.std() > 20 and len(np.unique(pixels)) > 50  # text, table and plots, not a blank page
    dom = subprocess.run([*base, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=180, check=True)
    assert '<table id="results">' in dom.stdout and dom.stdout.count("<tr>") >= 6
    assert dom.stdout.count("<img ") >= 5
