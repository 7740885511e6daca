"""``--launcher slurm``: an experiment's jobs as one SLURM job array (one task per shard) plus one
aggregation job that runs after it.

Array task ``k`` of ``n`` runs the script's own command line with ``--shard k/n`` (shards are 1-based, so
the array is ``1-n`` and the task id is the shard), so tasks never share a job; each finished job is
skipped and an interrupted one resumes from its last epoch (:func:`~marker_excite.experiments.runner.run_jobs`),
which makes the tasks safe to preempt and requeue (``#SBATCH --requeue``). The aggregation job
(``--dependency=afterany``: it runs however the tasks ended) runs ``--aggregate-only`` and lists the jobs
still missing. The scripts are written to ``<out>/slurm/`` and the logs to ``<out>/logs/``.
"""

from __future__ import annotations

import argparse
import math
import re
import shlex
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from marker_excite import atomic
from marker_excite.experiments.spec import Experiment, ExperimentError, Preset
from marker_excite.experiments.workers import LOGS, THREADS_ENV, drop_options

SLURM = "slurm"
#: the folder of ``--out`` that holds the submitted sbatch scripts
SCRIPTS = "slurm"
#: SLURM's default MaxArraySize is 1001 (task ids 0-1000)
MAX_ARRAY_TASKS = 1000


@dataclass(frozen=True)
class Request:
    """What one SLURM job asks for: ``--gres=gpu:<gpus>`` (none for 0), ``--cpus-per-task``, ``--mem``, ``--time``."""

    gpus: int
    cpus: int
    mem: str
    time: str


@dataclass(frozen=True)
class Resources:
    """What an array task needs per model size (``Preset.zoo_preset``): GPUs, CPUs, memory, and a wall-time
    estimate with a margin for slower nodes, ``jobs per task x (epochs x seconds_per_epoch + seconds_per_job)``
    (``seconds_per_job``: start-up and evaluation)."""

    gpus: int
    cpus: int
    mem: str
    seconds_per_epoch: float
    seconds_per_job: float

    def request(self, args: argparse.Namespace, jobs_per_task: int, epochs: int) -> Request:
        """The array task's request: these resources, overridden by the ``--slurm-*`` options in ``args``."""
        seconds = jobs_per_task * (epochs * self.seconds_per_epoch + self.seconds_per_job)
        return Request(
            gpus=self.gpus if args.slurm_gpus is None else args.slurm_gpus,
            cpus=args.slurm_cpus or self.cpus,
            mem=args.slurm_mem or self.mem,
            time=args.slurm_time or time_limit(seconds),
        )


#: paper: an epoch's 58-90 steps at batch 2 take 0.8-1.7 s on an H200 (13-19 ms per step; experiments/README.md,
#: "Running the paper's protocol on a cluster"); 10 s per epoch leaves room for validation and older GPUs.
#: cpu: a whole job took 150-175 s on one core (60 epochs); small: minutes on a CPU.
RESOURCES: dict[str, Resources] = {
    "paper": Resources(gpus=1, cpus=4, mem="32G", seconds_per_epoch=10.0, seconds_per_job=600.0),
    "cpu": Resources(gpus=0, cpus=2, mem="8G", seconds_per_epoch=6.0, seconds_per_job=300.0),
    "small": Resources(gpus=0, cpus=2, mem="4G", seconds_per_epoch=10.0, seconds_per_job=300.0),
}
#: the aggregation job: tables, statistics and figures on a CPU
AGGREGATE_REQUEST = Request(gpus=0, cpus=1, mem="8G", time="0-01:00:00")

#: the options of this module that take a value (dropped from the command line the array tasks run)
VALUED_OPTIONS = (
    "--launcher",
    "--slurm-tasks",
    "--slurm-max-running",
    "--slurm-partition",
    "--slurm-account",
    "--slurm-qos",
    "--slurm-time",
    "--slurm-gpus",
    "--slurm-cpus",
    "--slurm-mem",
    "--sbatch",
)
_TIME = re.compile(r"^(\d+-)?\d+(:\d{1,2}){0,2}$")


