"""Evidence files on the console: a document posted with a procedure step, and opening a stored one.

The file goes into the one evidence store (``handlers.evidence``), like the mini-program's photos;
staff may post JPG, PNG or PDF, and the bytes must be what the browser said they are.
"""

from __future__ import annotations

from pathlib import Path

from storage import session_scope
from storage.audit import audit
from storage.cases import case_in_scope
from storage.files import FileStore, StoredFile, UnsafePath
from storage.models import Attachment, Case

from .. import evidence
from .. import triage_texts as T
from ..context import Context
from ..errors import NotFound, ValidationError
from ..evidence import FileKind, Upload
from ..staff import Actor

#: What staff may post as evidence, by the type the browser claims (the bytes must agree).
EVIDENCE_KINDS: dict[str, FileKind] = {k.content_type: k for k in (evidence.JPEG, evidence.PNG, evidence.PDF)}
MAX_UPLOAD_BYTES = 5 * 1024 * 1024


def check_upload(upload: Upload | None, upload_root: Path | None, max_bytes: int) -> FileKind | None:
    """The kind of a posted evidence file, None when none was posted; refused before anything is written."""
    if upload is None or not upload.filename:
        return None
    if upload_root is None:
        raise ValidationError(T.UPLOAD_DISABLED, field="evidence_file")
    kind = EVIDENCE_KINDS.get(upload.claimed_type)
    if kind is None or evidence.sniff(upload.data) != kind:
        raise ValidationError(T.UPLOAD_TYPE, field="evidence_file")
    if len(upload.data) > max_bytes:
        raise ValidationError(T.UPLOAD_TOO_BIG.format(mb=max(1, max_bytes // (1024 * 1024))), field="evidence_file")
    return kind


def store_upload(session, store: FileStore, case: Case, upload: Upload, kind: FileKind,
                 written: list[StoredFile]) -> Attachment:
    """Record the file on the case: every step's evidence is its own row, even when the bytes repeat."""
    return evidence.attach(session, store, case, upload, kind, attachment_kind="file", written=written, reuse=False)


def attachment_file(ctx: Context, actor: Actor, attachment_id: int, *, ip: str = "",
                    root: Path | None = None) -> tuple[Path, str, str]:
    """(path, content type, download name) of a stored evidence file the actor may see; audited.

    A row holds the path relative to ``root``, the instance folder (``uploads/<case>/<sha256>.<ext>``);
    rows written by the console before the evidence store existed hold an absolute path, served as is.
    """
    store = FileStore(root if root is not None else Path("."))
    with session_scope(ctx.engine) as session:
        att = session.get(Attachment, attachment_id)
        case = case_in_scope(session, att.case_id, actor.region_path) if att else None
        if att is None or case is None or not att.path:
            raise NotFound(T.FILE_NOT_FOUND)
        path = Path(att.path)
        if not path.is_absolute():
            try:
                path = store.locate(att.path)
            except UnsafePath as exc:
                raise NotFound(T.FILE_NOT_FOUND) from exc
        if not path.is_file():
            raise NotFound(T.FILE_NOT_FOUND)
        audit(session, action="view_file", actor_id=actor.id, actor_name=actor.username, target=case.ref,
              detail=T.AUDIT_FILE.format(id=att.id), ip=ip)
        return path, att.content_type or "application/octet-stream", f"{case.ref}-{att.id}{path.suffix}"
