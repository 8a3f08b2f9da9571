"""Command line: ``eval`` prints the intake figures; ``classify --jsonl`` is the batch contract.

    python -m handlers.understanding eval ../shared/eval/reports_dev.jsonl
    python -m handlers.understanding classify --jsonl < in.jsonl > out.jsonl

``classify --jsonl`` reads ``{"id", "text"}`` lines and writes ``{"id", "intent", "risk_types",
"urgent"}`` lines (plus ``also_question``), one per input line, in order. A line that cannot be
read is reported on stderr with its number, skipped, and the exit status is 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from . import classify
from .evaluate import evaluate, read_jsonl


def _eval(args: argparse.Namespace) -> int:
    try:
        with open(args.path, encoding="utf-8") as f:
            rows = read_jsonl(f)
    except OSError as exc:
        print(f"error: cannot read {args.path}: {exc.strerror}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"error: {args.path}: {exc}", file=sys.stderr)
        return 2
    missing = [i for i, r in enumerate(rows, 1) if "text" not in r]
    if missing:
        print(f'error: {args.path}: lines without "text": {missing[:10]}', file=sys.stderr)
        return 2
    classify("预热")  # compile the vocabulary outside the timed loop
    print(evaluate(rows).report())
    return 0


def _classify(args: argparse.Namespace) -> int:
    if not args.jsonl:
        text = " ".join(args.text) if args.text else sys.stdin.read()
        u = classify(text)
        print(json.dumps(u.to_json(), ensure_ascii=False, indent=2))
        return 0
    status = 0
    out = sys.stdout
    for lineno, line in enumerate(sys.stdin, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            text = row["text"]
            if not isinstance(text, str):
                raise TypeError("text is not a string")
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            print(f"error: line {lineno}: {exc}", file=sys.stderr)
            status = 1
            continue
        u = classify(text)
        result = {
            "id": row.get("id"),
            "intent": u.intent.value,
            "risk_types": [r.value for r in u.risk_types] if u.is_report else [],
            "urgent": u.urgent,
            "also_question": u.also_question,
        }
        out.write(json.dumps(result, ensure_ascii=False) + "\n")
        out.flush()
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m handlers.understanding", description=__doc__.splitlines()[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_eval = sub.add_parser("eval", help="print intake figures and misclassified lines for a gold JSONL file")
    p_eval.add_argument("path")
    p_eval.set_defaults(func=_eval)
    p_cls = sub.add_parser("classify", help="classify messages")
    p_cls.add_argument(
        "--jsonl", action="store_true", help='read {"id","text"} lines on stdin, write one result per line'
    )
    p_cls.add_argument("text", nargs="*", help="a message to explain (without --jsonl)")
    p_cls.set_defaults(func=_classify)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:  # piped into head: stop quietly, without a traceback at exit
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