def add_slurm_arguments(parser: argparse.ArgumentParser) -> None:
    """``--launcher`` and the ``--slurm-*`` / ``--sbatch`` / ``--dry-run`` options of the experiment scripts."""
    parser.add_argument(
        "--launcher",
        choices=("local", SLURM),
        default="local",
        help="local: run the jobs here (default); slurm: submit them as a SLURM job array (one task per "
        "shard) and an aggregation job after it, then exit",
    )
    group = parser.add_argument_group("--launcher slurm (defaults: the preset's resources)")
    group.add_argument(
        "--slurm-tasks",
        type=int,
        default=None,
        help=f"array tasks (shards) to split the jobs into (default: one per job, at most {MAX_ARRAY_TASKS})",
    )
    group.add_argument(
        "--slurm-max-running", type=int, default=None, help="run at most N array tasks at once (sbatch --array=...%%N)"
    )
    group.add_argument("--slurm-partition", default=None, help="sbatch --partition")
    group.add_argument("--slurm-account", default=None, help="sbatch --account")
    group.add_argument("--slurm-qos", default=None, help="sbatch --qos")
    group.add_argument(
        "--slurm-time", default=None, help="time limit per array task, e.g. 4:00:00 or 1-00:00:00 (default: estimated)"
    )
    group.add_argument("--slurm-gpus", type=int, default=None, help="GPUs per array task (sbatch --gres=gpu:N)")
    group.add_argument("--slurm-cpus", type=int, default=None, help="CPUs per array task (sbatch --cpus-per-task)")
    group.add_argument("--slurm-mem", default=None, help="memory per array task, e.g. 32G (sbatch --mem)")
    group.add_argument(
        "--sbatch",
        action="append",
        default=[],
        metavar="OPTION",
        help="an extra sbatch option for both jobs, e.g. --sbatch=--constraint=a100 or --sbatch constraint=a100 "
        "(repeatable)",
    )
    group.add_argument("--dry-run", action="store_true", help="print the sbatch scripts without submitting them")


@dataclass(frozen=True)
class SlurmPlan:
    """The two sbatch scripts of one submission and where they go."""

    array_script: str
    aggregate_script: str
    array_path: Path
    aggregate_path: Path
    tasks: int
    jobs_per_task: int


