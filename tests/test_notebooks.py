"""The notebooks run top to bottom against a tiny results folder and a tiny phantom made here."""

import csv
import os
from pathlib import Path

import pytest

from marker_excite import experiments as E
from marker_excite.analysis.results import write_results

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
RESULTS = NOTEBOOKS.parent / "experiments" / "results"
#: The committed experiment output folders (each holds runs/*/evaluation.csv).
COMMITTED_RESULTS = sorted({p.parents[2] for p in RESULTS.glob("**/runs/*/evaluation.csv")})


def _execute(name: str, env: dict[str, str | None], cwd: Path):
    """Run a notebook top to bottom with ``env`` set (None: unset) and return it with its outputs."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), f"{name} is stored with outputs"
    old = {k: os.environ.get(k) for k in env}
    for k, v in env.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    try:
        nbclient.NotebookClient(
            nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
        ).execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return nb


def _run(name: str, env: dict[str, str | None], cwd: Path) -> str:
    """The printed text of a notebook run top to bottom."""
    return _text(_execute(name, env, cwd))


def _text(nb) -> str:
    """Everything an executed notebook printed."""
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


def _figures(nb) -> list[str]:
    """Per figure shown, in order: ``png`` for a drawn image, else its text (``<Figure size ...>``)."""
    shown = [o["data"] for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if "data" in o]
    return ["png" if "image/png" in d else d.get("text/plain", "") for d in shown]


def test_every_notebook_is_run_by_these_tests():
    tested = {"explore_results.ipynb", "phantom.ipynb", "look_at_a_prediction.ipynb"}
    assert {p.name for p in NOTEBOOKS.glob("*.ipynb")} == tested


def test_explore_results_notebook_on_the_committed_results():
    """Opened as a user opens it (no settings): the committed CPU reproduction, tissue model included."""
    assert RESULTS / "cpu" in COMMITTED_RESULTS
    nb = _execute("explore_results.ipynb", {"MARKER_EXCITE_RESULTS": None, "MARKER_EXCITE_REFERENCE": None}, NOTEBOOKS)
    text = _text(nb)
    assert f"rows from {RESULTS / 'cpu'}: models" in text
    assert "UB-tissue  tissue     1: 0.984" in text
    assert not any(line.rstrip().endswith(("tissue", "arteries", "sinusoids")) for line in text.splitlines())
    assert "MS-ME rel. to MS: mean +0.0098, n=248, p=0.457 n.s." in text
    assert "UB rel. to MS: mean +0.0538, n=124" in text
    assert (
        "UB-tissue not compared: no (class, subset, fold) in common with MS (classes tissue vs arteries, sinusoids)"
        in text
    )
    assert _figures(nb) and set(_figures(nb)) == {"png"}


@pytest.mark.slow
@pytest.mark.parametrize("results", COMMITTED_RESULTS, ids=lambda p: str(p.relative_to(RESULTS)))
def test_explore_results_notebook_on_every_committed_results_folder(results):
    text = _run("explore_results.ipynb", {"MARKER_EXCITE_RESULTS": str(results), "MARKER_EXCITE_REFERENCE": None},
                NOTEBOOKS)  # fmt: skip
    models = sorted({r["model"] for r in E.select(E.load_results(results), metric="f1", case="")})
    assert f"rows from {results}: models {models}" in text
    if "MS" in models and len(models) > 1:
        assert " rel. to MS: mean " in text


def test_explore_results_notebook(tmp_path):
    for job in [E.Job(m, ("sinusoids",), f) for m in ("MS", "MS-ME") for f in (0, 1)]:
        rows = [
            dict(
                model=job.label,
                fold=job.fold,
                **{"class": "sinusoids"},
                subset=s.label,
                n_markers=len(s),
                metric="f1",
                value=0.4 + 0.1 * len(s) + (0.05 if job.model == "MS-ME" else 0),
            )
            for s in E.all_subsets()
        ]
        write_results(rows, E.job_run_dir(tmp_path, job) / E.EVALUATION_CSV)
    text = _run(
        "explore_results.ipynb", {"MARKER_EXCITE_RESULTS": str(tmp_path), "MARKER_EXCITE_REFERENCE": "MS"}, tmp_path
    )
    assert "124 rows" in text
    assert "MS-ME rel. to MS: mean +0.0500, n=62" in text


def test_phantom_notebook(tmp_path):
    from marker_excite.data.synthetic import write_dataset

    store = write_dataset(tmp_path / "p.h5", "small", samples=2, shape=(3, 40, 40), progress=False)
    text = _run("phantom.ipynb", {"MARKER_EXCITE_STORE": str(store), "MARKER_EXCITE_SAMPLE": "s2"}, tmp_path)
    assert "2 samples: ['s1', 's2']" in text and "s2: diaphysis, shape (z, y, x) (3, 40, 40)" in text
    assert "MIP shape (5, 40, 40)" in text


def _demo_folder(tmp_path):
    """A demo output folder in miniature (as `make demo` leaves it), with a notebooks/ folder beside it."""
    from conftest import make_run

    from marker_excite.cli import main
    from marker_excite.contract.markers import PAPER_MARKERS
    from marker_excite.data.synthetic import write_dataset

    demo = tmp_path / "demo_output"
    store = write_dataset(demo / "phantom.h5", "small", samples=2, shape=(3, 40, 40), progress=False)
    run = make_run(demo / "runs" / "ms-me_sinusoids_fold0", markers=PAPER_MARKERS)[0]
    assert main(["predict", str(run), f"{store}:s2", "--use", "DAPI,endomucin,collagen", "--quiet",
                 "--labels", str(demo / "s2_labels.ome.tif"), "--probabilities", str(demo / "s2_probabilities.ome.tif"),
                 "--prob-dtype", "uint8"]) == 0  # fmt: skip
    assert main(["quantify", "--store", str(store), "--model", str(run), "--quiet",
                 "-o", str(demo / "quantification.csv")]) == 0  # fmt: skip
    (tmp_path / "notebooks").mkdir()
    return demo


def test_look_at_a_prediction_notebook_reads_the_demo_output(tmp_path):
    import numpy as np

    from marker_excite.data.io import open_volume
    from marker_excite.data.store import SampleStore

    demo = _demo_folder(tmp_path)
    nb = _execute("look_at_a_prediction.ipynb", {}, tmp_path / "notebooks")  # finds ../demo_output by itself
    text = _text(nb)
    assert _figures(nb)[:3] == ["png", "png", "png"]  # drawn, not shown as "<Figure size ...>"
    assert "run ms-me_sinusoids_fold0: MS-ME, panel DAPI+endomucin+endoglin+collagen+CXCL12-GFP" in text
    assert "prediction of sample s2 with DAPI+endomucin+collagen" in text
    with open_volume(demo / "s2_labels.ome.tif") as lab, SampleStore(demo / "phantom.h5", "r") as store:
        labels = lab.read_volume()[0]
        annotated = store.info("s2").annotated_slices
        true = np.stack([store.read_slice("s2", z)[1]["sinusoids"] > 0 for z in annotated])
    pred = labels[annotated] == 1
    tp, fp, fn = int((true & pred).sum()), int((~true & pred).sum()), int((true & ~pred).sum())
    assert (
        f"slice 1 of 3: markers DAPI+endomucin+collagen; sinusoids {100 * (labels[1] == 1).mean():.1f}% of the pixels"
        in text
    )
    assert (
        f"MIP over 3 slices: markers DAPI+endomucin+collagen; sinusoids {100 * (labels == 1).any(0).mean():.1f}%"
        in text
    )
    assert (f"sinusoids: F1 {2 * tp / (2 * tp + fp + fn):.3f} against the phantom's labels on {len(annotated)} annotated "
            f"slices ({tp} TP, {fp} FP, {fn} FN voxels)") in text  # fmt: skip
    assert "no " + str(demo / "runs" / "ms-me_sinusoids_fold0" / "evaluation.csv") in text
    assert "quantification.csv (tissue mask: Otsu threshold on DAPI)" in text
    with open(demo / "quantification.csv", newline="") as fh:
        first = next(csv.DictReader(fh))
    shown = first["note"] or f"{100 * float(first['fraction']):5.1f}%"
    assert f"  {first['sample']:<4} {first['region']:<11} sinusoids  predicted {shown}  true " in text


def test_phantom_notebook_opens_the_demo_store_by_default(tmp_path):
    _demo_folder(tmp_path)
    text = _run("phantom.ipynb", {}, tmp_path / "notebooks")
    assert "2 samples: ['s1', 's2']" in text


def test_explore_results_notebook_with_few_or_no_results(tmp_path):
    job = E.Job("MS", ("sinusoids",), 0)
    rows = [
        dict(
            model=job.label, fold=0, **{"class": "sinusoids"}, subset=s.label, n_markers=len(s), metric="f1", value=0.5
        )
        for s in E.all_subsets()[:3]
    ]
    write_results(rows, E.job_run_dir(tmp_path / "one", job) / E.EVALUATION_CSV)
    text = _run("explore_results.ipynb", {"MARKER_EXCITE_RESULTS": str(tmp_path / "one")}, tmp_path)
    assert "3 rows from" in text and "MS, sinusoids: worst" in text
    (tmp_path / "none").mkdir()
    text = _run("explore_results.ipynb", {"MARKER_EXCITE_RESULTS": str(tmp_path / "none")}, tmp_path)
    assert "no results in" in text and "0 rows from" in text
