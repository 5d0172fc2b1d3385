"""Lyra v2 (SoundStream) through the TFLite runtime: 16 kHz, 50 frames/s, 46 residual levels of 16 entries.

Google's Lyra v2 ships three TFLite models (google/lyra release 1.3.2): a streaming encoder (320 samples ->
a 64-d latent per 20 ms frame), a residual vector quantizer (`encode(latent, num_quantizers) -> 46 indices`,
-1 past `num_quantizers`; `decode(indices) -> latent`), and a streaming decoder (latent -> 320 samples).
Lower bitrates are prefixes of higher ones: 16 levels = 3.2 kbps, 30 = 6 kbps, 46 = 9.2 kbps.

Shapes: `encode((B, S), (B,)) -> (B, K, T), (B,)` with T = ceil(S / 320) (the last frame zero-padded);
`decode((B, K, T), (B,)) -> (B, T * 320), (B,)`. The encoder and decoder carry state across calls, so
every utterance starts from a fresh state. TFLite's `reset_all_variables()` does NOT clear this model's
state (measured: the first frames differ after a reset), so each utterance gets a new interpreter built
from the model bytes held in memory (about 1.5 ms each); the tests check that repeated and interleaved
encodes give identical codes.

Speed (tokenization): the shipped graphs take one 20 ms frame per call (about 80 us per encoder frame and 40 us
per quantizer frame on one unloaded core, mostly per-call and tiny-GEMM overhead). Both graphs are shape-agnostic
but for two RESHAPE targets each, which `batch_agnostic` rewrites in the model bytes ((1, 320, 1, 1) ->
(1, -1, 1, 1) and (1, 1, 64) -> (1, -1, 64) in the encoder, whose state updates already slice the last N
positions; (1, 1, C) -> (-1, 1, C) in the quantizer's `encode`); every weight, op and kernel is unchanged. The
encoder then runs up to `ENCODER_CHUNK` frames per call along time (a causal stack of VALID convolutions: each
output position is the same computation), and the quantizer `QUANTIZER_CHUNK` frames per call. The codes are
bit-identical to the one-frame-per-call graphs (`encode_reference`): tests/codecs/test_codecs_lyra_fast.py checks the
shared real speech, whole, batched and streamed.

Weights are found, in order: the `path=` argument, `$CODEC2VEC_LYRA_DIR`, the user cache
(`$XDG_CACHE_HOME/codec2vec/lyra-v2`), or a download pinned to one google/lyra commit, verified by sha256.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import urllib.request
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from torch import Tensor

from codec2vec.common.errors import Codec2VecError
from codec2vec.common.files import atomic_write, sha256_file

LYRA_COMMIT = "47698dadf0010abff6a848e02642f55f806d4842"
LYRA_URL = f"https://raw.githubusercontent.com/google/lyra/{LYRA_COMMIT}/lyra/model_coeffs/{{name}}"
LYRA_FILES = {
    "soundstream_encoder.tflite": "237da0b16226fb0a68d49551c81bebf614e42142af72764448359f68581e88f1",
    "quantizer.tflite": "841ee05989687d32d1f616a8ad1419fc7eda37599d3c05c7cf5a0d60ccf8ac5c",
    "lyragan.tflite": "50e7839cda4f30599a3a34cfaddcd9c98449b049eee884e1a74295780448ad06",
}
HOP = 320
MAX_LEVELS = 46
LATENT_DIM = 64  # the encoder's latent per frame, which the quantizer's levels sum to


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "codec2vec" / "lyra-v2"


def _download(folder: Path) -> None:
    """Fetch the pinned weights into `folder`, each checked against its sha256 before it takes its real name."""
    for name, digest in LYRA_FILES.items():
        target = folder / name
        if target.is_file() and sha256_file(target) == digest:
            continue
        url = LYRA_URL.format(name=name)
        try:
            with urllib.request.urlopen(url, timeout=60) as resp:
                blob = resp.read()
        except OSError as e:
            raise Codec2VecError(
                f"lyra: cannot download {url} ({e}); put the three .tflite files in a folder and pass "
                "--codec-path or set CODEC2VEC_LYRA_DIR"
            ) from None
        if hashlib.sha256(blob).hexdigest() != digest:
            raise Codec2VecError(f"lyra: {url} does not match its pinned sha256 {digest}")
        atomic_write(target, blob)


def resolve_lyra_dir(path: str | os.PathLike[str] | None = None, *, download: bool = True) -> Path:
    """The folder holding the three Lyra v2 `.tflite` files, each verified against its pinned sha256."""
    candidates: list[tuple[str, Path]] = []
    if path is not None:
        candidates.append(("path", Path(path)))
    elif os.environ.get("CODEC2VEC_LYRA_DIR"):
        candidates.append(("CODEC2VEC_LYRA_DIR", Path(os.environ["CODEC2VEC_LYRA_DIR"])))
    else:
        candidates.append(("cache", _cache_dir()))
    origin, folder = candidates[0]
    missing = [n for n in LYRA_FILES if not (folder / n).is_file()]
    if missing and origin == "cache" and download:
        _download(folder)
        missing = []
    if missing:
        raise Codec2VecError(f"lyra: {folder} (from {origin}) lacks {', '.join(missing)}")
    for name, digest in LYRA_FILES.items():
        if sha256_file(folder / name) != digest:
            raise Codec2VecError(f"lyra: {folder / name} does not match the sha256 of google/lyra {LYRA_COMMIT[:7]}")
    return folder


ENCODER_CHUNK = 32  # frames per encoder call (0.64 s): fewer calls, and GEMMs over 32x more positions
QUANTIZER_CHUNK = 64  # frames per quantizer call
ENCODER_RESHAPES: dict[tuple[int, ...], tuple[int, ...]] = {
    (1, HOP, 1, 1): (1, -1, 1, 1),
    (1, 1, LATENT_DIM): (1, -1, LATENT_DIM),
}
QUANTIZER_RESHAPES: dict[tuple[int, ...], tuple[int, ...]] = {
    (1, 1, LATENT_DIM): (-1, 1, LATENT_DIM),
    (1, 1, 16): (-1, 1, 16),
}


def batch_agnostic(
    model: bytes, reshapes: dict[tuple[int, ...], tuple[int, ...]], signature: str | None = None
) -> bytes:
    """`model` with the constant targets of the RESHAPE ops of one subgraph (that of `signature`, default the
    first) rewritten in place by `reshapes` (old shape -> new, same rank); weights, ops and kernels are
    unchanged. Codec2VecError if a listed shape is absent (not the pinned google/lyra model)."""
    from ai_edge_litert import schema_py_generated as schema

    m = schema.Model.GetRootAsModel(model, 0)
    sigs = [m.SignatureDefs(i) for i in range(m.SignatureDefsLength())]
    graph = m.Subgraphs(next((d.SubgraphIndex() for d in sigs if d.SignatureKey().decode() == signature), 0))
    codes = [m.OperatorCodes(i) for i in range(m.OperatorCodesLength())]
    reshape = {
        i for i, c in enumerate(codes) if schema.BuiltinOperator.RESHAPE in (c.BuiltinCode(), c.DeprecatedBuiltinCode())
    }
    out, found = bytearray(model), set()
    for j in range(graph.OperatorsLength()):
        op = graph.Operators(j)
        if op.OpcodeIndex() not in reshape or op.InputsLength() < 2 or op.Inputs(1) < 0:
            continue
        buffer = m.Buffers(graph.Tensors(op.Inputs(1)).Buffer())
        start = buffer._tab.Vector(buffer._tab.Offset(4)) if buffer.DataLength() else 0  # the data's first byte
        old = tuple(np.frombuffer(model, "<i4", buffer.DataLength() // 4, start).tolist()) if start else ()
        if old in reshapes and len(reshapes[old]) == len(old):
            out[start : start + 4 * len(old)] = np.asarray(reshapes[old], "<i4").tobytes()
            found.add(old)
    if set(reshapes) - found:
        raise Codec2VecError(f"lyra: no RESHAPE to {sorted(set(reshapes) - found)}: not google/lyra {LYRA_COMMIT[:7]}")
    return bytes(out)


class _Quantizer:
    """The quantizer's `encode` signature on `chunk` frames per call (the last call zero-padded, so the shape
    never changes): `(T, 64)` latents -> `(46, T)` codes."""

    def __init__(self, interpreter: Any, model: bytes, chunk: int) -> None:
        self._interp = interpreter(model_content=model, num_threads=1)
        self._run = self._interp.get_signature_runner("encode")
        self._chunk = chunk

    def __call__(self, latent: np.ndarray, levels: int) -> np.ndarray:
        t = latent.shape[0]
        z = np.zeros((-(-t // self._chunk) * self._chunk, 1, LATENT_DIM), dtype=np.float32)  # (T', 1, 64)
        z[:t, 0] = latent
        codes = np.empty((MAX_LEVELS, z.shape[0]), dtype=np.int64)  # (46, T')
        n = np.int32(levels)
        for s in range(0, z.shape[0], self._chunk):
            out = self._run(input_frames=z[s : s + self._chunk], num_quantizers=n)["output_0"]  # (46, chunk, 1)
            codes[:, s : s + self._chunk] = out.reshape(MAX_LEVELS, -1)
        return codes[:, :t]


class _Encoder:
    """One utterance through the time-batched encoder graph, from a fresh state: `latents(x)` on consecutive
    whole-frame pieces gives what the one-frame graph gives frame by frame (the state carries across calls)."""

    def __init__(self, interpreter: Any, model: bytes, chunk: int) -> None:
        self._interp = interpreter(model_content=model, num_threads=1)
        self._in = self._interp.get_input_details()[0]["index"]
        self._out = self._interp.get_output_details()[0]["index"]
        self._chunk, self._frames = chunk, 0

    def whole(self, x: np.ndarray) -> np.ndarray:
        """A whole utterance `(T * 320,)` -> `(T, 64)` in ceil(T / chunk) calls of one size, the end zero-padded
        (the graph is causal: what follows the last frame changes no output before it): one allocation."""
        t = x.shape[0] // HOP
        calls = max(1, -(-t // self._chunk))
        self._chunk = -(-t // calls)  # <= the chunk
        padded = np.zeros(calls * self._chunk * HOP, dtype=np.float32)
        padded[: x.shape[0]] = x
        return self.latents(padded)[:t]

    def latents(self, x: np.ndarray) -> np.ndarray:
        """`(n * 320,)` float32 -> `(n, 64)` float32, continuing from the previous call's state."""
        n = x.shape[0] // HOP
        out = np.empty((n, LATENT_DIM), dtype=np.float32)  # (n, 64)
        for s in range(0, n, self._chunk):
            m = min(self._chunk, n - s)
            if m != self._frames:  # the state survives a resize (the tests check the last, shorter chunk)
                self._interp.resize_tensor_input(self._in, [1, m * HOP])
                self._interp.allocate_tensors()
                self._frames = m
            self._interp.set_tensor(self._in, x[s * HOP : (s + m) * HOP][None])  # (1, m * 320)
            self._interp.invoke()
            out[s : s + m] = self._interp.get_tensor(self._out).reshape(m, LATENT_DIM)  # (1, m, 64)
        return out


