"""Numbers and figures from tidy result tables, with no TensorFlow.

Owns: the results table -- its columns, CSV reading and writing, the paper's "Rel. to" differences and
model-against-reference comparisons (``results``); the paper's statistical tests (``stats``); its figure
types and ``save_figure`` (``plots``).

May import: the basics and ``contract/``; by the layering also ``data/``, ``layers/``, ``models/`` (its own
layer; it uses none of them).
"""
