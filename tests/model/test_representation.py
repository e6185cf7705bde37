import keras
import numpy as np
import pytest

from gqn_tf.model import get_preset
from gqn_tf.model.representation import SceneRepresentation, make_representation_network


def _representation(name):
    config = get_preset("tiny", representation=name)
    layer = SceneRepresentation(make_representation_network(config), config.image_size)
    layer.build((None, None, 64, 64, 3), (None, None, 7))
    return layer, config


@pytest.mark.parametrize("name, size", [("tower", 16), ("pool", 1), ("pyramid", 1)])
@pytest.mark.parametrize("views", [0, 1, 5])
def test_shapes_for_each_network_and_number_of_views(make_batch, name, size, views):
    layer, config = _representation(name)
    batch = make_batch(batch_size=2, context_size=views)
    r = layer(batch["context_frames"], batch["context_cameras"])
    assert r.shape == (2, size, size, config.r_channels)
    if views == 0:
        np.testing.assert_array_equal(r, 0.0)


@pytest.mark.parametrize("name", ["tower", "pool", "pyramid"])
def test_scene_representation_is_the_sum_over_views(make_batch, name):
    layer, _ = _representation(name)
    batch = make_batch(batch_size=2, context_size=4)
    frames, cameras = batch["context_frames"], batch["context_cameras"]
    whole = layer(frames, cameras)
    parts = layer(frames[:, :1], cameras[:, :1]) + layer(frames[:, 1:], cameras[:, 1:])
    shuffled = layer(frames[:, ::-1], cameras[:, ::-1])
    np.testing.assert_allclose(whole, parts, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(whole, shuffled, rtol=1e-4, atol=1e-4)


def test_config_round_trip_rebuilds_the_network():
    layer, _ = _representation("pyramid")
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(clone.network).__name__ == "Pyramid" and clone.output_size == 1
