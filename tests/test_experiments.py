"""Experiment engine: job lists, ids, sharding, Case tables, resume, aggregation (one real tiny job)."""

import csv
import json
import os
from pathlib import Path

import pytest
from conftest import TINY_EXPERIMENT

from marker_excite import experiments as E
from marker_excite.analysis.results import read_results, write_results
from marker_excite.errors import UserInputError

_s = E.PAPER_PANEL.parse_subset  # "m_125" -> Subset of the paper panel


# -- job lists ----------------------------------------------------------------------------------------
def test_fig1_counts_ids_and_subsets():
    exp = E.experiment("fig1_upper_bound", "paper", joint=False)
    assert len(exp.jobs) == 31 * 2 * 4 == 248
    ids = [j.job_id for j in exp.jobs]
    assert len(set(ids)) == len(ids)
    assert ids[0] == "UB__m_1__sinusoids__f0"
    assert "UB__m_12345__arteries__f3" in ids
    assert {j.subset for j in exp.jobs} == set(E.all_subsets())
    ub = next(j for j in exp.jobs if j.subset == _s("m_125"))
    assert ub.markers == ("DAPI", "endomucin", "CXCL12-GFP")
    assert ub.eval_subsets == [("DAPI", "endomucin", "CXCL12-GFP")]
    # joint two-class models double the folds x subsets once more (Fig. 1b,f)
    joint = E.experiment("fig1_upper_bound", "paper")
    assert len(joint.jobs) == 248 + 31 * 4
    assert "UB-joint__m_24__sinusoids-arteries__f1" in [j.job_id for j in joint.jobs]
    assert [a.name for a in joint.analyses] == ["fig1cg", "fig1d", "fig1e", "fig1h", "fig1i", "fig1bf"]


def test_job_ids_labels_and_case_tables_are_pinned():
    """Committed results (experiments/results/) are resumed by job id and read by subset label: both, and
    the Case tables in the paper's 1-based notation, must never change."""
    ids = {j.job_id for name in E.EXPERIMENTS for j in E.experiment(name, "cpu").jobs}
    assert {
        "UB__m_125__sinusoids__f0",
        "UB-case3__m_23__case3__sinusoids__f0",
        "MS__all__sinusoids__f0",
        "MS-ME__all__case3__arteries__f2",
        "UB-joint__m_24__sinusoids-arteries__f1",
        "UB-tissue__m_1__tissue__f3",
        "MSplus__all__arteries__f0",
        "MS-ME-IEBD__all__sinusoids__f1",
        "UB-case6__m_4__case6__arteries__f3",
    } <= ids
    assert len(ids) == 1440
    assert [s.label for s in E.all_subsets()[4:8]] == ["m_5", "m_12", "m_13", "m_14"]
    ub = next(j for j in E.experiment("fig1_upper_bound", "cpu").jobs if j.job_id == "UB__m_125__sinusoids__f0")
    assert ub.subset.indices == (0, 1, 4) and ub.subset.numbers == (1, 2, 5) and ub.subset.label == "m_125"
    assert {case: [s.numbers for s in table] for case, table in E.CASES.items()} == {
        "case1": [(1,), (2,), (3,), (4,), (5,)],
        "case2": [(1, 2), (2, 3), (3, 4), (4, 5), (1, 5)],
        "case3": [(1, 2, 3), (2, 3, 4), (3, 4, 5), (1, 4, 5), (1, 2, 5)],
        "case4": [(2, 3, 4, 5), (1, 3, 4, 5), (1, 2, 4, 5), (1, 2, 3, 5), (1, 2, 3, 4)],
        "case5": [(1, 2, 4), (1, 2, 4), (1, 2, 4), (1, 3, 5), (1, 3, 5)],
        "case6": [(1, 2, 4, 5), (1, 3, 4), (2, 3), (1, 5), (4,)],
    }
    assert [s.label for s in E.shuffled_table("case3", 0)] == ["m_234", "m_345", "m_125", "m_145", "m_123"]
    m2 = E.M2_GROUPS["sinusoids"]
    assert [s.label for s in E.all_subsets() if m2.contains(s)][:4] == ["m_2", "m_3", "m_12", "m_13"]
    assert m2.contains("m_23") and not m2.contains("m_145")


def test_ids_are_stable_and_shared_between_experiments():
    a = E.experiment("fig3_attention", "paper", folds=[2])
    b = E.experiment("table1_quantification", "paper", folds=[2])
    assert "MS-ME__all__sinusoids__f2" in {j.job_id for j in a.jobs} & {j.job_id for j in b.jobs}
    assert "MSplus__all__arteries__f2" in {j.job_id for j in a.jobs}
    assert [j.job_id for j in a.jobs] == [j.job_id for j in E.experiment("fig3_attention", "paper", folds=[2]).jobs]


def test_other_counts_and_overrides():
    assert len(E.experiment("fig2_sampling", "paper").jobs) == 6 * 2 * 4
    assert len(E.experiment("fig3_attention", "paper").jobs) == (4 + len(E.DEFAULT_ABLATIONS)) * 2 * 4
    # 3 models x 6 Cases + one per-Case UB per subset of each Case's M^UB (5+10+20+30+13+20 = 98)
    assert len(E.experiment("fig4_heterogeneous", "paper").jobs) == (6 * 3 + 98) * 2 * 4
    assert len(E.experiment("fig4_heterogeneous", "paper", case_ub=False).jobs) == 6 * 3 * 2 * 4
    small = E.experiment("fig3_attention", "small", classes=["arteries"], folds=[1, 3], epochs=2)
    assert small.preset.epochs == 2 and {j.fold for j in small.jobs} == {1, 3}
    assert {j.classes for j in small.jobs} == {("arteries",)}
    with pytest.raises(UserInputError, match="folds must be in 0..3"):
        E.experiment("fig2_sampling", "paper", folds=[4])
    with pytest.raises(UserInputError, match="unknown experiment"):
        E.experiment("fig9", "paper")
    with pytest.raises(UserInputError, match="unknown case"):
        E.experiment("fig4_heterogeneous", "paper", cases=["case7"])


