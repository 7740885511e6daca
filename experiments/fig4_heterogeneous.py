"""Fig. 4: training with heterogeneous marker panels. MZ, MS and MS-ME trained on Cases 1-6 (each training
sample keeps only some markers; tables reconstructed in experiments/README.md), compared with the UB
models of Fig. 1 on the subsets a conventional UNet could be trained on (M^UB); the ratio
|M^UB| / |M^total| of each Case is reported in stats.json.

    python experiments/fig4_heterogeneous.py --preset small --out results/fig4 --ub-results results/fig1 [--cases case1,case3]
"""

import sys

from marker_excite.experiments import CASES, csv_list, script_main


def add_arguments(parser):
    parser.add_argument("--models", type=csv_list, default=None, help="comma-separated zoo models (default: MZ, MS, MS-ME)")
    parser.add_argument("--cases", type=csv_list, default=None, help=f"comma-separated cases (default: {','.join(CASES)})")


if __name__ == "__main__":
    sys.exit(script_main("fig4_heterogeneous", add_arguments=add_arguments,
                         options=lambda a: dict(models=a.models, cases=a.cases)))
