"""The one `covidct` command. Each subcommand lives in `covidct.commands.<name>`.

A command module defines HELP (one line), `add_arguments(parser)` and
`run(args) -> int`; it keeps heavy imports (torch) inside `run` so `covidct info`
starts fast. Errors are caught once, here.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from covidct import __version__
from covidct.errors import CovidCTError

COMMANDS = ("info", "convert", "synth", "train", "evaluate", "analyze", "demo", "track",
            "pacs")


def _get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="covidct",
        description="COVID-19 pneumonia analysis of chest CT (not a medical device).",
    )
    parser.add_argument("--version", action="version", version=f"covidct {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"covidct.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"covidct.commands.{name}":
                raise
            continue  # a command not built yet
        # argparse %-formats help strings (not descriptions): a literal % must be doubled
        command = sub.add_parser(name, help=module.HELP.replace("%", "%%"),
                                 description=module.HELP)
        module.add_arguments(command)
        command.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _get_parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    try:
        return int(args.run(args))
    except CovidCTError as exc:
        print(f"covidct {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("covidct: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of our output went away (`covidct info | head`)
        # stdout is gone: point it at devnull so the interpreter's final flush stays quiet
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # as a shell reports SIGPIPE
    except OSError as exc:  # a full disk, a folder gone mid-run: the machine, not the input
        where = f" {exc.filename}" if exc.filename else ""
        print(f"covidct {args.command}: error: could not write or read{where}: "
              f"{exc.strerror or exc}. Free space or fix the folder's permissions, then run "
              "again (with --overwrite where a folder holds partial outputs).", file=sys.stderr)
        return 1


def entry() -> NoReturn:  # pragma: no cover (exits the process)
    """The console script: main(), then a fast exit.

    After an analysis the interpreter's own finalization (torch's teardown, freeing the
    analysis' objects one by one) adds wall time that a user waits for and nothing needs:
    every output file is closed by then, so the standard streams and logging are flushed
    and the process exits at once with main()'s status.
    """
    code = main()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # reader gone, disk full, or stream closed
            pass
    logging.shutdown()
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    entry()
