"""Training a model: the plan, the callbacks, the fit.

Owns: what a run will do -- split, patches, time per epoch (``plan``); the Keras callbacks -- validation,
progress, best weights, early stopping, TensorBoard, checkpoints (``callbacks``); ``train`` and
``dry_run`` (``trainer``).

May import: everything below it, up to ``inference/`` (validation scores whole slices as evaluation does).
"""
