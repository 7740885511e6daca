"""A run directory and what it holds.

``directory`` (file names, creation rules, the training lock, config files), ``checkpoint`` (weights
files and the resume checkpoint), ``log`` (``log.csv``), ``environment`` (``versions.json``: software
versions and devices), ``resume`` (in which settings a stored run may differ when it is met again) and
``run`` (``TrainConfig`` and the read-back ``Run``). May import the basics, ``contract``, ``data`` and
``models``.
"""
