"""``marker-excite evaluate``: F1 / precision / recall of a run on every marker subset of its test samples."""

from __future__ import annotations

import argparse
from pathlib import Path

from marker_excite.atomic import check_output_path
from marker_excite.commands.options import add_weights_option, check_outputs
from marker_excite.data.pipeline import class_pixel_counts
from marker_excite.evaluation import evaluate_run, label_panel, write_results
from marker_excite.plots import subset_ranking
from marker_excite.run import load_run

HELP = "evaluate a run on its fold's test samples for every marker subset (tidy CSV + ranked bar chart)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, help="run directory written by `train`")
    parser.add_argument("--store", help="sample store (default: the one the run was trained on)")
    parser.add_argument(
        "--subsets", help="subsets to evaluate, e.g. 'm_125,m_4' or 'DAPI+collagen,endomucin' (default: all 2^K-1)"
    )
    parser.add_argument("--samples", help="comma-separated samples (default: the fold's test samples)")
    add_weights_option(parser)
    parser.add_argument("--batch-size", type=int, help="patches per forward pass")
    parser.add_argument("--out", help="results CSV (default: <run>/evaluation.csv)")
    parser.add_argument("--plot", help="ranked bar chart PNG (default: next to the CSV, .png)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing result files")
    parser.add_argument("--quiet", action="store_true", help="no progress output")


def basis(store, samples: list[str], classes) -> str:
    """What an evaluation rests on: ``"3 test samples (s2, s5, s7), 1,234,567 annotated voxels"``."""

    voxels = int(class_pixel_counts(store, samples, classes).sum())
    return f"{len(samples)} test sample{'s' * (len(samples) != 1)} ({', '.join(samples)}), {voxels:,} annotated voxels"


def run(args: argparse.Namespace) -> int:
    out = Path(args.out) if args.out else Path(args.run) / "evaluation.csv"
    plot = Path(args.plot) if args.plot else out.with_suffix(".png")
    run_ = load_run(args.run, weights=args.weights)
    check_outputs({"--out": out, "--plot": plot}, data=[args.store or run_.store_path], models=[args.run])
    check_output_path(out, overwrite=args.overwrite)
    check_output_path(plot, overwrite=args.overwrite)
    samples = [s.strip() for s in args.samples.split(",") if s.strip()] if args.samples else None
    rows = evaluate_run(
        run_, args.store, subsets=args.subsets, samples=samples, batch_size=args.batch_size, progress=not args.quiet
    )
    write_results(rows, out, overwrite=args.overwrite)
    evaluated = samples if samples is not None else list(run_.fold.test)
    subset_ranking(rows, plot, title=f"{run_.name}, fold {run_.train_config.fold}",
                   markers=label_panel(run_.model_config.markers).names,
                   note=basis(args.store or run_.store_path, evaluated, run_.model_config.classes))  # fmt: skip
    if not args.quiet:
        f1 = [r for r in rows if r["metric"] == "f1"]
        best = max(f1, key=lambda r: r["value"])
        mean = sum(r["value"] for r in f1) / len(f1)
        print(
            f"{len({r['subset'] for r in f1})} subsets: mean F1 {mean:.4f}, best {best['subset']} "
            f"({best['class']}) {best['value']:.4f}; wrote {out} and {plot}"
        )
    return 0
