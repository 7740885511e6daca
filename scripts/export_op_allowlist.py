"""Regenerate marker_excite/export_ops.json: the ops of the package's own exports of every zoo model.

Run after changing the model code, the export or the TensorFlow version:
    python scripts/export_op_allowlist.py
"""

from __future__ import annotations

import json
import tempfile

import tensorflow as tf

from marker_excite.contract.model_spec import ModelSpec
from marker_excite.models.config import ZOO_NAMES
from marker_excite.models.zoo import build_model, model_config
from marker_excite.sharing.op_allowlist import ALLOWLIST, saved_model_ops
from marker_excite.sharing.savedmodel import serving_archive


def main() -> None:
    every: set[str] = set()
    callable_ops: set[str] = set()
    restore: set[str] = set()
    for name in ZOO_NAMES:
        markers = ("DAPI", "collagen") if name == "UB" else ("DAPI", "endomucin", "collagen")
        for classes in (("sinusoids",), ("sinusoids", "arteries")):
            cfg = model_config(
                name, preset="small", markers=markers, classes=classes, depth=2, base_filters=4, input_size=44
            )
            with tempfile.TemporaryDirectory() as tmp:
                serving_archive(build_model(cfg), ModelSpec.from_config(cfg)).write_out(tmp, verbose=False)
                found = saved_model_ops(tmp)
            every |= found.every
            callable_ops |= found.callable
            restore |= found.restore
            print(f"{name} {len(classes)} class(es): {len(found.every)} ops, {len(found.callable)} callable")
    data = {
        "generated_by": "scripts/export_op_allowlist.py",
        "tensorflow": tf.__version__,
        "ops": sorted(every),
        "callable_ops": sorted(callable_ops),
        "restore_ops": sorted(restore),
    }
    ALLOWLIST.write_text(json.dumps(data, indent=1) + "\n")
    print(f"{ALLOWLIST}: {len(every)} ops, {len(callable_ops)} callable, {len(restore)} run by the restore")


if __name__ == "__main__":
    main()