def test_seed_replicate_changes_only_the_training_randomness(tmp_path):
    base = E.experiment("fig4_heterogeneous", "cpu", folds=[1])
    rep = E.experiment("fig4_heterogeneous", "cpu", folds=[1], seed=3)
    # same jobs, same Case tables (data design), only the training seed differs
    assert [j.job_id for j in rep.jobs] == [j.job_id for j in base.jobs]
    assert [j.panels for j in rep.jobs] == [j.panels for j in base.jobs]
    job, rep_job = base.jobs[0], rep.jobs[0]
    assert job.train_config(base.preset).seed == 0 and rep_job.train_config(rep.preset).seed == 3
    assert job.model_config(base.preset).seed == 0 and rep_job.model_config(rep.preset).seed == 3
    assert job.train_config(base.preset).fold_seed == rep_job.train_config(rep.preset).fold_seed
    with pytest.raises(UserInputError, match="seed must be >= 0"):
        E.experiment("fig2_sampling", "cpu", seed=-1)
    # a run made with seed 0 is never resumed as if it were the seed-3 replicate
    path = E.job_run_dir(tmp_path, job)
    path.mkdir(parents=True)
    (path / "train_config.json").write_text(json.dumps(job.train_config(base.preset).to_dict()))
    E.check_settings(job, base.preset, tmp_path)
    with pytest.raises(UserInputError, match=r"other settings \(train_config.seed"):
        E.check_settings(rep_job, rep.preset, tmp_path)


@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_shards_partition_the_jobs_exactly(n):
    exp = E.experiment("fig2_sampling", "paper")
    shards = [exp.shard(i, n) for i in range(1, n + 1)]
    ids = [j.job_id for s in shards for j in s]
    assert sorted(ids) == sorted(j.job_id for j in exp.jobs)
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    assert E.parse_shard("2/4") == (2, 4)
    for bad in ("0/4", "5/4", "2", "a/b"):
        with pytest.raises(UserInputError, match="shard"):
            E.parse_shard(bad)


# -- the heterogeneous Cases ----------------------------------------------------------------------------
def test_case_ratios_hand_checked():
    # Case 1: one marker per sample -> only the 5 single markers are trainable by a UNet
    assert E.ub_ratio(E.CASES["case1"]) == (5, 31, 5 / 31)
    # Case 3 (cyclic triples): 5 singles + all 10 pairs + the 5 triples; m_23 only in s1 and s2
    assert E.ub_ratio(E.CASES["case3"])[:2] == (20, 31)
    assert [i for i, row in enumerate(E.CASES["case3"]) if _s("m_23") <= row] == [0, 1]
    # Case 5: 2^3-1 subsets of each protocol, sharing only m_1
    assert E.ub_ratio(E.CASES["case5"])[:2] == (13, 31)
    assert E.ub_ratio(E.CASES["case4"])[:2] == (30, 31)
    hand = (_s("m_12"), _s("m_3"))
    assert [s.label for s in E.m_ub(hand)] == ["m_1", "m_2", "m_3", "m_12"]
    assert [s.label for s in E.m_total(hand)] == ["m_1", "m_2", "m_3", "m_12", "m_13", "m_23", "m_123"]
    assert E.ub_ratio(hand) == (4, 7, 4 / 7)


@pytest.mark.parametrize("case", list(E.CASES))
def test_case_tables_are_consistent(case):
    table = E.CASES[case]
    assert len(table) == 5
    assert set(E.m_ub(table)) <= set(E.m_total(table))
    if case in ("case1", "case2", "case3", "case4"):
        sizes = {len(r) for r in table}
        assert sizes == {int(case[-1])} and len(set(table)) == 5
    shuffled = [E.shuffled_table(case, f) for f in range(4)]
    assert all(sorted(r.label for r in s) == sorted(r.label for r in table) for s in shuffled)
    assert shuffled[0] == E.shuffled_table(case, 0)


def test_panels_cover_training_samples_only():
    from marker_excite.data.folds import paper_folds

    folds = paper_folds([f"s{i}" for i in range(1, 9)])
    exp = E.experiment("fig4_heterogeneous", "paper", cases=["case2"], folds=[1], classes=["sinusoids"])
    job = exp.jobs[0]
    panels = job.marker_panels(folds[1].train)
    assert set(panels) == set(folds[1].train)
    assert not set(panels) & (set(folds[1].val) | set(folds[1].test))  # validation / test keep all markers
    assert [E.PAPER_PANEL.parse_subset(panels[s]) for s in folds[1].train] == list(job.panels)
    cfg = job.train_config(exp.preset, folds[1].train)
    assert cfg.marker_panels == panels and cfg.fold == 1 and cfg.epochs == 200 and cfg.batch_size == 2


def test_case_panels_go_to_the_training_samples_of_an_explicit_split(tmp_path):
    from dataclasses import replace

    from conftest import make_tiny_store

    from marker_excite.data.folds import paper_folds

    store = make_tiny_store(tmp_path / "s.h5", n_samples=6)  # s0 .. s5
    split = replace(TINY_EXPERIMENT, train_samples=("s1", "s2", "s4"), val_samples=("s0",), test_samples=("s5",))
    job = E.experiment("fig4_heterogeneous", split, cases=["case2"], models=["MS"]).jobs[0]
    assert paper_folds([f"s{i}" for i in range(6)], n_folds=2)[0].train != ("s1", "s2", "s4")
    assert E.fold_train_samples(store, job.train_config(split)) == ("s1", "s2", "s4")  # training's split
    cfg = job.train_config(split, E.fold_train_samples(store, job.train_config(split)))
    assert set(cfg.marker_panels) == {"s1", "s2", "s4"} and cfg.val_samples == ("s0",)
    first = paper_folds([f"s{i}" for i in range(6)], n_folds=2)[0].train[0]
    restricted = replace(TINY_EXPERIMENT, train_samples=(first,))  # the fold trains on one of its samples only
    assert E.fold_train_samples(store, job.train_config(restricted)) == (first,)


