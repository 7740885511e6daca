"""Run every benchmark script in this folder and collect their JSON into one report.

Usage: python benchmarks/run_all.py [--out benchmarks/results.json] [--only models,pipeline]
Each ``bench_*.py`` prints one JSON object on its last stdout line; failures are recorded, not fatal.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run_one(script: Path) -> dict:
    t0 = time.time()
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    result: dict = {"seconds": round(time.time() - t0, 1), "returncode": proc.returncode}
    lines = [ln for ln in proc.stdout.strip().splitlines() if ln.strip()]
    try:
        start = next(i for i, ln in enumerate(lines) if ln.lstrip().startswith("{"))
        result["result"] = json.loads("\n".join(lines[start:]))
    except (StopIteration, json.JSONDecodeError):
        result["stdout_tail"] = "\n".join(lines[-10:])
        result["stderr_tail"] = "\n".join(proc.stderr.strip().splitlines()[-10:])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="also write the combined JSON here (atomic)")
    parser.add_argument("--only", default="", help="comma-separated subset, e.g. models,pipeline")
    args = parser.parse_args()
    wanted = {w.strip() for w in args.only.split(",") if w.strip()}
    report = {}
    for script in sorted(HERE.glob("bench_*.py")):
        name = script.stem.removeprefix("bench_")
        if wanted and name not in wanted:
            continue
        print(f"running {script.name} ...", file=sys.stderr, flush=True)
        report[name] = run_one(script)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        from marker_excite.atomic import write_text

        write_text(args.out, text + "\n")
    return 0 if all(r["returncode"] == 0 for r in report.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
