"""One module per CLI subcommand. Each defines ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int``; :mod:`marker_excite.cli` discovers them through ``COMMANDS`` below.

Owns: parsing the command line and printing; the work itself is library code in the packages below.

May import: every package (with ``cli`` and ``demo`` this is the top layer); only ``cli`` imports it.
"""

#: subcommand name -> module name inside this package (kept in the order shown by ``--help``).
COMMANDS: dict[str, str] = {
    "synth": "synth",
    "import": "import_files",
    "train": "train",
    "evaluate": "evaluate",
    "predict": "predict",
    "quantify": "quantify",
    "export": "export",
    "info": "info",
    "store": "store",
    "compare": "compare",
}

#: subcommands that never import TensorFlow (the others import it first, quietly: ``tf_quiet``)
WITHOUT_TENSORFLOW: frozenset[str] = frozenset({"synth", "import", "store"})
