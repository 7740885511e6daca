"""Data: from image files to training batches, with no TensorFlow outside the tf.data wrapper.

Owns: ``Sample`` and the paper's classes (``sample``); the HDF5 sample store (``store``); lazy volume
readers and writers of every file format (``io``, ``formats``, ``volume``, ``tiff_io``, ``hdf5_io``,
``zarr_io``, ``bioio_io``, ``writers``, ``sample_files``); resampling (``resample``); channel statistics
and standardisation (``stats``); the synthetic phantom (``synthetic``, ``phantom/``, ``informativeness``);
folds (``folds``); tiling (``tiling``) and the batch pipeline (``pipeline``).

May import: the basics and ``contract/``; by the layering also ``layers/``, ``models/``, ``analysis/``
(its own layer; it uses none of them).
"""
