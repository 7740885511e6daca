"""The paper's experiments as data: job lists, sharding, resumable execution and aggregation.

Owns (modules): ``spec`` (presets, subsets and Cases, jobs, analyses), ``paper`` (the figures'
experiments), ``compare`` (the same comparison on a user's store and panel: ``marker-excite compare``),
``runner`` (training + evaluation of jobs), ``aggregate`` (tables, statistics, figures), ``table1``
(quantification), ``cli`` (the scripts' command line), ``workers`` (``--workers``), ``slurm``
(``--launcher slurm``: a SLURM job array and its aggregation job), ``last_epoch`` (evaluation with the
last weights), ``attention`` (what the ME modules learned), ``longer`` (the longer-training runs),
``report`` (the paper's claims measured on the runs), ``replicates`` (the claims across phantoms and
seeds) and ``reproduction`` (``REPRODUCTION.md``). The scripts' API is re-exported here.

May import: everything below it, up to ``training/``; never ``commands/``, ``cli`` or ``demo``.

An :class:`Experiment` is a list of :class:`Job` s (one training + evaluation each) plus the
:class:`Analysis` items that turn their results into the paper's figures and tests. Building, listing and
sharding jobs is pure Python (TensorFlow is imported only to validate user-given model names and to
run jobs), so job lists can be inspected, counted and sharded anywhere.

* :func:`experiment` builds one of :data:`EXPERIMENTS` (``fig1_upper_bound`` ... ``table1_quantification``)
  at a :data:`PRESETS` size (``paper``: GPU, the paper's schedule; ``small``: CPU, minutes).
* :func:`run_jobs` trains each job into ``out/runs/<job_id>/`` (``training.trainer.train``) and evaluates it
  (``inference.evaluation.evaluate_run``) into ``out/runs/<job_id>/evaluation.csv``. A job whose
  ``evaluation.csv`` exists is skipped; a job interrupted mid-training resumes from its last epoch.
  ``shard=(i, n)`` runs every n-th job starting at the i-th (1-based), so n machines split the work.
* :func:`aggregate` collects all ``evaluation.csv`` into one tidy ``results.csv``, draws the figures
  (``analysis/plots.py``) and writes ``stats.json`` (Wilcoxon signed-rank paired by (class, subset, fold),
  Mann-Whitney U for groups of subsets, significance stars; ``analysis/stats.py``).

Heterogeneous training panels (Fig. 4, Cases 1-6) are reconstructed from the paper's text; see
:data:`CASES` and ``experiments/README.md``.
"""

from __future__ import annotations

from marker_excite.experiments.aggregate import (
    AggregateResult,
    aggregate,
    load_results,
    select,
)
from marker_excite.experiments.cli import (
    add_experiment_options,
    build_parser,
    csv_list,
    run_experiment_jobs,
    script_main,
)
from marker_excite.experiments.compare import (
    compare_experiment,
    compare_jobs,
    otsu_rows,
    write_report,
)
from marker_excite.experiments.paper import (
    DEFAULT_ABLATIONS,
    EXPERIMENTS,
    M2_GROUPS,
    experiment,
    fig1_upper_bound,
    fig2_sampling,
    fig3_attention,
    fig4_heterogeneous,
    table1_quantification,
)
from marker_excite.experiments.runner import (
    RunSummary,
    check_settings,
    ensure_store,
    fold_train_samples,
    is_done,
    job_run_dir,
    report_dir,
    run_job,
    run_jobs,
)
from marker_excite.experiments.spec import (
    CASES,
    EVALUATION_CSV,
    FIGURES,
    PAPER_PANEL,
    PRESETS,
    RELATIVE_CSV,
    RESULTS_CSV,
    RUNS,
    STATS_JSON,
    Analysis,
    Experiment,
    ExperimentError,
    Group,
    GroupTest,
    Job,
    Preset,
    Ranking,
    Relative,
    Subset,
    all_subsets,
    assign_panels,
    m_total,
    m_ub,
    parse_shard,
    preset,
    shuffled_table,
    ub_ratio,
)
from marker_excite.experiments.table1 import (
    m2_f1,
    quantification_subset,
    quantify_experiment,
)

__all__ = [
    "Analysis",
    "CASES",
    "EVALUATION_CSV",
    "Experiment",
    "ExperimentError",
    "FIGURES",
    "Group",
    "GroupTest",
    "Job",
    "PAPER_PANEL",
    "PRESETS",
    "Preset",
    "RELATIVE_CSV",
    "RESULTS_CSV",
    "RUNS",
    "Ranking",
    "Relative",
    "STATS_JSON",
    "Subset",
    "all_subsets",
    "assign_panels",
    "m_total",
    "m_ub",
    "parse_shard",
    "preset",
    "shuffled_table",
    "ub_ratio",
    "DEFAULT_ABLATIONS",
    "EXPERIMENTS",
    "M2_GROUPS",
    "experiment",
    "fig1_upper_bound",
    "fig2_sampling",
    "fig3_attention",
    "fig4_heterogeneous",
    "table1_quantification",
    "RunSummary",
    "check_settings",
    "ensure_store",
    "fold_train_samples",
    "is_done",
    "job_run_dir",
    "report_dir",
    "run_job",
    "run_jobs",
    "AggregateResult",
    "aggregate",
    "load_results",
    "select",
    "m2_f1",
    "quantification_subset",
    "quantify_experiment",
    "add_experiment_options",
    "build_parser",
    "csv_list",
    "run_experiment_jobs",
    "script_main",
    "compare_experiment",
    "compare_jobs",
    "otsu_rows",
    "write_report",
]
