"""``inceptionnet <command>``: a thin dispatch to ``commands.run``.

Every command prints user errors as one ``error: ...`` line and exits 2; ``--debug`` shows the
traceback instead.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .commands import COMMANDS, run


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="inceptionnet",
        description="The Inception family of image classifiers: models, analysis, training, export.",
        epilog="Run 'inceptionnet COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_) in COMMANDS.items():
        sub.add_parser(name, help=help_, add_help=False)
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0
    if argv[0] == "--version":
        from . import __version__

        print(__version__)
        return 0
    cmd = argv[0]
    if cmd not in COMMANDS:
        parser.print_usage(sys.stderr)
        print(f"error: unknown command {cmd!r}; choose one of {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    return run(cmd, argv[1:])


if __name__ == "__main__":
    sys.exit(main())
