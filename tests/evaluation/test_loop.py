import json
import math

import numpy as np
import pytest
import tensorflow as tf

from gqn_tf.data import shards
from gqn_tf.evaluation import figures, loop

DATASET = "shepard_metzler_7_parts"
SAMPLE_TEST_SCENES = 80  # 2 shards of 40


def _config(sample_dir, model_path, output_dir, **overrides):
    settings = dict(num_scenes=6, max_context=3, samples=2, batch_size=4, grid_scenes=3,
                    seed=7, progress=False)
    settings.update(overrides)
    return loop.EvalConfig(DATASET, str(sample_dir), str(model_path), str(output_dir),
                           **settings)


@pytest.fixture(scope="module")
def evaluation(tiny_trained_run, sample_dir, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("eval")
    result = loop.evaluate(_config(sample_dir, tiny_trained_run, output_dir))
    return result, output_dir


def _numbers(value):
    if isinstance(value, dict):
        for item in value.values():
            yield from _numbers(item)
    elif isinstance(value, list):
        for item in value:
            yield from _numbers(item)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield value


ROW_KEYS = {"num_scenes", "neg_elbo_nats", "neg_elbo_bits_per_dim", "kl_nats", "kl_bits_per_dim",
            "nll_nats", "nll_bits_per_dim", "generation_mse", "generation_psnr",
            "reconstruction_mse", "reconstruction_psnr", "kl_per_layer_nats", "standard_error",
            "sample_std", "prior_posterior_mse", "nearest_view_mse", "mean_image_mse",
            "sample_mean_mse", "sample_mean_psnr", "prior_mean_mse", "prior_mean_psnr",
            "nearest_view_psnr", "mean_image_psnr", "generation_mse_ratio",
            "sample_mean_mse_ratio", "prior_mean_mse_ratio", "reconstruction_mse_ratio",
            "nearest_view_mse_ratio"}


def test_metrics_json_has_the_schema(evaluation):
    result, output_dir = evaluation
    with open(output_dir / loop.METRICS_FILE) as f:
        written = json.load(f)
    assert written == json.loads(json.dumps(result))
    assert {"schema_version", "dataset", "split", "data_dir", "model", "sigma", "sigma_source",
            "seed", "batch_size", "num_scenes", "max_context", "samples", "image_size",
            "num_dims", "nll_floor", "overall", "per_context", "files", "bad_records_skipped",
            "latent_samples", "mean_image_scenes"} <= set(written)
    assert written["model"]["step"] == 3 and written["model"]["source"].endswith("ckpt-1")
    assert written["split"] == "test" and written["num_scenes"] == 6
    assert set(written["overall"]) == ROW_KEYS
    for row in written["per_context"]:
        assert set(row) == ROW_KEYS | {"num_context"}
        assert len(row["kl_per_layer_nats"]) == written["model"]["config"]["num_layers"]


def test_a_row_for_every_context_size_over_all_scenes(evaluation):
    result, _ = evaluation
    assert [row["num_context"] for row in result["per_context"]] == [0, 1, 2, 3]
    assert all(row["num_scenes"] == 6 for row in result["per_context"])  # 4 + a short batch


def test_all_numbers_are_finite_and_consistent(evaluation):
    result, _ = evaluation
    assert all(math.isfinite(x) for x in _numbers(result))
    dims = result["num_dims"]
    for row in [result["overall"], *result["per_context"]]:
        assert row["neg_elbo_nats"] == pytest.approx(row["kl_nats"] + row["nll_nats"])
        assert row["neg_elbo_bits_per_dim"] == pytest.approx(
            row["neg_elbo_nats"] / (dims * math.log(2)))
        assert row["kl_nats"] >= 0 and row["nll_nats"] >= result["nll_floor"]["nats"]
        assert 0 <= row["generation_mse"] <= 1 and 0 <= row["reconstruction_mse"] <= 1
    overall_kl = np.mean([row["kl_nats"] for row in result["per_context"]])
    assert result["overall"]["kl_nats"] == pytest.approx(overall_kl)


def test_sigma_defaults_to_the_runs_final_value(evaluation):
    result, _ = evaluation
    assert result["sigma"] == 0.7 and result["sigma_source"] == "run_config"
    assert loop.resolve_sigma(None, None) == (0.7, "table_s1")
    assert loop.resolve_sigma(1.5, {"schedule": {"sigma_final": 0.7}}) == (1.5, "flag")
    assert loop.resolve_sigma(None, {"schedule": {"sigma_final": 0.9}}) == (0.9, "run_config")
    # a run with a piecewise σ ends at its last point, whatever sigma_final says
    assert loop.resolve_sigma(None, {"schedule": {"sigma_final": 0.7, "sigma_schedule":
                                                  "0:2.0,2000:0.7,40000:0.7,42000:0.3"}}) == (
        0.3, "run_config sigma_schedule")


def test_pngs_decode(evaluation):
    result, output_dir = evaluation
    assert result["files"]["grids"] == {"1": "grid_M01.png", "3": "grid_M03.png"}
    curves = tf.io.decode_png(tf.io.read_file(str(output_dir / result["files"]["curves"])))
    assert curves.shape[0] > 100 and curves.shape[2] in (3, 4)
    grid = tf.io.decode_png(tf.io.read_file(str(output_dir / "grid_M03.png")))
    # 3 scenes; 3 context views, blank, target, blank, 2 samples, blank, reconstruction; the
    # column labels above and the scene labels left of it.
    assert grid.shape == (figures.LABEL_HEIGHT + 3 * 66 - 2, figures.LABEL_WIDTH + 10 * 66 - 2, 3)


def test_every_context_size_sees_the_same_scenes_and_query_with_growing_context(evaluation):
    _, output_dir = evaluation
    tile = 66  # 64 pixels and a gap of 2

    def column(name, c):
        grid = tf.io.decode_png(tf.io.read_file(str(output_dir / name))).numpy()
        grid = grid[figures.LABEL_HEIGHT:, figures.LABEL_WIDTH:]  # without the labels
        return grid[:, c * tile:c * tile + 64]

    # M = 1: view 0 | blank | target ...; M = 3: views 0, 1, 2 | blank | target ...
    np.testing.assert_array_equal(column("grid_M01.png", 0), column("grid_M03.png", 0))
    np.testing.assert_array_equal(column("grid_M01.png", 2), column("grid_M03.png", 4))
    assert not np.array_equal(column("grid_M03.png", 0), column("grid_M03.png", 4))


def test_tensorboard_events_hold_eval_scalars_and_curves(evaluation):
    _, output_dir = evaluation
    steps = {}
    for event_file in tf.io.gfile.glob(str(output_dir / "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(event_file):
            for value in event.summary.value:
                steps.setdefault(value.tag, []).append(event.step)
    assert steps["eval/neg_elbo_bits_per_dim"] == [3]  # the checkpoint's step
    assert steps["eval/by_context/kl_nats"] == [0, 1, 2, 3]  # step = M
    assert "eval/generation_psnr" in steps and "eval/grid/M=3" in steps
    assert all(tag.startswith("eval/") for tag in steps)


def test_same_seed_same_numbers(evaluation, tiny_trained_run, sample_dir, tmp_path):
    result, _ = evaluation
    again = loop.evaluate(_config(sample_dir, tiny_trained_run, tmp_path, grid_scenes=0))
    assert again["per_context"] == result["per_context"]
    assert again["files"]["grids"] == {}


def test_a_keras_file_is_evaluated_with_table_s1_sigma(tiny_trained_run, sample_dir, tmp_path):
    from gqn_tf.training import checkpoints

    model, _ = checkpoints.load_model(str(tiny_trained_run))
    path = tmp_path / "model.keras"
    model.save(path)
    result = loop.evaluate(_config(sample_dir, path, tmp_path / "eval", num_scenes=2,
                                   max_context=1, grid_scenes=1, samples=1))
    assert result["model"]["step"] is None and result["sigma_source"] == "table_s1"
    assert [row["num_context"] for row in result["per_context"]] == [0, 1]


def test_count_scenes_counts_records_and_stops_at_the_limit(sample_dir):
    files = shards.list_shards(str(sample_dir), DATASET, "test")
    assert loop.count_scenes(files) == SAMPLE_TEST_SCENES
    assert loop.count_scenes(files, limit=5) == 5


def test_more_scenes_than_the_split_holds_is_a_clear_error(tiny_trained_run, sample_dir,
                                                            tmp_path):
    config = _config(sample_dir, tiny_trained_run, tmp_path, num_scenes=SAMPLE_TEST_SCENES + 1)
    with pytest.raises(loop.NotEnoughScenesError) as error:
        loop.evaluate(config)
    message = str(error.value)
    assert f"num_scenes {SAMPLE_TEST_SCENES + 1}" in message and "test split" in message
    assert f"has {SAMPLE_TEST_SCENES} scenes" in message
    assert str(sample_dir / DATASET / "test") in message


def test_max_context_must_leave_a_query_view(tiny_trained_run, sample_dir, tmp_path):
    with pytest.raises(ValueError, match="must be smaller than the 15 views"):
        loop.evaluate(_config(sample_dir, tiny_trained_run, tmp_path, max_context=15))
    with pytest.raises(ValueError, match="grid context size 5"):
        loop.evaluate(_config(sample_dir, tiny_trained_run, tmp_path, grid_context_sizes=[5]))
