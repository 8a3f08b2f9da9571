"""Entry point for ``python -m knowledge``."""

from knowledge.cli import main

if __name__ == "__main__":
    main()
