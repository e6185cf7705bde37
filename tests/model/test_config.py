import pytest

from gqn_tf.model import config


def test_paper_preset_is_the_paper_configuration():
    paper = config.get_preset("paper")
    assert (paper.image_size, paper.num_layers, paper.hidden_channels, paper.kernel_size) == (
        64, 12, 128, 5)
    assert paper.z_channels == 3 and not paper.shared_cores and paper.core_size == 16


def test_overrides_replace_fields():
    assert config.get_preset("tiny", shared_cores=True, num_layers=3).num_layers == 3


def test_unknown_preset_and_field_are_named():
    with pytest.raises(ValueError, match="Unknown preset 'huge'"):
        config.get_preset("huge")
    with pytest.raises(ValueError, match=r"Unknown model config field\(s\) \['layers'\]"):
        config.get_preset("tiny", layers=3)


def test_invalid_values_are_rejected():
    with pytest.raises(ValueError, match="Unknown representation 'cube'"):
        config.GQNConfig(representation="cube")
    for size in (62, 4):
        with pytest.raises(ValueError, match="multiple of 4 and at least 8.*--frame_size"):
            config.GQNConfig(image_size=size)
    assert config.GQNConfig(image_size=84).core_size == 21  # mazes
