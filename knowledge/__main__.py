"""``python -m knowledge``: the same commands as ``huinong knowledge``."""

from knowledge.cli import main

if __name__ == "__main__":
    main(prog_name="python -m knowledge")
