"""--launcher slurm: the sbatch scripts (--dry-run), the submission (a stub sbatch), and one slow test
against a real single-node SLURM cluster (tests/slurm_cluster.py; ``make slurm-test``)."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from slurm_cluster import slurm_cluster  # noqa: F401  (the fixture)

from marker_excite.analysis.results import read_results
from marker_excite.experiments import RESULTS_CSV, experiment
from marker_excite.experiments.cli import script_main
from marker_excite.experiments.slurm import time_limit

ROOT = Path(__file__).resolve().parents[1]
FIG1 = ROOT / "experiments" / "fig1_upper_bound.py"


@pytest.fixture
def as_fig1_script(monkeypatch):
    """Run script_main as experiments/fig1_upper_bound.py would (the script that the jobs run again)."""
    monkeypatch.setattr(sys, "argv", [str(FIG1)])


def dry_run(capsys, out: Path, *options: str) -> tuple[list[str], list[str]]:
    """The array and aggregation scripts that --dry-run prints for the small Fig. 1 (31 jobs), as lines."""
    argv = ["--out", str(out), "--launcher", "slurm", "--dry-run", *options]
    assert script_main("fig1_upper_bound", argv) == 0
    printed = capsys.readouterr().out
    array, aggregate = printed.split(f"# {out.resolve()}/slurm/fig1_upper_bound.aggregate.sbatch\n")
    assert array.startswith(f"# {out.resolve()}/slurm/fig1_upper_bound.array.sbatch\n#!/bin/bash\n")
    assert not out.exists()  # a dry run writes nothing
    return array.splitlines()[1:], aggregate.splitlines()


def test_dry_run_prints_the_array_and_its_aggregation(tmp_path, capsys, as_fig1_script):
    out = tmp_path / "fig1"
    array, aggregate = dry_run(capsys, out, "--slurm-tasks", "4", "--quiet")
    assert len(experiment("fig1_upper_bound", "small").jobs) == 31
    command = f"{sys.executable} {FIG1} --out {out} --quiet"
    assert array == [
        "#!/bin/bash",
        "#SBATCH --job-name=fig1_upper_bound",
        "#SBATCH --array=1-4",
        f"#SBATCH --output={out}/logs/fig1_upper_bound.slurm-%A_%a.log",
        "#SBATCH --open-mode=append",
        "#SBATCH --requeue",
        f"#SBATCH --chdir={Path.cwd()}",
        "#SBATCH --cpus-per-task=2",
        "#SBATCH --mem=4G",
        "#SBATCH --time=0-01:07:00",  # 8 jobs of the 31 x (20 epochs x 10 s + 300 s) = 4,000 s
        "# task k of 4 runs shard k/4 (31 jobs, at most 8 per task); a requeued task",
        "# skips its finished jobs and resumes the interrupted one; the aggregation job aggregates",
        'export MARKER_EXCITE_THREADS="${SLURM_CPUS_PER_TASK:-2}"',
        f'exec {command} --shard "${{SLURM_ARRAY_TASK_ID}}/4"',
    ]
    assert aggregate == [
        "#!/bin/bash",
        "#SBATCH --job-name=fig1_upper_bound-aggregate",
        "#SBATCH --dependency=afterany:<array job id>",
        f"#SBATCH --output={out}/logs/fig1_upper_bound.slurm-aggregate-%j.log",
        f"#SBATCH --chdir={Path.cwd()}",
        "#SBATCH --cpus-per-task=1",
        "#SBATCH --mem=8G",
        "#SBATCH --time=0-01:00:00",
        "# after every task of array job <array job id>, however it ended: aggregate what finished, list what is missing",
        f"exec {command} --aggregate-only",
    ]


def test_dry_run_resources_and_overrides(tmp_path, capsys, as_fig1_script):
    array, _ = dry_run(capsys, tmp_path / "a", "--preset", "paper")
    # paper: one array task per job (248 per-class + 124 two-class models), one GPU each
    assert "#SBATCH --array=1-372" in array and "#SBATCH --gres=gpu:1" in array
    assert "#SBATCH --cpus-per-task=4" in array and "#SBATCH --mem=32G" in array
    assert "#SBATCH --time=0-00:44:00" in array  # 200 epochs x 10 s + 600 s = 2,600 s
    assert array[-1].endswith('--preset paper --shard "${SLURM_ARRAY_TASK_ID}/372"')
    options = ["--preset", "paper", "--slurm-tasks", "100", "--slurm-max-running", "8", "--slurm-gpus", "2"]
    options += ["--slurm-cpus=6", "--slurm-mem", "64G", "--slurm-time", "1-00:00:00", "--slurm-partition", "gpu"]
    options += [
        "--slurm-account",
        "lab",
        "--slurm-qos",
        "long",
        "--sbatch=--constraint=h100",
        "--sbatch",
        "mail-type=END",
    ]
    array, aggregate = dry_run(capsys, tmp_path / "b", *options)
    wanted = ["--array=1-100%8", "--gres=gpu:2", "--cpus-per-task=6", "--mem=64G", "--time=1-00:00:00"]
    wanted += ["--partition=gpu", "--account=lab", "--qos=long", "--constraint=h100", "--mail-type=END"]
    assert all(f"#SBATCH {w}" in array for w in wanted)
    assert array[-1].endswith('--preset paper --shard "${SLURM_ARRAY_TASK_ID}/100"')  # no --slurm-* option left
    # the aggregation job: same partition, account, QOS and extra lines, no GPU, its own CPUs / memory / time
    shared = ["--partition=gpu", "--account=lab", "--qos=long", "--constraint=h100", "--mail-type=END"]
    assert all(f"#SBATCH {w}" in aggregate for w in shared)
    assert not any("gres" in line or "--array" in line for line in aggregate)
    assert aggregate[-1].endswith("--preset paper --aggregate-only")
    # more tasks than jobs: one task per job
    array, _ = dry_run(capsys, tmp_path / "c", "--slurm-tasks", "500", "--slurm-gpus", "0")
    assert "#SBATCH --array=1-31" in array and not any("gres" in line for line in array)


def test_time_limit_rounds_up_to_minutes():
    assert time_limit(1) == "0-00:01:00"
    assert time_limit(3600) == "0-01:00:00"
    assert time_limit(3601) == "0-01:01:00"
    assert time_limit(2 * 86400 + 5 * 3600 + 60) == "2-05:01:00"


@pytest.mark.parametrize(
    "options, message",
    [
        (["--dry-run"], "--dry-run prints the sbatch scripts of --launcher slurm: add --launcher slurm"),
        (["--slurm-partition", "gpu"], "--slurm-partition is an option of --launcher slurm: add --launcher slurm"),
        (["--sbatch=x=1"], "--sbatch is an option of --launcher slurm: add --launcher slurm"),
        (
            ["--launcher", "slurm", "--shard", "2/4", "--dry-run"],
            "--launcher slurm makes one array task per shard itself",
        ),
        (
            ["--launcher", "slurm", "--workers", "2", "--dry-run"],
            "--launcher slurm makes one array task per shard itself",
        ),
        (
            ["--launcher", "slurm", "--aggregate-only", "--dry-run"],
            "--launcher slurm submits the jobs and their aggregation",
        ),
        (["--launcher", "slurm", "--slurm-tasks", "0", "--dry-run"], "--slurm-tasks must be >= 1, got 0"),
        (["--launcher", "slurm", "--slurm-gpus", "-1", "--dry-run"], "--slurm-gpus must be >= 0, got -1"),
        (
            ["--launcher", "slurm", "--slurm-time", "2h", "--dry-run"],
            "--slurm-time must look like 4:00:00, 90 or 1-00:00:00",
        ),
        (["--launcher", "slurm", "--sbatch=-", "--dry-run"], "--sbatch needs an sbatch option"),
        (["--launch", "slurm", "--dry-run"], "write --launcher slurm in full (the array tasks must run locally)"),
    ],
)
def test_bad_slurm_options_are_one_error_line(tmp_path, capsys, as_fig1_script, options, message):
    assert script_main("fig1_upper_bound", ["--out", str(tmp_path / "o"), *options]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"fig1_upper_bound: error: {message}") and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_slurm_needs_the_script_itself(tmp_path, capsys):
    assert script_main("fig1_upper_bound", ["--out", str(tmp_path), "--launcher", "slurm", "--dry-run"]) == 2
    assert "--workers and --launcher slurm start experiments/fig1_upper_bound.py again" in capsys.readouterr().err


STUB_SBATCH = """#!/bin/sh
# records its arguments; the first call is the array (id 41), the second the aggregation (id 42)
echo "$@" >> "{calls}"
if [ -n "$REFUSE" ] && [ "$(wc -l < "{calls}")" -ge "$REFUSE" ]; then echo "sbatch: error: Invalid account" >&2; exit 1; fi
if [ "$(wc -l < "{calls}")" -eq 1 ]; then echo "41;cluster"; else echo 42; fi
"""


def stub_sbatch(tmp_path: Path, monkeypatch) -> Path:
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls.txt"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(STUB_SBATCH.format(calls=calls))
    (bin_dir / "sbatch").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return calls


def test_submit_writes_both_scripts_and_chains_the_aggregation(tmp_path, capsys, monkeypatch, as_fig1_script):
    """A stub sbatch (tests/slurm_cluster.py and the slow test below use the real one)."""
    calls = stub_sbatch(tmp_path, monkeypatch)
    store = tmp_path / "store.h5"
    store.write_bytes(b"")  # --store: no phantom generated
    out = tmp_path / "fig1"
    argv = ["--out", str(out), "--store", str(store), "--launcher", "slurm", "--slurm-tasks", "2"]
    assert script_main("fig1_upper_bound", argv) == 0
    scripts = out.resolve() / "slurm"
    assert calls.read_text().splitlines() == [
        f"--parsable {scripts}/fig1_upper_bound.array.sbatch",
        f"--parsable {scripts}/fig1_upper_bound.aggregate.sbatch",
    ]
    assert "#SBATCH --array=1-2\n" in (scripts / "fig1_upper_bound.array.sbatch").read_text()
    assert "#SBATCH --dependency=afterany:41\n" in (scripts / "fig1_upper_bound.aggregate.sbatch").read_text()
    assert (out / "logs").is_dir()  # SLURM writes the logs there but does not create the folder
    printed = capsys.readouterr().out
    assert "submitted array job 41 (2 task(s), at most 16 of 31 job(s) each) and aggregation job 42" in printed
    assert "squeue --array --jobs 41,42" in printed and "sacct --jobs 41,42" in printed
    # sbatch refusing the aggregation job: one line that says the array is submitted
    calls.unlink()
    monkeypatch.setenv("REFUSE", "2")
    assert script_main("fig1_upper_bound", argv) == 2
    err = capsys.readouterr().err
    assert err == (
        "fig1_upper_bound: error: array job 41 submitted, but the aggregation job not: sbatch refused "
        f"{scripts}/fig1_upper_bound.aggregate.sbatch: sbatch: error: Invalid account\n"
    )


def test_submit_without_sbatch_is_one_error_line(tmp_path, capsys, monkeypatch, as_fig1_script):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch
    store = tmp_path / "store.h5"
    store.write_bytes(b"")
    assert (
        script_main("fig1_upper_bound", ["--out", str(tmp_path / "o"), "--store", str(store), "--launcher", "slurm"])
        == 2
    )
    assert capsys.readouterr().err == (
        "fig1_upper_bound: error: sbatch not found: --launcher slurm runs on a SLURM login node (or use --dry-run)\n"
    )


# -- a real SLURM ---------------------------------------------------------------------------------------------------
#: experiments/fig3_attention.py at a tiny preset (1 epoch of a depth-2, 4-filter network, 2 folds), as a script
#: of the same name (the one that the array tasks and the aggregation job run again)
TINY_FIG3 = """
from marker_excite.experiments import PRESETS
PRESETS["tiny"] = PRESETS["small"].replace(
    name="tiny", epochs=1, batch_size=4, n_folds=2, folds=(0, 1),
    model_overrides=dict(depth=2, base_filters=4, input_size=44),
)
path = {script!r}
with open(path) as fh:
    exec(compile(fh.read(), path, "exec"), {{"__name__": "__main__"}})  # sys.argv[0] stays this script