# -- resume and aggregation with stubs ------------------------------------------------------------------
def _fake_rows(job, value):
    subsets = [job.subset.label] if job.subset else [s.label for s in E.all_subsets()]
    return [
        dict(
            model=job.label,
            fold=job.fold,
            **{"class": c},
            subset=s,
            n_markers=len(_s(s)),
            metric="f1",
            value=value(job, c, s),
        )
        for c in job.classes
        for s in subsets
    ]


def _stub_runner(exp, value, calls):
    jobs = {E.job_run_dir(Path("x"), j).name: j for j in exp.jobs}

    def train_fn(path, model_cfg, train_cfg, store, *, resume, overwrite, progress):
        Path(path).mkdir(parents=True, exist_ok=True)
        calls.append((Path(path).name, resume, overwrite))
        return jobs[Path(path).name]

    def evaluate_fn(job, store, *, subsets, progress):
        assert subsets == job.eval_subsets
        return _fake_rows(job, value)

    return train_fn, evaluate_fn


def _score(job, cls, subset):
    bonus = {"MS": 0.0, "MS-SE": 0.01, "MS-ME": 0.05, "MS+": 0.02, "UB": 0.03}.get(job.model, -0.01)
    return 0.3 + 0.1 * len(_s(subset)) + bonus + 0.001 * job.fold


def test_resume_skips_finished_jobs_and_aggregates(tmp_path):
    pytest.importorskip("keras")
    store = tmp_path / "store.h5"
    store.write_bytes(b"")
    exp = E.experiment("fig3_attention", "small", folds=[0, 1], models=["MS", "MS-SE", "MS-ME", "MS+"])
    calls = []
    train_fn, evaluate_fn = _stub_runner(exp, _score, calls)
    first = E.run_jobs(
        exp, tmp_path, store=store, shard=(1, 2), train_fn=train_fn, evaluate_fn=evaluate_fn, progress=False
    )
    assert len(first.ran) == 4 and len(first.remaining) == 4 and first.skipped == []
    assert all(resume is False and overwrite is False for _, resume, overwrite in calls)  # new run dirs
    E.run_jobs(exp, tmp_path, store=store, shard=(2, 2), train_fn=train_fn, evaluate_fn=evaluate_fn, progress=False)
    calls.clear()
    again = E.run_jobs(exp, tmp_path, store=store, train_fn=train_fn, evaluate_fn=evaluate_fn, progress=False)
    assert again.ran == [] and len(again.skipped) == 8 and calls == []
    # an interrupted job (run dir without evaluation.csv) is resumed, not restarted
    victim = exp.jobs[3]
    (E.job_run_dir(tmp_path, victim) / E.EVALUATION_CSV).unlink()
    (E.job_run_dir(tmp_path, victim) / "model_config.json").write_text("{}")
    E.run_jobs(exp, tmp_path, store=store, train_fn=train_fn, evaluate_fn=evaluate_fn, progress=False)
    assert calls == [(victim.job_id, True, False)]

    ub_dir = tmp_path / "fig1"
    ub = E.experiment("fig1_upper_bound", "small", folds=[0, 1])
    for job in ub.jobs:
        write_results(_fake_rows(job, _score), E.job_run_dir(ub_dir, job) / E.EVALUATION_CSV)
    result = E.aggregate(exp, tmp_path, external={"UB": ub_dir}, progress=False)
    rows = read_results(result.results_csv)
    assert len(rows) == 8 * 31 and {r["model"] for r in rows} == {"MS", "MS-SE", "MS-ME", "MS+"}
    assert {r["job"] for r in rows} == {j.job_id for j in exp.jobs}
    stats = json.loads(result.stats_json.read_text())
    assert stats["completed"] == 8 and stats["missing"] == []
    c = {t["model"]: t for t in stats["analyses"]["fig3c"]["tests"]}
    assert c["MS-ME"]["n"] == 62 and c["MS-ME"]["mean_difference"] == pytest.approx(0.05)
    assert c["MS-ME"]["stars"] == "***" and c["MS-SE"]["stars"] == "***"
    e = stats["analyses"]["fig3e"]["tests"][0]
    assert e["reference"] == "UB" and e["mean_difference"] == pytest.approx(0.02)
    assert "fig3fg" not in stats["analyses"]  # no ablation was run
    assert all(f.is_file() for f in result.figures) and len(result.figures) == 3
    # paths in stats.json are relative to its folder: the results tree survives a clone or a move
    assert stats["analyses"]["fig3c"]["figure"] == "figures/fig3c.png"
    assert stats["external"]["UB"]["source"] == os.path.relpath(ub_dir, result.stats_json.parent)
    with open(result.relative_csv) as fh:
        rel = list(csv.DictReader(fh))
    assert {r["analysis"] for r in rel} == {"fig3c", "fig3d", "fig3e"}
    assert len([r for r in rel if r["analysis"] == "fig3c"]) == 2 * 62