def check_options(args: argparse.Namespace) -> None:
    """Refuse option combinations ``--launcher slurm`` cannot honour, and ``--dry-run`` without it."""
    if args.launcher != SLURM:
        if args.dry_run:
            raise ExperimentError("--dry-run prints the sbatch scripts of --launcher slurm: add --launcher slurm")
        for option in VALUED_OPTIONS[1:]:  # without --launcher slurm, not meant to run here
            if getattr(args, option.removeprefix("--").replace("-", "_")) not in (None, []):
                raise ExperimentError(f"{option} is an option of --launcher slurm: add --launcher slurm")
        return
    if args.shard != "1/1" or args.workers != 1:
        raise ExperimentError("--launcher slurm makes one array task per shard itself: drop --shard and --workers")
    if args.aggregate_only:
        raise ExperimentError("--launcher slurm submits the jobs and their aggregation: drop --aggregate-only")
    for name in ("slurm_tasks", "slurm_max_running", "slurm_cpus"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ExperimentError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if args.slurm_gpus is not None and args.slurm_gpus < 0:
        raise ExperimentError(f"--slurm-gpus must be >= 0, got {args.slurm_gpus}")
    if args.slurm_time is not None and not _TIME.match(args.slurm_time):
        raise ExperimentError(f"--slurm-time must look like 4:00:00, 90 or 1-00:00:00, got {args.slurm_time!r}")


def time_limit(seconds: float) -> str:
    """``--time`` of ``seconds``, rounded up to whole minutes: ``D-HH:MM:00``."""
    minutes = max(1, math.ceil(seconds / 60))
    days, minutes = divmod(minutes, 24 * 60)
    return f"{days}-{minutes // 60:02d}:{minutes % 60:02d}:00"


def resources_for(p: Preset) -> Resources:
    """The array task resources of preset ``p``'s model size (the ``small`` ones for an unknown size)."""
    return RESOURCES.get(p.zoo_preset, RESOURCES["small"])


def task_argv(argv: Sequence[str]) -> list[str]:
    """A ``--launcher slurm`` command line without the options of this module: what every job runs
    (the array tasks add ``--shard k/n``, the aggregation job ``--aggregate-only``)."""
    return drop_options(argv, valued=VALUED_OPTIONS, flags=("--dry-run",))


def _sbatch_line(option: str) -> str:
    option = option.strip()
    if not option.lstrip("-"):
        raise ExperimentError("--sbatch needs an sbatch option, e.g. --sbatch=--constraint=a100")
    return f"#SBATCH --{option.lstrip('-')}"


def _header(name: str, options: Sequence[str], args: argparse.Namespace, request: Request) -> list[str]:
    """The ``#SBATCH`` lines of a job: its name, ``options``, ``request`` and the options both jobs share."""
    lines = ["#!/bin/bash", f"#SBATCH --job-name={name}", *options]
    lines.append(f"#SBATCH --cpus-per-task={request.cpus}")
    lines.append(f"#SBATCH --mem={request.mem}")
    lines.append(f"#SBATCH --time={request.time}")
    if request.gpus:
        lines.append(f"#SBATCH --gres=gpu:{request.gpus}")
    for flag, value in (("partition", args.slurm_partition), ("account", args.slurm_account), ("qos", args.slurm_qos)):
        if value:
            lines.append(f"#SBATCH --{flag}={value}")
    lines += [_sbatch_line(o) for o in args.sbatch]
    return lines


def plan(
    exp: Experiment,
    args: argparse.Namespace,
    relaunch: Sequence[str],
    argv: Sequence[str],
    *,
    array_job_id: str = "<array job id>",
) -> SlurmPlan:
    """The array and aggregation sbatch scripts that run ``python relaunch argv`` (``relaunch``: the
    script's absolute path, or ``-m marker_excite``; ``argv``: a ``--launcher slurm`` command line) on
    SLURM; ``array_job_id`` fills the aggregation job's dependency."""
    n_jobs = len(exp.jobs)
    tasks = min(args.slurm_tasks or n_jobs, n_jobs, MAX_ARRAY_TASKS)
    jobs_per_task = math.ceil(n_jobs / tasks)
    request = resources_for(exp.preset).request(args, jobs_per_task, exp.preset.epochs)
    logs, scripts = Path(args.out).resolve() / LOGS, Path(args.out).resolve() / SCRIPTS
    command = " ".join(shlex.quote(a) for a in (sys.executable, *relaunch, *task_argv(argv)))
    throttle = f"%{args.slurm_max_running}" if args.slurm_max_running else ""
    array = _header(
        exp.name,
        [
            f"#SBATCH --array=1-{tasks}{throttle}",
            f"#SBATCH --output={logs}/{exp.name}.slurm-%A_%a.log",
            "#SBATCH --open-mode=append",
            "#SBATCH --requeue",
            f"#SBATCH --chdir={Path.cwd()}",
        ],
        args,
        request,
    )
    array += [
        f"# task k of {tasks} runs shard k/{tasks} ({n_jobs} jobs, at most {jobs_per_task} per task); a requeued task",
        "# skips its finished jobs and resumes the interrupted one; the aggregation job aggregates",
        f'export {THREADS_ENV}="${{SLURM_CPUS_PER_TASK:-{request.cpus}}}"',
        f'exec {command} --shard "${{SLURM_ARRAY_TASK_ID}}/{tasks}"',
        "",
    ]
    aggregate = _header(
        f"{exp.name}-aggregate",
        [
            f"#SBATCH --dependency=afterany:{array_job_id}",
            f"#SBATCH --output={logs}/{exp.name}.slurm-aggregate-%j.log",
            f"#SBATCH --chdir={Path.cwd()}",
        ],
        args,
        AGGREGATE_REQUEST,
    )
    aggregate += [
        f"# after every task of array job {array_job_id}, however it ended: aggregate what finished, list what is missing",
        f"exec {command} --aggregate-only",
        "",
    ]
    return SlurmPlan(
        "\n".join(array),
        "\n".join(aggregate),
        scripts / f"{exp.name}.array.sbatch",
        scripts / f"{exp.name}.aggregate.sbatch",
        tasks,
        jobs_per_task,
    )


def sbatch(path: Path) -> str:
    """Submit ``path`` with ``sbatch --parsable``; the job id. Raises :class:`ExperimentError` with
    sbatch's message when it refuses."""
    try:
        done = subprocess.run(["sbatch", "--parsable", str(path)], capture_output=True, text=True)
    except FileNotFoundError:
        raise ExperimentError(
            "sbatch not found: --launcher slurm runs on a SLURM login node (or use --dry-run)"
        ) from None
    if done.returncode != 0:
        message = (done.stderr.strip() or done.stdout.strip() or f"exit {done.returncode}").splitlines()[-1]
        raise ExperimentError(f"sbatch refused {path}: {message}")
    return done.stdout.strip().split(";")[0]


def submit(exp: Experiment, args: argparse.Namespace, relaunch: Sequence[str], argv: Sequence[str]) -> None:
    """Print (``--dry-run``) or write and submit the array and aggregation jobs of ``exp``; prints the job
    ids and the commands to watch them."""
    p = plan(exp, args, relaunch, argv)
    if args.dry_run:
        print(f"# {p.array_path}\n{p.array_script}# {p.aggregate_path}\n{p.aggregate_script}", end="")
        return
    (Path(args.out) / LOGS).mkdir(parents=True, exist_ok=True)  # sbatch does not create the log folder
    atomic.write_text(p.array_path, p.array_script)
    array_id = sbatch(p.array_path)
    p = plan(exp, args, relaunch, argv, array_job_id=array_id)
    atomic.write_text(p.aggregate_path, p.aggregate_script)
    try:
        aggregate_id = sbatch(p.aggregate_path)
    except ExperimentError as exc:
        raise ExperimentError(f"array job {array_id} submitted, but the aggregation job not: {exc}") from None
    logs = Path(args.out).resolve() / LOGS
    print(
        f"{exp.name}: submitted array job {array_id} ({p.tasks} task(s), at most {p.jobs_per_task} of "
        f"{len(exp.jobs)} job(s) each) and aggregation job {aggregate_id} (after the array)\n"
        f"watch:  squeue --array --jobs {array_id},{aggregate_id}\n"
        f"        sacct --jobs {array_id},{aggregate_id} --format=JobID,JobName,State,Elapsed,NodeList,ExitCode\n"
        f"logs:   {logs}/{exp.name}.slurm-{array_id}_<task>.log, {logs}/{exp.name}.slurm-aggregate-{aggregate_id}.log"
    )
