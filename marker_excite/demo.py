"""The README's main job: the whole workflow on the built-in synthetic phantom, on a CPU in minutes.

``python -m marker_excite.demo --out demo_output`` (what ``make demo`` runs):

1. ``synth``    the small bone-marrow phantom (8 samples, 5 markers, sinusoids + arteries);
2. ``train``    one MS-ME network (small preset) for sinusoids on fold 0;
3. ``evaluate`` it on the fold's test samples for all 31 marker subsets;
4. ``predict``  a whole test stack with only some of its markers, and ``quantify`` its sinusoid fraction;
5. ``export``   a SavedModel + model card that runs without this package.

Each step is the CLI command it prints, so the demo doubles as a tutorial. Re-running resumes: steps
whose outputs exist are skipped (``--fresh`` starts over).
"""

from __future__ import annotations

import argparse
import csv
import shlex
import shutil
import sys
import time
from pathlib import Path

from marker_excite.cli import main as cli_main


def _step(title: str, argv: list[str]) -> None:
    print(f"\n=== {title}\n$ marker-excite {shlex.join(argv)}", flush=True)
    t0 = time.time()
    code = cli_main(argv)
    if code != 0:
        raise SystemExit(f"demo step failed ({title}); exit code {code}")
    print(f"--- done in {time.time() - t0:.0f} s", flush=True)


def _summary(evaluation_csv: Path) -> str:
    """Mean F1 per number of markers plus the best and worst subsets."""
    rows = [r for r in csv.DictReader(evaluation_csv.open()) if r["metric"] == "f1"]
    by_subset: dict[str, list[float]] = {}
    for r in rows:
        by_subset.setdefault(r["subset"], []).append(float(r["value"]))
    mean = {s: sum(v) / len(v) for s, v in by_subset.items()}
    ranked = sorted(mean.items(), key=lambda kv: kv[1])
    lines = ["subset      F1 (sinusoids)"]
    for s, v in ranked[:3] + [("...", float("nan"))] + ranked[-3:]:
        lines.append(f"{s:<11} {v:6.3f}" if s != "..." else "...")
    return "\n".join(lines)


def run(out: Path, epochs: int | None = None, fresh: bool = False) -> None:
    """Run the demo into ``out``."""
    if fresh and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    store = out / "phantom.h5"
    run_dir = out / "runs" / "ms-me_sinusoids_fold0"
    t0 = time.time()
    if not store.exists():
        _step("1/6 generate the small synthetic phantom", ["synth", "--preset", "small", "--out", str(store), "--seed", "0"])
    train = ["train", "--model", "MS-ME", "--preset", "small", "--store", str(store), "--classes", "sinusoids", "--fold", "0", "--run", str(run_dir)]
    if epochs is not None:
        train += ["--epochs", str(epochs)]
    if (run_dir / "weights.best.weights.h5").exists():
        train.append("--resume")
    _step("2/6 train one MS-ME network for all marker subsets", train)
    evaluation = run_dir / "evaluation.csv"
    if not evaluation.exists():
        _step("3/6 evaluate on every one of the 31 marker subsets", ["evaluate", "--run", str(run_dir)])
    stack = out / "test_stack.ome.tif"
    pred = out / "prediction"
    _step(
        "4/6 predict a whole test stack with only DAPI, endomucin and collagen",
        ["predict", "--run", str(run_dir), "--store-sample", str(store), "--test-sample", "--markers", "DAPI,endomucin,collagen",
         "--out", str(pred), "--overwrite"],
    )
    _step("5/6 quantify the sinusoid volume fraction inside the tissue", ["quantify", "--labels", str(pred), "--out", str(out / "quantification.csv"), "--overwrite"])
    _step("6/6 export a SavedModel that runs without this package", ["export", "--run", str(run_dir), "--out", str(out / "exported_model"), "--overwrite"])
    print("\n=== results\n" + _summary(evaluation))
    print(f"\nfigures: {run_dir / 'curves.png'}, {run_dir / 'subsets_ranked.png'}")
    print(f"demo finished in {(time.time() - t0) / 60:.1f} min; outputs in {out}")
    del stack


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("demo_output"), help="output folder (default: demo_output)")
    parser.add_argument("--epochs", type=int, default=None, help="override the small preset's number of epochs")
    parser.add_argument("--fresh", action="store_true", help="delete the output folder first")
    args = parser.parse_args(argv)
    run(args.out, epochs=args.epochs, fresh=args.fresh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
