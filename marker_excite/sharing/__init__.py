"""Models for other labs: a trained run as a SavedModel or a bioimage.io package.

Owns: the SavedModel export with its model card (``savedmodel``), the op allow-list checked before an
exported model is loaded (``op_allowlist``, ``export_ops.json``), bioimage.io packages (``bioimageio``).

May import: everything below it: the basics, ``contract/``, ``data/``, ``layers/``, ``models/``,
``analysis/``, ``runs/``.
"""
