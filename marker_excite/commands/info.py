"""``marker-excite info``: what a run or an exported model expects (markers, classes, tiles, spacing, training)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from marker_excite.commands.store import describe_store
from marker_excite.contract.model_spec import ModelSpec, read_spec, unseen_markers
from marker_excite.errors import UserInputError
from marker_excite.inference.predictor import model_kind
from marker_excite.runs.run import load_run

HELP = (
    "show what a run or exported model expects (markers, classes, tiles, spacing, training), the samples of a "
    "store, or --devices"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", nargs="?", help="run directory, exported model directory, or sample store (.h5)")
    parser.add_argument("--json", action="store_true", help="print the model card (or the store's samples) as JSON")
    parser.add_argument(
        "--devices", action="store_true", help="show the TensorFlow (or JAX) version and the devices it sees"
    )


def devices() -> str:
    """The Keras backend's version (TensorFlow, or JAX with ``KERAS_BACKEND=jax``) and the devices it sees
    (one line each)."""
    from marker_excite.runs.environment import versions

    info = versions()
    backend = info.get("keras_backend", "tensorflow")
    lines = [f"{backend} {info.get(backend, '')} on {info['platform']} (Python {info['python']})"]
    lines += [f"device       {' '.join(d.split(':', 1))}" for d in info["devices"]]
    if not any(d.startswith("GPU:") for d in info["devices"]):
        lines.append("no GPU visible: training runs on the CPU (use --preset small; the paper preset is GPU-sized)")
    return "\n".join(lines)


def describe(spec: ModelSpec) -> str:
    """Human-readable summary of a model: its contract and where it came from."""
    normalisation = spec.normalisation
    lines = [
        f"model        {spec.name}",
        f"markers      {', '.join(f'm{i}={m}' for i, m in enumerate(spec.markers, start=1))}",
        f"classes      {', '.join(f'{i}={c}' for i, c in enumerate(spec.outputs))}",
        f"tiles        input {spec.input_size} px -> output {spec.output_size} px (margin {spec.margin} px)",
        f"spacing      {'z,y,x = ' + ', '.join(f'{s:g}' for s in spec.spacing) + ' µm' if spec.spacing else 'unknown (no resampling)'}",
        f"normalise    {normalisation['method']}; padding {normalisation['padding']}",
        f"missing      {normalisation['missing_markers']}",
    ]
    p = spec.provenance
    if p is None:
        return "\n".join(lines)
    score = (
        f"; best epoch {p.best_epoch} (val mean F1 {p.best_val_mean_f1:.4f})" if p.best_val_mean_f1 is not None else ""
    )
    split = "explicit split of named samples" if p.split == "explicit" else f"fold {p.fold} of {p.n_folds}"
    lines += [
        f"training     {split}; {p.epochs} of {p.epochs_planned} epoch(s){score}; precision {p.precision}",
        "samples      " + "; ".join(f"{k} {', '.join(v)}" for k, v in p.samples.items()),
    ]
    if p.markers_seen is not None:
        unseen = unseen_markers(spec, spec.markers)
        lines.append(
            f"trained on   {', '.join(p.markers_seen)}"
            + (f" (never seen: {', '.join(unseen)}; refused without --allow-unseen)" if unseen else "")
        )
    versions = p.trained_with or {}
    if versions:
        lines.append(
            f"trained with tensorflow {versions.get('tensorflow')}, marker_excite {versions.get('marker_excite')}"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if args.devices:
        print(devices())
        if args.model is None:
            return 0
    if args.model is None:
        raise UserInputError("give a run directory or exported model, or --devices")
    if Path(args.model).is_file():  # a sample store (anything else is refused as such)
        print(describe_store(args.model, as_json=args.json))
        return 0
    if model_kind(args.model) == "exported":
        spec = read_spec(args.model)  # no need to load the network
    else:
        spec = load_run(args.model).exported_spec()  # the card an export would write
    print(json.dumps(spec.card(), indent=2) if args.json else describe(spec))
    return 0
