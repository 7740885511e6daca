"""The README's main job: the whole workflow on the built-in synthetic phantom, on a CPU in minutes.

``python -m marker_excite.demo --out demo_output`` (what ``make demo`` runs):

1. ``synth``    the small bone-marrow phantom (8 samples, 5 markers, sinusoids + arteries);
2. ``train``    one MS-ME network (small preset) for sinusoids on fold 0;
3. ``evaluate`` it on the fold's test samples for all 31 marker subsets;
4. ``predict``  a whole test stack with only some of its markers, with a preview picture;
5. ``quantify`` sinusoid volume fractions inside the tissue, per sample and region, twice: inside the
   default tissue mask (an Otsu threshold on DAPI, what a user without a tissue model gets) and inside
   the phantom's true tissue (what a good tissue model gives), printed side by side;
6. ``export``   a SavedModel + model card that runs without this package, and ``info`` on it.

Each step is the CLI command it prints, so the demo doubles as a tutorial. Re-running resumes: steps
whose outputs exist are skipped (``--fresh`` starts over).
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import shutil
import sys
import time
from pathlib import Path

from marker_excite.analysis.plots import subset_names
from marker_excite.cli import main as cli_main
from marker_excite.data.store import SampleStore


def _step(title: str, argv: list[str]) -> None:
    print(f"\n=== {title}\n$ marker-excite {shlex.join(argv)}", flush=True)
    t0 = time.time()
    code = cli_main(argv)
    if code != 0:
        raise SystemExit(f"demo step failed ({title}); exit code {code}")
    print(f"--- done in {time.time() - t0:.0f} s", flush=True)


def _summary(evaluation_csv: Path) -> str:
    """A short results table: mean F1 by number of markers, then the best and worst subsets."""

    with evaluation_csv.open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["metric"] == "f1"]
    f1 = {r["subset"]: float(r["value"]) for r in rows}
    by_size: dict[int, list[float]] = {}
    for r in rows:
        by_size.setdefault(int(r["n_markers"]), []).append(float(r["value"]))
    lines = ["markers  subsets  mean F1"]
    lines += [f"{k:>7}  {len(v):>7}  {sum(v) / len(v):7.3f}" for k, v in sorted(by_size.items())]
    ranked = sorted(f1.items(), key=lambda kv: kv[1])
    lines.append("worst: " + ", ".join(f"{subset_names(s)} {v:.3f}" for s, v in ranked[:3]))
    lines.append("best:  " + ", ".join(f"{subset_names(s)} {v:.3f}" for s, v in ranked[::-1][:3]))
    return "\n".join(lines)


def _read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _quantification_summary(threshold_csv: Path, true_tissue_csv: Path, store: Path) -> str:
    """Mean predicted sinusoid fraction per region inside each tissue mask, next to the phantom's truth.

    The two predicted columns differ only by the tissue mask; the last line says how large the
    threshold mask is relative to the true tissue, so the gap is explained, not hidden.
    """
    by_mask = {"threshold": _read_rows(threshold_csv), "true": _read_rows(true_tissue_csv)}
    names = {key: rows[0]["tissue_mask"] for key, rows in by_mask.items()}
    table: dict[str, dict[str, list[float]]] = {}
    with SampleStore(store, "r") as st:
        for key, rows in by_mask.items():
            for r in rows:
                if r["note"]:  # flagged (empty tissue mask): no fraction to average
                    continue
                cell = table.setdefault(r["region"], {"threshold": [], "true": [], "truth": []})
                cell[key].append(float(r["fraction"]))
                if key == "true":
                    cell["truth"].append(float(st.info(r["sample"]).attrs[f"fraction_{r['class']}"]))
    lines = [
        "sinusoid volume fraction of tissue, mean per region, inside two tissue masks:",
        f"  A = {names['true']} (the phantom's true tissue, what a good tissue model gives)",
        f"  B = {names['threshold']} (quantify's default without --tissue-model / --tissue-mask)",
        "region       samples  predicted in A  predicted in B  phantom truth",
    ]
    for region, cell in sorted(table.items()):
        mean = {k: f"{100 * sum(v) / len(v):.1f}%" if v else "-" for k, v in cell.items()}
        lines.append(
            f"{region:<12} {len(cell['true']):>7}  {mean['true']:>14}  {mean['threshold']:>14}  {mean['truth']:>13}"
        )
    voxels = {key: sum(int(r["tissue_voxels"]) for r in rows) for key, rows in by_mask.items()}
    lines.append(
        f"mask B holds {100 * voxels['threshold'] / max(voxels['true'], 1):.0f}% as many voxels as the true tissue: "
        "fractions are only as good as the tissue mask (use a tissue model or your own masks)"
    )
    empty = sorted({r["sample"] for rows in by_mask.values() for r in rows if r["note"]})
    if empty:
        lines.append(f"empty tissue mask (no fraction) for: {', '.join(empty)}")
    return "\n".join(lines)


def _test_sample(run_dir: Path) -> str:
    """First test sample of the run's fold (from its data_config.json)."""
    data = json.loads((run_dir / "data_config.json").read_text())
    return data["fold"]["test"][0]


