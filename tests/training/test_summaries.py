import math

import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.plugins.hparams import metadata

from gqn_tf.model import GQN, get_preset
from gqn_tf.training import loop, summaries


def _events(logdir):
    accumulator = event_accumulator.EventAccumulator(str(logdir), size_guidance={
        event_accumulator.TENSORS: 0})
    accumulator.Reload()
    return accumulator


def _scalar(accumulator, tag):
    return [(e.step, float(tf.make_ndarray(e.tensor_proto))) for e in accumulator.Tensors(tag)]


def _image(accumulator, tag):
    """The last image of `tag` as a [H, W, C] uint8 array (image summaries hold PNG bytes)."""
    strings = tf.make_ndarray(accumulator.Tensors(tag)[-1].tensor_proto)  # [w, h, png...]
    return tf.io.decode_png(strings[2]).numpy()


@pytest.fixture(scope="module")
def run_events(sample_dir, tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("run")
    config = loop.TrainConfig(
        dataset="shepard_metzler_7_parts", data_dir=str(sample_dir), model_dir=str(model_dir),
        max_steps=4, batch_size=4, context_size=2, seed=3, log_every=1, image_every=2,
        checkpoint_every=100, num_images=3, shuffle_buffer_size=50, skip_bad_records=True)
    loop.train(get_preset("tiny"), config, strategy=tf.distribute.MirroredStrategy(["/cpu:0"]))
    return _events(model_dir / "train")


def test_run_logs_every_scalar_each_step_and_sigma_anneals(run_events):
    tags = set(run_events.Tags()["tensors"])
    assert set(summaries.SCALAR_TAGS.values()) <= tags
    loss = _scalar(run_events, "loss/neg_elbo")
    assert [step for step, _ in loss] == [1, 2, 3, 4]
    bits = _scalar(run_events, "loss/bits_per_dim")
    assert bits[0][1] == pytest.approx(loss[0][1] / (64 * 64 * 3 * math.log(2)), rel=1e-6)
    sigma = [value for _, value in _scalar(run_events, "schedule/sigma")]
    assert sigma[0] == 2.0 and sigma[-1] < sigma[0]  # not frozen (docs/design.md §5)
    assert [step for step, _ in _scalar(run_events, "reconstruction/mse")] == [2, 4]
    assert [value for _, value in _scalar(run_events, "data/bad_records_skipped")] == [0] * 4
    assert all(value > 0 for _, value in _scalar(run_events, "speed/images_per_sec"))


def test_run_writes_image_grids_a_row_per_scene(run_events):
    assert set(summaries.IMAGE_TAGS) <= set(run_events.Tags()["tensors"])
    height = 3 * 64 + 2 * 2  # three scenes, 2-pixel gaps
    assert _image(run_events, "images/context").shape == (height, 2 * 64 + 2, 3)
    assert _image(run_events, "images/prior_sample").shape == (height, 64, 3)
    # Two context views, a gap column, target, reconstruction, sample.
    assert _image(run_events, "images/overview").shape == (height, 6 * 64 + 5 * 2, 3)


def test_run_records_its_hparams(run_events):
    content = run_events.PluginTagToContent("hparams")
    assert content  # session start info written by tensorboard.plugins.hparams.api
    info = metadata.parse_session_start_info_plugin_data(next(iter(content.values())))
    assert info.hparams["model/num_layers"].number_value == 2
    assert info.hparams["train/context_size"].number_value == 2
    assert info.hparams["schedule/sigma_initial"].number_value == 2.0


def test_images_handle_batches_without_context_views(tmp_path, make_batch):
    writer = summaries.SummaryWriter(str(tmp_path))
    batch = make_batch(batch_size=2, context_size=0)
    errors = writer.images(5, GQN(get_preset("tiny")), batch, seed=1, max_images=2)
    writer.close()
    assert 0 < errors["mse"] < 1 and errors["psnr"] > 0
    assert _image(_events(tmp_path), "images/context").shape == (2 * 64 + 2, 64, 3)


def test_tile_pads_short_rows_with_white():
    black = np.zeros((4, 4, 3))
    grid = summaries.tile([[black, black], [black]])
    assert grid.shape == (1, 10, 10, 3)
    assert grid[0, 6:, 6:].min() == 1.0 and grid[0, 6:, :4].max() == 0.0


def test_reconstruction_errors_and_the_nll_floor_in_bits():
    errors = summaries.reconstruction_errors(np.zeros((1, 2, 2, 3)), np.full((1, 2, 2, 3), 0.1))
    assert errors["mse"] == pytest.approx(0.01) and errors["psnr"] == pytest.approx(20.0)
    floor = 64 * 64 * 3 * 0.5 * math.log(2 * math.pi * 2.0 ** 2)  # docs/design.md §5, σ = 2
    assert summaries.bits_per_dim(floor, 64) == pytest.approx(2.33, abs=0.005)
