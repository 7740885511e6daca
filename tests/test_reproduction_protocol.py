"""The CPU reproduction protocol (`--preset cpu`) converges: one real job, as the experiment scripts run it.

Slow (~4-5 minutes on 2 cores): `make test-all` runs it, `make test` does not.
"""

import pytest

from marker_excite import experiments as E
from marker_excite.analysis.results import read_results
from marker_excite.experiments.report import PLATEAU_RANGE
from marker_excite.runs.log import read_log


@pytest.mark.slow
def test_cpu_protocol_reaches_a_plateau(tmp_path):
    exp = E.experiment("fig3_attention", "cpu", folds=[0], classes=["sinusoids"], models=["MS"])
    summary = E.run_jobs(exp, tmp_path, progress=False)
    assert summary.ran == ["MS__all__sinusoids__f0"]
    run = E.job_run_dir(tmp_path, exp.jobs[0])
    values = [float(r["val_mean_f1"]) for r in read_log(run / "log.csv")]
    assert len(values) == 60
    tail = values[-15:]
    assert max(tail) - min(tail) < PLATEAU_RANGE  # the protocol's convergence criterion
    f1 = [r["value"] for r in read_results(run / E.EVALUATION_CSV) if r["metric"] == "f1"]
    assert len(f1) == 31 and sum(f1) / 31 > 0.6
