"""What every command shares: the parser, the output flags, stderr, one-line error reporting.

Exit status: 0 on success; 2 with a one-line `error: ...` on stderr for bad input of any kind
(flags, files, data, checkpoints, a diverged run); 130 after Ctrl-C; 1 for an internal error.
`--debug` shows the Python traceback instead.
"""

import argparse
import json
import sys
import warnings

from cnnlab.training.trainer import TrainingInterrupted


class UsageError(Exception):
    """A command-line usage error (argparse's), reported as one line."""


class Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


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
    print(json.dumps(value, indent=2))


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
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            args = parser.parse_args(argv)
            if args.command is None:
                raise UsageError("give a command: train, evaluate, predict, plot, summary, viz "
                                 "or compare (cnnlab --help lists them)")
            args.handler(args)
        return 0
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
