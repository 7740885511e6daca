"""Using a trained model: forward pass, Predictor, whole stacks, evaluation on all subsets, preview, quantification.

Owns: the compiled softmax forward pass (``forward``); ``Predictor`` and its loaders, from a run or an
exported model (``predictor``); whole-stack prediction (``whole_stack``); evaluation on every marker subset
into tidy rows (``evaluation``); the tissue mask (``tissue``); ``predict --preview`` (``preview``); volume
fractions (``quantify``).

May import: everything below it: the basics, ``contract/``, ``data/``, ``layers/``, ``models/``,
``analysis/``, ``runs/``, ``sharing/``.
"""
