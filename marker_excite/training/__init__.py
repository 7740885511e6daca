"""Training a model: the shared preparation, the plan, the callbacks, the fit.

Owns: the checks and set-up shared by ``train`` and ``dry_run`` -- configs, panels, split, plan, data
sources, compiled model (``setup``); what a run will do -- split, patches, time per epoch (``plan``); the
Keras callbacks -- validation, progress, best weights, early stopping, TensorBoard, checkpoints
(``callbacks``); ``train`` and ``dry_run`` (``trainer``).

May import: everything below it, up to ``inference/`` (validation scores whole slices as evaluation does).
"""
