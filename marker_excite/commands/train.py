"""``marker-excite train``: train one model of the zoo on one cross-validation fold of a sample store."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path

from marker_excite.commands.options import add_option, check_outputs
from marker_excite.config import split_list
from marker_excite.contract.markers import PAPER_MARKERS
from marker_excite.data.store import SampleStore
from marker_excite.errors import UserInputError, did_you_mean, is_disk_full
from marker_excite.models.geometry import UNetGeometry
from marker_excite.models.precision import POLICIES
from marker_excite.presets import PRESETS, RECIPES, option_help
from marker_excite.progress import format_duration
from marker_excite.runs import directory as rd
from marker_excite.runs.run import TrainConfig, preset_configs
from marker_excite.training.trainer import dry_run, train

HELP = "train a model (default MS-ME) on one fold of a sample store; writes a run directory"
#: the preset used when ``--preset`` is not given (the paper's, sized for a GPU)
DEFAULT_PRESET = "paper"
#: the preset used when ``--recipe`` is given without ``--preset``
RECIPE_PRESET = "cpu"


def _tiles(network: Mapping[str, int]) -> str:
    """``572->388``: the input -> output tile size (px) of a preset's network (3 x 3 kernels)."""
    size = network["input_size"]
    return f"{size}->{UNetGeometry(depth=network['depth']).output_size(size)}"


def _per_preset(field: str) -> str:
    """``paper 200, small 20, cpu 60``: a schedule value of every preset."""
    return ", ".join(f"{name} {scale.schedule[field]}" for name, scale in PRESETS.items())


def preset_help() -> str:
    """``train --preset``: each preset's tiles and schedule."""
    texts = {
        name: scale.about_training.format(tiles=_tiles(scale.network), **scale.schedule)
        for name, scale in PRESETS.items()
    }
    return f"{option_help(texts)} (default: {DEFAULT_PRESET})"


def learning_rate_help() -> str:
    """``train --learning-rate``: the default rate and the presets that decay it."""
    decayed = {name: scale.schedule.get("lr_schedule", "constant") for name, scale in PRESETS.items()}
    where = "".join(f"; {lr}-decayed in the {name} preset" for name, lr in decayed.items() if lr != "constant")
    return f"Adam learning rate (default: {TrainConfig.learning_rate}{where})"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", required=True, help="sample store (.h5) made by `synth` or `import`")
    parser.add_argument("--run", required=True, help="run directory to create (or to continue with --resume)")
    parser.add_argument(
        "--model", default="MS-ME", help="zoo model name: MS-ME, MS, MZ, UB, MS-SE, HeMIS, ... (default: MS-ME)"
    )
    parser.add_argument(
        "--preset",
        choices=tuple(PRESETS),
        help=preset_help(),
    )
    parser.add_argument(
        "--recipe",
        choices=sorted(RECIPES),
        help=f"a training recipe for your own data on top of the preset (default preset with a recipe: "
        f"{RECIPE_PRESET}): {option_help({name: r.about for name, r in RECIPES.items()}, sep=' = ')}; options "
        "given explicitly win (default: none, the paper's protocol)",
    )
    add_option(
        parser,
        "--panel",
        old="--markers",
        help="the model's marker vocabulary, comma-separated; for UB the subset (default: the paper's five, "
        "DAPI,endomucin,endoglin,collagen,CXCL12-GFP)",
    )
    parser.add_argument(
        "--classes", default="sinusoids", help="classes to segment, comma-separated (default: sinusoids)"
    )
    parser.add_argument("--fold", type=int, default=0, help="cross-validation fold (default: 0)")
    parser.add_argument(
        "--train-samples",
        help="training samples, comma-separated: with --val-samples an explicit "
        "split, alone the fold trains only on these of its training samples (default: the fold's)",
    )
    parser.add_argument(
        "--val-samples",
        help="validation samples, comma-separated (explicit split, replaces the fold; default: the fold's)",
    )
    parser.add_argument(
        "--test-samples", help="test samples of an explicit split, comma-separated, '' = none (default: none)"
    )
    parser.add_argument("--n-folds", type=int, help="number of folds (default: 4)")
    parser.add_argument("--epochs", type=int, help=f"number of epochs (default: the preset's: {_per_preset('epochs')})")
    parser.add_argument(
        "--batch-size", type=int, help=f"patches per step (default: the preset's: {_per_preset('batch_size')})"
    )
    parser.add_argument("--learning-rate", type=float, help=learning_rate_help())
    parser.add_argument(
        "--seed",
        type=int,
        help="random seed of the initial weights, the Marker Sampling draws and the data order (default: 0)",
    )
    parser.add_argument(
        "--precision",
        choices=tuple(POLICIES),
        help="fp32: float32 throughout (default; bit for bit as before); bf16: mixed bfloat16, recommended "
        "on GPUs of the Ampere generation or later; fp16: mixed float16 with loss scaling (older GPUs)",
    )
    parser.add_argument(
        "--patience", type=int, help="stop after this many epochs without a better validation F1 (default: never)"
    )
    parser.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="random flips / 90-degree rotations of training patches (default: off, as in the paper)",
    )
    parser.add_argument(
        "--marker-panels",
        help="heterogeneous training panels: JSON file or 'sample=DAPI+collagen;sample2=endomucin' "
        "(default: every sample's own markers)",
    )
    parser.add_argument("--model-config", help="JSON model config, replaces --model/--preset/--panel (default: none)")
    parser.add_argument("--train-config", help="JSON training config, replaces the training options (default: none)")
    parser.add_argument(
        "--init-from",
        metavar="RUN",
        help="start from the best weights of another run, same model (default: random initialisation)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the split, patches per sample and the time per epoch (3 timed steps), write nothing",
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run from its last epoch; with a larger --epochs, extend a finished run",
    )
    group.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    parser.add_argument("--quiet", action="store_true", help="no progress output")


