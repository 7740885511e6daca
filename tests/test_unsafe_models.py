"""Exported models are checked op by op before they run: a crafted SavedModel that reads a file is refused."""

import json
import shutil

import pytest
import tensorflow as tf
from conftest import make_run

from marker_excite.cli import main
from marker_excite.export import export_run
from marker_excite.model_spec import CARD_NAME
from marker_excite.predictor import load_exported
from marker_excite.saved_model_ops import UnsafeModelError, allowed_ops, saved_model_ops


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    base = tmp_path_factory.mktemp("unsafe")
    run_dir, _, cfg = make_run(base / "run", name="MS-ME")
    return export_run(run_dir, base / "exported"), cfg


def craft(exported, tmp_path, body):
    """A SavedModel with the real signature and the genuine model card whose serving function runs ``body``."""
    path, cfg = exported
    card = json.loads((path / CARD_NAME).read_text())
    k, n = len(cfg.markers), cfg.input_size
    out = cfg.output_size

    class Evil(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, n, n, k], tf.float32), tf.TensorSpec([None, k], tf.float32)])
        def serve(self, image, availability):
            with tf.control_dependencies([body()]):
                return {"probabilities": tf.zeros([tf.shape(image)[0], out, out, 1 + len(cfg.classes)])}

    evil = Evil()
    target = tmp_path / "evil"
    tf.saved_model.save(evil, str(target), signatures={"serving_default": evil.serve})
    (target / CARD_NAME).write_text(json.dumps(card))
    return target


def test_own_exports_pass_and_their_ops_are_the_allow_list(exported):
    path, _ = exported
    every, callable_ops = saved_model_ops(path)
    ops, callable_allowed = allowed_ops()
    assert every <= ops and callable_ops <= callable_allowed
    assert {"ReadFile", "WriteFile", "PyFunc", "EagerPyFunc", "SaveV2"}.isdisjoint(callable_allowed)
    assert load_exported(path).spec.markers


def test_model_reading_a_file_is_refused_naming_the_op(exported, tmp_path, capsys):
    secret = tmp_path / "secret.txt"
    secret.write_text("hostname")
    evil = craft(exported, tmp_path, lambda: tf.strings.length(tf.io.read_file(str(secret))))
    with pytest.raises(UnsafeModelError, match="runs TensorFlow op.s. .*'ReadFile'.*refusing to load it"):
        load_exported(evil)
    code = main(["predict", str(evil), str(tmp_path / "nothing.h5"), "--labels", str(tmp_path / "out.tif")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "'ReadFile'" in err[0]
    assert not (tmp_path / "out.tif").exists()


def test_model_writing_a_checkpoint_from_its_signature_is_refused(exported, tmp_path):
    """SaveV2 is in the package's exports, but only in the saver, never callable from the signature."""
    target = str(tmp_path / "outside" / "ckpt")
    evil = craft(exported, tmp_path, lambda: tf.raw_ops.SaveV2(
        prefix=target, tensor_names=["x"], shape_and_slices=[""], tensors=[tf.constant(1.0)]))  # fmt: skip
    every, callable_ops = saved_model_ops(evil)
    assert "SaveV2" in every & callable_ops
    with pytest.raises(UnsafeModelError, match="'SaveV2'"):
        load_exported(evil)
    assert not (tmp_path / "outside").exists()


def test_damaged_saved_model_pb_is_one_error(exported, tmp_path):
    path, _ = exported
    copy = tmp_path / "copy"
    shutil.copytree(path, copy)
    (copy / "saved_model.pb").write_bytes(b"\x0a\xff\xff garbage")
    with pytest.raises(Exception, match="cannot read .*saved_model.pb"):
        load_exported(copy)
