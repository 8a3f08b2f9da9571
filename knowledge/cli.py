"""``python -m knowledge``: build the index, answer the batch contract, evaluate, calibrate.

\b
    python -m knowledge build                      # (re)build the index, progress on stderr
    python -m knowledge search --top-k 5 --jsonl   # batch contract, JSON lines in and out
    python -m knowledge ask "住院能先看病后交钱吗" --region 神木市
    python -m knowledge eval [--qa FILE] [--unanswerable FILE]
    python -m knowledge calibrate                  # refit data/answerability.json

Paths come from HUINONG_CORPUS_DIR, HUINONG_INSTANCE_DIR and HUINONG_EMBEDDING_MODEL
(see :mod:`knowledge.config`). Results go to stdout; progress and diagnostics to stderr.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from knowledge.config import KnowledgeConfig

__all__ = ["main"]


def _err(message: str) -> None:
    click.echo(message, err=True)


def _embedder(config: KnowledgeConfig, fake: bool):
    from knowledge.embedder import EmbedderError, HashEmbedder, load_embedder

    if fake:
        return HashEmbedder(dimension=256)
    try:
        return load_embedder(config.embedding_model, config.instance_dir, log=_err)
    except EmbedderError as exc:
        raise click.ClickException(str(exc)) from exc


def _open(config: KnowledgeConfig, fake: bool, rebuild: bool = False):
    from knowledge.base import KnowledgeBase
    from knowledge.corpus import CorpusError

    embedder = _embedder(config, fake)
    try:
        if rebuild:
            return KnowledgeBase.build(config.corpus_dir, config.index_dir, embedder, progress=True)
        return KnowledgeBase.open_or_build(
            config.corpus_dir, config.index_dir, embedder, progress=True, notify=_err
        )
    except CorpusError as exc:
        raise click.ClickException(str(exc)) from exc


_fake_option = click.option(
    "--fake-embedder", is_flag=True, help="Use the deterministic hash embedder (tests, no model)."
)


@click.group()
def main() -> None:
    """Policy-document retrieval for the huinong service."""


@main.command()
@_fake_option
def build(fake_embedder: bool) -> None:
    """Build the index from the corpus (always rebuilds)."""
    config = KnowledgeConfig.from_env()
    started = time.monotonic()
    kb = _open(config, fake_embedder, rebuild=True)
    s = kb.status()
    _err(
        f"built {s['passages']} passages from {s['documents']} documents into {config.index_dir} "
        f"in {time.monotonic() - started:.1f} s (model {s['model']})"
    )


@main.command()
@click.option("--top-k", type=click.IntRange(1, 50), default=5, show_default=True)
@click.option("--jsonl", is_flag=True, help="Read JSON lines on stdin, write JSON lines on stdout.")
@click.argument("question", required=False)
@_fake_option
def search(top_k: int, jsonl: bool, question: str | None, fake_embedder: bool) -> None:
    """The batch contract: {"id","question","region"?} in, {"id","answerable","passages"} out."""
    kb = _open(KnowledgeConfig.from_env(), fake_embedder)
    if not jsonl:
        if not question:
            raise click.UsageError("give a QUESTION or use --jsonl")
        res = kb.search(question, k=top_k)
        click.echo(
            json.dumps(
                {"answerable": res.answerable, "passages": [h.to_contract() for h in res.passages]},
                ensure_ascii=False,
            )
        )
        return
    out = sys.stdout
    for n, line in enumerate(sys.stdin, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            qid, text = item["id"], str(item["question"])
        except (ValueError, KeyError, TypeError) as exc:
            _err(f"line {n}: skipped, not a {{'id','question'}} object ({exc})")
            continue
        region = item.get("region") or None
        res = kb.search(text, region if isinstance(region, str) else None, k=top_k)
        row = {
            "id": qid,
            "answerable": bool(res.answerable),
            "passages": [h.to_contract() for h in res.passages],
        }
        out.write(json.dumps(row, ensure_ascii=False) + "\n")
        out.flush()


@main.command()
@click.argument("question")
@click.option("--region", default=None, help="The asker's region, e.g. 神木市.")
@click.option("--offset", default=0, show_default=True, help="Which passage to start from (更多).")
@_fake_option
def ask(question: str, region: str | None, offset: int, fake_embedder: bool) -> None:
    """Print the WeChat reply for one question (and the ranking on stderr)."""
    kb = _open(KnowledgeConfig.from_env(), fake_embedder)
    res = kb.search(question, region, k=5)
    for i, h in enumerate(res.passages, 1):
        _err(f"{i}. {h.score:.3f} {h.doc} {h.section} | {h.display[:60]}")
    _err(f"answerable={res.answerable} p={res.probability:.2f} reason={res.reason}")
    ans = kb.answer(question, region, offset)
    click.echo(ans.text)
    _err(f"[{len(ans.text.encode('utf-8'))} bytes, next_offset={ans.next_offset}]")


def _eval_paths(qa: str | None, unanswerable: str | None) -> tuple[Path, Path]:
    from knowledge.evaluate import default_eval_dir

    base = default_eval_dir()
    return Path(qa) if qa else base / "qa_dev.jsonl", Path(
        unanswerable
    ) if unanswerable else base / "unanswerable_dev.jsonl"


@main.command(name="eval")
@click.option(
    "--qa", "qa_path", default=None, help="Answerable questions (default ../shared/eval/qa_dev.jsonl)."
)
@click.option(
    "--unanswerable",
    "un_path",
    default=None,
    help="Unanswerable questions (default ../shared/eval/unanswerable_dev.jsonl).",
)
@click.option("--verbose", is_flag=True, help="List the questions each pipeline misses.")
@click.option("--no-rrf", is_flag=True, help="Skip the reciprocal-rank-fusion comparison row.")
@_fake_option
def eval_command(
    qa_path: str | None, un_path: str | None, verbose: bool, no_rrf: bool, fake_embedder: bool
) -> None:
    """hit@1/3/5, MRR, decline rates, passage length and latency for BM25, dense and full."""
    from knowledge.evaluate import FUSION_ALTERNATIVE, PIPELINES, evaluate, format_report, read_jsonl

    qa_file, un_file = _eval_paths(qa_path, un_path)
    for f in (qa_file, un_file):
        if not f.is_file():
            raise click.ClickException(f"{f} not found; pass --qa and --unanswerable")
    kb = _open(KnowledgeConfig.from_env(), fake_embedder)
    qa, un = read_jsonl(qa_file), read_jsonl(un_file)
    methods = list(PIPELINES) if no_rrf else [*PIPELINES, FUSION_ALTERNATIVE]
    reports = evaluate(kb, qa, un, methods)
    click.echo(format_report(reports, len(qa), len(un), verbose))
    m = kb.status()
    click.echo(
        f"index: {m['passages']} passages, {m['documents']} documents, model {m['model']}, built {m['built_at']}"
    )


@main.command()
@click.option(
    "--data", "data_path", default=None, help="Labelled questions (default data/calibration.jsonl)."
)
@click.option("--out", "out_path", default=None, help="Where to write (default data/answerability.json).")
@_fake_option
def calibrate(data_path: str | None, out_path: str | None, fake_embedder: bool) -> None:
    """Fit the answerability model on the project's own labelled questions."""
    from knowledge.calibrate import run

    kb = _open(KnowledgeConfig.from_env(), fake_embedder)
    click.echo(run(kb, data_path, out_path))
