"""training/callbacks.py: best weights and early stopping on a scripted score sequence, TensorBoard choice."""

import importlib.util

import keras
import numpy as np

from marker_excite.training import callbacks as cb


def _model():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.stop_training = False
    return model


def _attach(callbacks, model, epochs):
    for c in callbacks:
        c.set_model(model)
        c.set_params({"epochs": epochs, "steps": 1})


def test_best_weights_and_early_stop_follow_the_validation_score(tmp_path):
    state = {"epoch": 0, "best_epoch": None, "best_score": None, "stale_epochs": 0}
    model, lines = _model(), []
    best = cb.BestWeights(tmp_path / "best.weights.h5", state)
    stop = cb.EarlyStop(2, state, lines.append)
    _attach([best, stop], model, epochs=10)
    saved = []
    for epoch, score in enumerate([0.5, 0.7, 0.7, 0.6]):
        model.layers[0].kernel.assign(np.full((2, 1), epoch, np.float32))
        best.on_epoch_end(epoch, {"val_mean_f1": score})
        stop.on_epoch_end(epoch, {"val_mean_f1": score})
        saved.append(float(_loaded(tmp_path)))
        assert model.stop_training == (epoch == 3)
    assert state == {"epoch": 0, "best_epoch": 2, "best_score": 0.7, "stale_epochs": 2}  # ties do not improve
    assert saved == [0.0, 1.0, 1.0, 1.0]  # the best epoch's weights only
    assert lines == ["early stop: no improvement of validation mean F1 for 2 epochs"]
    # the last epoch stops anyway: no message; a resumed run that had stopped is known before fitting
    model.stop_training, lines[:] = False, []
    _attach([stop], model, epochs=4)
    stop.on_epoch_end(3, {"val_mean_f1": 0.1})
    assert not model.stop_training and not lines and stop.stopped()
    never = cb.EarlyStop(None, dict(state, stale_epochs=100), lines.append)
    _attach([never], model, epochs=10)
    never.on_epoch_end(3, {})
    assert not never.stopped() and not model.stop_training and not lines


def _loaded(tmp_path):
    model = _model()
    model.load_weights(tmp_path / "best.weights.h5")
    return model.layers[0].kernel.numpy()[0, 0]


def test_tensorboard_callback_is_keras_when_the_package_is_installed(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    assert isinstance(cb.tensorboard(tmp_path), cb.ScalarSummaries)
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: object() if name == "tensorboard" else real(name, *a)
    )
    board = cb.tensorboard(tmp_path)
    assert isinstance(board, keras.callbacks.TensorBoard) and board.log_dir == str(tmp_path)
