"""A real single-node SLURM cluster for the slow tests: munged + slurmctld + slurmd started as root from a
minimal ``slurm.conf`` in a temporary folder (no systemd), stopped by pid.

``make slurm-test`` installs Debian's ``slurm-wlm`` and ``munge`` where missing and runs the tests that use
the ``slurm_cluster`` fixture (tests/test_slurm.py). Where the binaries are missing or the tests do not
run as root, the fixture skips with the reason.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from marker_excite.experiments.workers import _stop_with_parent as stop_with_parent  # daemons die with pytest

BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "sinfo", "squeue", "scontrol")
PARTITION = "test"
NODE = "localhost"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _memory_mb() -> int:
    """The machine's memory in MB (the node's RealMemory, so that ``--mem`` requests fit)."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    raise RuntimeError("no MemTotal in /proc/meminfo")


def slurm_conf(root: Path, cpus: int, ports: tuple[int, int]) -> str:
    """A minimal single-node configuration: every state, spool, pid and log file under ``root``."""
    return "\n".join(
        [
            "ClusterName=marker-excite-test",
            f"SlurmctldHost={NODE}",
            "SlurmUser=root",
            "SlurmdUser=root",
            f"SlurmctldPort={ports[0]}",
            f"SlurmdPort={ports[1]}",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={root / 'munge.socket'}",
            f"StateSaveLocation={root / 'state'}",
            f"SlurmdSpoolDir={root / 'spool'}",
            f"SlurmctldPidFile={root / 'slurmctld.pid'}",
            f"SlurmdPidFile={root / 'slurmd.pid'}",
            f"SlurmctldLogFile={root / 'slurmctld.log'}",
            f"SlurmdLogFile={root / 'slurmd.log'}",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "MpiDefault=none",
            "ReturnToService=2",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "SchedulerType=sched/backfill",
            "SchedulerParameters=sched_interval=1",
            "MinJobAge=600",
            f"NodeName={NODE} CPUs={cpus} RealMemory={_memory_mb()} State=UNKNOWN",
            f"PartitionName={PARTITION} Nodes={NODE} Default=YES MaxTime=INFINITE State=UP",
            "",
        ]
    )


@dataclass
class SlurmCluster:
    """The running cluster: its folder, the environment its client commands need (``SLURM_CONF``) and
    the daemons this fixture started."""

    root: Path
    env: dict[str, str]
    processes: list[subprocess.Popen] = field(default_factory=list)

    def run(self, *command: str, check: bool = True) -> str:
        """Run a SLURM client command against this cluster; its stdout."""
        done = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=60)
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.strip()}")
        return done.stdout

    def job_states(self, job_id: str) -> dict[str, str]:
        """``<job id>[_<task>]`` -> state of the job (array tasks one by one), while slurmctld remembers it."""
        out = self.run("squeue", "--noheader", "--states=all", "--array", "--format=%i %T", "--jobs", job_id)
        return dict(line.split() for line in out.splitlines() if line.strip())

    def wait_until_done(self, job_ids: list[str], timeout: float) -> dict[str, str]:
        """Wait until no job of ``job_ids`` is pending, running or requeued; their final states."""
        deadline = time.monotonic() + timeout
        while True:
            states = {k: v for j in job_ids for k, v in self.job_states(j).items()}
            if states and all(s not in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED")
                              for s in states.values()):  # fmt: skip
                return states
            if time.monotonic() > deadline:
                raise TimeoutError(f"jobs still running after {timeout:.0f} s: {states}; logs in {self.root}")
            time.sleep(1.0)

    def stop(self) -> None:
        """SIGTERM each daemon this fixture started (slurmd, slurmctld, munged), SIGKILL after 15 s."""
        for proc in reversed(self.processes):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def skip_reason() -> str | None:
    """Why a real cluster cannot start here (None when it can)."""
    missing = [b for b in BINARIES if shutil.which(b) is None and not Path("/usr/sbin", b).is_file()]
    if missing:
        return f"SLURM/munge binaries missing ({', '.join(missing)}): apt-get install slurm-wlm munge (make slurm-test)"
    if os.geteuid() != 0:
        return "the test SLURM cluster (slurmctld, slurmd, munged) must be started as root"
    return None


def _binary(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


def start_cluster(root: Path, cpus: int = 2, timeout: float = 60.0) -> SlurmCluster:
    """Start munged, slurmctld and slurmd in ``root``; returns once ``sinfo`` shows the node idle."""
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o700)  # munged refuses a key or socket in a folder others may write to
    for sub in ("state", "spool"):
        (root / sub).mkdir(exist_ok=True)
    key = root / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    conf = root / "slurm.conf"
    conf.write_text(slurm_conf(root, cpus, (_free_port(), _free_port())))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    cluster = SlurmCluster(root, env)
    daemons = [
        [_binary("munged"), "--foreground", "--force", f"--key-file={key}", f"--socket={root / 'munge.socket'}",
         f"--pid-file={root / 'munged.pid'}", f"--log-file={root / 'munged.log'}",
         f"--seed-file={root / 'munge.seed'}"],
        [_binary("slurmctld"), "-D", "-i", "-f", str(conf)],
        [_binary("slurmd"), "-D", "-N", NODE, "-f", str(conf)],
    ]  # fmt: skip
    try:
        for command in daemons:
            with open(root / f"{Path(command[0]).name}.out", "ab") as log:
                cluster.processes.append(
                    subprocess.Popen(
                        command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=root, preexec_fn=stop_with_parent
                    )
                )
            time.sleep(0.5)
            if cluster.processes[-1].poll() is not None:
                raise RuntimeError(f"{command[0]} exited at start; see {root}")
        deadline = time.monotonic() + timeout
        while True:
            out = cluster.run("sinfo", "--noheader", "--format=%t", check=False).split()
            if out and out[0] == "idle":
                return cluster
            if time.monotonic() > deadline:
                raise RuntimeError(f"the SLURM node is not idle after {timeout:.0f} s (sinfo: {out}); see {root}")
            time.sleep(0.5)
    except BaseException:
        cluster.stop()
        raise


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory) -> Iterator[SlurmCluster]:
    """A single-node SLURM cluster (2 CPUs, partition ``test``) for the module's tests; stopped at the end."""
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    cluster = start_cluster(tmp_path_factory.mktemp("slurm"))
    try:
        yield cluster
    finally:
        cluster.stop()
