"""Network definitions: the functional UNet, HeMIS and the paper's model zoo, with their training pieces.

Owns: ``ModelConfig`` (``config``), the UNet's geometry (``geometry``), the builders (``unet``, ``hemis``),
the zoo's names and sizes (``zoo``), the losses (``losses``), F1 metrics (``metrics``) and mixed precision
(``precision``).

May import: the basics, ``contract/`` and ``layers/`` (its own layer; ``layers/`` never imports
``models/``); by the layering also ``data/`` and ``analysis/``.
"""
