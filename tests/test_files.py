"""The one evidence store: atomic (no partial file after a failure), content-addressed (the same bytes
stored once), confined to its root (no path leaves it); one sniffer; both channels store through it."""

from __future__ import annotations

import hashlib
import os

import pytest
from sqlmodel import Session, select

from handlers import evidence, triage
from handlers import miniprogram as mp
from handlers.context import Context
from handlers.deadlines import WorkCalendar
from handlers.demo import load_demo
from handlers.errors import NotFound, ValidationError
from handlers.triage import procedure
from storage import DataCipher, init_db, make_engine
from storage import files as files_mod
from storage.crypto import generate_data_key
from storage.files import FileStore, UnsafePath
from storage.models import Attachment
from tests.console_support import FakeKB, actor, bind_villager, report, version

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
JPEG = b"\xff\xd8\xff\xe0" + b"\x01" * 64
WEBP = b"RIFF\x00\x00\x00\x00WEBPVP8 " + b"\x02" * 32
PDF = b"%PDF-1.7\n" + b"\x03" * 32


def _files(root) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


# --- content addressing ------------------------------------------------------------------------------


def test_the_path_comes_from_the_sha256_and_the_same_bytes_are_stored_once(tmp_path):
    store = FileStore(tmp_path)
    first = store.put(PNG, namespace="7", ext="png")
    assert first.path == f"uploads/7/{hashlib.sha256(PNG).hexdigest()[:32]}.png"
    assert first.created and first.size == len(PNG)
    assert (tmp_path / first.path).read_bytes() == PNG
    again = store.put(PNG, namespace="7", ext="png")
    assert again.path == first.path and not again.created
    assert _files(tmp_path) == [first.path]
    other = store.put(JPEG, namespace="7", ext="jpg")
    assert other.path != first.path and _files(tmp_path) == sorted([first.path, other.path])


def test_a_case_keeps_its_own_folder(tmp_path):
    store = FileStore(tmp_path)
    a, b = store.put(PNG, namespace="1", ext="png"), store.put(PNG, namespace="2", ext="png")
    assert a.path.startswith("uploads/1/") and b.path.startswith("uploads/2/") and b.created


def test_discard_removes_only_what_this_store_just_created(tmp_path):
    store = FileStore(tmp_path)
    kept = store.put(PNG, namespace="1", ext="png")
    same = store.put(PNG, namespace="1", ext="png")
    store.discard(same)  # not created by this call: another row may hold it
    assert (tmp_path / kept.path).is_file()
    store.discard(kept)
    assert not (tmp_path / kept.path).exists()


# --- atomicity ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_a_failure_while_writing_leaves_no_file_at_all(tmp_path, monkeypatch, failing):
    def boom(*_a, **_k):
        raise OSError("disk gone")

    monkeypatch.setattr(files_mod.os, failing, boom)
    store = FileStore(tmp_path)
    with pytest.raises(OSError, match="disk gone"):
        store.put(PNG, namespace="3", ext="png")
    monkeypatch.undo()
    assert _files(tmp_path) == []  # neither the final name nor a leftover temporary file
    stored = store.put(PNG, namespace="3", ext="png")  # and a retry stores the file whole
    assert stored.created and (tmp_path / stored.path).read_bytes() == PNG


def test_a_partial_write_is_never_visible_under_the_final_name(tmp_path, monkeypatch):
    store = FileStore(tmp_path)
    seen: list[bool] = []
    real_fsync = os.fsync
    final = tmp_path / store.key(PNG, namespace="4", ext="png")

    def fsync_then_check(fd):
        real_fsync(fd)
        seen.append(final.exists())  # the bytes are written and flushed, but not yet renamed

    monkeypatch.setattr(files_mod.os, "fsync", fsync_then_check)
    store.put(PNG, namespace="4", ext="png")
    assert seen and seen[0] is False
    assert final.read_bytes() == PNG


def test_a_stray_temporary_file_from_a_crash_is_not_a_stored_file(tmp_path):
    store = FileStore(tmp_path)
    rel = store.key(PNG, namespace="5", ext="png")
    folder = (tmp_path / rel).parent
    folder.mkdir(parents=True)
    (folder / ".abc.part").write_bytes(PNG[:5])
    stored = store.put(PNG, namespace="5", ext="png")
    assert stored.created and (tmp_path / rel).read_bytes() == PNG


# --- confinement -------------------------------------------------------------------------------------


@pytest.mark.parametrize("namespace, ext", [
    ("../x", "png"), ("a/b", "png"), ("", "png"), (".", "png"), ("..", "png"), ("1", "png/../../x"),
    ("1", ""), ("1", "PNG\x00"), ("1\\..\\..", "png"),
])
def test_names_that_could_leave_the_folder_are_refused(tmp_path, namespace, ext):
    with pytest.raises(UnsafePath):
        FileStore(tmp_path).put(PNG, namespace=namespace, ext=ext)
    assert _files(tmp_path) == []


@pytest.mark.parametrize("rel", [
    "../secret.txt", "uploads/../../secret.txt", "/etc/passwd", "uploads/1/../../../secret.txt",
    "..\\secret.txt", "C:/secret.txt", "",
])
def test_stored_paths_that_leave_the_root_are_refused(tmp_path, rel):
    root = tmp_path / "instance"
    root.mkdir()
    (tmp_path / "secret.txt").write_text("secret")
    with pytest.raises(UnsafePath):
        FileStore(root).locate(rel)


