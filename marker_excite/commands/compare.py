"""``marker-excite compare``: which stains do I need, and is one network as good as one per subset?

Runs the paper's comparison on the user's own store (:mod:`marker_excite.experiments.compare`) with the
experiment options of the scripts in ``experiments/`` (``--shard``, ``--workers``, ``--list``,
``--aggregate-only``, resuming): the same jobs runner, the same output layout.
"""

from __future__ import annotations

import argparse

from marker_excite.experiments.aggregate import aggregate
from marker_excite.experiments.cli import add_experiment_options, csv_list, print_aggregate, run_experiment_jobs
from marker_excite.experiments.compare import (
    COMPARE,
    DEFAULT_TOLERANCE,
    OTSU,
    compare_experiment,
    write_otsu,
    write_per_sample,
    write_report,
)
from marker_excite.experiments.spec import preset
from marker_excite.experiments.workers import limit_threads

HELP = (
    "train MS, MS-ME, MZ and one UB per marker subset on your store; report which stains you need and "
    "whether one network matches one per subset"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", required=True, help="sample store (.h5) made by `import`")
    parser.add_argument(
        "--markers", required=True, type=csv_list, help="the panel: K marker names as in the store, comma-separated"
    )
    add_experiment_options(parser, COMPARE, default_preset="cpu")
    parser.add_argument("--folds", type=int, help="k-fold cross-validation over the store's samples (all k folds run)")
    parser.add_argument("--val", type=csv_list, help="validation samples of one split, comma-separated (with --test)")
    parser.add_argument(
        "--test", type=csv_list, help="test samples of one split, comma-separated (with --val; the others train)"
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=DEFAULT_TOLERANCE,
        help="subsets whose mean F1 is within this of the best count as good as the best "
        f"(default: {DEFAULT_TOLERANCE})",
    )


def run(args: argparse.Namespace) -> int:
    limit_threads()  # a worker of --workers: its share of the cores
    exp = compare_experiment(
        preset(args.preset),
        args.store,
        markers=args.markers,
        classes=args.classes or [],
        n_folds=args.folds,
        val=args.val,
        test=args.test,
        epochs=args.epochs,
        seed=args.seed,
        precision=args.precision,
    )
    status = run_experiment_jobs(exp, args, COMPARE, ["-m", "marker_excite"], args.argv)
    if status is not None:
        return status
    otsu, otsu_per_sample = write_otsu(exp, args.out, args.store)
    result = aggregate(exp, args.out, external={OTSU: otsu}, progress=not args.quiet)
    write_per_sample(exp, args.out, args.store, otsu_per_sample, progress=not args.quiet)
    report = write_report(exp, args.out, tolerance=args.tolerance)
    print_aggregate(result)
    print(f"report:  {report}")
    return 0
