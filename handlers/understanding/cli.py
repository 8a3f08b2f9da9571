"""The ``understanding`` command group: ``classify`` (the batch contract) and ``eval``.

Registered as ``huinong understanding``; ``python -m handlers.understanding`` runs the same group.

``classify --jsonl`` reads ``{"id", "text"}`` lines and writes ``{"id", "intent", "risk_types",
"urgent"}`` lines (plus ``also_question``), one per input line, in order. A line that cannot be
read is reported on stderr with its number, skipped, and the exit status is 1. These formats are
a contract: keep them byte for byte.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable

import click

from .evaluate import evaluate, read_jsonl
from .rules import classify

__all__ = ["main"]


def _quiet_on_broken_pipe(func: Callable[..., None]) -> Callable[..., None]:
    """Piped into ``head``: stop quietly with status 0, without a traceback at exit."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs) -> None:
        try:
            func(*args, **kwargs)
        except BrokenPipeError:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            raise click.exceptions.Exit(0) from None

    return wrapper


@click.group("understanding", context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Message understanding: intent, risk, urgency.

    Tells a report from a question, files it under risk types and flags urgency with the same rules the WeChat edge uses (no model, well under a millisecond per message).
    Also available as "python -m handlers.understanding".

    \b
    Examples:
      huinong understanding classify 房子昨晚塌了一间 娃没地方住
      huinong understanding classify --jsonl < messages.jsonl > results.jsonl
      huinong understanding eval ../shared/eval/reports_dev.jsonl
    """


@main.command("classify")
@click.option(
    "--jsonl", is_flag=True, help='Read {"id","text"} lines on stdin, write one result line per input line.'
)
@click.argument("text", nargs=-1)
@_quiet_on_broken_pipe
def classify_command(jsonl: bool, text: tuple[str, ...]) -> None:
    """Classify messages: intent, risk types, urgency.

    Without --jsonl: classify TEXT (the words joined by spaces; standard input when none is given)
    and print the full result as indented JSON.

    With --jsonl (the batch contract): each input line {"id", "text"} gives one output line
    {"id", "intent", "risk_types", "urgent", "also_question"}, in order. A line that cannot be
    read is reported on stderr with its number and skipped; the exit status is then 1.

    \b
    Examples:
      huinong understanding classify 我爸脑梗住院了 押金交不起
      echo '{"id": 1, "text": "小额贷款能贷多少"}' | huinong understanding classify --jsonl
    """
    if not jsonl:
        message = " ".join(text) if text else sys.stdin.read()
        u = classify(message)
        print(json.dumps(u.to_json(), ensure_ascii=False, indent=2))
        return
    status = 0
    out = sys.stdout
    for lineno, line in enumerate(sys.stdin, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            message = row["text"]
            if not isinstance(message, str):
                raise TypeError("text is not a string")
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            print(f"error: line {lineno}: {exc}", file=sys.stderr)
            status = 1
            continue
        u = classify(message)
        result = {
            "id": row.get("id"),
            "intent": u.intent.value,
            "risk_types": [r.value for r in u.risk_types] if u.is_report else [],
            "urgent": u.urgent,
            "also_question": u.also_question,
        }
        out.write(json.dumps(result, ensure_ascii=False) + "\n")
        out.flush()
    if status:
        raise click.exceptions.Exit(status)


@main.command("eval")
@click.argument("path")
@_quiet_on_broken_pipe
def eval_command(path: str) -> None:
    """Score classification on a gold JSONL file.

    Prints the intake figures and the misclassified lines. Each line of PATH holds "text" and the expected "is_report", "risk_types" and "urgent".
    The figures: intent accuracy (report vs not), urgent recall and precision, risk-type
    micro-F1 and latency per message. Exit status 2 when PATH cannot be read.

    \b
    Example:
      huinong understanding eval ../shared/eval/reports_dev.jsonl
    """
    try:
        with open(path, encoding="utf-8") as f:
            rows = read_jsonl(f)
    except OSError as exc:
        print(f"error: cannot read {path}: {exc.strerror}", file=sys.stderr)
        raise click.exceptions.Exit(2) from None
    except ValueError as exc:
        print(f"error: {path}: {exc}", file=sys.stderr)
        raise click.exceptions.Exit(2) from None
    missing = [i for i, r in enumerate(rows, 1) if "text" not in r]
    if missing:
        print(f'error: {path}: lines without "text": {missing[:10]}', file=sys.stderr)
        raise click.exceptions.Exit(2)
    classify("预热")  # compile the vocabulary outside the timed loop
    print(evaluate(rows).report())
