"""Evidence files from any channel: one upload type, one magic-byte sniffer, one way to store them.

Staff post a document with a procedure step on the console; villagers post photos from the
mini-program. Both arrive as an ``Upload`` (the edge has read at most the size limit + 1 bytes),
both are typed by their bytes (``sniff``), and both are stored by ``attach`` in the one file store
(``storage.files``): written atomically, content-addressed in the case's folder, and recorded as an
``Attachment`` row holding the path relative to the instance folder. Which types a channel accepts,
its limits and its messages stay with the channel.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from storage.cases import add_attachment, attachment_by_path
from storage.files import FileStore, StoredFile
from storage.models import Attachment, Case


@dataclass
class Upload:
    """One uploaded file, already read; ``content_type`` is what the client claimed (may be empty)."""

    filename: str
    data: bytes
    content_type: str = ""

    @property
    def claimed_type(self) -> str:
        """The claimed media type without parameters, lower case (``image/png``)."""
        return (self.content_type or "").split(";")[0].strip().lower()


@dataclass(frozen=True)
class FileKind:
    content_type: str
    ext: str


JPEG = FileKind("image/jpeg", "jpg")
PNG = FileKind("image/png", "png")
WEBP = FileKind("image/webp", "webp")
PDF = FileKind("application/pdf", "pdf")

_MAGIC = (
    (b"\xff\xd8\xff", JPEG),
    (b"\x89PNG\r\n\x1a\n", PNG),
    (b"%PDF-", PDF),
)


def sniff(data: bytes) -> FileKind | None:
    """The kind of file ``data`` is by its magic bytes (JPEG, PNG, WebP, PDF), or None."""
    for magic, kind in _MAGIC:
        if data.startswith(magic):
            return kind
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return WEBP
    return None


def store_for(root: Path) -> FileStore:
    """The evidence store under the instance folder ``root``."""
    return FileStore(root)


def path_for(store: FileStore, case: Case, upload: Upload, kind: FileKind) -> str:
    """Where ``upload`` is (or would be) stored for ``case``, relative to the instance folder."""
    return store.key(upload.data, namespace=str(case.id), ext=kind.ext)


def attached(session, store: FileStore, case: Case, upload: Upload, kind: FileKind) -> Attachment | None:
    """The row of the case that already holds these bytes, if any."""
    return attachment_by_path(session, case_id=case.id, path=path_for(store, case, upload, kind))


def attach(
    session, store: FileStore, case: Case, upload: Upload, kind: FileKind, *, attachment_kind: str,
    written: list[StoredFile], reuse: bool = True,
) -> Attachment:
    """Store the file and record it on the case.

    With ``reuse`` the row that already holds the same bytes is returned instead of a new one (a
    photo sent twice is one photo); without it every call records its own row (evidence of another
    step may be the same document). A newly written file is added to ``written``, so a caller whose
    transaction fails can ``discard`` it.
    """
    if reuse:
        existing = attached(session, store, case, upload, kind)
        if existing is not None:
            return existing
    stored = store.put(upload.data, namespace=str(case.id), ext=kind.ext)
    if stored.created:
        written.append(stored)
    return add_attachment(session, case, kind=attachment_kind, path=stored.path, content_type=kind.content_type,
                          size=stored.size)


def discard(store: FileStore, written: Iterable[StoredFile]) -> None:
    """Remove the files a failed request wrote."""
    for stored in written:
        store.discard(stored)
