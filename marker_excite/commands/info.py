"""``marker-excite info``: what a run or an exported model expects (markers, classes, tiles, spacing, training)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from marker_excite.commands.store import describe_store
from marker_excite.contract.model_spec import read_card, unseen_markers
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


def describe(card: dict[str, Any]) -> str:
    """Human-readable summary of a model card."""
    tile = card["tile"]
    spacing = card.get("spacing_zyx_um")
    t = card.get("training") or {}
    lines = [
        f"model        {card.get('model')}",
        f"markers      {', '.join(f'm{i}={m}' for i, m in enumerate(card['markers'], start=1))}",
        f"classes      {', '.join(f'{i}={c}' for i, c in enumerate(card['outputs']))}",
        f"tiles        input {tile['input_size']} px -> output {tile['output_size']} px (margin {tile['margin']} px)",
        f"spacing      {'z,y,x = ' + ', '.join(f'{s:g}' for s in spacing) + ' µm' if spacing else 'unknown (no resampling)'}",
        f"normalise    {card['normalisation']['method']}; padding {card['normalisation']['padding']}",
        f"missing      {card['normalisation']['missing_markers']}",
    ]
    if t:
        best = t.get("best_val_mean_f1")
        score = f"; best epoch {t.get('best_epoch')} (val mean F1 {best:.4f})" if best is not None else ""
        samples = t.get("samples", {})
        split = (
            "explicit split of named samples"
            if t.get("split") == "explicit"
            else f"fold {t.get('fold')} of {t.get('n_folds')}"
        )
        lines += [
            f"training     {split}; {t.get('epochs')} of {t.get('epochs_planned')} epoch(s){score}; "
            f"precision {t.get('precision', 'fp32')}",
            "samples      " + "; ".join(f"{k} {', '.join(v)}" for k, v in samples.items()),
        ]
        if t.get("markers_seen") is not None:
            unseen = unseen_markers(card, card["markers"])
            lines.append(
                f"trained on   {', '.join(t['markers_seen'])}"
                + (f" (never seen: {', '.join(unseen)}; refused without --allow-unseen)" if unseen else "")
            )
    versions = (card.get("software") or {}).get("trained_with") or {}
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
        card = read_card(args.model)  # no need to load the network
    else:
        card = load_run(args.model).card()
    print(json.dumps(card, indent=2) if args.json else describe(card))
    return 0