def test_a_symbolic_link_out_of_the_root_is_refused(tmp_path):
    root = tmp_path / "instance"
    (root / "uploads").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "x.png").write_bytes(PNG)
    (root / "uploads" / "9").symlink_to(tmp_path / "outside")
    with pytest.raises(UnsafePath):
        FileStore(root).locate("uploads/9/x.png")


# --- one sniffer -------------------------------------------------------------------------------------


def test_one_sniffer_types_files_by_their_bytes():
    assert evidence.sniff(PNG) == evidence.PNG
    assert evidence.sniff(JPEG) == evidence.JPEG
    assert evidence.sniff(WEBP) == evidence.WEBP
    assert evidence.sniff(PDF) == evidence.PDF
    for data in (b"", b"GIF89a....", b"<html></html>", b"RIFF\x00\x00\x00\x00WAVE"):
        assert evidence.sniff(data) is None


# --- both channels, one store ------------------------------------------------------------------------


@pytest.fixture
def fctx(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'files.db'}")
    init_db(engine)
    ctx = Context(engine=engine, cipher=DataCipher(generate_data_key()), calendar=WorkCalendar(), knowledge=FakeKB())
    load_demo(ctx)
    yield ctx
    engine.dispose()


def _attachments(ctx, case_id):
    with Session(ctx.engine) as s:
        return list(s.exec(select(Attachment).where(Attachment.case_id == case_id).order_by(Attachment.id)))


def test_console_evidence_and_a_mini_program_photo_share_the_one_store(fctx, tmp_path):
    root = tmp_path / "instance"
    uid = bind_villager(fctx, "o-files", "张建国")
    case = report(fctx, head="张建国", reporter_id=uid)
    photo, created = mp.add_photo(fctx, user_id=uid, ref=case.ref, photo=mp.Upload(filename="a.png", data=PNG),
                                  upload_root=root, max_photo_bytes=1024 * 1024)
    assert created
    cadre = actor(fctx, "longwan")
    triage.advance(fctx, cadre, case.id, step="warning", version=version(fctx, case.id), note="带证据",
                   upload=evidence.Upload(filename="photo.png", content_type="image/png", data=PNG), upload_root=root)
    rows = _attachments(fctx, case.id)
    assert [(r.kind, r.content_type, r.size) for r in rows] == [("image", "image/png", len(PNG)),
                                                                 ("file", "image/png", len(PNG))]
    assert rows[0].path == rows[1].path == f"uploads/{case.id}/{hashlib.sha256(PNG).hexdigest()[:32]}.png"
    assert _files(root) == [rows[0].path]  # the same bytes, stored once
    path, ctype, name = triage.attachment_file(fctx, cadre, rows[1].id, root=root)
    assert path.read_bytes() == PNG and ctype == "image/png" and name == f"{case.ref}-{rows[1].id}.png"


def test_a_refused_step_writes_no_file(fctx, tmp_path):
    root = tmp_path / "instance"
    case = report(fctx, head="张建国")
    cadre = actor(fctx, "longwan")
    upload = evidence.Upload(filename="photo.png", content_type="image/png", data=PNG)
    with pytest.raises(ValidationError):
        triage.advance(fctx, cadre, case.id, step="warning", version=version(fctx, case.id), note="很" * 1001,
                       upload=upload, upload_root=root)
    claimed_pdf = evidence.Upload(filename="photo.pdf", content_type="application/pdf", data=PNG)
    with pytest.raises(ValidationError):
        triage.advance(fctx, cadre, case.id, step="warning", version=version(fctx, case.id), upload=claimed_pdf,
                       upload_root=root)
    assert not root.exists() and _attachments(fctx, case.id) == []


def test_a_step_whose_transaction_fails_removes_the_file_it_wrote(fctx, tmp_path, monkeypatch):
    root = tmp_path / "instance"
    case = report(fctx, head="张建国")
    cadre = actor(fctx, "longwan")

    def broken(*_a, **_k):
        raise RuntimeError("database gone")

    monkeypatch.setattr(procedure, "add_event", broken)
    with pytest.raises(RuntimeError, match="database gone"):
        triage.advance(fctx, cadre, case.id, step="warning", version=version(fctx, case.id), upload_root=root,
                       upload=evidence.Upload(filename="scan.pdf", content_type="application/pdf", data=PDF))
    assert _files(root) == [] and _attachments(fctx, case.id) == []


def test_old_rows_with_absolute_paths_are_still_served_and_bad_rows_are_not(fctx, tmp_path):
    root = tmp_path / "instance"
    legacy = root / "uploads" / "1" / "0123456789abcdef01234567.png"
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes(PNG)
    (tmp_path / "secret.png").write_bytes(PNG)
    case = report(fctx, head="张建国")
    with Session(fctx.engine) as s:
        old = Attachment(case_id=case.id, kind="file", path=str(legacy), content_type="image/png", size=len(PNG))
        bad = Attachment(case_id=case.id, kind="file", path="../secret.png", content_type="image/png", size=len(PNG))
        s.add(old)
        s.add(bad)
        s.commit()
        old_id, bad_id = old.id, bad.id
    cadre = actor(fctx, "longwan")
    path, _ctype, _name = triage.attachment_file(fctx, cadre, old_id, root=root)
    assert path == legacy and path.read_bytes() == PNG
    with pytest.raises(NotFound):
        triage.attachment_file(fctx, cadre, bad_id, root=root)
