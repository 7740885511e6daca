"""Data: samples, the HDF5 store, file readers/writers, the synthetic phantom, tiling and tf.data."""
