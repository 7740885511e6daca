"""Options shared by several commands: one vocabulary, old spellings kept as deprecated aliases.

``--channel-names`` = the names of a file's channels in order (``-`` skips a channel), ``--panel`` = a
model's marker vocabulary, ``--use`` = the subset of markers fed to the model. The old ``--markers``
still works where it meant one of these, with a one-line notice on standard error once the command
has succeeded.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable, Mapping

from marker_excite.atomic import check_outputs_apart

#: attribute of the parsed namespace that collects deprecation notices (printed by the CLI on success,
#: so that a failing command still prints exactly one line)
NOTICES = "_notices"


class _DeprecatedAlias(argparse.Action):
    """Stores into the new option's ``dest`` and records a one-line deprecation notice."""

    def __init__(self, option_strings, dest, new: str = "", **kwargs) -> None:
        self.new = new
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        notices = list(getattr(namespace, NOTICES, None) or [])
        notices.append(f"{parser.prog}: note: {option_string} is deprecated here; use {self.new}")
        setattr(namespace, NOTICES, notices)
        setattr(namespace, self.dest, values)


def add_option(parser, new: str, help: str, *, old: str | None = None, **kwargs) -> None:
    """Add ``new`` (e.g. ``--use``) to ``parser`` (or an argument group), and ``old`` (e.g. ``--markers``) as
    a hidden alias that prints a deprecation notice."""
    dest = new.lstrip("-").replace("-", "_")
    parser.add_argument(new, dest=dest, help=help, **kwargs)
    if old is not None:
        parser.add_argument(old, dest=dest, action=_DeprecatedAlias, new=new, help=argparse.SUPPRESS, **kwargs)


#: options whose value may start with ``-`` (a skipped first channel: ``--channel-names -,DAPI``)
LIST_OPTIONS = ("--channel-names", "--markers")


def join_list_values(argv: list[str]) -> list[str]:
    """``["--channel-names", "-,DAPI"]`` -> ``["--channel-names=-,DAPI"]`` so argparse does not take the
    value for an option (a value starting with ``-`` that holds a comma)."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] in LIST_OPTIONS and i + 1 < len(argv) and argv[i + 1].startswith("-") and "," in argv[i + 1]:
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


def add_weights_option(parser) -> None:
    """``--weights best|last``: which weights of a run directory a command uses."""
    parser.add_argument(
        "--weights",
        default="best",
        choices=("best", "last"),
        help="weights of a run directory: best (the epoch with the best validation mean F1 on all markers; "
        "default) or last (the final epoch; in the CPU reproduction usually better on marker subsets, see "
        "experiments/README.md)",
    )


def add_allow_unseen_option(parser) -> None:
    """``--allow-unseen``: feed markers that no training sample of the model had, which
    :func:`~marker_excite.contract.model_spec.check_seen` refuses otherwise (``predict``, ``quantify``,
    ``evaluate``, ``export``)."""
    parser.add_argument(
        "--allow-unseen",
        action="store_true",
        help="use markers that no training sample of the model had (refused by default: what they do to the "
        "output is unknown)",
    )


def check_outputs(
    outputs: Mapping[str, str | os.PathLike | None],
    *,
    data: Iterable[str | os.PathLike | None] = (),
    models: Iterable[str | os.PathLike | None] = (),
) -> None:
    """Before anything is written: refuse an output (option -> path; None = not given) that is, contains
    or sits inside an input -- ``data`` (image files, stores with their sample folders, ``store.h5:s1``)
    or ``models`` (the files of a run directory, an exported model's folder). See
    :func:`marker_excite.atomic.check_outputs_apart`."""
    from marker_excite.data.io import input_paths
    from marker_excite.inference.predictor import model_files

    inputs = [("the input", p) for d in data if d is not None for p in input_paths(d)]
    inputs += [("the input", p) for m in models if m is not None for p in model_files(m)]
    check_outputs_apart([(option, path) for option, path in outputs.items() if path is not None], inputs)
