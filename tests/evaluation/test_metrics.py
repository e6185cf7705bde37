import math

import numpy as np
import pytest
import tensorflow as tf

from gqn_tf.evaluation import metrics
from gqn_tf.model import GQN, distributions, get_preset


def test_mse_per_image_known_values():
    target = np.zeros((2, 4, 4, 3))
    prediction = np.stack([np.full((4, 4, 3), 0.5), np.zeros((4, 4, 3))])
    np.testing.assert_allclose(metrics.mse_per_image(target, prediction), [0.25, 0.0])


def test_mse_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="differ"):
        metrics.mse_per_image(np.zeros((1, 4, 4, 3)), np.zeros((1, 8, 8, 3)))


def test_psnr_known_values():
    np.testing.assert_allclose(metrics.psnr([1.0, 0.1, 0.01, 1e-4]), [0.0, 10.0, 20.0, 40.0])
    np.testing.assert_allclose(metrics.psnr(0.01, max_value=255.0),
                               10 * math.log10(255.0 ** 2 / 0.01))


def test_psnr_of_a_perfect_image_is_finite():
    assert np.isfinite(metrics.psnr(0.0))


def test_bits_per_dim_of_the_nll_floor_matches_design():
    # docs/design.md §5: about 6,909 nats = 0.81 bits/dim at σ = 0.7 and 19,809 nats at σ = 2.
    dims = 64 * 64 * 3
    assert metrics.nll_floor(0.7, dims) == pytest.approx(6909, abs=1)
    assert metrics.nll_floor(2.0, dims) == pytest.approx(19809, abs=1)
    assert distributions.bits_per_dim(metrics.nll_floor(0.7, dims), dims) == pytest.approx(
        0.81, abs=0.005)
    assert distributions.bits_per_dim(dims * math.log(2.0), dims) == pytest.approx(1.0)


def test_slice_context_keeps_the_query_and_target(make_batch):
    batch = make_batch(batch_size=2, context_size=4, image_size=16)
    sliced = metrics.slice_context(batch, 2)
    assert sliced["context_frames"].shape == (2, 2, 16, 16, 3)
    assert sliced["context_cameras"].shape == (2, 2, 7)
    np.testing.assert_array_equal(sliced["context_frames"], batch["context_frames"][:, :2])
    assert sliced["target"] is batch["target"] and sliced["query_camera"] is batch["query_camera"]


def test_evaluator_matches_the_model_for_every_context_size(make_batch):
    model = GQN(get_preset("tiny", image_size=16))
    evaluator = metrics.Evaluator(model, sigma=0.7)
    batch = make_batch(batch_size=3, context_size=2, image_size=16)
    for m in (0, 2):  # one compiled function serves every M
        values = evaluator(metrics.slice_context(batch, m), [5, 1])
        terms = model.elbo_terms(metrics.slice_context(batch, m), 0.7, [5, 1])
        np.testing.assert_allclose(values["neg_elbo"], terms["loss"], rtol=1e-5)
        np.testing.assert_allclose(values["kl"] + values["nll"], values["neg_elbo"], rtol=1e-5)
        generated = model.generate(batch["context_frames"][:, :m],
                                   batch["context_cameras"][:, :m], batch["query_camera"], [5, 1])
        np.testing.assert_allclose(values["generation"], generated, atol=1e-6)
        np.testing.assert_allclose(values["generation_mse"],
                                   metrics.mse_per_image(batch["target"], generated), rtol=1e-5)
        assert values["kl_per_layer"].shape == (3, model.gqn_config.num_layers)
        assert np.all(values["kl"] >= 0)


def _values(n, value, layers=2):
    return {**{name: np.full(n, value) for name in (*metrics.NATS_METRICS,
                                                   *metrics.IMAGE_METRICS)},
            "kl_per_layer": np.full((n, layers), value / layers)}


def test_context_curve_averages_over_images_not_batches():
    curve = metrics.ContextCurve(num_dims=12)
    curve.add(0, _values(3, 1.0))
    curve.add(0, _values(1, 5.0))  # a short last batch weighs as one image
    curve.add(1, _values(4, 2.0))
    rows = curve.rows()
    assert [row["num_context"] for row in rows] == [0, 1]
    assert rows[0]["num_scenes"] == 4 and rows[0]["kl_nats"] == pytest.approx(2.0)
    assert rows[0]["kl_bits_per_dim"] == pytest.approx(2.0 / (12 * math.log(2)))
    assert rows[0]["kl_per_layer_nats"] == pytest.approx([1.0, 1.0])
    assert rows[0]["standard_error"]["kl_nats"] == pytest.approx(np.std([1, 1, 1, 5], ddof=1) / 2)
    assert rows[1]["standard_error"]["kl_nats"] == 0.0
    overall = curve.overall()
    assert overall["num_scenes"] == 4 and overall["neg_elbo_nats"] == pytest.approx(2.0)


def test_evaluator_renders_the_mean_of_samples_and_the_prior_mean(make_batch):
    model = GQN(get_preset("tiny", image_size=16))
    c = model.gqn_config
    evaluator = metrics.Evaluator(model, sigma=0.7, samples=3, mean_of=2,
                                  mean_image=np.full((16, 16, 3), 0.5, np.float32))
    batch = make_batch(batch_size=3, context_size=2, image_size=16)
    values = evaluator(batch, [5, 1])
    inputs = (batch["context_frames"], batch["context_cameras"], batch["query_camera"])
    seeds = tf.random.experimental.stateless_split(tf.constant([5, 1], tf.int32), num=3)
    samples = [model.generate(*inputs, tf.cast(seeds[k], tf.int32)).numpy() for k in range(3)]
    np.testing.assert_allclose(values["sample_mean"], np.mean(samples[:2], axis=0), atol=1e-6)
    np.testing.assert_allclose(values["sample_std"], metrics.sample_spread(
        np.stack(samples, axis=1)), rtol=1e-5)
    zero = np.zeros((c.num_layers, 3, c.core_size, c.core_size, c.z_channels), np.float32)
    np.testing.assert_allclose(values["prior_mean"], model.generate(*inputs, noise=zero),
                               atol=1e-6)
    for kind in metrics.RENDERS:
        np.testing.assert_allclose(values[f"{kind}_psnr"],
                                   metrics.psnr(values[f"{kind}_mse"]), rtol=1e-6)
    assert not np.allclose(values["prior_mean"], values["generation"])
    evaluator.set_sigma(2.0)  # σ moves without a new trace
    again = evaluator(batch, [5, 1])
    np.testing.assert_allclose(again["nll"], distributions.gaussian_nll(
        batch["target"], values["reconstruction"], 2.0), rtol=1e-5)
    np.testing.assert_allclose(again["generation"], values["generation"], atol=1e-6)


def test_rows_give_each_mse_as_a_ratio_to_the_mean_image():
    curve = metrics.ContextCurve(num_dims=12)
    values = _values(4, 0.02)
    values["mean_image_mse"] = np.full(4, 0.04)
    values["nearest_view_mse"] = np.full(4, 0.05)
    curve.add(1, values)
    row = curve.rows()[0]
    assert row["generation_mse_ratio"] == pytest.approx(0.5)
    assert row["prior_mean_mse_ratio"] == pytest.approx(0.5)
    assert row["nearest_view_mse_ratio"] == pytest.approx(1.25)
    without = metrics.ContextCurve(num_dims=12)
    without.add(1, _values(4, 0.02))
    assert "generation_mse_ratio" not in without.rows()[0]