def parse_marker_panels(text: str) -> dict[str, tuple[str, ...]]:
    """``--marker-panels``: a JSON file / JSON object {sample: [markers]} or ``s1=A+B;s2=C``."""
    source = text.strip()
    if not source.startswith("{") and Path(source).is_file():
        source = Path(source).read_text()
    if source.lstrip().startswith("{"):
        try:
            data = json.loads(source)
        except json.JSONDecodeError as exc:
            raise UserInputError(f"--marker-panels is not valid JSON: {exc}") from None
        if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
            raise UserInputError("--marker-panels JSON must map sample names to lists of markers")
        return {str(k): tuple(str(m) for m in v) for k, v in data.items()}
    panels: dict[str, tuple[str, ...]] = {}
    for item in filter(None, (p.strip() for p in source.split(";"))):
        sample, sep, markers = item.partition("=")
        if not sep or not sample.strip():
            raise UserInputError(f"--marker-panels entry {item!r} is not 'sample=marker+marker'")
        panels[sample.strip()] = tuple(m.strip() for m in markers.replace(",", "+").split("+") if m.strip())
    if not panels:
        raise UserInputError("--marker-panels is empty")
    return panels


def build_configs(args: argparse.Namespace):
    """The (ModelConfig, TrainConfig) an invocation describes (the same for a new run and --resume)."""
    from marker_excite.models.config import ModelConfig  # the layers it validates against import keras

    classes = split_list(args.classes, what="--classes")
    preset = args.preset or (RECIPE_PRESET if args.recipe else DEFAULT_PRESET)
    model = ModelConfig.from_json(args.model_config) if args.model_config else args.model
    markers = split_list(args.panel, what="--panel") if args.panel and not args.model_config else PAPER_MARKERS
    train_values = {} if args.train_config else _train_values(args)
    mcfg, tcfg = preset_configs(
        model,
        preset,
        markers=markers,
        classes=classes,
        seed=args.seed,  # one seed for all of a training's randomness: weights, Marker Sampling, data order
        recipe=None if args.train_config else args.recipe,
        **train_values,
    )
    if args.train_config:
        tcfg = TrainConfig.from_json(args.train_config)
    return mcfg, tcfg


def _train_values(args: argparse.Namespace) -> dict:
    """The :class:`TrainConfig` values given by the training options (only those given, and the fold)."""
    values = {
        k: v
        for k, v in dict(
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            patience=args.patience,
            n_folds=args.n_folds,
            precision=args.precision,
        ).items()
        if v is not None
    }
    if args.augment is not None:
        values["augment"] = args.augment
    if args.marker_panels:
        values["marker_panels"] = parse_marker_panels(args.marker_panels)
    return {"fold": args.fold, **values, **_split_options(args)}


