"""What every command shares: the parser, the output flags, stderr, one-line error reporting.

Exit status: 0 on success; 2 with a one-line `error: ...` on stderr for bad input of any kind
(flags, files, data, checkpoints, a diverged run); 130 after Ctrl-C; 1 for an internal error.
`--debug` shows the Python traceback instead. When the reader of stdout goes away
(`cnnlab summary | head -3`), the command stops without a message and exits 141 (128 + SIGPIPE),
as `cat` or `seq` killed by SIGPIPE do, so `set -o pipefail` sees the same as with them.
"""

import argparse
import json
import logging
import os
import sys
import warnings

from cnnlab.training.trainer import TrainingInterrupted


class UsageError(Exception):
    """A command-line usage error (argparse's), reported as one line."""


class Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)

    def command_names(self) -> list[str]:
        """The subcommands, in the order they were added."""
        return [name for action in self._actions
                if isinstance(action, argparse._SubParsersAction) for name in action.choices]


def add_command(commands, name, help, description, epilog=None):
    """A subcommand's parser; its description and epilog keep their line breaks."""
    return commands.add_parser(name, help=help, description=description, epilog=epilog,
                               formatter_class=argparse.RawDescriptionHelpFormatter)


def add_debug(parser) -> None:
    """The one `--debug` flag: show Python tracebacks instead of one-line errors."""
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks on errors")


def add_output_options(parser, json_help) -> None:
    """--json (with `json_help`), --quiet and --debug."""
    parser.add_argument("--json", action="store_true", help=json_help)
    parser.add_argument("--quiet", "-q", action="store_true",
                        help="no progress bars or log lines, only the result")
    add_debug(parser)


def stderr(line) -> None:
    print(line, file=sys.stderr, flush=True)


def emit_json(value) -> None:
    """Print `value` as one JSON object, compact enough to read (see `json_text`)."""
    print(json_text(value))


def json_text(value, indent="") -> str:
    """JSON with one item per line, except that a list of plain values (a confusion matrix's
    row, a shape) always takes one line, and an object of plain values one line when it fits
    in 100 columns: a K x K matrix takes K lines, not K * K."""
    if not isinstance(value, dict | list | tuple):
        return json.dumps(value)
    items = value.values() if isinstance(value, dict) else value
    one_line = json.dumps(value, separators=(", ", ": "))
    if not any(isinstance(item, dict | list | tuple) for item in items) and (
            not isinstance(value, dict) or len(indent) + len(one_line) <= 100):
        return one_line
    inner = indent + "  "
    if isinstance(value, dict):
        lines = [f"{inner}{json.dumps(key)}: {json_text(item, inner)}"
                 for key, item in value.items()]
        return "{\n" + ",\n".join(lines) + f"\n{indent}}}"
    lines = [inner + json_text(item, inner) for item in value]
    return "[\n" + ",\n".join(lines) + f"\n{indent}]"


def one_line(error) -> str:
    """An exception's message on one line (an OSError as "FILE: reason")."""
    if isinstance(error, OSError) and error.strerror:
        text = f"{error.filename}: {error.strerror}" if error.filename else error.strerror
    else:
        text = str(error) or type(error).__name__
    return " ".join(text.split())


def _show_warning(message, category, filename, lineno, file=None, line=None):
    stderr(f"warning: {one_line(message)}")


def run(parser, argv) -> int:
    """Parse `argv` with `parser`, call the command's `handler`, and return the exit status,
    every error reported as one line on stderr (or, with --debug, raised)."""
    debug = "--debug" in argv
    if debug:
        _log_to_stderr()
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            args = parser.parse_args(argv)
            if args.command is None:
                raise UsageError(f"give a command: {', '.join(parser.command_names())} "
                                 "(cnnlab --help lists them)")
            args.handler(args)
            sys.stdout.flush()  # a closed pipe shows here, not at the interpreter's exit
        return 0
    except BrokenPipeError:
        return _reader_gone()
    except UsageError as error:
        stderr(f"error: {one_line(error)}")
        return 2
    except TrainingInterrupted as error:
        stderr(f"{one_line(error)}; continue with: cnnlab train --out "
               f"{error.checkpoint.parent} --resume")
        return 130
    except KeyboardInterrupt:
        stderr("interrupted")
        return 130
    except (ValueError, OSError) as error:  # DatasetError and CheckpointError are ValueErrors
        if debug:
            raise
        stderr(f"error: {one_line(error)}")
        return 2
    except Exception as error:
        if debug:
            raise
        stderr(f"error: internal error: {type(error).__name__}: {one_line(error)} "
               "(run with --debug for the traceback)")
        return 1


def _log_to_stderr() -> None:
    """--debug: the library's DEBUG lines (for instance which BLAS path runs) on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("debug: %(name)s: %(message)s"))
    logger = logging.getLogger("cnnlab")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)


def _reader_gone() -> int:
    """stdout's reader has closed the pipe: point stdout at /dev/null (so Python's final flush
    finds nothing left to write) and return 141, the status of a process killed by SIGPIPE."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 128 + 13
