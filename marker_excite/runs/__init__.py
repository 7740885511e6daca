"""A run directory and what it holds, read and written in one place.

Owns: the run directory's file names, creation rules, resume checks, the training lock, checkpoints,
``log.csv``, devices and versions (``directory``); the training settings ``TrainConfig`` with their
presets and the read-back :class:`~marker_excite.runs.run.Run` (``run``).

May import: the basics, the package root (``__version__``), ``contract/``, ``data/``, ``layers/``,
``models/``, ``analysis/``.
"""
