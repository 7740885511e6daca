"""The ``marker-excite`` command: a thin dispatcher over :mod:`marker_excite.commands`.

Errors caused by input (unknown markers, bad files, existing outputs, ...) and a full disk are printed
as one line ``marker-excite <command>: error: <message>`` with exit status 2; nothing else is printed
(TensorFlow's C++ start-up lines are removed: :mod:`marker_excite.tf_quiet`).
Ctrl-C (exit 130) and SIGTERM (exit 143, how cluster schedulers stop jobs) both unwind normally, so
every writer removes its temporary files and no partial output is left.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading
from collections.abc import Sequence

from marker_excite import __version__
from marker_excite.commands import COMMANDS, WITHOUT_TENSORFLOW
from marker_excite.commands.options import NOTICES, join_list_values
from marker_excite.errors import UserInputError, is_disk_full


class Terminated(KeyboardInterrupt):
    """SIGTERM received: raised in the main thread so that cleanup runs as for Ctrl-C."""


def _terminate(signum, frame) -> None:
    raise Terminated()


def _load(module: str):
    return importlib.import_module(f"marker_excite.commands.{module}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="marker-excite",
        description="Train and apply one segmentation network that works with any subset of fluorescence markers.",
    )
    parser.add_argument("--version", action="version", version=f"marker_excite {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, module_name in COMMANDS.items():
        module = _load(module_name)
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = join_list_values(list(sys.argv[1:] if argv is None else argv))
    args = parser.parse_args(argv)
    args.argv = argv  # the command line, for commands that start themselves again (`compare --workers`)

    if args.command not in WITHOUT_TENSORFLOW:
        from marker_excite.tf_quiet import import_tensorflow

        import_tensorflow()  # now, without its C++ start-up lines, so an error stays the only line
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main else None
    try:
        status = int(args._run(args) or 0)
        for notice in getattr(args, NOTICES, None) or ():
            print(notice, file=sys.stderr)
        return status
    except (UserInputError, FileExistsError, FileNotFoundError, PermissionError, IsADirectoryError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"marker-excite {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except OSError as exc:  # a full disk wherever it strikes (the writers' temporaries are removed by then)
        if not is_disk_full(exc):
            raise
        where = f" (writing {exc.filename})" if exc.filename else ""
        print(f"marker-excite {args.command}: error: no space left on device{where}", file=sys.stderr)
        return 2
    except Terminated:
        print(f"marker-excite {args.command}: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print(f"marker-excite {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
