"""`codec2vec export`: a checkpoint -> an encoder-only folder in the layout model hubs expect.

`export_model(ckpt, out)` writes, atomically (`files.atomic_dir`), a folder holding
  - `model.safetensors`: the encoder's weights only (no target heads, no EMA teacher, no optimizer state),
    keys as `Codec2VecEncoder.state_dict()`;
  - `config.json`: `format` (`codec2vec-encoder`), the architecture (`model` section, `dim`, `num_layers`),
    the codec (`codec`: name, rates, K, V, config and its hash; `num_codebooks`), the front end, the frame rate,
    the codec2vec version, the step and targets, the training data (store hash, hours), the resolved training
    config (`training_config`) and the SHA-256 of `model.safetensors`;
  - `README.md`: a model card (data, steps, targets, probe results when a `results.json` sits beside the run,
    the codec's licence, how to load it).
`load_model`, `Upstream.from_checkpoint` and `codec2vec.features.s3prl.UpstreamExpert` read such a folder, or a hub id
of one, as they read a checkpoint (`checkpoint.read_meta`), and give exactly the checkpoint's features.
Files get the user's umask (0644 typically), like every file `common/files.py` writes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from codec2vec import __version__
from codec2vec.common.files import atomic_dir, atomic_write, fsync_file, sha256_file, share_mode
from codec2vec.pretrain.checkpoint import EXPORT_FORMAT, VERSION, CheckpointError, load_checkpoint, resolve
from codec2vec.store import TokenStore

# Licences of the codecs' weights (what a user of the exported model inherits through its tables).
CODEC_LICENCES = {
    "lyra": "Apache-2.0 (Lyra v2 SoundStream, google/lyra)",
    "dac": "MIT (Descript Audio Codec, descript/dac)",
    "encodec": "MIT (EnCodec, facebookresearch/encodec)",
    "mimi": "CC-BY-4.0 (Mimi, kyutai/mimi)",
}


def _version() -> str:
    return str(__version__)


def _training_data(config: dict[str, Any]) -> dict[str, Any]:
    """What can still be read about the training store: the SHA-256 of its `contents.json` (which names every
    shard's hash), hours and utterances; `{}` where the store is gone."""
    store = config.get("data", {}).get("store")
    if not store or not (Path(store) / "contents.json").is_file():
        return {}
    try:
        info = TokenStore.open(store).info()
    except Exception:  # noqa: BLE001 (a damaged or moved store only leaves the card without its figures)
        return {}
    digest = hashlib.sha256((Path(store) / "contents.json").read_bytes()).hexdigest()
    return {"store_sha256": digest, "hours": round(float(info["hours"]), 4), "utterances": int(info["utterances"])}


def _probe_results(ckpt_dir: Path) -> list[dict[str, Any]]:
    """`probes` rows of a `results.json` in the run directory, its `report/` or the folder above (the demo's)."""
    run = ckpt_dir.parent.parent
    for p in (run / "results.json", run / "report" / "results.json", run.parent / "results.json"):
        if p.is_file():
            try:
                rows = json.loads(p.read_text()).get("probes", [])
            except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
                continue
            return [r for r in rows if isinstance(r, dict)]
    return []


def _config_json(meta: dict[str, Any], weights_sha: str, data: dict[str, Any]) -> dict[str, Any]:
    cfg = meta["config"]
    codec = meta["codec"]
    return {
        "format": EXPORT_FORMAT,
        "version": VERSION,
        "architecture": "Codec2VecEncoder",
        "model": cfg["model"],
        "dim": int(cfg["model"]["dim"]),
        "num_layers": int(cfg["model"]["num_layers"]),
        "frontend": meta.get("frontend", cfg["model"].get("frontend", "codec")),
        "codec": codec,
        "num_codebooks": int(codec["num_codebooks"]),
        "frame_rate": float(codec["frame_rate"]),
        "codec2vec_version": _version(),
        "step": int(meta["step"]),
        "targets": cfg.get("targets", {}),
        "label_classes": meta.get("label_classes", {}),
        "encoder_params": meta.get("encoder_params"),
        "training_data": data,
        "training_config": cfg,
        "files": {"model.safetensors": weights_sha},
    }


def model_card(config: dict[str, Any], probes: list[dict[str, Any]], name: str) -> str:
    """The README.md of an exported folder (a hub model card: YAML front matter, then what and how)."""
    codec = config["codec"]
    data = config["training_data"]
    t = config["targets"] if isinstance(config["targets"], dict) else {}
    targets = ", ".join(f"{n} (weight {float(t.get('weights', {}).get(n, 1.0)):g})" for n in t.get("names", []))
    lines = [
        "---",
        "library_name: codec2vec",
        "tags: [speech, self-supervised, audio-codec]",
        "---",
        f"# {name}",
        "",
        f"A Codec2Vec speech encoder: {config['num_layers']} Transformer layers of width {config['dim']} over "
        f"`{codec['name']}` codec tokens ({config['num_codebooks']} levels x {codec['codebook_size']} codes, "
        f"{config['frame_rate']:g} frames/s), front end `{config['frontend']}`. Encoder only: no target heads, "
        "no teacher, no optimizer state.",
        "",
        "| | |",
        "| --- | --- |",
        f"| steps | {config['step']} |",
        f"| targets | {targets} |",
        f"| training data | {data.get('hours', 'unknown')} h, {data.get('utterances', 'unknown')} utterances |",
        f"| data store (sha256 of contents.json) | `{data.get('store_sha256', 'unknown')}` |",
        f"| encoder parameters | {config.get('encoder_params')} |",
        f"| codec | `{codec['name']}` (config hash `{codec.get('config_hash', '')}`) |",
        f"| codec licence | {CODEC_LICENCES.get(codec['name'], 'see the codec provider')} |",
        f"| codec2vec version | {config['codec2vec_version']} |",
        "",
    ]
    if probes:
        lines += [
            "## Probe results",
            "",
            "| task | model | metric | value | 95% interval |",
            "| --- | --- | --- | --- | --- |",
        ]
        for r in probes:
            ci = r.get("ci") or []
            interval = f"{ci[0]:.4g} - {ci[1]:.4g}" if len(ci) == 2 else ""
            value = r.get("value")
            shown = f"{value:.4g}" if isinstance(value, (int, float)) else str(value)
            lines.append(
                f"| {r.get('task', '')} | {r.get('model', '')} | {r.get('metric', '')} | {shown} | {interval} |"
            )
        lines.append("")
    lines += [
        "## Use",
        "",
        "```python",
        "import codec2vec",
        f'upstream = codec2vec.Upstream.from_pretrained("{name}")   # this folder or its hub id',
        "layers, lengths = upstream([wav_16khz])                    # [L + 1] x (B, T, D)",
        "```",
        "",
    ]
    return "\n".join(lines)


def export_model(ckpt: str | Path, out: str | Path, *, replace: bool = False) -> dict[str, Any]:
    """Write the encoder of checkpoint `ckpt` (a checkpoint or run directory) into the folder `out` (refused when
    it exists unless `replace`). Returns the written `config.json` as a dict."""
    from safetensors.torch import save_file

    out = Path(out)
    if out.exists() and not replace:
        raise CheckpointError(f"{out}: already exists; export writes a new folder")
    if out.exists() and not out.is_dir():
        raise CheckpointError(f"{out}: a file is in the way; export writes a folder")
    src = resolve(ckpt)
    weights, _, meta = load_checkpoint(src, with_state=False)
    if meta.get("exported"):
        raise CheckpointError(f"{src}: already an exported folder")
    encoder = {k[len("encoder.") :]: v.contiguous() for k, v in weights.items() if k.startswith("encoder.")}
    if not encoder:
        raise CheckpointError(f"{src}/model.safetensors: holds no encoder weights")
    data = _training_data(meta["config"])
    with atomic_dir(out, replace=replace) as tmp:
        save_file(encoder, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        share_mode(tmp / "model.safetensors")  # safetensors writes 0600
        fsync_file(tmp / "model.safetensors")
        config = _config_json(meta, sha256_file(tmp / "model.safetensors"), data)
        atomic_write(tmp / "config.json", json.dumps(config, indent=1, default=str) + "\n")
        atomic_write(tmp / "README.md", model_card(config, _probe_results(src), out.name))
    return config


__all__ = ["CODEC_LICENCES", "export_model", "model_card"]
