"""The PNG of `bench`: storage (kbps, log scale) per format, and training throughput per front end and size."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from codec2vec.common.files import atomic_file


def plot(result: dict[str, Any], path: Path) -> None:
    """Write the two-panel comparison of `run_bench`'s result to `path` (PNG, atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.5))
    st = result["storage"]
    whole = result["corpus"]["seconds"]
    a.barh(
        [s["codec"] + (f"\n({s['seconds']:.0f} s only)" if s.get("seconds", whole) < 0.99 * whole else "") for s in st],
        [s["kbps"] for s in st],
        color=["C3" if s["codec"] in ("flac", "pcm16") else "C0" for s in st],
    )
    a.set_xscale("log")
    a.set_xlabel("kbps (all files of the store)")
    for i, s in enumerate(st):
        a.text(s["kbps"], i, f" {s['ratio_to_flac']:.1f}x < FLAC", va="center", fontsize=8)
    a.set_title("storage")
    tp = result["throughput"]
    names = [f"{t['codec'].replace('-layout', '') if t['codec'] else t['model']}\n{t['size']}" for t in tp]
    b.bar(
        range(len(tp)),
        [t["audio_seconds_per_second"] for t in tp],
        color=["C0" if t["model"] == "codec" else "C1" for t in tp],
    )
    b.set_xticks(range(len(tp)), names, fontsize=7)
    b.set_yscale("log")
    b.set_ylabel("audio seconds trained per second")
    b.set_title(f"pre-training throughput ({result['machine']['device']}, data included)")
    fig.tight_layout()
    with atomic_file(path) as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)


__all__ = ["plot"]
