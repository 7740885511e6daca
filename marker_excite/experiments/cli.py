"""The command line shared by the scripts in ``experiments/``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from marker_excite import presets
from marker_excite.config import split_list
from marker_excite.errors import UserInputError
from marker_excite.experiments.aggregate import aggregate
from marker_excite.experiments.paper import EXPERIMENTS, experiment
from marker_excite.experiments.runner import ensure_store, run_jobs
from marker_excite.experiments.slurm import SLURM, add_slurm_arguments, check_options, submit, task_argv
from marker_excite.experiments.spec import PRESETS, Experiment, ExperimentError, parse_shard
from marker_excite.experiments.workers import THREADS_ENV, available_cpus, cpu_groups, limit_threads, run_workers
from marker_excite.models.precision import POLICIES
from marker_excite.tf_quiet import import_tensorflow


def csv_list(text: str) -> list[str]:
    """``"a, b, c"`` -> ``["a", "b", "c"]``: an option's comma-separated list (an argparse ``type``; an empty
    list or entry is refused, naming the option)."""
    try:
        return list(split_list(text, what="comma-separated list"))
    except UserInputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def exit_status(name: str, action: Callable[[], Any]) -> int:
    """Run a script's ``action``: 0 when it returns, 2 with one ``<name>: error: ...`` line on stderr when it
    raises :class:`UserInputError` (bad input, named by the exception's first line)."""
    try:
        action()
    except UserInputError as exc:
        print(f"{name}: error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    return 0


def analysis_main(
    name: str,
    description: str,
    analyse: Callable[[argparse.Namespace], Sequence[Path]],
    argv: Sequence[str] | None = None,
    *,
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
) -> int:
    """Entry point of the scripts that analyse finished runs (``--out DIR [DIR ...]``): ``analyse(args)``
    writes files next to the runs and returns them; prints how many, or one error line (status 2)."""
    parser = argparse.ArgumentParser(prog=f"experiments/{name}.py", description=description)
    parser.add_argument("--out", type=Path, nargs="+", required=True, help="experiment output folder(s)")
    if add_arguments:
        add_arguments(parser)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    def run() -> None:
        import_tensorflow()  # without its start-up log lines
        print(f"{name}: {len(analyse(args))} file(s) written")

    return exit_status(name, run)


def add_experiment_options(parser: argparse.ArgumentParser, name: str, *, default_preset: str = "small") -> None:
    """The options of every experiment run: the scripts in ``experiments/`` and ``marker-excite compare``
    (preset, output folder, classes, schedule overrides, sharding, workers, resume, listing)."""
    parser.add_argument(
        "--preset",
        default=default_preset,
        choices=sorted(PRESETS),
        help=f"{presets.option_help({name: scale.about_experiment for name, scale in presets.PRESETS.items()})} "
        f"(default: {default_preset})",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("results") / name, help=f"output folder (default: results/{name})"
    )
    parser.add_argument("--shard", default="1/1", help="run shard i of n (e.g. 2/4) of the job list")
    parser.add_argument(
        "--no-resume",
        dest="resume",
        action="store_false",
        help="retrain jobs of this shard from scratch (default: skip finished jobs, resume interrupted ones)",
    )
    parser.add_argument(
        "--classes", type=csv_list, default=None, help="comma-separated classes (default: the preset's)"
    )
    parser.add_argument("--epochs", type=int, default=None, help="override the preset's number of epochs")
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help="training seed of every job (weights, batch order, Marker Sampling; default: the preset's, 0); "
        "a seed replicate: give it its own --out (the folds and Case tables stay the same)",
    )
    parser.add_argument(
        "--precision",
        choices=tuple(POLICIES),
        default=None,
        help="training precision of every job: fp32 (default), bf16 (mixed bfloat16, recommended on "
        "Ampere or later GPUs) or fp16 (mixed float16 with loss scaling)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="run the jobs in N processes side by side, each on its own share of the CPU cores "
        "(on 2 cores, 2 workers ran ~1.8-2x as many cpu-preset jobs per hour); default 1",
    )
    parser.add_argument("--list", action="store_true", help="print the job ids of this shard and exit")
    parser.add_argument("--aggregate-only", action="store_true", help="only aggregate finished jobs")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    add_slurm_arguments(parser)  # --launcher slurm and its options


def build_parser(name: str, description: str) -> argparse.ArgumentParser:
    """The options shared by every script in ``experiments/``."""
    parser = argparse.ArgumentParser(prog=f"experiments/{name}.py", description=description)
    add_experiment_options(parser, name)
    parser.add_argument(
        "--store",
        type=Path,
        default=None,
        help="sample store to use (default: the preset's phantom, generated into --out)",
    )
    parser.add_argument(
        "--folds",
        type=lambda s: [int(x) for x in csv_list(s)],
        default=None,
        help="comma-separated folds (default: the preset's)",
    )
    return parser


def _relaunch(relaunch: Sequence[str] | None, name: str) -> Sequence[str]:
    """What ``--workers`` and ``--launcher slurm`` start again; an error when the experiment runs from
    elsewhere than its script (e.g. imported)."""
    if relaunch is None:
        raise ExperimentError(
            f"--workers and --launcher slurm start experiments/{name}.py again: run it as that script"
        )
    return relaunch


def run_experiment_jobs(
    exp: Experiment, args: argparse.Namespace, name: str, relaunch: Sequence[str] | None, argv: Sequence[str]
) -> int | None:
    """Do what the experiment options of ``args`` ask before aggregating: ``--list`` the shard's jobs,
    run one ``--shard`` here, or start ``--workers`` processes (``python <relaunch> <argv>`` with their
    own ``--shard``), or submit them with ``--launcher slurm`` (the same command per array task);
    ``relaunch`` None: the script was not started as ``experiments/<name>.py``, so both are refused.
    Returns None when the caller should aggregate now, else the exit status
    to end with (0 for a listing, a worker, or jobs still unfinished in other shards)."""
    shard = parse_shard(args.shard)
    if args.list:
        print("\n".join(j.job_id for j in exp.shard(*shard)))
        return 0
    check_options(args)
    progress = not args.quiet
    if args.launcher == SLURM:
        if any(a != "--launcher" and a.startswith("--la") for a in task_argv(argv)):
            raise ExperimentError("write --launcher slurm in full (the array tasks must run locally)")
        if not args.dry_run:
            ensure_store(exp.preset, args.out, args.store, progress=progress)  # generated once, not per task
        submit(exp, args, _relaunch(relaunch, name), argv)
        return 0
    if args.aggregate_only:
        return None
    if args.workers != 1:
        if shard != (1, 1):
            raise ExperimentError("--workers runs every shard itself: give either --workers or --shard")
        groups = cpu_groups(args.workers, available_cpus())
        relaunch = _relaunch(relaunch, name)
        ensure_store(exp.preset, args.out, args.store, progress=progress)  # generated once, not per worker
        return run_workers(relaunch, argv, groups, args.out, name) or None
    import_tensorflow()  # without its start-up log lines
    summary = run_jobs(exp, args.out, store=args.store, shard=shard, resume=args.resume, progress=progress)
    print(
        f"{name}: shard {shard[0]}/{shard[1]}: ran {len(summary.ran)}, skipped {len(summary.skipped)} "
        f"finished job(s) in {summary.seconds / 60:.1f} min"
    )
    if os.environ.get(THREADS_ENV):
        return 0  # a worker of --workers: the parent aggregates once every worker is done
    if summary.remaining:
        print(
            f"{len(summary.remaining)} job(s) of {name} are not finished (other shards?); "
            f"when all are, run again with --aggregate-only"
        )
        return 0
    return None


def print_aggregate(result) -> None:
    """The files an aggregation wrote (and how many jobs it lacks)."""
    print(f"results: {result.results_csv}\nstats:   {result.stats_json}")
    for f in result.figures:
        print(f"figure:  {f}")
    if result.missing:
        shown = ", ".join(result.missing[:10]) + (", ..." if len(result.missing) > 10 else "")
        print(f"note: {len(result.missing)} job(s) missing from the aggregate: {shown}")


def script_main(
    name: str,
    argv: Sequence[str] | None = None,
    *,
    add_arguments: Callable | None = None,
    options: Callable[[argparse.Namespace], dict[str, Any]] | None = None,
    after: Callable[[Experiment, argparse.Namespace], None] | None = None,
) -> int:
    """Entry point of the scripts in ``experiments/``: build, run (one shard), aggregate, report.

    ``add_arguments(parser)`` adds script options; ``options(args)`` turns them into builder options;
    ``after(exp, args)`` runs once everything is aggregated (e.g. quantification for Table 1).
    Returns the exit status (2 with a one-line message for bad input).
    """
    parser = build_parser(name, (EXPERIMENTS[name].__doc__ or name).splitlines()[0])
    parser.add_argument(
        "--ub-results",
        type=Path,
        default=None,
        help="output folder (or results CSV) of fig1_upper_bound, the UB reference (Figs. 3e, 4); "
        "default: the UB runs in --out",
    )
    if add_arguments:
        add_arguments(parser)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    limit_threads()  # a --workers child or --launcher slurm task: its share of the cores
    try:
        exp = experiment(
            name,
            args.preset,
            classes=args.classes,
            folds=args.folds,
            epochs=args.epochs,
            seed=args.seed,
            precision=args.precision,
            **(options(args) if options else {}),
        )
        script = Path(sys.argv[0])
        relaunch = [str(script.resolve())] if script.stem == name and script.is_file() else None
        status = run_experiment_jobs(exp, args, name, relaunch, sys.argv[1:] if argv is None else argv)
        if status is not None:
            return status
        external = {"UB": args.ub_results or args.out} if "UB" in exp.external else None
        result = aggregate(exp, args.out, external=external, progress=not args.quiet)
        if after:
            after(exp, args)
    except UserInputError as exc:
        print(f"{name}: error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    print_aggregate(result)
    return 0
