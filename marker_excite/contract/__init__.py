"""What a model and its inputs are, with no TensorFlow: the contract every stage reads.

Owns: the marker panel, marker subsets and their names (``markers``); the model contract -- ``ModelSpec``
(panel, classes, tile sizes, pixel size, normalisation), the tensor signature, the model card and
``plan_channels`` (a stack's channels -> the panel) -- (``model_spec``).

May import: the basics (``errors``, ``config``, ``atomic``, ``progress``, ``tf_quiet``, ``presets``) only.
"""
