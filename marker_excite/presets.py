"""Every preset in one place: what the names ``paper``, ``small`` and ``cpu`` stand for.

A preset names one scale of the whole pipeline (a :class:`Scale`): a network size (the fields that
:func:`marker_excite.models.zoo.model_config` starts from), a training schedule (the values of
:func:`marker_excite.runs.run.train_config`), a phantom (sample shapes and annotated slices of
:func:`marker_excite.data.synthetic.write_dataset`) and what an experiment runs at it
(:data:`marker_excite.experiments.spec.PRESETS`). :func:`marker_excite.runs.run.preset_configs` builds the
configs of a run from it; the ``--preset`` help of ``train``, ``synth``, ``compare`` and the experiment
scripts is generated from the ``about_*`` texts here, so a new preset is one entry of :data:`PRESETS`.
The training recipes for a user's own data (``train --recipe``, :data:`RECIPES`) are here too.

A basic module: it imports nothing of the package.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class PhantomSize:
    """The size of a phantom preset: per sample (s1, s2, ...) its shape and one annotated slice in how many."""

    shapes_zyx: tuple[tuple[int, int, int], ...]
    annotated_every: tuple[int, ...]


@dataclass(frozen=True)
class Scale:
    """What a preset name stands for.

    Attributes:
        network: ``ModelConfig`` fields of the network size (``depth``, ``base_filters``, ``input_size``).
        schedule: ``TrainConfig`` values of the training schedule (the others keep their defaults).
        phantom: the synthetic phantom generated at this preset.
        experiment: ``experiments.spec.Preset`` fields that differ from its defaults (every fold and class).
        about_training: ``train --preset`` help; ``{tiles}`` (input -> output px) and the schedule's values
            are filled in.
        about_phantom: ``synth --preset`` help; ``{samples}`` and ``{shape}`` (the first sample's) are filled in.
        about_experiment: ``--preset`` help of ``compare`` and the experiment scripts.
    """

    network: Mapping[str, int]
    schedule: Mapping[str, Any]
    phantom: PhantomSize
    about_training: str
    about_phantom: str
    about_experiment: str
    experiment: Mapping[str, Any] = field(default_factory=dict)


# paper: 1 um in xy; slices of 776 x 1164 px hold 2 x 3 = 6 output tiles of 388 px (776 x 776: 4 tiles);
# a slice in every 3 is annotated, so (annotated slices) x (tiles per slice) = the patch count of the paper's
# Supplementary Table 1: 9x6=54, 2x6=12, 5x6=30, 2x6=12, 2x6=12, 8x6=48, 9x6=54, 2x4=8 (230 patches).
_PAPER_ANNOTATED = (9, 2, 5, 2, 2, 8, 9, 2)
_PAPER_PHANTOM = PhantomSize(
    shapes_zyx=tuple((3 * n, 776, 776 if i == 7 else 1164) for i, n in enumerate(_PAPER_ANNOTATED)),
    annotated_every=(3,) * 8,
)
# small: 6 slices of 256 x 256 px; an 84 px output tile layout needs 4 x 4 = 16 tiles per slice;
# annotated_every 3 gives 2 annotated slices (z = 1, 4), 6 gives 1 (z = 3): 11 slices, 176 patches.
_SMALL_PHANTOM = PhantomSize(shapes_zyx=((6, 256, 256),) * 8, annotated_every=(3, 6, 6, 6, 6, 3, 3, 6))
# cpu: 12 slices of 256 x 256 px; annotated_every 2 gives 6 annotated slices, 4 gives 3 (the larger
# samples of the table get more): 33 slices, 528 patches of 84 px (the reproduction protocol on a CPU).
_CPU_PHANTOM = PhantomSize(shapes_zyx=((12, 256, 256),) * 8, annotated_every=(2, 4, 4, 4, 4, 2, 2, 4))

#: The small network: 3 levels, 16 filters, 124 -> 84 px tiles (margin 20), trained on a CPU.
_SMALL_NETWORK: Mapping[str, int] = dict(depth=3, base_filters=16, input_size=124)

#: The presets. ``paper``: the paper's network (572 -> 388 px) and schedule (batch 2, 200 epochs, constant
#: rate), sized for a GPU. ``small``: a quick CPU demo. ``cpu``: the CPU reproduction protocol, chosen so
#: that MS and MS-ME reach a plateau within ~5 minutes per job on 2 cores (measurements in
#: experiments/README.md).
PRESETS: dict[str, Scale] = {
    "paper": Scale(
        network=dict(depth=5, base_filters=32, input_size=572),
        schedule=dict(epochs=200, batch_size=2),
        phantom=_PAPER_PHANTOM,
        about_training="{tiles} px tiles, batch {batch_size}, {epochs} epochs (GPU-sized; without a GPU a note "
        "gives the estimated time)",
        about_phantom="{samples} samples mirroring the paper's table, 230 annotated 388-px patches",
        about_experiment="the paper's models and schedule (GPU)",
    ),
    "small": Scale(
        network=_SMALL_NETWORK,
        schedule=dict(epochs=20, batch_size=8),
        phantom=_SMALL_PHANTOM,
        about_training="{tiles} px, {epochs}-epoch CPU demo",
        about_phantom="{samples} samples of {shape} voxels (CPU, seconds)",
        about_experiment="CPU-sized",
        experiment=dict(folds=(0,), classes=("sinusoids",)),
    ),
    "cpu": Scale(
        network=_SMALL_NETWORK,  # an alias of small's network: the cpu protocol trains the same network longer
        schedule=dict(epochs=60, batch_size=8, steps_per_epoch=25, lr_schedule="cosine"),
        phantom=_CPU_PHANTOM,
        about_training="{tiles} px, the CPU reproduction schedule ({epochs} x {steps_per_epoch} steps, "
        "{lr_schedule} rate)",
        about_phantom="{samples} samples of {shape} voxels (the CPU reproduction protocol)",
        about_experiment="the CPU reproduction protocol",
    ),
}


@dataclass(frozen=True)
class Recipe:
    """A training recipe for a user's own data: ``TrainConfig`` values on top of a preset's schedule."""

    values: Mapping[str, Any]
    about: str


#: Training recipes (``train --recipe``). ``own-data``: the schedule with rotations / reflections, a random
#: gain per channel of +-20 %, and the best epoch chosen on the mean F1 over all subsets (not for UB, which
#: is used on its own subset only). Measured on MP6843 (experiments/real/mp6843_recipes.py; docs/workflow.md,
#: "Training recipe for your own data"): it ties the paper's protocol (mean test F1 0.865 both).
RECIPES: dict[str, Recipe] = {
    "own-data": Recipe(
        values=dict(augment=True, intensity_augment=0.2, select_on="all_subsets"),
        about="rotations / reflections, a random +-20% gain per channel, best epoch chosen on the mean F1 over "
        "all marker subsets (UB: on its markers)",
    ),
}


def option_help(texts: Mapping[str, str], *, sep: str = ": ") -> str:
    """``name: text; name: text ...``, the help of an option choosing a preset or recipe (``%`` escaped for
    argparse)."""
    return "; ".join(f"{name}{sep}{text}" for name, text in texts.items()).replace("%", "%%")
