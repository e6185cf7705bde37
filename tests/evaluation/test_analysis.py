"""analyze.py and gqn_tf/evaluation/analysis.py on a tiny trained model, the bundled model and
the bundled sample: the invariance, algebra and copy measures, their files, and the
baselines."""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from gqn_tf.data import datasets
from gqn_tf.evaluation import analysis
from gqn_tf.model import GQN
from gqn_tf.training import checkpoints

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
DATASET = "shepard_metzler_7_parts"


def test_nearest_neighbour_accuracy_known_cases():
    rng = np.random.default_rng(0)
    scenes = rng.normal(size=(5, 8))
    same = np.stack([scenes + 0.01 * rng.normal(size=scenes.shape) for _ in range(3)])
    assert analysis.nearest_neighbour_accuracy(same) == 1.0  # each set finds its scene
    shuffled = np.stack([scenes, scenes[::-1], scenes[[1, 2, 3, 4, 0]]])
    assert analysis.nearest_neighbour_accuracy(shuffled) < 0.5


def test_view_sets_are_disjoint_and_seeded():
    sets = analysis.view_sets(15, 3, 4, seed=2, scene=7)
    assert [len(s) for s in sets] == [4, 4, 4]
    assert len(set(np.concatenate(sets))) == 12
    again = analysis.view_sets(15, 3, 4, seed=2, scene=7)
    assert all(np.array_equal(a, b) for a, b in zip(sets, again))
    assert not np.array_equal(sets[0], analysis.view_sets(15, 3, 4, seed=2, scene=8)[0])


def test_invariance_of_a_trained_model_differs_from_an_untrained_one(tiny_trained_run,
                                                                    sample_dir):
    model, _ = checkpoints.load_model(str(tiny_trained_run))
    config = analysis.InvarianceConfig(num_scenes=6, view_sets=2, views_per_set=3)
    frames, viewpoints = analysis.read_scenes(str(sample_dir), DATASET, "test", 6,
                                              model.gqn_config.image_size)
    assert frames.shape == (6, 15, 64, 64, 3) and viewpoints.shape == (6, 15, 7)
    untrained = GQN(model.gqn_config)
    measures, features = analysis.invariance(model, untrained, frames, viewpoints, config)
    c = model.gqn_config
    assert features["model"].shape == (2, 6, c.core_size ** 2 * c.r_channels)
    assert features["mean_image"].shape == (2, 6, 64 * 64 * 3)
    assert not np.allclose(features["model"], features["untrained"])
    accuracy = measures["nearest_neighbour_accuracy"]
    assert set(accuracy) == {"model", "untrained", "mean_image"}
    assert all(0.0 <= value <= 1.0 for value in accuracy.values())
    assert measures["chance"] == pytest.approx(1 / 6)


def test_algebra_renders_the_sum_and_its_baselines(tiny_trained_run):
    model, _ = checkpoints.load_model(str(tiny_trained_run))
    measures, shown = analysis.algebra(model, DATASET, analysis.AlgebraConfig(
        families=2, context_views=3, queries=2))
    assert set(measures["mse"]) == {"algebra", "unchanged", "nearest_input", "own"}
    assert all(np.isfinite(v) and v >= 0 for v in measures["mse"].values())
    assert measures["mse"]["algebra"] != measures["mse"]["unchanged"]
    assert len(shown) == 2 and shown[0]["target"].shape == (64, 64, 3)
    grid = analysis.algebra_grid(shown, scale=1)
    assert grid.dtype == np.uint8 and grid.shape[0] > 2 * 64


def test_copy_renders_the_query_view_from_three_contexts(tiny_trained_run, sample_dir):
    model, _ = checkpoints.load_model(str(tiny_trained_run))
    frames, viewpoints = analysis.read_scenes(str(sample_dir), DATASET, "test", 5,
                                              model.gqn_config.image_size)
    measures, shown = analysis.copy(model, frames, viewpoints,
                                    analysis.CopyConfig(num_scenes=5, context_views=3))
    mse, ratio = measures["mse"], measures["ratio_to_mean_image"]
    assert set(mse) == {"left_out", "among", "alone", "mean_image"}
    for name in analysis.COPY_CONTEXTS:
        assert ratio[name] == pytest.approx(mse[name] / mse["mean_image"])
    assert len({mse["left_out"], mse["among"], mse["alone"]}) == 3  # three other contexts
    assert len(shown) == 4 and shown[0]["among"].shape == (64, 64, 3)
    grid = analysis.copy_grid(shown, 3, scale=1)
    assert grid.dtype == np.uint8 and grid.shape[0] > 4 * 64
    # With one context view, "among" is the query view alone.
    single, _ = analysis.copy(model, frames, viewpoints,
                              analysis.CopyConfig(num_scenes=5, context_views=1))
    assert single["mse"]["among"] == single["mse"]["alone"]