def run(out: Path, epochs: int | None = None, fresh: bool = False) -> None:
    """Run the demo into ``out``."""
    if fresh and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    store = out / "phantom.h5"
    run_dir = out / "runs" / "ms-me_sinusoids_fold0"
    t0 = time.time()
    if not store.exists():
        _step(
            "1/8 generate the small synthetic phantom",
            ["synth", "--preset", "small", "--out", str(store), "--seed", "0"],
        )
    train = [
        "train",
        "--model",
        "MS-ME",
        "--preset",
        "small",
        "--store",
        str(store),
        "--classes",
        "sinusoids",
        "--fold",
        "0",
        "--run",
        str(run_dir),
    ]
    if epochs is not None:
        train += ["--epochs", str(epochs)]
    if (run_dir / "checkpoint").exists():
        train.append("--resume")
    _step("2/8 train ONE MS-ME network for all marker subsets (small preset)", train)
    evaluation = run_dir / "evaluation.csv"
    if not evaluation.exists():
        _step("3/8 evaluate it on every one of the 31 marker subsets", ["evaluate", "--run", str(run_dir)])
    sample = _test_sample(run_dir)
    labels = out / f"{sample}_labels.ome.tif"
    preview = out / f"{sample}_preview.png"
    _step(
        f"4/8 segment the whole test stack {sample} with only DAPI, endomucin and collagen",
        [
            "predict",
            str(run_dir),
            f"{store}:{sample}",
            "--use",
            "DAPI,endomucin,collagen",
            "--labels",
            str(labels),
            "--probabilities",
            str(out / f"{sample}_probabilities.ome.tif"),
            "--prob-dtype",
            "uint8",
            "--preview",
            str(preview),
            "--overwrite",
        ],
    )
    quantify = ["quantify", "--store", str(store), "--model", str(run_dir), "--overwrite"]
    _step(
        "5/8 quantify the sinusoid volume fraction inside the tissue of every sample, per region "
        "(tissue mask: the default Otsu threshold on DAPI)",
        [*quantify, "-o", str(out / "quantification.csv"), "--plot", str(out / "quantification.png")],
    )
    _step(
        "6/8 the same inside the phantom's true tissue (its stored 'tissue' label), to see what the mask changes",
        [*quantify, "--tissue-label", "tissue", "-o", str(out / "quantification_true_tissue.csv"),
         "--plot", str(out / "quantification_true_tissue.png")],
    )  # fmt: skip
    exported = out / "exported_model"
    _step(
        "7/8 export a SavedModel (+ model_card.json) that runs without this package",
        ["export", str(run_dir), str(exported), "--overwrite"],
    )
    _step("8/8 what the exported model expects", ["info", str(exported)])
    print(
        "\n=== results: F1 of the single MS-ME network on the test samples, by marker subset\n" + _summary(evaluation)
    )
    print("\n" + _quantification_summary(out / "quantification.csv", out / "quantification_true_tissue.csv", store))
    print(
        f"\nfigures: {preview}, {run_dir / 'curves.png'}, {evaluation.with_suffix('.png')}, "
        f"{out / 'quantification.png'}, {out / 'quantification_true_tissue.png'}"
    )
    print(f"demo finished in {(time.time() - t0) / 60:.1f} min; all outputs in {out}")
    print("\n" + next_steps(out))


def next_steps(out: Path) -> str:
    """The demo's last lines: where to go from here."""
    return "\n".join(
        [
            "next:",
            "  your own data:  marker-excite import --help, then train / predict as above (docs/workflow.md)",
            f"  notebooks:      make notebooks   (they read {out}; start with look_at_a_prediction.ipynb)",
            "  the paper:      python experiments/fig3_attention.py --preset small --out results  (experiments/README.md)",
        ]
    )


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
