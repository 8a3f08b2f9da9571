"""The layer rules of STYLE.md §5: every module's imports walked here, and the import
contracts of pyproject.toml ([tool.importlinter]: layers, third-party boundaries, no cycles)
checked by import-linter."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WEB = {"flask", "werkzeug", "wechatpy", "bot"}
DB = {"sqlmodel", "sqlalchemy"}
RETRIEVAL = {"jieba", "faiss", "sentence_transformers"}

RULES = {
    # package: forbidden top-level imports
    "handlers": WEB | DB | RETRIEVAL,
    "knowledge": WEB | DB | {"storage", "handlers"},
    "storage": WEB | RETRIEVAL | {"knowledge", "handlers"},
    "bot": DB | RETRIEVAL,
}
#: bot may wire storage/knowledge, but only these modules touch SQL directly.
BOT_DB_ALLOWED = {"bot/app.py"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(RULES))
def test_layer_rules(package):
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        forbidden = RULES[package]
        if rel in BOT_DB_ALLOWED:
            forbidden = forbidden - DB
        hits = _imports(path) & forbidden
        if hits:
            bad.append(f"{rel}: {sorted(hits)}")
    assert not bad, "layer rule broken:\n" + "\n".join(bad)


def test_import_contracts():
    """``lint-imports`` keeps every contract in pyproject.toml (its report is the failure message)."""
    lint_imports = Path(sys.executable).with_name("lint-imports")
    assert lint_imports.exists(), "import-linter is not installed: pip install -e '.[dev]'"
    run = subprocess.run(
        [str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, "import contracts broken:\n" + run.stdout + run.stderr
