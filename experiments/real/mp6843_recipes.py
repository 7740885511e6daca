"""Which training recipe makes MS hold up on real images? MS on MP6843 (the fixed split of mp6843.py)
trained with the cpu preset and each of these changes, scored on the test fields on every subset:

* ``cpu``: the CPU reproduction protocol (no augmentation, best epoch on all markers) -- the MS run of
  ``mp6843.py`` (``runs/MS__all__cells__f0``), reused when it is finished;
* ``augment``: + random rotations / reflections (``--augment``);
* ``augment+intensity``: + a random gain per channel of +-20 % (``intensity_augment=0.2``);
* ``select-subsets``: best epoch on the mean F1 over all subsets (``select_on=all_subsets``);
* ``own-data``: all three (``train --recipe own-data``).

    python experiments/real/mp6843_recipes.py [--recipes own-data,augment] [--epochs N]

Run ``mp6843.py`` first (it builds the store and the split). Each run goes to
``experiments/results/real-mp6843/recipes/<recipe>/`` (resumed when interrupted, skipped when
evaluated); the table (``recipes.csv``, ``recipes.md``: test F1 per subset, their mean, and the UB and
Otsu of ``compare`` on the same split) is rewritten from every finished run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from marker_excite.analysis.results import read_results, write_results
from marker_excite.atomic import write_text
from marker_excite.experiments.cli import csv_list
from marker_excite.presets import RECIPES as RECIPES_OF_TRAIN
from marker_excite.runs import directory as rd
from marker_excite.runs.log import read_log

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "experiments" / "results" / "real-mp6843"
STORE = ROOT / "data" / "mp6843.h5"
MARKERS = ("cytoplasm", "nuclear")
#: recipe -> TrainConfig values on top of the cpu preset
RECIPES: dict[str, dict] = {
    "cpu": {},
    "augment": dict(augment=True),
    "augment+intensity": dict(augment=True, intensity_augment=0.2),
    "select-subsets": dict(select_on="all_subsets"),
    "own-data": dict(RECIPES_OF_TRAIN["own-data"].values),
}
SUBSETS = ("cytoplasm", "nuclear", "cytoplasm+nuclear")


def run_recipe(name: str, out: Path, store: Path, split: dict, epochs: int | None) -> Path:
    """Train (or resume) and evaluate MS with recipe ``name``; returns its evaluation CSV."""
    from marker_excite.inference.evaluation import evaluate_run
    from marker_excite.runs.run import preset_configs
    from marker_excite.training.trainer import train

    path = out / "recipes" / name
    evaluation = path / "evaluation.csv"
    if evaluation.is_file():
        return evaluation
    extra = dict(RECIPES[name], **({"epochs": epochs} if epochs else {}))
    mcfg, tcfg = preset_configs(
        "MS", "cpu", markers=MARKERS, classes=("cells",), train_samples=split["train"], val_samples=split["val"],
        test_samples=split["test"], **extra,
    )  # fmt: skip
    run = train(path, mcfg, tcfg, store, resume=rd.is_run_dir(path))
    rows = [{**r, "model": f"MS {name}"} for r in evaluate_run(run, store, progress=False)]
    return write_results(rows, evaluation)


def table(out: Path) -> None:
    """``recipes.csv`` / ``recipes.md`` from every evaluated recipe, with compare's UB and Otsu."""
    rows, lines = [], []
    for name in RECIPES:
        source = out / "recipes" / name / "evaluation.csv"
        if name == "cpu" and not source.is_file():
            source = out / "runs" / "MS__all__cells__f0" / "evaluation.csv"  # the compare run: same recipe
        if source.is_file():
            log = read_log(source.parent / rd.LOG)
            best = max(log, key=lambda r: (float(r["val_mean_f1"]), -int(r["epoch"])))
            found = [{**r, "model": f"MS {name}"} for r in read_results(source)]
            rows += found
            f1 = {r["subset"]: r["value"] for r in found if r["metric"] == "f1"}
            cells = " | ".join(f"{f1[s]:.3f}" for s in SUBSETS)
            lines.append(f"| MS, {name} | {cells} | {np.mean(list(f1.values())):.3f} | {best['epoch']} of {len(log)} |")
    for model, csv in (("UB", out / "compare" / "results.csv"), ("Otsu", out / "compare" / "otsu.csv")):
        if csv.is_file():
            f1 = {r["subset"]: r["value"] for r in read_results(csv) if r["model"] == model and r["metric"] == "f1"}
            if f1:
                cells = " | ".join(f"{f1[s]:.3f}" if s in f1 else "–" for s in SUBSETS)
                mean = f"{np.mean(list(f1.values())):.3f}" if len(f1) == len(SUBSETS) else "–"
                lines.append(f"| {model} (compare) | {cells} | {mean} | |")
    if not rows:
        return
    write_results(rows, out / "recipes.csv")
    head = ["| model, recipe | " + " | ".join(SUBSETS) + " | mean | best epoch |", "|---" + "|---:" * 5 + "|"]
    write_text(out / "recipes.md", "\n".join(["# MS on MP6843: test F1 per training recipe", "", *head, *lines, ""]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--recipes", type=csv_list, default=list(RECIPES), help=f"comma-separated, of {', '.join(RECIPES)}"
    )
    parser.add_argument("--store", type=Path, default=STORE)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--epochs", type=int, help="override the cpu preset's 60 epochs (a quick check only)")
    args = parser.parse_args(argv)
    names = args.recipes
    unknown = [n for n in names if n not in RECIPES]
    split_file = args.out / "split.json"
    if unknown or not split_file.is_file() or not args.store.is_file():
        problem = f"unknown recipe(s) {', '.join(unknown)}" if unknown else "run experiments/real/mp6843.py first"
        print(f"mp6843_recipes: error: {problem}", file=sys.stderr)
        return 2
    split = json.loads(split_file.read_text())
    for name in names:
        if name == "cpu" and (args.out / "runs" / "MS__all__cells__f0" / "evaluation.csv").is_file():
            continue  # the compare run is this recipe
        run_recipe(name, args.out, args.store, split, args.epochs)
        table(args.out)
    table(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
