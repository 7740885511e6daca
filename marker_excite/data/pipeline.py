"""tf.data input pipeline: patches of annotated slices with marker availability and class labels.

Each element is ``({"image": [H, W, K] float32, "availability": [K] float32}, label [h, w] int32)``
for the model's marker panel (K markers) and an ``H -> h`` network (e.g. 572 -> 388):

* every annotated slice of every sample is tiled with :class:`~marker_excite.data.tiling.TileLayout`;
  one element per output tile, each exactly once per pass (in :func:`patch_index` order when not
  shuffled, in a random order seeded by ``(seed, pass)`` otherwise; batches may mix samples; the last
  partial batch of a pass is kept);
* channels are mapped to the panel BY NAME (:func:`~marker_excite.contract.model_spec.plan_channels`, as in
  inference); each channel is standardised with its sample's stored mean
  and std BEFORE zero padding; markers a sample lacks -- or that ``marker_panels`` removes from it, or
  that ``subset`` does not give the model -- are zero channels with availability 0;
* labels: 0 background, ``c`` for the c-th entry of ``classes`` (the later class wins on overlap);
* ``augment``: one of the 8 rotations / reflections of the square (random transpose and flips), the
  same for image and label; ``intensity``: every channel of a patch multiplied by its own random gain,
  log-uniform in ``[1 / (1 + intensity), 1 + intensity]`` (drawn from a stream of its own, so the
  rotations and reflections stay those of ``augment`` alone).

Decoded, standardised, padded slices are cached in memory across epochs when they fit in
``cache_bytes``; otherwise slices are streamed in shuffled groups that fit, each read once per pass.

Seeding, the only one: pass ``p`` of a stream seeded ``s`` is ordered (and augmented) by ``(s, p)``;
training epoch ``e`` of a run seeded ``seed`` is the stream seeded :func:`epoch_seed` ``(seed, e)``
(:func:`epoch_dataset`), so an epoch's batches depend on ``(seed, e)`` only, never on earlier epochs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice

import numpy as np

from marker_excite.contract.markers import MarkerPanel
from marker_excite.contract.model_spec import AVAILABILITY, IMAGE, plan_channels, tensor_shapes
from marker_excite.data.stats import standardise
from marker_excite.data.store import SampleInfo, SampleStore
from marker_excite.data.tiling import TileLayout
from marker_excite.errors import UserInputError

#: Default memory budget for cached slices (bytes).
DEFAULT_CACHE_BYTES = 2 * 1024**3
#: Batches of a training run's dataset prepared ahead of the training step (:func:`epoch_dataset`).
EPOCH_PREFETCH = 4


def patch_index(
    store: SampleStore | str | os.PathLike, samples: Sequence[str], output_size: int
) -> list[tuple[str, int, int, int]]:
    """Every training/evaluation patch as ``(sample, z, y0, x0)``: annotated slices x output tiles.

    ``(y0, x0)`` is the origin of the output tile in slice coordinates; the input tile is centred on it.
    """
    with _opened(store) as st:
        out: list[tuple[str, int, int, int]] = []
        for name in samples:
            info = st.info(name)
            layout = TileLayout(info.shape_zyx[1:], output_size, output_size)
            out.extend((name, z, y0, x0) for z in info.annotated_slices for (y0, x0) in layout.origins)
        return out


def class_pixel_counts(
    store: SampleStore | str | os.PathLike, samples: Sequence[str], classes: Sequence[str]
) -> np.ndarray:
    """Voxel counts ``[1 + C]`` (background first, counted per voxel) over the annotated slices of ``samples``."""
    with _opened(store) as st:
        total = np.zeros(1 + len(classes), dtype=np.int64)
        for name in samples:
            total += st.info(name).counts_for(classes)
        return total


@dataclass(frozen=True)
class _SamplePlan:
    """How one sample's channels become the model's K input channels."""

    name: str
    layout: TileLayout
    source: np.ndarray  # (K,) sample channel feeding each panel channel, -1 = zero channel
    availability: np.ndarray  # (K,) float32
    mean: np.ndarray  # (K,) float64, the sample's stored statistics
    std: np.ndarray  # (K,) float64
    class_names: tuple[str, ...]  # the sample's stored class name for each selected class


class PatchSource:
    """Python-side producer of pipeline elements: seeded passes over all patches (see module docs)."""

    def __init__(
        self,
        store: SampleStore,
        samples: Sequence[str],
        *,
        panel: MarkerPanel,
        classes: Sequence[str],
        input_size: int,
        output_size: int,
        shuffle: bool,
        augment: bool = False,
        marker_panels: Mapping[str, Sequence[str]] | None = None,
        subset: Sequence[int] | None = None,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        intensity: float = 0.0,
    ) -> None:
        if not samples:
            raise UserInputError("no samples given to the data pipeline")
        if len(set(samples)) != len(samples):
            raise UserInputError(f"sample listed twice in {list(samples)}")
        if not classes:
            raise UserInputError("give at least one class (e.g. sinusoids)")
        self.store, self.panel = store, panel
        self.classes = tuple(classes)
        self.input_size, self.output_size = int(input_size), int(output_size)
        self.shuffle, self.augment = bool(shuffle), bool(augment)
        if not intensity >= 0:
            raise UserInputError(f"intensity augmentation must be >= 0, got {intensity}")
        self.intensity = float(intensity)
        self.cache_bytes = int(cache_bytes)
        given = _check_subset(subset, panel)
        panels = dict(marker_panels or {})
        unknown = sorted(set(panels) - set(store.names()))
        if unknown:
            raise UserInputError(f"marker_panels names sample(s) not in the store: {', '.join(unknown)}")
        self.plans = [self._plan(store.info(n), panels.get(n), given) for n in samples]
        self.index = [
            (i, z, t)
            for i, p in enumerate(self.plans)
            for z in store.info(p.name).annotated_slices
            for t in range(len(p.layout))
        ]
        if not self.index:
            raise UserInputError(f"samples {', '.join(samples)} have no annotated slices")
        self._cache: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        keys = sorted({(i, z) for i, z, _ in self.index})
        self._slice_bytes = {k: self._bytes(self.plans[k[0]]) for k in keys}
        self.fits_in_cache = sum(self._slice_bytes.values()) <= self.cache_bytes

    def _plan(self, info: SampleInfo, keep: Sequence[str] | None, given: np.ndarray) -> _SamplePlan:
        channels = plan_channels(info.markers, self.panel, keep=keep, given=np.flatnonzero(given), sample=info.name)
        source = channels.source
        mean = np.array([info.mean[s] if s >= 0 else 0.0 for s in source], dtype=np.float64)
        sd = np.array([info.std[s] if s >= 0 else 1.0 for s in source], dtype=np.float64)
        class_names = tuple(info.classes[info.class_index(c)] for c in self.classes)
        layout = TileLayout(info.shape_zyx[1:], self.input_size, self.output_size)
        return _SamplePlan(info.name, layout, source, channels.availability, mean, sd, class_names)

    def _bytes(self, plan: _SamplePlan) -> int:
        (py, px), (cy, cx) = plan.layout.padded_shape_yx, plan.layout.covered_yx
        copies = 2 if self.augment else 1  # + transposed copies for cheap rotations
        return 4 * copies * (py * px * self.panel.size + cy * cx)

    @property
    def n_patches(self) -> int:
        return len(self.index)

    def slice_arrays(self, sample_i: int, z: int) -> tuple[np.ndarray, np.ndarray]:
        """Unpadded slice ``z`` of sample ``sample_i``: the standardised image ``[K, Y, X]`` float32
        (zero channels for markers it does not give) and its label map ``[Y, X]`` int32."""
        plan = self.plans[sample_i]
        raw, labels = self.store.read_slice(plan.name, z)
        image = np.zeros((self.panel.size, *raw.shape[1:]), dtype=np.float32)
        given = np.flatnonzero(plan.source >= 0)
        image[given] = standardise(raw[plan.source[given]], plan.mean[given], plan.std[given])
        label = np.zeros(raw.shape[1:], dtype=np.int32)
        for c, cls in enumerate(plan.class_names, start=1):
            label[labels[cls] != 0] = c
        return image, label

    @property
    def slices(self) -> list[tuple[int, int]]:
        """Every annotated slice as ``(sample index, z)``, in sample order."""
        return list(dict.fromkeys((i, z) for i, z, _ in self.index))

    def load_slice(self, sample_i: int, z: int) -> tuple[np.ndarray, ...]:
        """Padded standardised image ``[Yp, Xp, K]`` float32 and padded label map ``[Yc, Xc]`` int32
        (with ``augment``, followed by contiguous transposed copies of both)."""
        key = (sample_i, z)
        if key in self._cache:
            return self._cache[key]
        plan = self.plans[sample_i]
        image, label = self.slice_arrays(sample_i, z)
        padded = np.ascontiguousarray(plan.layout.pad(image).transpose(1, 2, 0))  # standardised, then padded
        item: tuple[np.ndarray, ...] = (padded, plan.layout.pad_output(label))
        if self.augment:
            item += tuple(np.ascontiguousarray(a.swapaxes(0, 1)) for a in item)
        if self.fits_in_cache:
            self._cache[key] = item
        return item

    def _pass_groups(self, rng: np.random.Generator) -> list[list[tuple[int, int, int]]]:
        """Patches of one pass in groups; every slice of a group is loaded once for the group."""
        if self.fits_in_cache:
            order = rng.permutation(len(self.index)) if self.shuffle else np.arange(len(self.index))
            return [[self.index[i] for i in order]]
        by_slice: dict[tuple[int, int], list[tuple[int, int, int]]] = {}
        for item in self.index:
            by_slice.setdefault(item[:2], []).append(item)
        keys = list(by_slice)
        if self.shuffle:
            keys = [keys[i] for i in rng.permutation(len(keys))]
        groups, current, used = [], [], 0
        for key in keys:
            if current and used + self._slice_bytes[key] > self.cache_bytes:
                groups.append(current)
                current, used = [], 0
            current.extend(by_slice[key])
            used += self._slice_bytes[key]
        groups.append(current)
        if self.shuffle:
            groups = [[g[i] for i in rng.permutation(len(g))] for g in groups]
        return groups

    def stream(self, batch_size: int, seed: int, repeat: bool) -> Iterator[tuple[dict[str, np.ndarray], np.ndarray]]:
        """Stacked batches of passes 0, 1, 2, ... over all patches (pass 0 only unless ``repeat``), each in
        the order seeded by ``(seed, pass)``. Keeps no per-call state in the source, so one source (and
        its slice cache) serves every epoch of a training run."""
        number = 0
        while True:
            yield from _stacked(self.patches(seed, number), batch_size)
            number += 1
            if not repeat:
                return

    def patches(self, seed: int, number: int = 0) -> Iterator[tuple[dict[str, np.ndarray], np.ndarray]]:
        """Pass ``number`` over all patches as single ``({"image", "availability"}, label)``, ordered (and
        augmented) by ``(seed, number)`` only."""
        rng = np.random.default_rng([seed, number])
        aug_rng = np.random.default_rng([seed, number, 1])
        gain_rng = np.random.default_rng([seed, number, 2])
        log_gain = np.log1p(self.intensity)
        h, s = self.input_size, self.output_size
        for group in self._pass_groups(rng):
            local: dict[tuple[int, int], tuple[np.ndarray, ...]] = {}
            for sample_i, z, t in group:
                key = (sample_i, z)
                if key not in local:
                    local[key] = self.load_slice(sample_i, z)
                arrays = local[key]
                plan = self.plans[sample_i]
                y0, x0 = plan.layout.origins[t]
                transpose, flip_y, flip_x = aug_rng.integers(2, size=3).astype(bool) if self.augment else (False,) * 3
                if transpose:  # a view of the pre-transposed slice: no strided copy of a rotation
                    img, lab = arrays[2][x0 : x0 + h, y0 : y0 + h], arrays[3][x0 : x0 + s, y0 : y0 + s]
                else:
                    img, lab = arrays[0][y0 : y0 + h, x0 : x0 + h], arrays[1][y0 : y0 + s, x0 : x0 + s]
                img, lab = dihedral(img, lab, False, flip_y, flip_x)
                if self.intensity:
                    img = img * np.exp(gain_rng.uniform(-log_gain, log_gain, img.shape[-1])).astype(np.float32)
                yield {IMAGE: img, AVAILABILITY: plan.availability}, lab


def _stacked(items: Iterator[tuple[dict[str, np.ndarray], np.ndarray]], batch_size: int):
    """Single patches stacked into batches of ``batch_size`` (the last one may be smaller)."""
    while True:
        chunk = [item for _, item in zip(range(batch_size), items)]
        if not chunk:
            return
        yield (
            {
                IMAGE: np.stack([c[0][IMAGE] for c in chunk]),
                AVAILABILITY: np.stack([c[0][AVAILABILITY] for c in chunk]),
            },
            np.stack([c[1] for c in chunk]),
        )


def dihedral(
    image: np.ndarray, label: np.ndarray, transpose: bool, flip_y: bool, flip_x: bool
) -> tuple[np.ndarray, np.ndarray]:
    """One of the 8 symmetries of the square on ``image [H, W, ...]`` and ``label [h, w]`` (views):
    optional transpose, then optional flips of the y and x axes (all 4 rotations and 4 reflections).

    Image and label tiles are square and concentric, so the same transform keeps them aligned.
    """
    if transpose:
        image, label = image.swapaxes(0, 1), label.swapaxes(0, 1)
    if flip_y:
        image, label = image[::-1], label[::-1]
    if flip_x:
        image, label = image[:, ::-1], label[:, ::-1]
    return image, label


def make_dataset(
    store: SampleStore | str | os.PathLike,
    samples: Sequence[str],
    *,
    panel: MarkerPanel | Sequence[str],
    classes: Sequence[str],
    input_size: int,
    output_size: int,
    batch_size: int,
    shuffle: bool,
    augment: bool = False,
    seed: int = 0,
    marker_panels: Mapping[str, Sequence[str]] | None = None,
    subset: Sequence[int] | None = None,
    repeat: bool = False,
    cache_bytes: int = DEFAULT_CACHE_BYTES,
):
    """A batched ``tf.data.Dataset`` of ``({"image", "availability"}, label)`` (see module docs).

    Args:
        store: a :class:`SampleStore` or the path of one (opened read-only for the dataset's lifetime).
        samples: sample names to draw patches from.
        panel: the model's marker vocabulary (K markers).
        classes: classes to segment, e.g. ``("sinusoids",)``; labels 1..C in this order.
        input_size, output_size: the network's tile sizes (from ``UNetGeometry``).
        batch_size: patches per batch; the last partial batch of an epoch is kept.
        shuffle: seeded shuffling, different (and reproducible) in every epoch.
        augment: random rotations by 90 degrees / reflections, identical for image and label.
        marker_panels: sample -> markers it keeps (heterogeneous-panel experiments, Cases 1-6).
        subset: 0-based panel indices given to the model (all others zero, availability 0).
        repeat: repeat epochs forever (each with a new order).
        cache_bytes: memory budget for slices cached across epochs.
    """
    if int(batch_size) < 1:
        raise UserInputError(f"batch_size must be >= 1, got {batch_size}")
    panel = panel if isinstance(panel, MarkerPanel) else MarkerPanel(tuple(panel))
    st = store if isinstance(store, SampleStore) else SampleStore(store, "r")
    source = PatchSource(
        st, samples, panel=panel, classes=classes, input_size=input_size, output_size=output_size,
        shuffle=shuffle, augment=augment, marker_panels=marker_panels, subset=subset,
        cache_bytes=cache_bytes,
    )  # fmt: skip
    return source_dataset(source, batch_size, seed=seed, repeat=repeat)


def source_dataset(source: PatchSource, batch_size: int, *, seed: int, repeat: bool = False):
    """A batched ``tf.data.Dataset`` of a :class:`PatchSource`: pass 0 (or passes 0, 1, ... with
    ``repeat``) in the order seeded by ``seed`` (see :meth:`PatchSource.stream`)."""
    if int(batch_size) < 1:
        raise UserInputError(f"batch_size must be >= 1, got {batch_size}")
    b = int(batch_size)
    cardinality = -1 if repeat else -(-source.n_patches // b)
    return _batch_dataset(source, lambda: source.stream(b, int(seed), repeat), cardinality)


def epoch_seed(seed: int, epoch: int) -> int:
    """The stream seed of training epoch ``epoch`` of a run seeded ``seed``: a function of both only."""
    return int(np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1)[0] & 0x7FFFFFFF)


def epoch_dataset(source: PatchSource, batch_size: int, *, seed: int, epochs: range, steps: int):
    """A batched ``tf.data.Dataset`` of training epochs ``epochs`` back to back (one dataset, and one
    ``model.fit``, for a whole run): epoch ``e`` is the first ``steps`` batches of the stream seeded
    ``epoch_seed(seed, e)`` -- with one pass's number of steps, exactly its pass 0.

    Prefetches :data:`EPOCH_PREFETCH` batches without tf.data autotuning: the autotuning thread of a
    long-lived iterator sleeps for seconds between rounds, and deleting the iterator waits for it (up to
    10 s at the end of a run)."""
    if int(batch_size) < 1 or int(steps) < 1:
        raise UserInputError(f"batch_size and steps must be >= 1, got {batch_size} and {steps}")
    return _batch_dataset(
        source,
        lambda: training_batches(source, batch_size, seed=seed, epochs=epochs, steps=steps),
        len(epochs) * int(steps),
        prefetch=EPOCH_PREFETCH,
    )


def training_batches(
    source: PatchSource, batch_size: int, *, seed: int, epochs: range, steps: int
) -> Iterator[tuple[dict[str, np.ndarray], np.ndarray]]:
    """The NumPy batches of training epochs ``epochs`` of a run seeded ``seed``, back to back: epoch ``e``
    is the first ``steps`` batches of the stream seeded ``epoch_seed(seed, e)``. :func:`epoch_dataset`
    feeds them to TensorFlow; ``model.fit`` on another Keras backend (JAX) reads them directly."""
    for epoch in epochs:
        yield from islice(source.stream(int(batch_size), epoch_seed(seed, epoch), repeat=True), int(steps))


def _batch_dataset(source: PatchSource, batches, cardinality: int, prefetch: int | None = None):
    """``tf.data.Dataset.from_generator(batches)`` with the signature of ``source`` batches and the asserted
    ``cardinality`` (-1: infinite), prefetching ``prefetch`` batches (None: autotuned)."""
    import tensorflow as tf

    shapes = tensor_shapes(source.input_size, source.panel.size)
    signature = (
        {name: tf.TensorSpec(shapes[name], tf.float32) for name in (IMAGE, AVAILABILITY)},
        tf.TensorSpec((None, source.output_size, source.output_size), tf.int32),
    )
    # batches are stacked in Python: one hand-over to TensorFlow per batch, not per patch
    ds = tf.data.Dataset.from_generator(batches, output_signature=signature)
    ds = ds.apply(tf.data.experimental.assert_cardinality(cardinality))
    if prefetch is None:
        return ds.prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.prefetch(prefetch).with_options(options)


def _check_subset(subset: Sequence[int] | None, panel: MarkerPanel) -> np.ndarray:
    given = np.ones(panel.size, dtype=bool)
    if subset is None:
        return given
    idx = [int(i) for i in subset]
    if not idx:
        raise UserInputError("empty marker subset: give at least one marker")
    bad = [i for i in idx if not 0 <= i < panel.size]
    if bad:
        raise UserInputError(f"subset index {bad[0]} outside 0..{panel.size - 1} for panel {', '.join(panel.names)}")
    if len(set(idx)) != len(idx):
        raise UserInputError(f"marker index given twice in subset {idx}")
    given[:] = False
    given[idx] = True
    return given


class _opened:
    """Context manager: use a SampleStore as is, or open a path read-only for the block."""

    def __init__(self, store: SampleStore | str | os.PathLike) -> None:
        self._given = isinstance(store, SampleStore)
        self.store = store if isinstance(store, SampleStore) else None
        self._path = None if self._given else store

    def __enter__(self) -> SampleStore:
        if self.store is None:
            self.store = SampleStore(self._path, "r")  # type: ignore[arg-type]
        return self.store

    def __exit__(self, *exc) -> None:
        if not self._given and self.store is not None:
            self.store.close()
