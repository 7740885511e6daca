"""What a model and its inputs are, with no TensorFlow: the contract every stage reads.

Owns: the marker panel, marker subsets and their names (``markers``); the model contract -- ``ModelSpec``
(panel, classes, tile sizes, pixel size, normalisation, name, config and where the model came from), the
tensor signature, the model card (the spec's serialised form) and ``plan_channels`` (a stack's channels ->
the panel) -- (``model_spec``); ``Provenance``: training run, samples, markers seen, software
(``provenance``).

May import: the basics (``errors``, ``config``, ``atomic``, ``progress``, ``tf_quiet``, ``presets``) only.
"""
