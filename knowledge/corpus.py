"""The corpus: a folder with ``manifest.json`` and the documents it lists.

Adding a document is adding its file (.txt, .md or .docx) and one manifest entry::

    {"file": "x.txt", "title": "…", "issuer": "…", "doc_no": null, "date": "2021-12-23",
     "level": "county", "region": {"province": "陕西省", "city": "榆林市", "county": "神木市"}}

Offsets are Python ``str`` indices into the document's text: the file decoded as UTF-8 (a
leading byte-order mark is kept as a character so offsets stay true), or, for .docx, the
plain text of its paragraphs joined by newlines (see :func:`docx_text`).
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree

__all__ = ["Document", "CorpusError", "load_corpus", "read_text", "corpus_hash", "docx_text"]

SUFFIXES = (".txt", ".md", ".docx")
_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"


class CorpusError(Exception):
    """The corpus folder or its manifest is missing or malformed (message says what to fix)."""


@dataclass
class Document:
    """One policy document with its manifest metadata and original text."""

    file: str
    title: str
    issuer: str
    doc_no: str | None
    date: str
    level: str
    region: dict[str, str | None]
    text: str = field(repr=False)

    @property
    def place_names(self) -> list[str]:
        """The document's region names, most specific first."""
        r = self.region
        return [n for n in (r.get("county"), r.get("city"), r.get("province")) if n]


def docx_text(path: Path) -> str:
    """Plain text of a .docx: one line per paragraph, table cells one per line."""
    try:
        with zipfile.ZipFile(path) as zf:
            xml = zf.read("word/document.xml")
    except (KeyError, zipfile.BadZipFile) as exc:
        raise CorpusError(f"{path.name}: not a readable .docx file ({exc})") from exc
    root = ElementTree.fromstring(xml)
    lines: list[str] = []
    for para in root.iter(f"{_W}p"):
        parts = []
        for node in para.iter():
            if node.tag == f"{_W}t" and node.text:
                parts.append(node.text)
            elif node.tag == f"{_W}tab":
                parts.append("\t")
        lines.append("".join(parts))
    return "\n".join(lines)


def read_text(path: Path) -> str:
    """The text a document's offsets refer to."""
    if path.suffix.lower() == ".docx":
        return docx_text(path)
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorpusError(f"{path.name}: not UTF-8 text ({exc}); convert it to UTF-8") from exc


def _entry(path: Path, raw: dict[str, object], index: int) -> Document:
    missing = [k for k in ("file", "title", "issuer", "date") if not raw.get(k)]
    if missing:
        raise CorpusError(f"manifest entry {index} lacks {', '.join(missing)}")
    name = str(raw["file"])
    if not name.lower().endswith(SUFFIXES):
        raise CorpusError(f"manifest entry {name!r}: only {', '.join(SUFFIXES)} files are supported")
    file_path = path / name
    if not file_path.is_file():
        raise CorpusError(f"manifest lists {name!r} but {file_path} does not exist")
    region = raw.get("region") or {}
    if not isinstance(region, dict):
        raise CorpusError(f"manifest entry {name!r}: region must be an object")
    return Document(
        file=name,
        title=str(raw["title"]),
        issuer=str(raw["issuer"]),
        doc_no=str(raw["doc_no"]) if raw.get("doc_no") else None,
        date=str(raw["date"]),
        level=str(raw.get("level") or ""),
        region={k: (str(region[k]) if region.get(k) else None) for k in ("province", "city", "county")},
        text=read_text(file_path),
    )


def load_corpus(corpus_dir: str | Path) -> list[Document]:
    """Read the manifest and every document it lists.

    :raises CorpusError: if the folder, the manifest or a listed file is missing or invalid.
    """
    path = Path(corpus_dir)
    manifest = path / "manifest.json"
    if not manifest.is_file():
        raise CorpusError(
            f"no manifest.json in corpus folder {path}; set HUINONG_CORPUS_DIR to a folder "
            "holding manifest.json and the documents it lists"
        )
    try:
        data = json.loads(manifest.read_text("utf-8"))
    except ValueError as exc:
        raise CorpusError(f"{manifest} is not valid JSON: {exc}") from exc
    entries = data.get("documents") if isinstance(data, dict) else data
    if not isinstance(entries, list) or not entries:
        raise CorpusError(f"{manifest} lists no documents (expected a 'documents' array)")
    docs = [_entry(path, raw, i) for i, raw in enumerate(entries)]
    names = [d.file for d in docs]
    if len(set(names)) != len(names):
        raise CorpusError(f"{manifest} lists a file twice")
    return docs


def corpus_hash(docs: list[Document]) -> str:
    """A content hash of the corpus: metadata and text of every document, in order."""
    digest = hashlib.sha256()
    for d in docs:
        meta = json.dumps(
            [d.file, d.title, d.issuer, d.doc_no, d.date, d.level, d.region],
            ensure_ascii=False,
            sort_keys=True,
        )
        digest.update(meta.encode("utf-8") + b"\0")
        digest.update(hashlib.sha256(d.text.encode("utf-8")).digest())
    return digest.hexdigest()
