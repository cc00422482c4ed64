"""``python -m scratchnn``: the command line (see ``scratchnn/cli.py``)."""
from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
