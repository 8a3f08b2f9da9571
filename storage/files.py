"""Files kept on disk (evidence photos and documents): atomic and content-addressed.

A file is named by the SHA-256 of its bytes inside the folder of its namespace (the evidence of a
case lives in ``uploads/<case id>/``), so the same bytes stored twice are one file, and a case's
files sit together (a failed request that removes what it wrote never touches another case's
files). A file is written to a temporary name in its own folder, flushed to disk and renamed over
its final name (``os.replace`` is atomic), so no reader ever sees half a file and a crash leaves at
most a hidden ``.part`` file, never a partial file under a real name.

A row keeps the path relative to the store's root (``uploads/12/3f….png``, forward slashes);
``locate`` turns it back into a file path and refuses anything that would leave the root.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

#: Hex characters of the SHA-256 in a file name: 128 bits, the length stored rows have always used.
DIGEST_CHARS = 32
UPLOADS = "uploads"

_NAMESPACE_RE = re.compile(r"[0-9A-Za-z][0-9A-Za-z_-]{0,63}")
_EXT_RE = re.compile(r"[0-9a-z]{1,8}")


class UnsafePath(ValueError):
    """A stored path or a name that would reach outside the store's root."""


@dataclass(frozen=True)
class StoredFile:
    path: str  # relative to the root, forward slashes: what a row keeps
    size: int
    created: bool  # False when the same bytes were already stored


class FileStore:
    """Content-addressed files under ``root`` (the instance folder), in ``root/<folder>/<namespace>/``."""

    def __init__(self, root: Path, folder: str = UPLOADS) -> None:
        if not _NAMESPACE_RE.fullmatch(folder):
            raise UnsafePath(folder)
        self.root = Path(root)
        self.folder = folder

    def key(self, data: bytes, *, namespace: str, ext: str) -> str:
        """The relative path ``data`` is (or would be) stored under."""
        if not _NAMESPACE_RE.fullmatch(namespace):
            raise UnsafePath(namespace)
        if not _EXT_RE.fullmatch(ext):
            raise UnsafePath(ext)
        digest = hashlib.sha256(data).hexdigest()[:DIGEST_CHARS]
        return f"{self.folder}/{namespace}/{digest}.{ext}"

    def put(self, data: bytes, *, namespace: str, ext: str) -> StoredFile:
        """Store ``data`` once: an existing file with the same bytes is kept as it is."""
        rel = self.key(data, namespace=namespace, ext=ext)
        target = self.locate(rel)
        if target.is_file():
            return StoredFile(rel, len(data), created=False)
        target.parent.mkdir(parents=True, exist_ok=True)
        # A fresh hidden name in the same folder (same file system, so the rename is atomic);
        # created exclusively, with the permissions the process's umask gives any new file.
        tmp = target.with_name(f".{secrets.token_hex(8)}.part")
        try:
            with open(tmp, "xb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _sync_dir(target.parent)
        return StoredFile(rel, len(data), created=True)

    def locate(self, rel: str) -> Path:
        """The file of a stored relative path; ``UnsafePath`` for anything that leaves the root."""
        pure = PurePosixPath(str(rel).replace("\\", "/"))
        if not rel or pure.is_absolute() or ".." in pure.parts or ":" in str(rel):
            raise UnsafePath(rel)
        root = self.root.resolve()
        path = (root / pure).resolve()
        if not path.is_relative_to(root):  # a symbolic link pointing out of the root
            raise UnsafePath(rel)
        return path

    def discard(self, stored: StoredFile) -> None:
        """Remove a file this store has just created (its database row was not written)."""
        if stored.created:
            self.locate(stored.path).unlink(missing_ok=True)


def _sync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