"""


def _results(out: Path) -> dict[tuple, float]:
    rows = read_results(out / "fig3_attention" / RESULTS_CSV)
    return {(r["model"], r["fold"], r["class"], r["subset"], r["metric"]): r["value"] for r in rows}


@pytest.mark.slow
def test_real_slurm_array_with_a_requeue_aggregates_what_a_local_run_does(slurm_cluster, tmp_path):  # noqa: F811
    """fig3 (MS, MS-ME) x 2 folds = 4 jobs as 2 array tasks on a real single-node SLURM; task 1 is requeued
    (``scontrol requeue``) after its first job: it skips that job, runs its second, and the aggregation job
    writes the same results a local run of the same command does. SLURM holds a requeued job back for
    about two minutes (its BeginTime), most of the test's ~5 minutes."""
    from marker_excite.data.synthetic import write_dataset

    store = write_dataset(tmp_path / "tiny.h5", "small", samples=4, shape=(3, 48, 48), progress=False)
    script = tmp_path / "fig3_attention.py"
    script.write_text(TINY_FIG3.format(script=str(ROOT / "experiments" / "fig3_attention.py")))
    env = {**slurm_cluster.env, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    common = [sys.executable, str(script), "--preset", "tiny", "--store", str(store), "--models", "MS,MS-ME"]

    def run(*options: str) -> str:
        done = subprocess.run([*common, *options], env=env, capture_output=True, text=True, cwd=tmp_path, timeout=900)
        assert done.returncode == 0, done.stderr
        return done.stdout

    out = tmp_path / "slurm"
    submitted = run(
        "--out", str(out), "--launcher", "slurm", "--slurm-tasks", "2", "--slurm-cpus", "1", "--slurm-mem", "1G"
    )
    words = submitted.split()
    array_id, aggregate_id = words[words.index("array") + 2], words[words.index("aggregation") + 2]
    assert "(2 task(s), at most 2 of 4 job(s) each)" in submitted
    # requeue task 1 (shard 1/2: jobs 1 and 3) once its first job is finished
    first, second = (out / "runs" / j for j in run("--out", str(out), "--list", "--shard", "1/2").split())
    deadline = time.monotonic() + 600
    while not (first / "evaluation.csv").is_file():
        running = slurm_cluster.job_states(f"{array_id}_1").get(f"{array_id}_1") in ("PENDING", "RUNNING")
        assert running and time.monotonic() < deadline, f"task 1 did not finish its first job; see {out / 'logs'}"
        time.sleep(0.2)
    requeued_while = slurm_cluster.job_states(f"{array_id}_1")[f"{array_id}_1"]
    slurm_cluster.run("scontrol", "requeue", f"{array_id}_1")
    states = slurm_cluster.wait_until_done([array_id, aggregate_id], timeout=900)
    assert set(states.values()) == {"COMPLETED"}, states
    log = (out / "logs" / f"fig3_attention.slurm-{array_id}_1.log").read_text()
    if requeued_while == "RUNNING":  # the usual case: the requeued task skipped its finished job
        assert "shard 1/2: ran 1, skipped 1 finished job(s)" in log, log
    assert (second / "evaluation.csv").is_file()
    aggregate_log = (out / "logs" / f"fig3_attention.slurm-aggregate-{aggregate_id}.log").read_text()
    assert "missing" not in aggregate_log and f"results: {out}/fig3_attention/{RESULTS_CSV}" in aggregate_log
    # the same command run here: the same runs, so the same aggregated results
    local = tmp_path / "local"
    run("--out", str(local), "--quiet")
    slurm_results, local_results = _results(out), _results(local)
    assert len(slurm_results) == 744  # 4 jobs x 31 subsets x 6 metrics
    # bit-identical, not within a tolerance: every job is seeded and trains with deterministic ops
    # (TrainConfig.deterministic), so one thread per array task gives what two threads give here
    assert slurm_results == local_results


def test_aggregate_only_names_the_missing_jobs(tmp_path, capsys):
    """What the aggregation job's log says when array tasks failed: the ids of the jobs still missing."""
    from test_experiments import _fake_rows, _score

    from marker_excite.analysis.results import write_results
    from marker_excite.experiments import EVALUATION_CSV, job_run_dir

    jobs = experiment("fig1_upper_bound", "small").jobs
    for job in jobs[:20]:
        write_results(_fake_rows(job, _score), job_run_dir(tmp_path, job) / EVALUATION_CSV)
    assert script_main("fig1_upper_bound", ["--out", str(tmp_path), "--aggregate-only", "--quiet"]) == 0
    note = capsys.readouterr().out.splitlines()[-1]
    shown = ", ".join(j.job_id for j in jobs[20:30])
    assert note == f"note: 11 job(s) missing from the aggregate: {shown}, ..."