def test_fig1_groups_and_fig4_ub_restriction(tmp_path):
    pytest.importorskip("matplotlib")
    ub = E.experiment("fig1_upper_bound", "small", classes=["sinusoids", "arteries"], folds=[0, 1, 2])
    for job in ub.jobs:
        write_results(
            _fake_rows(
                job,
                lambda j, c, s: (
                    0.5 + (0.3 if "2" in s or "3" in s else 0) + 0.01 * j.fold - (0.05 if j.label == "UB-joint" else 0)
                ),
            ),
            E.job_run_dir(tmp_path, job) / E.EVALUATION_CSV,
        )
    stats = json.loads(E.aggregate(ub, tmp_path, progress=False).stats_json.read_text())["analyses"]
    assert stats["fig1d"]["test"]["n"] == [24 * 3, 7 * 3] and stats["fig1d"]["test"]["stars"] == "***"
    assert stats["fig1d"]["means"]["M2s: m2 or m3"] == pytest.approx(0.81)
    assert stats["fig1cg"]["ranking"]["sinusoids"][-1]["mean"] == pytest.approx(0.81)
    assert stats["fig1bf"]["tests"][-1]["class"] == "all" and stats["fig1bf"]["tests"][-1]["n"] == 2 * 31 * 3
    table1 = E.m2_f1(E.load_results(tmp_path), model="UB")  # Table 1's F1 over M2 (here of UB)
    assert table1["sinusoids"]["n"] == 24 * 3 and table1["sinusoids"]["mean"] == pytest.approx(0.81)
    assert table1["arteries"]["n"] == 16 * 3

    het = E.experiment("fig4_heterogeneous", "small", folds=[0], cases=["case1", "case3"], models=["MS"])
    for job in het.jobs:
        write_results(
            [{**r, "case": job.case} for r in _fake_rows(job, _score)],
            E.job_run_dir(tmp_path / "h", job) / E.EVALUATION_CSV,
        )
    res = json.loads(E.aggregate(het, tmp_path / "h", external={"UB": tmp_path}, progress=False).stats_json.read_text())
    case1 = res["analyses"]["fig4_case1"]
    assert (case1["m_ub"], case1["m_total"]) == (5, 31) and case1["tests"][0]["n"] == 5  # only the single markers
    assert case1["reference"] == "UB-case1"
    assert res["analyses"]["fig4_case3"]["tests"][0]["n"] == 20
    # the stronger Fig. 1 UB (all training samples) stays as an extra, labelled analysis
    extra = res["analyses"]["fig4_case3_vs_fig1_ub"]
    assert extra["reference"] == "UB" and extra["tests"][0]["n"] == 20
    assert extra["tests"][0]["mean_difference"] != res["analyses"]["fig4_case3"]["tests"][0]["mean_difference"]


def test_case_upper_bound_trains_only_on_samples_with_its_subset():
    """Fig. 4's UB: "m_23 in Case 3 is only trainable using samples s1 or s2" (the samples whose panel has it)."""
    from marker_excite.data.folds import paper_folds

    fold = paper_folds([f"s{i}" for i in range(1, 9)])[0]
    exp = E.experiment("fig4_heterogeneous", "paper", cases=["case3"], folds=[0], classes=["sinusoids"], models=["MS"])
    ubs = [j for j in exp.jobs if j.label == "UB-case3"]
    assert len(ubs) == 20 and {j.subset for j in ubs} == set(E.m_ub(E.CASES["case3"]))
    panels = dict(zip(fold.train, exp.jobs[0].panels))  # training sample -> its Case panel this fold
    m23 = next(j for j in ubs if j.subset == _s("m_23"))
    assert m23.job_id == "UB-case3__m_23__case3__sinusoids__f0"
    expected = tuple(s for s in fold.train if _s("m_23") <= panels[s])
    assert len(expected) == 2 and m23.case_train_samples(fold.train) == expected
    cfg = m23.train_config(exp.preset, fold.train)
    assert cfg.train_samples == expected and cfg.marker_panels is None and m23.markers == ("endomucin", "endoglin")
    ms = exp.jobs[0].train_config(exp.preset, fold.train)
    assert ms.train_samples is None and len(ms.marker_panels) == 5


def test_aggregate_without_results_is_an_error(tmp_path):
    with pytest.raises(UserInputError, match="no finished job"):
        E.aggregate(E.experiment("fig2_sampling", "small"), tmp_path)


# -- one real tiny job: phantom -> train -> evaluate -> aggregate --------------------------------------------
def test_tiny_end_to_end(tmp_path):
    from marker_excite.data.synthetic import write_dataset

    store = write_dataset(tmp_path / "tiny.h5", "small", samples=4, shape=(3, 48, 48), progress=False)
    exp = E.fig1_upper_bound(TINY_EXPERIMENT, ("sinusoids",), (0,))
    exp = E.Experiment(
        exp.name, TINY_EXPERIMENT, tuple(j for j in exp.jobs if j.subset in {_s("m_2"), _s("m_12")}), exp.analyses
    )
    summary = E.run_jobs(exp, tmp_path / "out", store=store, progress=False)
    assert summary.ran == ["UB__m_2__sinusoids__f0", "UB__m_12__sinusoids__f0"] and summary.remaining == []
    run = E.job_run_dir(tmp_path / "out", exp.jobs[1])
    assert (run / "weights.best.weights.h5").is_file()
    rows = read_results(run / E.EVALUATION_CSV)
    assert {r["subset"] for r in rows} == {"m_12"} and {r["model"] for r in rows} == {"UB"}
    f1 = [r["value"] for r in rows if r["metric"] == "f1"]
    assert len(f1) == 1 and 0.0 <= f1[0] <= 1.0
    result = E.aggregate(exp, tmp_path / "out", progress=False)
    assert len([r for r in read_results(result.results_csv) if r["metric"] == "f1"]) == 2
    assert json.loads(result.stats_json.read_text())["analyses"]["fig1cg"]["ranking"]["sinusoids"][0]["n"] == 1
    assert E.run_jobs(exp, tmp_path / "out", store=store, progress=False).skipped == [j.job_id for j in exp.jobs]
    # the last-epoch evaluation: one epoch, so the last weights are the best ones and every row is the same
    from marker_excite.experiments.last_epoch import LAST_EVALUATION_CSV, evaluate_last, last_epoch_rows

    assert evaluate_last([tmp_path / "out"], models=["MS"], progress=False) == []
    written = evaluate_last([tmp_path / "out"], progress=False)
    assert sorted(written) == sorted(E.job_run_dir(tmp_path / "out", j) / LAST_EVALUATION_CSV for j in exp.jobs)
    for path in written:
        key = lambda r: (r["model"], r["job"], r["class"], r["subset"], r["metric"])  # noqa: E731
        last = {key(r): r["value"] for r in read_results(path)}
        assert last == {key(r): r["value"] for r in read_results(path.parent / E.EVALUATION_CSV)}
    best, last = last_epoch_rows(tmp_path / "out")
    assert len(best) == len(last) == 2 and {r["subset"] for r in last} == {"m_2", "m_12"}
    assert evaluate_last([tmp_path / "out"], progress=False) == []  # done once