class LyraCodec:
    """Lyra v2 SoundStream behind the `Codec` protocol (CPU, TFLite)."""

    name = "lyra"
    sample_rate = 16000
    frame_rate = 50.0
    codebook_size = 16

    def __init__(self, *, path: str | None = None, num_codebooks: int | None = None, device: str = "cpu") -> None:
        k = MAX_LEVELS if num_codebooks is None else int(num_codebooks)
        if not 1 <= k <= MAX_LEVELS:
            raise Codec2VecError(f"lyra: num_codebooks must be in 1..{MAX_LEVELS}, got {k}")
        self.num_codebooks = k
        self.folder = resolve_lyra_dir(path)
        from ai_edge_litert.interpreter import Interpreter

        self._Interpreter = Interpreter
        self._enc_bytes = (self.folder / "soundstream_encoder.tflite").read_bytes()
        self._dec_bytes = (self.folder / "lyragan.tflite").read_bytes()
        self._enc = self._fresh(self._enc_bytes)
        self._dec = self._fresh(self._dec_bytes)
        q_bytes = (self.folder / "quantizer.tflite").read_bytes()
        quant = Interpreter(model_content=q_bytes, num_threads=1)
        self._q_encode = quant.get_signature_runner("encode")
        self._q_decode = quant.get_signature_runner("decode")
        self._quant = quant  # keeps the runners' interpreter alive
        self._q_plain = self._fresh(q_bytes)  # its first subgraph is `decode`: plain calls, no per-call re-planning
        self._qd_in = self._q_plain.get_input_details()[0]["index"]
        self._qd_out = self._q_plain.get_output_details()[0]["index"]
        # the same graphs, many frames per call (module docstring); bit-identical codes
        self._enc_batched = batch_agnostic(self._enc_bytes, ENCODER_RESHAPES)
        q_batched = batch_agnostic(q_bytes, QUANTIZER_RESHAPES, "encode")
        self._q_batched = _Quantizer(Interpreter, q_batched, QUANTIZER_CHUNK)
        self._enc_in = self._enc.get_input_details()[0]["index"]
        self._enc_out = self._enc.get_output_details()[0]["index"]
        self._dec_in = self._dec.get_input_details()[0]["index"]
        self._dec_out = self._dec.get_output_details()[0]["index"]
        self._codebooks: Tensor | None = None

    def _fresh(self, model: bytes) -> Any:
        """A new interpreter: the only reliable way to start a streaming graph from its initial state."""
        interp = self._Interpreter(model_content=model, num_threads=1)
        interp.allocate_tensors()
        return interp

    def config(self) -> dict[str, Any]:
        return {"model": "lyra-v2-soundstream", "commit": LYRA_COMMIT, "num_codebooks": self.num_codebooks}

    # -- one utterance at a time, from a fresh encoder state ------------------------------------------------

    def _padded(self, wav: np.ndarray) -> np.ndarray:
        """`(S,)` -> `(T * 320,)` float32, the last frame zero-padded."""
        n = int(wav.shape[0])
        x = np.zeros(-(-n // HOP) * HOP, dtype=np.float32)
        x[:n] = wav
        return x

    def latents(self, wav: np.ndarray) -> np.ndarray:
        """`(S,)` float32 at 16 kHz -> the encoder's latents `(T, 64)`, T = ceil(S / 320), from a fresh state."""
        return _Encoder(self._Interpreter, self._enc_batched, ENCODER_CHUNK).whole(self._padded(wav))

    def quantize(self, latent: np.ndarray) -> np.ndarray:
        """`(T, 64)` latents -> codes `(K, T)` int64, by the quantizer's own `encode` graph on many frames per call."""
        return np.ascontiguousarray(self._q_batched(latent, self.num_codebooks)[: self.num_codebooks])

    def encode_one(self, wav: np.ndarray) -> np.ndarray:
        """`(S,)` float32 at 16 kHz -> codes `(K, T)` int64, T = ceil(S / 320), from a fresh encoder state."""
        return self.quantize(self.latents(wav))

    def encode_reference(self, wav: np.ndarray) -> np.ndarray:
        """`encode_one` through the shipped graphs as they are, one 20 ms frame per call (about 3x slower):
        the reference the batched path is tested against."""
        x = self._padded(wav)
        enc = self._fresh(self._enc_bytes)
        levels = np.int32(self.num_codebooks)
        codes = np.empty((x.shape[0] // HOP, MAX_LEVELS), dtype=np.int64)  # (T, 46)
        for i in range(codes.shape[0]):
            enc.set_tensor(self._enc_in, x[i * HOP : (i + 1) * HOP][None])
            enc.invoke()
            latent = enc.get_tensor(self._enc_out)  # (1, 1, 64)
            codes[i] = self._q_encode(input_frames=latent, num_quantizers=levels)["output_0"].reshape(-1)
        return np.ascontiguousarray(codes[:, : self.num_codebooks].T)  # (K, T)

    def encode_stream(self, blocks: Iterable[np.ndarray]) -> np.ndarray:
        """Audio in consecutive `(S_i,)` float32 blocks at 16 kHz -> codes `(K, T)` uint16, exactly
        `encode_one` of their concatenation (one encoder state throughout, the last frame zero-padded), with
        memory for one block and the codes only: how `tokenize` encodes long files."""
        encoder = _Encoder(self._Interpreter, self._enc_batched, ENCODER_CHUNK)
        out: list[np.ndarray] = []  # (K, n) uint16 per block
        carry = np.zeros(0, dtype=np.float32)
        for block in itertools.chain(blocks, [None]):  # lazily: one block in memory at a time
            if block is None:  # the end: pad the last partial frame
                if not carry.size:
                    break
                block, carry = np.zeros(HOP - carry.size, dtype=np.float32), carry
            x = np.concatenate([carry, np.asarray(block, dtype=np.float32)])  # (S,)
            n = x.shape[0] // HOP
            if n:
                out.append(self.quantize(encoder.latents(x[: n * HOP])).astype(np.uint16))
            carry = x[n * HOP :]
        return np.concatenate(out, axis=1) if out else np.zeros((self.num_codebooks, 0), dtype=np.uint16)

    def _quantizer_decode(self, idx: np.ndarray) -> np.ndarray:
        """`(46, 1, 1)` int32 indices (-1: level unused) -> the quantizer's `decode` of them, `(64,)`."""
        self._q_plain.set_tensor(self._qd_in, idx)
        self._q_plain.invoke()
        return self._q_plain.get_tensor(self._qd_out).reshape(-1)  # (1, 1, 64)

    def quantized_latent(self, codes: np.ndarray) -> np.ndarray:
        """codes `(K, T)` -> the quantizer's own decode, `(T, 64)`."""
        k, t = codes.shape
        idx = np.full((MAX_LEVELS, 1, 1), -1, dtype=np.int32)
        out = np.empty((t, 64), dtype=np.float32)
        for i in range(t):
            idx[:k, 0, 0] = codes[:, i]
            out[i] = self._quantizer_decode(idx)
        return out

    def decode_one(self, codes: np.ndarray) -> np.ndarray:
        """codes `(K, T)` -> `(T * 320,)` float32 at 16 kHz, from a fresh decoder state."""
        latent = self.quantized_latent(codes)  # (T, 64)
        self._dec = self._fresh(self._dec_bytes)
        out = np.empty(latent.shape[0] * HOP, dtype=np.float32)
        for i, z in enumerate(latent):
            self._dec.set_tensor(self._dec_in, z.reshape(1, 1, 64))
            self._dec.invoke()
            out[i * HOP : (i + 1) * HOP] = self._dec.get_tensor(self._dec_out).reshape(-1)
        return out

    # -- the batched protocol -----------------------------------------------------------------------------

    def encode(self, wav: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """`(B, S)` float, `(B,)` samples -> codes `(B, K, T)` long (padding frames 0), `(B,)` frames."""
        x = wav.detach().to("cpu", torch.float32).numpy()
        latents = [self.latents(x[b, : int(n)]) for b, n in enumerate(lengths.tolist())]  # (T_b, 64) each
        codes = self.quantize(np.concatenate(latents)) if latents else np.zeros((self.num_codebooks, 0), np.int64)
        ends = np.cumsum([z.shape[0] for z in latents])  # the batch quantized at once: fewer, fuller calls
        per = np.split(codes, ends[:-1], axis=1) if latents else []
        frames = torch.tensor([c.shape[1] for c in per], dtype=torch.long)
        out = torch.zeros(len(per), self.num_codebooks, max(frames.tolist(), default=0), dtype=torch.long)
        for b, c in enumerate(per):
            out[b, :, : c.shape[1]] = torch.from_numpy(c)
        return out, frames

    def decode(self, codes: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """codes `(B, K, T)`, `(B,)` frames -> `(B, T * 320)` float, `(B,)` samples."""
        c = codes.detach().cpu().numpy()
        per = [self.decode_one(c[b, :, : int(n)]) for b, n in enumerate(lengths.tolist())]
        samples = torch.tensor([len(w) for w in per], dtype=torch.long)
        out = torch.zeros(len(per), max(samples.tolist(), default=0))
        for b, w in enumerate(per):
            out[b, : len(w)] = torch.from_numpy(w)
        return out, samples

    def codebook_vectors(self) -> Tensor:
        """`(K, 16, 64)`: decode one level at a time; the quantizer is additive, so rows sum to its decode."""
        if self._codebooks is None:
            table = np.empty((MAX_LEVELS, self.codebook_size, 64), dtype=np.float32)
            idx = np.full((MAX_LEVELS, 1, 1), -1, dtype=np.int32)
            for k in range(MAX_LEVELS):
                for v in range(self.codebook_size):
                    idx[:] = -1
                    idx[k, 0, 0] = v
                    table[k, v] = self._quantizer_decode(idx)
            self._codebooks = torch.from_numpy(table)
        return self._codebooks[: self.num_codebooks].clone()
