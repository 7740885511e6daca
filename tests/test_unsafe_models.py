"""Exported models are checked before they run: a crafted SavedModel that reads or writes a file is refused
(op by op, by its saver's restore op, and for lacking an object graph), an odd model card with one error line."""

import dataclasses
import json
import shutil

import pytest
import tensorflow as tf
from conftest import make_run

from marker_excite.cli import main
from marker_excite.contract.model_spec import CARD_NAME, ModelSpec
from marker_excite.errors import UserInputError
from marker_excite.inference.predictor import load_predictor
from marker_excite.sharing.op_allowlist import UnsafeModelError, allowed_ops, read_saved_model, saved_model_ops
from marker_excite.sharing.savedmodel import export_run


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
    found, allowed = saved_model_ops(path), allowed_ops()
    assert found.every <= allowed.every and found.callable <= allowed.callable and found.restore <= allowed.restore
    assert {"RestoreV2", "AssignVariableOp"} <= found.restore
    for ops in (allowed.callable, allowed.restore):
        assert {"ReadFile", "WriteFile", "PyFunc", "EagerPyFunc", "SaveV2", "MergeV2Checkpoints"}.isdisjoint(ops)
    assert load_predictor(path).spec.markers


def test_model_reading_a_file_is_refused_naming_the_op(exported, tmp_path, capsys):
    secret = tmp_path / "secret.txt"
    secret.write_text("hostname")
    evil = craft(exported, tmp_path, lambda: tf.strings.length(tf.io.read_file(str(secret))))
    with pytest.raises(UnsafeModelError, match="runs TensorFlow op.s. .*'ReadFile'.*refusing to load it"):
        load_predictor(evil)
    code = main(["predict", str(evil), str(tmp_path / "nothing.h5"), "--labels", str(tmp_path / "out.tif")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "'ReadFile'" in err[0]
    assert not (tmp_path / "out.tif").exists()


def test_model_writing_a_checkpoint_from_its_signature_is_refused(exported, tmp_path):
    """SaveV2 is in the package's exports, but only in the saver, never callable from the signature."""
    target = str(tmp_path / "outside" / "ckpt")
    evil = craft(exported, tmp_path, lambda: tf.raw_ops.SaveV2(
        prefix=target, tensor_names=["x"], shape_and_slices=[""], tensors=[tf.constant(1.0)]))  # fmt: skip
    found = saved_model_ops(evil)
    assert "SaveV2" in found.every & found.callable
    with pytest.raises(UnsafeModelError, match="'SaveV2'"):
        load_predictor(evil)
    assert not (tmp_path / "outside").exists()


def test_damaged_saved_model_pb_is_one_error(exported, tmp_path):
    path, _ = exported
    copy = tmp_path / "copy"
    shutil.copytree(path, copy)
    (copy / "saved_model.pb").write_bytes(b"\x0a\xff\xff garbage")
    with pytest.raises(Exception, match="cannot read .*saved_model.pb"):
        load_predictor(copy)


def save_v2(payload, name):
    """Add to the default graph an op ``name`` that writes attacker bytes to ``payload`` (a ``SaveV2``)."""
    return tf.raw_ops.SaveV2(prefix=str(payload), tensor_names=["payload"], shape_and_slices=[""],
                             tensors=[tf.constant("attacker bytes")], name=name)  # fmt: skip


def save_v2_nodes(payload, name):
    """The nodes of a graph holding only :func:`save_v2`."""
    graph = tf.Graph()
    with graph.as_default():
        save_v2(payload, name)
    return graph.as_graph_def().node


def craft_tf1(exported, tmp_path, payload):
    """An old-style (TF1, no object graph) SavedModel with the genuine model card whose saver restore op is a
    ``SaveV2`` writing ``payload``: ``tf.saved_model.load`` runs that op."""
    path, _ = exported
    target = tmp_path / "tf1"
    graph = tf.Graph()
    with graph.as_default():
        image = tf.compat.v1.placeholder(tf.float32, [None, 4], name="image")
        weight = tf.compat.v1.get_variable("w", initializer=1.0, use_resource=True)
        save_v2(payload, "evil_restore")
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            builder = tf.compat.v1.saved_model.Builder(str(target))
            signature = tf.compat.v1.saved_model.predict_signature_def(
                {"image": image}, {"probabilities": image * weight}
            )
            builder.add_meta_graph_and_variables(session, ["serve"], signature_def_map={"serving_default": signature})
            builder.save()
    model = read_saved_model(target)
    for node in model.meta_graphs[0].graph_def.node:
        if node.op == "PlaceholderWithDefault":  # the saver's file name: the one op the allow-list lacks
            node.op = "Placeholder"
            del node.input[:]
    model.meta_graphs[0].saver_def.restore_op_name = "evil_restore"
    (target / "saved_model.pb").write_bytes(model.SerializeToString())
    shutil.copy(path / CARD_NAME, target / CARD_NAME)
    return target


def test_old_style_model_whose_restore_op_writes_a_file_is_refused_before_loading(exported, tmp_path, capsys):
    outside = tmp_path / "outside"
    evil = craft_tf1(exported, tmp_path, outside / "pwned")
    found = saved_model_ops(evil)
    assert found.every <= allowed_ops().every  # every op is one the package's exports use: the op list alone passes
    assert "SaveV2" in found.restore
    with pytest.raises(UnsafeModelError, match="has no object graph .*TensorFlow 1.*refusing to load it"):
        load_predictor(evil)
    for argv in (["predict", str(evil), str(tmp_path / "nothing.h5"), "--labels", str(tmp_path / "out.tif")],
                 ["quantify", "--store", str(tmp_path / "nothing.h5"), "--model", str(evil), "-o", str(tmp_path / "q.csv")]):  # fmt: skip
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "has no object graph" in err[0], err
    assert not outside.exists() and not (tmp_path / "out.tif").exists() and not (tmp_path / "q.csv").exists()


def test_restore_op_other_than_the_checkpoint_restore_is_refused(exported, tmp_path):
    """With an object graph, tf.saved_model.load restores variables itself; the saver's restore op must
    still be the plain restore of the model's variables for any other loader (TF Serving, TF1)."""
    path, _ = exported
    evil = tmp_path / "evil"
    shutil.copytree(path, evil)
    model = read_saved_model(evil)
    model.meta_graphs[0].graph_def.node.extend(save_v2_nodes(tmp_path / "outside" / "pwned", "evil_restore"))
    model.meta_graphs[0].saver_def.restore_op_name = "evil_restore"
    (evil / "saved_model.pb").write_bytes(model.SerializeToString())
    with pytest.raises(UnsafeModelError, match="its checkpoint restore op runs 'SaveV2'"):
        load_predictor(evil)
    model.meta_graphs[0].saver_def.restore_op_name = "nowhere"
    (evil / "saved_model.pb").write_bytes(model.SerializeToString())
    with pytest.raises(
        UnsafeModelError,
        match="evil: the saver's restore op 'nowhere' is not a node of the model's graph; refusing to load it",
    ):
        load_predictor(evil)
    assert not (tmp_path / "outside").exists()


def edited_export(exported, tmp_path, edit):
    """A copy of the genuine export whose model card is ``edit(card)``."""
    path, _ = exported
    copy = tmp_path / "copy"
    shutil.copytree(path, copy)
    card = json.loads((copy / CARD_NAME).read_text())
    (copy / CARD_NAME).write_text(json.dumps(edit(card)))
    return copy


def test_info_on_a_card_without_normalisation_is_one_error(exported, tmp_path, capsys):
    copy = edited_export(exported, tmp_path, lambda card: {k: v for k, v in card.items() if k != "normalisation"})
    assert main(["info", str(copy)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model card is incomplete: 'normalisation' must give 'method'" in err[0], err
    other = edited_export(exported, tmp_path / "b", lambda card: {**card, "normalisation": {
        **card["normalisation"], "method": "percentile 1-99"}})  # fmt: skip
    with pytest.raises(UserInputError, match="normalisation 'percentile 1-99' is not the one marker_excite applies"):
        load_predictor(other)


def test_card_with_fewer_markers_than_the_model_is_one_error(exported, tmp_path, capsys):
    def drop_marker(card):
        spec = ModelSpec.from_card(card)
        fewer = dataclasses.replace(spec, markers=spec.markers[:-1])
        return fewer.card()

    copy = edited_export(exported, tmp_path, drop_marker)
    with pytest.raises(
        UserInputError, match=r"does not match its model_card.json: the card declares availability float32 \[None, 2\]"
    ):
        load_predictor(copy)
    code = main(["predict", str(copy), str(tmp_path / "nothing.h5"), "--labels", str(tmp_path / "out.tif")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "signature has availability float32 [None, 3]" in err[0], err
    inconsistent = edited_export(exported, tmp_path / "b", lambda card: {**card, "markers": card["markers"][:-1]})
    with pytest.raises(UserInputError, match="model card 'signature' is .*but its markers, classes and tile imply"):
        load_predictor(inconsistent)
