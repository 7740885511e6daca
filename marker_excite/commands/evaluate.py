"""``marker-excite evaluate``: F1 / precision / recall of a run on every marker subset of its test samples."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from marker_excite.analysis.plots import subset_ranking
from marker_excite.analysis.results import write_results
from marker_excite.atomic import check_output_path
from marker_excite.commands.options import add_allow_unseen_option, add_weights_option, check_outputs
from marker_excite.config import split_list
from marker_excite.contract.markers import MarkerPanel
from marker_excite.contract.model_spec import unseen_markers
from marker_excite.data.pipeline import class_pixel_counts
from marker_excite.errors import UserInputError
from marker_excite.inference.evaluation import evaluate_run, label_panel, parse_subsets
from marker_excite.runs.run import load_run

HELP = "evaluate a run on its fold's test samples for every marker subset (tidy CSV + ranked bar chart)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, help="run directory written by `train`")
    parser.add_argument("--store", help="sample store (default: the one the run was trained on)")
    parser.add_argument(
        "--subsets", help="subsets to evaluate, e.g. 'm_125,m_4' or 'DAPI+collagen,endomucin' (default: all 2^K-1)"
    )
    parser.add_argument("--samples", help="comma-separated samples (default: the fold's test samples)")
    add_weights_option(parser)
    add_allow_unseen_option(parser)
    parser.add_argument("--batch-size", type=int, help="patches per forward pass")
    parser.add_argument("--out", help="results CSV (default: <run>/evaluation.csv)")
    parser.add_argument("--plot", help="ranked bar chart PNG (default: next to the CSV, .png)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing result files")
    parser.add_argument("--quiet", action="store_true", help="no progress output")


def basis(store, samples: list[str], classes) -> str:
    """What an evaluation rests on: ``"3 test samples (s2, s5, s7), 1,234,567 annotated voxels"``."""

    voxels = int(class_pixel_counts(store, samples, classes).sum())
    return f"{len(samples)} test sample{'s' * (len(samples) != 1)} ({', '.join(samples)}), {voxels:,} annotated voxels"


def seen_subsets(run_, subsets: str | None, *, quiet: bool) -> list[tuple[str, ...]]:
    """The subsets to score (``--subsets`` or all) without those holding a marker that no training
    sample had (:func:`~marker_excite.contract.model_spec.unseen_markers`), with one line naming what was left out."""
    markers = tuple(run_.model_config.markers)
    chosen = MarkerPanel(markers).all_subsets() if subsets is None else parse_subsets(subsets, markers)
    unseen = unseen_markers(run_.spec, markers)
    kept = [s.names for s in chosen if not set(s.names) & set(unseen)]
    if not kept:
        raise UserInputError(
            f"every subset asked for uses {', '.join(unseen)}, which the model never saw in training; "
            "give --allow-unseen to score them anyway"
        )
    if len(kept) < len(chosen) and not quiet:
        print(
            f"evaluate: note: {len(chosen) - len(kept)} subset(s) with {', '.join(unseen)} (never seen in training) "
            "not scored; give --allow-unseen to score them",
            file=sys.stderr,
        )
    return kept


def run(args: argparse.Namespace) -> int:
    out = Path(args.out) if args.out else Path(args.run) / "evaluation.csv"
    plot = Path(args.plot) if args.plot else out.with_suffix(".png")
    run_ = load_run(args.run, weights=args.weights)
    check_outputs({"--out": out, "--plot": plot}, data=[args.store or run_.store_path], models=[args.run])
    check_output_path(out, overwrite=args.overwrite)
    check_output_path(plot, overwrite=args.overwrite)
    samples = list(split_list(args.samples, what="--samples")) if args.samples else None
    subsets = args.subsets if args.allow_unseen else seen_subsets(run_, args.subsets, quiet=args.quiet)
    rows = evaluate_run(
        run_, args.store, subsets=subsets, samples=samples, batch_size=args.batch_size, progress=not args.quiet
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