def test_the_bundled_model_draws_a_view_it_holds_better_than_one_it_infers(sample_dir):
    model, _ = checkpoints.load_model(str(REPO_ROOT / "pretrained" / "gqn_sm7_32.npz"))
    frames, viewpoints = analysis.read_scenes(str(sample_dir), DATASET, "test", 20,
                                              model.gqn_config.image_size)
    measures, _ = analysis.copy(model, frames, viewpoints, analysis.CopyConfig(num_scenes=20))
    ratio = measures["ratio_to_mean_image"]
    assert ratio["left_out"] < 1.0  # better than the mean image
    assert ratio["among"] < ratio["left_out"] and ratio["alone"] < ratio["left_out"]


def test_a_family_shares_shapes_and_colours_as_named():
    frames, cameras = analysis.scene_family(np.random.default_rng(0), 7, 3, 64, 32)
    assert cameras.shape == (3, 5) and frames["AX"].shape == (3, 32, 32, 3)
    assert not np.allclose(frames["AX"], frames["AY"])  # other colours
    assert not np.allclose(frames["AX"], frames["BX"])  # another shape
    # Same chain: the same pixels are object (not background) whatever the colours.
    silhouette = {name: frames[name].max(-1) > 0.1 for name in frames}
    assert np.mean(silhouette["AX"] != silhouette["AY"]) < 0.02
    assert np.mean(silhouette["AX"] != silhouette["BX"]) > 0.02


def test_configs_that_do_not_fit_the_scenes_are_named():
    info = datasets.get_dataset_info(DATASET)
    with pytest.raises(ValueError, match="need 16 views per scene"):
        analysis.check_invariance(analysis.InvarianceConfig(view_sets=4, views_per_set=4), info)
    with pytest.raises(ValueError, match="view_sets must be at least 2"):
        analysis.check_invariance(analysis.InvarianceConfig(view_sets=1), info)
    with pytest.raises(ValueError, match="need 16 cameras"):
        analysis.check_algebra(analysis.AlgebraConfig(context_views=12, queries=4), info)
    with pytest.raises(ValueError, match="15 context views and the query need 16 views"):
        analysis.check_copy(analysis.CopyConfig(context_views=15), info)


def test_analyze_py_writes_metrics_figures_and_projector(tiny_trained_run, sample_dir,
                                                        tmp_path):
    result = subprocess.run(
        [sys.executable, "analyze.py", "--model", str(tiny_trained_run), "--data_dir",
         str(sample_dir), "--output_dir", str(tmp_path), "--num_scenes", "6", "--view_sets",
         "2", "--views_per_set", "3", "--families", "2", "--queries", "2"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["invariance"]["num_scenes"] == 6 and metrics["algebra"]["families"] == 2
    assert metrics["copy"]["num_scenes"] == 6 and metrics["copy"]["context_views"] == 5
    for name in ("invariance_tsne.png", "algebra.png", "copy.png",
                 "projector/projector_config.pbtxt", "projector/metadata.tsv"):
        assert (tmp_path / name).exists(), name
    assert len((tmp_path / "projector" / "metadata.tsv").read_text().splitlines()) == 1 + 12
    assert "invariance: a scene recognised" in result.stdout and "algebra: MSE" in result.stdout
    assert "copy: the query view's MSE over the mean image's" in result.stdout
    bad = subprocess.run(
        [sys.executable, "analyze.py", "--model", str(tiny_trained_run), "--data_dir",
         str(sample_dir), "--output_dir", str(tmp_path / "bad"), "--view_sets", "5",
         "--views_per_set", "4"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    (line,) = bad.stderr.strip().splitlines()
    assert line.startswith("analyze.py: 5 view sets of 4 views need 20 views per scene")


def test_analyze_py_names_an_unknown_analysis(tmp_path):
    result = subprocess.run(
        [sys.executable, "analyze.py", "--model", "pretrained/gqn_sm7_32.npz", "--output_dir",
         str(tmp_path), "--analyses", "invariance,colour"], cwd=REPO_ROOT, capture_output=True,
        text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == ("analyze.py: --analyses invariance,colour: choose from "
                                     "invariance, algebra, copy.")


def test_analyze_py_names_a_copy_that_does_not_fit_the_scenes(tmp_path):
    result = subprocess.run(
        [sys.executable, "analyze.py", "--model", "pretrained/gqn_sm7_32.npz", "--output_dir",
         str(tmp_path), "--analyses", "copy", "--context_views", "15"], cwd=REPO_ROOT,
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "analyze.py: 15 context views and the query need 16 views per scene, but "
        "shepard_metzler_7_parts has 15: lower --context_views.")