def test_table1_uses_the_m1_tissue_network(tmp_path):
    """Table 1: a DAPI-only UNet per fold trained on the phantom's tissue labels gives the tissue mask of
    the volume fractions, and its tissue F1 is reported next to the paper's 88.7 +- 6.8."""
    from marker_excite.data.synthetic import write_dataset
    from marker_excite.experiments.table1 import quantify_experiment

    store = write_dataset(tmp_path / "tiny.h5", "small", samples=4, shape=(3, 48, 48), progress=False)
    exp = E.table1_quantification(TINY_EXPERIMENT, ("sinusoids",), (0,))
    assert [j.job_id for j in exp.jobs] == ["MS-ME__all__sinusoids__f0", "UB-tissue__m_1__tissue__f0"]
    tissue = exp.jobs[1]
    assert tissue.markers == ("DAPI",) and tissue.classes == ("tissue",)
    E.run_jobs(exp, tmp_path / "out", store=store, progress=False)
    E.aggregate(exp, tmp_path / "out", progress=False)
    csv_path = quantify_experiment(exp, tmp_path / "out", store, progress=False)
    rows = read_results(csv_path)
    assert rows and {r["tissue_mask"] for r in rows} == {"UB-tissue"}
    table1 = json.loads((tmp_path / "out" / exp.name / E.STATS_JSON).read_text())["table1"]
    f1 = table1["tissue_f1"]
    assert f1["n"] == 1 and 0.0 <= f1["mean"] <= 1.0 and f1["paper_percent"] == {"mean": 88.7, "sd": 6.8}


def test_reproduction_report_verdicts(tmp_path):
    """REPRODUCTION.md: verdicts follow the fixed rules; missing models are 'not run yet'; the convergence
    table counts runs on a plateau from their log.csv."""
    from marker_excite.experiments.reproduction import write_report
    from marker_excite.runs.log import write_log

    exp = E.experiment("fig2_sampling", "cpu", classes=["sinusoids"], folds=[0, 1], models=["MZ", "MS", "HeMIS"])
    exp3 = E.experiment("fig3_attention", "cpu", classes=["sinusoids"], folds=[0, 1], models=["MS-ME"])
    bonus = {"MS": 0.05, "MZ": 0.0, "HeMIS": 0.0, "MS-ME": -0.02}

    def value(job, cls, subset):  # MZ ~ HeMIS (+-0.001 by subset size); MS better; MS-ME worse than MS
        jitter = 0.001 * (-1) ** len(_s(subset)) if job.model == "HeMIS" else 0.0
        return 0.5 + 0.01 * len(_s(subset)) + bonus[job.model] + 0.001 * job.fold + jitter

    for job in exp.jobs + exp3.jobs:
        write_results(_fake_rows(job, value), E.job_run_dir(tmp_path, job) / E.EVALUATION_CSV)
        # MS-ME's validation F1 still rises by 0.02 per epoch at the end; HeMIS's falls from 0.9 to 0.2
        curve = {"MS-ME": lambda e: 0.5 + 0.02 * e, "HeMIS": lambda e: 0.9 if e <= 4 else 0.2}
        write_log(
            E.job_run_dir(tmp_path, job) / "log.csv",
            [{"epoch": e, "val_mean_f1": curve.get(job.model, lambda e: 0.9)(e)} for e in range(1, 9)],
        )
    assert "## Model selection" not in write_report(tmp_path).read_text()
    for job in exp.jobs + exp3.jobs:  # last epochs: MS-ME 0.1 better than at its best-validation epoch
        if job.model in ("MS", "MS-ME"):
            last = lambda job, c, s: value(job, c, s) + (0.1 if job.model == "MS-ME" else 0.0)  # noqa: E731
            write_results(_fake_rows(job, last), E.job_run_dir(tmp_path, job) / "evaluation.last.csv")
    text = write_report(tmp_path, protocol="test protocol").read_text()
    selection = text.split("## Model selection: best-validation vs last epoch")[1]
    assert "| Fig. 3c MS-ME vs MS | -0.0700 (p " in selection and "| +0.0300 (p " in selection
    assert "| Fig. 2b MS vs MZ |" not in selection  # MZ has no last-epoch evaluation
    rows = {
        line.split(" | ")[1]: line.split(" | ")
        for line in text.splitlines()
        if line.startswith("| Fig.") and " vs " not in line.split(" | ")[0]
    }
    assert rows["MS vastly outperforms MZ"][5] == "reproduced" and rows["MS vastly outperforms MZ"][4] == "62"
    assert rows["MS vastly outperforms MZ"][2].startswith("+0.050")
    assert rows["MZ does not perform significantly different than HeMIS"][5] == "reproduced"
    assert rows["MS-ME improves on MS"][5] == "not reproduced (opposite)"
    assert rows["MS is better than MS-DO"][5] == "not run yet"
    assert "f0 -0.070, f1 -0.070; per number of markers: 1: -0.070, 2: -0.070" in rows["MS-ME improves on MS"][6]
    assert "MS-ME: 0/2 runs on a plateau" in rows["MS-ME improves on MS"][6]
    assert "| MS | sinusoids | - | 2 | 2 | 0.0000 | 0.900 / 0.900 | 1 / 8 |" in text
    assert "| MS-ME | sinusoids | - | 2 | 0 | 0.0200 | 0.660 / 0.660 | 8 / 8 |" in text
    assert "| HeMIS | sinusoids | - | 2 | 2 | 0.0000 | 0.900 / 0.200 | 1 / 8 |" in text
    hemis_note = rows["MS vastly outperforms HeMIS"][6]
    assert (
        "HeMIS: 2/2 runs on a plateau; sinusoids validation F1 falls after its peak (median best 0.90, last 0.20)"
        in hemis_note
    )
    assert "falls after its peak" not in rows["MS vastly outperforms MZ"][6]
    assert "test protocol" in text and "Table 1 / Fig. 5: not run yet." in text
    n_claims = len(rows)
    # reproduced: MS > MZ, MS > HeMIS, MZ ~ HeMIS, Fig. 2d MS ~ HeMIS on m_12345; not reproduced: MS-ME > MS
    # (pooled and sinusoids alone); inconclusive: Fig. 2d MS > HeMIS on m_4 (2 pairs: p can never reach 0.05)
    assert (
        f"**Summary: {n_claims} claims; 4 reproduced, 2 not reproduced, 1 inconclusive, 0 not testable here, "
        f"{n_claims - 7} not run yet, 0 measured without a stated direction (Table 1 rows included).**" in text
    )
    assert "- MS-ME, sinusoids: fold(s) 0, 1" in text and "- HeMIS, sinusoids: fold(s) 0, 1" in text
    ms = 0.55 + 0.01 * 80 / 31  # mean over the 31 subsets of 0.5 + 0.01 |subset| + 0.05
    assert f"| MS | sinusoids | {ms:.4f} | {ms + 0.001:.4f} | {ms + 0.0005:.4f} |" in text


