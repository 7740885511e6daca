"""The command line shared by the scripts in ``experiments/``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from marker_excite.errors import UserInputError
from marker_excite.experiments.aggregate import aggregate
from marker_excite.experiments.paper import EXPERIMENTS, experiment
from marker_excite.experiments.runner import ensure_store, run_jobs
from marker_excite.experiments.slurm import SLURM, add_slurm_arguments, check_options, submit, task_argv
from marker_excite.experiments.spec import PRESETS, Experiment, ExperimentError, parse_shard
from marker_excite.experiments.workers import available_cpus, cpu_groups, limit_threads, run_workers
from marker_excite.precision import POLICIES
from marker_excite.tf_quiet import import_tensorflow


def csv_list(text: str) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]`` (command-line lists)."""
    return [t.strip() for t in text.split(",") if t.strip()]


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


def build_parser(name: str, description: str) -> argparse.ArgumentParser:
    """The options shared by every script in ``experiments/``."""
    parser = argparse.ArgumentParser(prog=f"experiments/{name}.py", description=description)
    parser.add_argument(
        "--preset",
        default="small",
        choices=sorted(PRESETS),
        help="paper: the paper's models and schedule (GPU); small: CPU-sized (default)",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("results") / name, help="output folder (default: results/<name>)"
    )
    parser.add_argument(
        "--store",
        type=Path,
        default=None,
        help="sample store to use (default: the preset's phantom, generated into --out)",
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
    parser.add_argument(
        "--folds",
        type=lambda s: [int(x) for x in csv_list(s)],
        default=None,
        help="comma-separated folds (default: the preset's)",
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
    add_slurm_arguments(parser)
    return parser


def script_path(name: str) -> Path:
    """The running script, ``experiments/<name>.py``, that ``--workers`` and ``--launcher slurm`` start
    again; an error when the experiment runs from elsewhere (e.g. imported)."""
    script = Path(sys.argv[0])
    if script.stem != name or not script.is_file():
        raise ExperimentError(
            f"--workers and --launcher slurm start experiments/{name}.py again: run it as that script"
        )
    return script


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
    is_worker = limit_threads() is not None  # --workers child or --launcher slurm task: no aggregation
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
        shard = parse_shard(args.shard)
        if args.list:
            print("\n".join(j.job_id for j in exp.shard(*shard)))
            return 0
        progress = not args.quiet
        given = sys.argv[1:] if argv is None else list(argv)
        check_options(args)
        if args.launcher == SLURM:
            if parser.parse_args([*task_argv(given), "--shard", "1/1"]).launcher == SLURM:
                raise ExperimentError("write --launcher slurm in full (the array tasks must run locally)")
            script = script_path(name)
            if not args.dry_run:
                ensure_store(exp.preset, args.out, args.store, progress=progress)  # generated once, not per task
            submit(exp, args, script, given)
            return 0
        if args.workers != 1 and not args.aggregate_only:
            if shard != (1, 1):
                raise ExperimentError("--workers runs every shard itself: give either --workers or --shard")
            groups = cpu_groups(args.workers, available_cpus())
            script = script_path(name)
            ensure_store(exp.preset, args.out, args.store, progress=progress)  # generated once, not per worker
            status = run_workers(str(script), given, groups, args.out, name)
            if status:
                return status
        elif not args.aggregate_only:
            import_tensorflow()  # without its start-up log lines
            summary = run_jobs(exp, args.out, store=args.store, shard=shard, resume=args.resume, progress=progress)
            print(
                f"{name}: shard {shard[0]}/{shard[1]}: ran {len(summary.ran)}, skipped {len(summary.skipped)} "
                f"finished job(s) in {summary.seconds / 60:.1f} min"
            )
            if is_worker:
                return 0  # the parent aggregates once every worker is done
            if summary.remaining:
                print(
                    f"{len(summary.remaining)} job(s) of {name} are not finished (other shards?); "
                    f"when all are, run again with --aggregate-only"
                )
                return 0
        external = {"UB": args.ub_results or args.out} if "UB" in exp.external else None
        result = aggregate(exp, args.out, external=external, progress=progress)
        if after:
            after(exp, args)
    except UserInputError as exc:
        print(f"{name}: error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    print(f"results: {result.results_csv}\nstats:   {result.stats_json}")
    for f in result.figures:
        print(f"figure:  {f}")
    if result.missing:
        shown = ", ".join(result.missing[:10]) + (", ..." if len(result.missing) > 10 else "")
        print(f"note: {len(result.missing)} job(s) missing from the aggregate: {shown}")
    return 0
