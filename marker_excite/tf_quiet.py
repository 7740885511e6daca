"""Import TensorFlow without the start-up lines its C++ runtime writes straight to standard error.

TensorFlow 2.21 logs through absl before anything can configure it: ``WARNING: All log messages before
absl::InitializeLog() is called are written to STDERR`` and ``I0000 ... port.cc:153] oneDNN custom
operations are on ...`` appear at import (twice: two shared libraries), whatever
``TF_CPP_MIN_LOG_LEVEL`` says. :func:`import_tensorflow` imports TensorFlow with file descriptor 2
pointed at a temporary file, then writes back every captured line except that noise (absl INFO and
WARNING lines and the banner), so real errors and Python warnings still show.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile

#: captured lines that are dropped: absl's banner and its INFO / WARNING lines (``I0000 00:00:...``)
NOISE = re.compile(r"^(WARNING: All log messages before absl::InitializeLog\(\)|[IW]\d{4} \d\d:\d\d:\d+\.\d+ )")


def import_tensorflow() -> None:
    """Import TensorFlow (once) with its start-up log lines removed from standard error; nothing when
    ``KERAS_BACKEND`` names another Keras backend (JAX on a GPU machine without TensorFlow)."""
    if "tensorflow" in sys.modules or os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().decode(errors="replace").splitlines()
                    if line.strip() and not NOISE.match(line)]  # fmt: skip
            if kept:
                print("\n".join(kept), file=sys.stderr)