def test_reproduction_report_seed_spread(tmp_path):
    """The seed-to-seed section: mean F1 per seed over the subsets every seed has, its range, and each
    claim's difference per seed (hand-computed from the fake values)."""
    from marker_excite.experiments.report import runs_seed
    from marker_excite.experiments.reproduction import write_report

    exp = E.experiment("fig3_attention", "cpu", classes=["sinusoids"], folds=[0], models=["MS", "MS-ME"])
    ub = E.experiment("fig1_upper_bound", "cpu", classes=["sinusoids"], folds=[0], joint=False)
    offsets = {
        0: {"MS": 0.0, "MS-ME": -0.02, "UB": 0.1},
        1: {"MS": 0.01, "MS-ME": 0.02, "UB": 0.13},
        2: {"MS": -0.01, "MS-ME": -0.005, "UB": 0.1},
    }
    # the UB sweep is further along with seed 0 (all 31 subsets) than with seeds 1, 2 (m_1 and m_12 only)
    ub_done = {0: list(ub.jobs), 1: [j for j in ub.jobs if j.subset.label in ("m_1", "m_12")]}
    ub_done[2] = ub_done[1]
    dirs = {s: tmp_path / f"seed{s}" for s in offsets}

    def write(out, job, seed, value):
        write_results(_fake_rows(job, value), E.job_run_dir(out, job) / E.EVALUATION_CSV)
        (E.job_run_dir(out, job) / "train_config.json").write_text(json.dumps({"seed": seed}))
        (E.job_run_dir(out, job) / "model_config.json").write_text(json.dumps({"seed": seed}))

    for seed, out in dirs.items():
        for job in [*exp.jobs, *ub_done[seed]]:
            write(
                out,
                job,
                seed,
                lambda job, cls, subset, seed=seed: 0.5 + 0.01 * len(_s(subset)) + offsets[seed][job.model],
            )
    assert runs_seed(dirs[2]) == 2
    # fold 1 only with seed 0: left out of the per-seed comparison (n stays 31 for every seed)
    for job in E.experiment("fig3_attention", "cpu", classes=["sinusoids"], folds=[1], models=["MS", "MS-ME"]).jobs:
        write(dirs[0], job, 0, lambda *a: 0.9)
    text = write_report(dirs[0], replicates=[dirs[1], dirs[2]]).read_text()
    section = text.split("## Seed-to-seed spread")[1]
    # mean of 0.5 + 0.01 * |subset| over the 31 subsets = 0.5 + 0.01 * 80 / 31
    base = 0.5 + 0.01 * 80 / 31
    assert f"| MS | sinusoids, fold 0 | 31 | {base:.4f} | {base + 0.01:.4f} | {base - 0.01:.4f} | 0.0200 |" in section
    assert (
        f"| MS-ME | sinusoids, fold 0 | 31 | {base - 0.02:.4f} | {base + 0.02:.4f} | {base - 0.005:.4f} | 0.0400 |"
        in section
    )
    # UB: only m_1 and m_12 (mean 0.5 + 0.01 * 1.5 + offset), not seed 0's 31 subsets
    assert "| UB | sinusoids, fold 0 | 2 | 0.6150 | 0.6450 | 0.6150 | 0.0300 |" in section
    claim = next(line for line in section.splitlines() if line.startswith("| Fig. 3c MS-ME vs MS |"))
    assert "-0.0200 (p" in claim and "+0.0100 (p" in claim and "+0.0050 (p" in claim and claim.count("n 31)") == 3
    assert claim.endswith("| -0.0017 (0.0161) | 0.0300 | 1 of 3 |")  # mean of -0.02, 0.01, 0.005; SD ddof 1
    ub_claim = next(line for line in section.splitlines() if line.startswith("| Fig. 3e MS-ME vs UB |"))
    assert "-0.1200 (p" in ub_claim and "-0.1100 (p" in ub_claim and "-0.1050 (p" in ub_claim
    assert ub_claim.count("n 2)") == 3
    assert "Largest seed-to-seed range of one model's mean F1: 0.0400." in section
    # the claim's row in the main table carries the summary
    row = next(line for line in text.splitlines() if line.startswith("| Fig. 3c | MS-ME improves on MS |"))
    assert "**over 3 seeds (fold 0): mean difference -0.0017 (SD 0.0161), same sign as seed 0 in 1 of 3**" in row
    # with last-epoch evaluations (0.05 higher everywhere) the section repeats its tables for the last epoch
    for seed, out in dirs.items():
        for job in exp.jobs:
            last = lambda job, c, s, seed=seed: 0.55 + 0.01 * len(_s(s)) + offsets[seed][job.model]  # noqa: E731
            write_results(_fake_rows(job, last), E.job_run_dir(out, job) / "evaluation.last.csv")
    with_last = write_report(dirs[0], replicates=[dirs[1], dirs[2]], path=tmp_path / "last.md").read_text()
    last_part = with_last.split("### The same runs evaluated with their last epoch")[1].split("## Model selection")[0]
    assert (
        f"| MS | sinusoids, fold 0 | 31 | {base + 0.05:.4f} | {base + 0.06:.4f} | {base + 0.04:.4f} | 0.0200 |"
        in last_part
    )
    assert "| UB |" not in last_part  # no last-epoch evaluation of the UB runs
    for out in dirs.values():
        for job in exp.jobs:
            (E.job_run_dir(out, job) / "evaluation.last.csv").unlink()
    # a seed still running: its missing model shows "-", the claim is measured on the seeds that have both
    (E.job_run_dir(dirs[2], exp.jobs[1]) / E.EVALUATION_CSV).rename(tmp_path / "held.csv")
    partial = write_report(dirs[0], replicates=[dirs[1], dirs[2]], path=tmp_path / "partial.md").read_text()
    assert f"| MS-ME | sinusoids, fold 0 | 31 | {base - 0.02:.4f} | {base + 0.02:.4f} | - | 0.0400 |" in partial
    partial_seeds = partial.split("## Seed-to-seed spread")[1]
    partial_claim = next(line for line in partial_seeds.splitlines() if line.startswith("| Fig. 3c MS-ME vs MS |"))
    assert partial_claim.endswith("| - | -0.0050 (0.0212) | 0.0300 | 1 of 2 |")
    (tmp_path / "held.csv").rename(E.job_run_dir(dirs[2], exp.jobs[1]) / E.EVALUATION_CSV)
    # the mean-F1 table marks a fold evaluated on fewer than its 31 subsets (seed 1's UB: m_1, m_12)
    seed1 = write_report(dirs[1], path=tmp_path / "seed1.md").read_text()
    assert "| UB | sinusoids | 0.6450 (2) | 0.6450 |" in seed1 and f"| MS | sinusoids | {base + 0.01:.4f} |" in seed1
    # ... and a claim measured on part of a sweep says so
    row_3e = next(line for line in seed1.splitlines() if line.startswith("| Fig. 3e |"))
    assert "| 2 | " in row_3e and "**incomplete (UB sinusoids fold 0: 2 of 31 subsets)**" in row_3e
    row_3c = next(line for line in seed1.splitlines() if line.startswith("| Fig. 3c | MS-ME improves on MS |"))
    assert "incomplete" not in row_3c
    # two folders with the same seed are refused, and so is a folder of mixed seeds
    with pytest.raises(UserInputError, match="different seeds"):
        write_report(dirs[0], replicates=[dirs[0]])
    write(dirs[2], ub.jobs[5], 3, lambda *a: 0.5)
    with pytest.raises(UserInputError, match=r"seed2: expected finished runs of one seed .* found 2, 3"):
        runs_seed(dirs[2])
    (E.job_run_dir(dirs[2], ub.jobs[5]) / "model_config.json").write_text(json.dumps({"seed": 2}))
    with pytest.raises(UserInputError, match="found 2, 2/3"):  # model seed 2, training seed 3
        runs_seed(dirs[2])


