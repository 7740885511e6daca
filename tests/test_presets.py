"""presets.py (every preset builds its configs, phantom and help) and config.split_list (the one list rule)."""

import pytest

from marker_excite.commands import synth as synth_cmd
from marker_excite.commands import train as train_cmd
from marker_excite.config import split_list
from marker_excite.data.synthetic import preset_specs
from marker_excite.errors import UserInputError
from marker_excite.experiments import PRESETS as EXPERIMENT_PRESETS
from marker_excite.presets import PRESETS
from marker_excite.runs.run import preset_configs


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_gives_configs_a_phantom_an_experiment_and_help(name):
    scale = PRESETS[name]
    mcfg, tcfg = preset_configs("MS-ME", name, seed=3)
    assert {k: getattr(mcfg, k) for k in scale.network} == scale.network
    assert (tcfg.preset, tcfg.epochs, mcfg.seed, tcfg.seed) == (name, scale.schedule["epochs"], 3, 3)
    assert len(preset_specs(name)) == len(scale.phantom.shapes_zyx)
    assert EXPERIMENT_PRESETS[name].batch_size == scale.schedule["batch_size"]
    assert f"{name}: " in train_cmd.preset_help() and f"{name}: " in synth_cmd.preset_help()


def test_cpu_network_is_an_alias_of_small():
    assert PRESETS["cpu"].network is PRESETS["small"].network


def test_split_list_strips_and_refuses_empty_entries_naming_the_option():
    assert split_list(" DAPI , collagen ", what="--panel") == ("DAPI", "collagen")
    for text in ("a,,b", "a,", ","):
        with pytest.raises(UserInputError, match=f"--panel: empty entry in '{text}'"):
            split_list(text, what="--panel")
    with pytest.raises(UserInputError, match="--panel: empty list"):
        split_list(" ", what="--panel")
    assert split_list("", what="--test-samples", allow_empty=True) == ()
