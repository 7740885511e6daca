"""Fig. 4: training with heterogeneous marker panels. MZ, MS and MS-ME trained on Cases 1-6 (each training
sample keeps only some markers; tables reconstructed in experiments/README.md), compared on the subsets a
conventional UNet could be trained on (M^UB) with the paper's per-Case upper bound: one UB UNet per subset
of M^UB trained only on the training samples whose Case panel contains it (UB-<case> jobs). The Fig. 1 UB
(all training samples) is compared too, as an extra analysis (fig4_<case>_vs_fig1_ub). The ratio
|M^UB| / |M^total| of each Case is reported in stats.json.

    python experiments/fig4_heterogeneous.py --preset cpu --out experiments/results/cpu [--cases case1,case3] [--no-case-ub]
"""

import sys

from marker_excite.experiments import CASES, csv_list, script_main


def add_arguments(parser):
    parser.add_argument(
        "--models", type=csv_list, default=None, help="comma-separated zoo models (default: MZ, MS, MS-ME)"
    )
    parser.add_argument(
        "--cases", type=csv_list, default=None, help=f"comma-separated cases (default: {','.join(CASES)})"
    )
    parser.add_argument(
        "--no-case-ub",
        dest="case_ub",
        action="store_false",
        help="do not train the per-Case UB models (compare with the Fig. 1 UB only)",
    )


if __name__ == "__main__":
    sys.exit(
        script_main(
            "fig4_heterogeneous",
            add_arguments=add_arguments,
            options=lambda a: dict(models=a.models, cases=a.cases, case_ub=a.case_ub),
        )
    )
