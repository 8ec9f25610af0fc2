"""The ``nasbench`` command line: parsing, progress and exit codes; the logic lives in the library.

Exit codes: 0 success (also when the reader of stdout closes it early, as ``| head`` does),
2 bad input (one line on stderr, no traceback unless ``--debug``), 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from collections.abc import Sequence

from nasbench.cli import (
    _doctor_cmd,
    _latency_cmds,
    _search_cmd,
    _space_cmds,
    _study_cmds,
    _train_cmd,
)
from nasbench.cli._shared import StdoutClosed, silence_stdout
from nasbench.errors import NasbenchError

__all__ = ["main"]

_COMMAND_MODULES = [_space_cmds, _search_cmd, _study_cmds, _train_cmd, _latency_cmds, _doctor_cmd]


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit 2) instead of usage dumps."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"nasbench: error: {message} (see '{self.prog} --help')\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, one sub-command per registered command module."""
    parser = _Parser(prog="nasbench", description="Neural architecture search over one genome.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("--quiet", action="store_true", help="only warnings and results")
    parser.add_argument("--version", action="version", version=f"nasbench {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module in _COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    level = logging.DEBUG if args.debug else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("optuna", "ray", "filelock", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    try:
        code = int(args.handler(args) or 0)
        try:
            sys.stdout.flush()  # a reader that went away shows here, not as a message at interpreter exit
        except BrokenPipeError:
            silence_stdout()
        return code
    except StdoutClosed:  # e.g. 'nasbench describe x.json | head -1': the reader has all it wanted
        return 0
    except NasbenchError as exc:
        if args.debug:
            traceback.print_exc()
        sys.stderr.write(f"nasbench: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("nasbench: interrupted\n")
        return 130


def _version() -> str:
    from nasbench import __version__

    return __version__


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