def _split_options(args: argparse.Namespace) -> dict[str, tuple[str, ...]]:
    """``--train-samples / --val-samples / --test-samples`` as TrainConfig fields (only those given)."""
    out: dict[str, tuple[str, ...]] = {}
    if args.train_samples is not None:
        out["train_samples"] = split_list(args.train_samples, what="--train-samples")
    if args.val_samples is not None:
        out["val_samples"] = split_list(args.val_samples, what="--val-samples")
    if args.test_samples is not None:
        out["test_samples"] = split_list(args.test_samples, what="--test-samples", allow_empty=True)
    if "val_samples" not in out and "test_samples" in out:
        raise UserInputError("--test-samples needs --train-samples and --val-samples (an explicit split)")
    if "val_samples" in out and "train_samples" not in out:
        raise UserInputError("--val-samples needs --train-samples too (an explicit split)")
    return out


def disk_full_message(run_dir: Path) -> str:
    """What a full disk left in ``run_dir`` and how to go on (every file there is complete: writes are atomic)."""
    if all((run_dir / name).is_file() for name in (rd.MODEL_CONFIG, rd.TRAIN_CONFIG, rd.DATA_CONFIG)):
        return (f"no space left on device while writing run directory {run_dir}; it keeps its last completed "
                "epoch: free space, then continue with --resume")  # fmt: skip
    return (f"no space left on device while creating run directory {run_dir}: free space, then start again "
            "with --overwrite")  # fmt: skip


def check_panel_in_store(panel, store_path) -> None:
    """Refuse a ``--panel`` marker that no sample of the store has (a likely typo), naming the closest one."""

    if not Path(store_path).is_file():
        return  # train reports the missing store
    with SampleStore(store_path, "r") as store:
        have = list(dict.fromkeys(m for info in store.infos() for m in info.markers))
    known = {m.lower() for m in have}
    for marker in panel:
        if marker.lower() not in known:
            raise UserInputError(
                f"--panel marker {marker!r}{did_you_mean(marker, have)} is in no sample of {store_path}; "
                f"its samples have {', '.join(have)}"
            )


def _paper_preset_on_cpu(args: argparse.Namespace) -> bool:
    """The paper preset chosen by default (no --preset, no config files) and no GPU visible."""
    if args.preset is not None or args.recipe or args.model_config or args.train_config:
        return False
    from marker_excite.runs.environment import visible_devices

    return not any(d.startswith("GPU:") for d in visible_devices())


def gpu_sized_notice(plan) -> str:
    """One line: the default paper preset is GPU-sized, its estimated time here, and the CPU presets."""

    epoch = plan.seconds_per_step * plan.steps_per_epoch
    return (
        f"note: no --preset given: the paper preset is sized for a GPU and no GPU is visible; here an epoch takes "
        f"~{format_duration(epoch)} and its {plan.epochs} epochs ~{format_duration(epoch * plan.epochs)} plus "
        "validation. On a CPU choose --preset cpu (the CPU reproduction schedule) or --preset small (a "
        f"{PRESETS['small'].schedule['epochs']}-epoch demo)"
    )


def run(args: argparse.Namespace) -> int:
    mcfg, tcfg = build_configs(args)
    if args.panel and not args.model_config:
        check_panel_in_store(mcfg.markers, args.store)
    if args.dry_run:
        plan = dry_run(mcfg, tcfg, args.store)
        for line in plan.lines():
            print(line)
        if _paper_preset_on_cpu(args):
            print(gpu_sized_notice(plan))
        return 0
    if not args.resume:  # the run directory is (re)created
        check_outputs(
            {"--run": args.run}, data=[args.store, args.model_config, args.train_config], models=[args.init_from]
        )
    if _paper_preset_on_cpu(args) and not args.quiet:
        print(gpu_sized_notice(dry_run(mcfg, tcfg, args.store)), flush=True)
    try:
        result = train(
            args.run,
            mcfg,
            tcfg,
            args.store,
            resume=args.resume,
            overwrite=args.overwrite,
            progress=not args.quiet,
            init_from=args.init_from,
        )
    except OSError as exc:
        if not is_disk_full(exc):
            raise
        raise UserInputError(disk_full_message(Path(args.run))) from None
    if not args.quiet and result.best_epoch is not None:
        best = next(r for r in result.history if int(r["epoch"]) == result.best_epoch)
        print(
            f"run {result.run_dir}: best epoch {result.best_epoch}, validation mean F1 {float(best['val_mean_f1']):.4f}"
        )
    return 0
