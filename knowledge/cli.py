"""The ``knowledge`` command group: build the index, answer the batch contract, evaluate, calibrate.

Registered as ``huinong knowledge``; ``python -m knowledge`` runs the same group. The batch
contract ``python -m knowledge search --top-k 5 --jsonl`` is judged: keep its options and its
JSON lines byte for byte.

Paths come from HUINONG_CORPUS_DIR, HUINONG_INSTANCE_DIR and HUINONG_EMBEDDING_MODEL
(see :mod:`knowledge.config`). Results go to stdout; progress and diagnostics to stderr.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from knowledge.base import KnowledgeBase
from knowledge.calibrate import run as run_calibration
from knowledge.config import KnowledgeConfig
from knowledge.corpus import CorpusError
from knowledge.embedder import EmbedderError, HashEmbedder, load_embedder
from knowledge.evaluate import (
    FUSION_ALTERNATIVE,
    PIPELINES,
    default_eval_dir,
    evaluate,
    format_report,
    read_jsonl,
)

__all__ = ["main"]


def _err(message: str) -> None:
    click.echo(message, err=True)


def _embedder(config: KnowledgeConfig, fake: bool):
    if fake:
        return HashEmbedder(dimension=256)
    try:
        return load_embedder(config.embedding_model, config.instance_dir, log=_err)
    except EmbedderError as exc:
        raise click.ClickException(str(exc)) from exc


def _open(config: KnowledgeConfig, fake: bool, rebuild: bool = False):
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
    "--fake-embedder",
    is_flag=True,
    help="Use the deterministic hash embedder instead of the model (tests; an index built with it "
    "differs from the real one).",
)


@click.group("knowledge", context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Policy questions: search, answer, evaluate.

    Build the search index, search it, answer as the WeChat edge does, evaluate, calibrate.
    Paths come from HUINONG_CORPUS_DIR (default: the bundled corpus), HUINONG_INSTANCE_DIR
    (default ./instance; the index is in its index/ folder) and HUINONG_EMBEDDING_MODEL
    (default: the bundled multilingual-e5-small). Results go to standard output; progress
    and diagnostics to standard error. Every command except build builds the index first
    when it is missing or stale. Also available as "python -m knowledge".

    \b
    Examples:
      huinong knowledge search 小额信贷最多贷多少
      huinong knowledge search --top-k 5 --jsonl < questions.jsonl
      huinong knowledge ask "住院能先看病后交钱吗" --region 神木市
      huinong knowledge eval
    """


@main.command()
@_fake_option
def build(fake_embedder: bool) -> None:
    """Rebuild the search index, even if up to date.

    Ingests the corpus, then builds the BM25 and vector index; progress on standard error.
    "huinong build-index --if-needed" does the same from the service's settings and skips
    an index that is up to date.
    """
    config = KnowledgeConfig.from_env()
    started = time.monotonic()
    kb = _open(config, fake_embedder, rebuild=True)
    s = kb.status()
    _err(
        f"built {s['passages']} passages from {s['documents']} documents into {config.index_dir} "
        f"in {time.monotonic() - started:.1f} s (model {s['model']})"
    )


@main.command()
@click.option(
    "--top-k", type=click.IntRange(1, 50), default=5, show_default=True, help="Passages per question."
)
@click.option("--jsonl", is_flag=True, help="Read JSON lines on stdin, write JSON lines on stdout.")
@click.argument("question", required=False)
@_fake_option
def search(top_k: int, jsonl: bool, question: str | None, fake_embedder: bool) -> None:
    """Search passages (the --jsonl batch contract).

    Searches the policy passages for QUESTION, or for a batch of JSON lines. With QUESTION: print one JSON object {"answerable", "passages"}.

    With --jsonl (the batch contract): each input line {"id", "question", "region"?} gives one
    output line {"id", "answerable", "passages"}, in order; each passage is {"doc", "section",
    "text", "start", "end", "score"}, quoted exactly from the document. An unreadable line is
    reported on standard error and skipped.

    \b
    Examples:
      huinong knowledge search 小额信贷最多贷多少
      echo '{"id": "q1", "question": "小额信贷最多贷多少"}' | huinong knowledge search --top-k 5 --jsonl
    """
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
    """Print the WeChat reply to one question.

    The reply to QUESTION on standard output, the ranking on standard error.

    \b
    Example:
      huinong knowledge ask "住院能先看病后交钱吗" --region 神木市
    """
    kb = _open(KnowledgeConfig.from_env(), fake_embedder)
    res = kb.search(question, region, k=5)
    for i, h in enumerate(res.passages, 1):
        _err(f"{i}. {h.score:.3f} {h.doc} {h.section} | {h.display[:60]}")
    _err(f"answerable={res.answerable} p={res.probability:.2f} reason={res.reason}")
    ans = kb.answer(question, region, offset)
    click.echo(ans.text)
    _err(f"[{len(ans.text.encode('utf-8'))} bytes, next_offset={ans.next_offset}]")


def _eval_paths(qa: str | None, unanswerable: str | None) -> tuple[Path, Path]:
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
    """Measure retrieval: hit@k, MRR, declines, latency.

    On labelled questions, compares BM25 alone, dense vectors alone, the full pipeline and (unless --no-rrf)
    reciprocal-rank fusion: hit@1/3/5, MRR, decline rates, passage length and latency.

    \b
    Example:
      huinong knowledge eval --qa qa.jsonl --unanswerable unanswerable.jsonl --verbose
    """
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
    """Refit the answerability model.

    Fits it on the project's own labelled questions and writes the fitted model (default data/answerability.json in the package), which decides
    when a search declines to answer.
    """
    kb = _open(KnowledgeConfig.from_env(), fake_embedder)
    click.echo(run_calibration(kb, data_path, out_path))
