"""``python -m handlers.understanding``: the same commands as ``huinong understanding``.

    python -m handlers.understanding eval ../shared/eval/reports_dev.jsonl
    python -m handlers.understanding classify --jsonl < in.jsonl > out.jsonl
"""

from .cli import main

if __name__ == "__main__":
    main(prog_name="python -m handlers.understanding")