def test_claim_note_groups_differences_by_number_of_markers():
    from marker_excite.experiments.report import CLAIMS, measure

    exp = E.experiment("fig3_attention", "cpu", classes=["sinusoids"], folds=[0], models=["MS", "MS-ME"])
    rows = []
    for job in exp.jobs:  # MS-ME loses 0.01 per marker of the subset
        rows += _fake_rows(job, lambda job, c, s: 0.8 - (0.01 * len(_s(s)) if job.model == "MS-ME" else 0.0))
    for r in rows:
        r["case"] = ""
    claim = next(c for c in CLAIMS if c.figure == "Fig. 3c" and c.reference == "MS")
    detail = measure(rows, claim)["detail"]
    assert detail.endswith("per number of markers: 1: -0.010, 2: -0.020, 3: -0.030, 4: -0.040, 5: -0.050")


def test_claim_note_gives_each_class_of_a_pooled_comparison():
    """A claim pooled over classes names each class's mean difference, Wilcoxon p and n."""
    from marker_excite.experiments.report import CLAIMS, measure

    exp = E.experiment("fig3_attention", "cpu", classes=["sinusoids", "arteries"], folds=[0], models=["MS", "MS-ME"])
    rows = []
    for job in exp.jobs:  # sinusoids: MS-ME 0.02 behind on every subset; arteries: 0.01 ahead per marker
        rows += _fake_rows(
            job,
            lambda job, c, s: 0.8 if job.model == "MS" else (0.78 if c == "sinusoids" else 0.8 + 0.01 * len(_s(s))),
        )
    for r in rows:
        r["case"] = ""
    claim = next(c for c in CLAIMS if c.figure == "Fig. 3c" and c.reference == "MS")
    detail = measure(rows, claim)["detail"]
    from marker_excite.analysis.stats import wilcoxon

    sizes = [len(_s(r["subset"])) for r in rows if r["model"] == "MS" and r["class"] == "arteries"]
    p_arteries = wilcoxon([0.01 * n for n in sizes]).pvalue  # each class tested on its own differences
    p_sinusoids = wilcoxon([-0.02] * 31).pvalue
    assert detail.startswith("classes arteries+sinusoids;")
    assert detail.endswith(
        f"per class: arteries +{0.01 * 80 / 31:.3f} (p {p_arteries:.3g}, n 31), sinusoids -0.020 (p {p_sinusoids:.3g}, n 31)"
    )
    assert p_arteries < 1e-5 and p_sinusoids < 1e-5


