"""Rebuild the XLM-R sentencepiece vocabulary of an ``E5S1`` file as a ``tokenizers`` Unigram
tokenizer (with the XLM-R normalisation as a precompiled character map) and save it."""

from __future__ import annotations

import pathlib
import struct

import numpy

from knowledge.e5format import E5File
from knowledge.modelfiles import EmbedderError, write_json

__all__ = ["build_precompiled_charsmap", "build_tokenizer", "save_tokenizer"]

_METASPACE = "\u2581"


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


def save_tokenizer(e5: E5File, folder: pathlib.Path) -> None:
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
    write_json(
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
