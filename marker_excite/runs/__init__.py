"""A run directory and what it holds, read and written in one place.

Owns: ``directory`` (file names, creation rules, the training lock, config files), ``checkpoint`` (weights
files and the resume checkpoint), ``log`` (``log.csv``), ``environment`` (``versions.json``: software
versions and devices), ``resume`` (in which settings a stored run may differ when it is met again) and
``run`` (``TrainConfig`` and the read-back :class:`~marker_excite.runs.run.Run`).

May import: the basics, the package root (``__version__``), ``contract/``, ``data/``, ``layers/``,
``models/``, ``analysis/``.
"""