def test_convergence_note_per_class_and_case():
    """The runs of a claim are described per class, for the claim's own Case; a collapse is named."""
    from marker_excite.experiments.report import convergence_note

    def group(plateau, runs, best, last):
        return {"plateau": plateau, "runs": runs, "median_best_f1": best, "median_last_f1": last}

    conv = {
        ("MS-ME", "sinusoids", ""): group(4, 4, 0.96, 0.95),
        ("MS-ME", "arteries", ""): group(1, 4, 0.41, 0.27),
        ("MS-ME", "sinusoids", "case1"): group(0, 1, 0.9, 0.9),
    }
    assert convergence_note(conv, "MS-ME", ["sinusoids"], "") == "MS-ME: 4/4 runs on a plateau"
    assert convergence_note(conv, "MS-ME", ["sinusoids"], "case1") == "MS-ME: 0/1 runs on a plateau"
    assert convergence_note(conv, "MS-ME", ["arteries", "sinusoids"], "") == (
        "MS-ME runs on a plateau: arteries 1/4, sinusoids 4/4; "
        "arteries validation F1 falls after its peak (median best 0.41, last 0.27)"
    )
    assert convergence_note(conv, "MS", ["sinusoids"], "") == ""


def test_per_class_section_judges_each_class_by_the_signed_ranks():
    """'Per class': each homogeneous claim on each class alone; a class whose subsets mostly score the
    same has median difference 0, and the verdict follows the ranks (HeMIS-MS worse than MS is not
    'model better')."""
    from marker_excite.analysis.stats import wilcoxon
    from marker_excite.experiments.report import per_class_lines

    exp = E.experiment("fig2_sampling", "cpu", classes=["sinusoids", "arteries"], folds=[0], models=["MS", "HeMIS-MS"])

    def value(job, cls, subset):  # arteries: HeMIS-MS 0.3 behind MS on the 6 subsets with m4 and m5 ...
        behind = cls == "arteries" and {"4", "5"} <= set(subset.split("_")[1]) and job.model == "HeMIS-MS"
        return 0.5 - (0.3 if behind else 0.0) - (0.02 if cls == "sinusoids" and job.model == "HeMIS-MS" else 0.0)

    rows = [dict(r, case="") for job in exp.jobs for r in _fake_rows(job, value)]
    lines = per_class_lines(rows)
    assert "| claim | arteries | sinusoids |" in lines
    row = next(line for line in lines if line.startswith("| Fig. 2c HeMIS-MS vs MS |"))
    mean = -0.3 * 8 / 31  # ... i.e. on the 8 of the 31 subsets that hold both
    p_arteries = wilcoxon([-0.3] * 8 + [0.0] * 23).pvalue  # tied differences: scipy's normal approximation
    p_sinusoids = wilcoxon([-0.02] * 31).pvalue
    assert p_arteries < 0.01 < 1.0  # significant, against the model: 'reproduced', not 'model better'
    assert row == (
        f"| Fig. 2c HeMIS-MS vs MS | +0.000 (mean {mean:+.3f}, p {p_arteries:.2g}, n 31) reproduced | "
        f"-0.020 (mean -0.020, p {p_sinusoids:.2g}, n 31) reproduced |"
    )
    assert per_class_lines([r for r in rows if r["class"] == "sinusoids"]) == []


def test_table1_section_verdicts(tmp_path):
    """Table 1 rows: F1 'measured' and placed against the paper's SD; the sinusoid region difference is
    judged by its Mann-Whitney test (diaphysis vs metaphysis; the paper: metaphysis higher)."""
    from marker_excite.experiments.report import table1_lines

    def region_test(p, median):
        return {"pvalue": p, "median_difference": median, "note": ""}

    table = {
        "f1_over_M2": {
            "sinusoids": {"mean": 0.907, "sd": 0.05, "n": 96},
            "arteries": {"mean": 0.288, "sd": 0.15, "n": 64},
        },
        "fractions": {
            "sinusoids": {
                "regions": {"diaphysis": {"n": 6, "fraction_mean": 0.11, "true_fraction_mean": 0.107}},
                "region_test": region_test(0.01, -0.02),
            },
            "arteries": {"regions": {}, "region_test": region_test(0.01, 0.001)},
        },
    }
    (tmp_path / "table1_quantification").mkdir()
    (tmp_path / "table1_quantification" / "stats.json").write_text(json.dumps({"table1": table}))
    lines = table1_lines(tmp_path)
    assert lines[2] == (
        "| MS-ME F1 over M2, sinusoids (%) | 91.2 +- 3.9 | 90.7 +- 5.0 (n=96) | measured | "
        "within one SD of the paper's mean (absolute F1 on the phantom) |"
    )
    assert "| 28.8 +- 15.0 (n=64) | measured | outside one SD" in lines[3]
    assert lines[4].startswith("| volume fraction of sinusoids | META 15.65 > DIA 10.69 (*) | diaphysis: 11.00 %")
    assert lines[4].endswith("| reproduced | - |")  # diaphysis below metaphysis, p <= 0.05
    assert lines[5].endswith("| measured | - |")  # the paper states no arteries difference
    table["fractions"]["sinusoids"]["region_test"] = region_test(0.01, 0.02)
    (tmp_path / "table1_quantification" / "stats.json").write_text(json.dumps({"table1": table}))
    assert table1_lines(tmp_path)[4].endswith("| not reproduced (opposite) | - |")
