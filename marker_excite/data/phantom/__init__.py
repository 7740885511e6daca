"""Building blocks of the synthetic bone-marrow phantom (public entry: :mod:`marker_excite.data.synthetic`).

* :mod:`.fields`      FFT-based Gaussian random fields (band-pass, low-pass, 2D and 3D).
* :mod:`.anatomy`     tissue / bone / out-of-tissue layout, the sinusoid network and the arteries.
* :mod:`.cells`       cells rendered from random impulse images (nuclei, stromal cells, off-target cells).
* :mod:`.markers`     the five markers' noise-free signals from anatomy and cells.
* :mod:`.acquisition` staining gain, background, autofluorescence, blur, depth decay, noise -> uint16.
"""
