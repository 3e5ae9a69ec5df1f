"""``python -m app.sandbox``: the same as ``bunsync sandbox``."""

from __future__ import annotations

import argparse
import sys

from app.sandbox.cli import configure_parser, run


def main() -> int:
    """Parse the flags and run the sandbox."""
    parser = argparse.ArgumentParser(prog="python -m app.sandbox")
    configure_parser(parser)
    return run(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
