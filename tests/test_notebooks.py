"""The notebooks run top to bottom against a tiny results folder and a tiny phantom made here."""

import os
from pathlib import Path

import pytest

from marker_excite import experiments as E
from marker_excite.evaluation import write_results

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def _run(name: str, env: dict[str, str], cwd: Path) -> str:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), f"{name} is stored with outputs"
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        nbclient.NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    return text


def test_explore_results_notebook(tmp_path):
    for job in [E.Job(m, ("sinusoids",), f) for m in ("MS", "MS-ME") for f in (0, 1)]:
        rows = [dict(model=job.label, fold=job.fold, **{"class": "sinusoids"}, subset=s.label,
                     n_markers=len(s), metric="f1", value=0.4 + 0.1 * len(s) + (0.05 if job.model == "MS-ME" else 0))
                for s in E.all_subsets()]
        write_results(rows, E.run_dir(tmp_path, job) / E.EVALUATION_CSV)
    text = _run("explore_results.ipynb", {"MARKER_EXCITE_RESULTS": str(tmp_path), "MARKER_EXCITE_REFERENCE": "MS"}, tmp_path)
    assert "124 rows" in text
    assert "MS-ME rel. to MS: mean +0.0500, n=62" in text


def test_phantom_notebook(tmp_path):
    from marker_excite.data.synthetic import write_dataset

    store = write_dataset(tmp_path / "p.h5", "small", samples=2, shape=(3, 40, 40), progress=False)
    text = _run("phantom.ipynb", {"MARKER_EXCITE_STORE": str(store), "MARKER_EXCITE_SAMPLE": "s2"}, tmp_path)
    assert "2 samples: ['s1', 's2']" in text and "s2: diaphysis, shape (z, y, x) (3, 40, 40)" in text
    assert "MIP shape (5, 40, 40)" in text
