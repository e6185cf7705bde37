import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from gqn_tf.data import datasets, shards, synthetic
from gqn_tf.evaluation import render
from gqn_tf.model import GQN, get_preset
from gqn_tf.training import checkpoints

from tests.conftest import REPO_ROOT

DATASET = "shepard_metzler_7_parts"


def _scene_cameras(seed=0, count=15):
    return synthetic.random_cameras(np.random.default_rng(seed), count)


def test_orbit_keeps_the_scene_distance_and_looks_at_the_centre():
    scene = _scene_cameras()
    orbit = render.orbit_cameras(scene, 12, pitch=0.3)
    distance = np.linalg.norm(orbit[:, :3], axis=-1)
    np.testing.assert_allclose(distance, np.mean(np.linalg.norm(scene[:, :3], axis=-1)),
                               rtol=1e-5)
    ahead = orbit[:, :3] + distance[:, None] * synthetic.look_direction(orbit[:, 3], orbit[:, 4])
    np.testing.assert_allclose(ahead, 0.0, atol=1e-4)  # the look direction hits the centre
    np.testing.assert_allclose(orbit[:, 4], 0.3)
    steps = np.diff(np.unwrap(orbit[:, 3]))
    np.testing.assert_allclose(steps, 2 * np.pi / 12, rtol=1e-5)  # one turn, evenly spaced


def test_the_synthesizer_draws_the_centre_of_an_orbit_at_the_image_centre():
    # One cube at the origin, rendered by the synthesizer's own projection from every camera.
    orbit = render.orbit_cameras(_scene_cameras(1), 8, pitch=-0.5)
    frames = synthetic.render_views(np.zeros((1, 3)), np.ones((1, 3)), orbit, frame_size=64)
    for frame in frames:
        ys, xs = np.nonzero(frame.sum(-1) > 0)
        assert abs(xs.mean() - 31.5) < 1.0 and abs(ys.mean() - 31.5) < 1.0


def test_pan_stays_in_place_and_turns():
    scene = _scene_cameras(2)
    pan = render.pan_cameras(scene, 6)
    np.testing.assert_allclose(pan[:, :3], np.tile(scene[0, :3], (6, 1)))
    np.testing.assert_allclose(pan[:, 4], scene[0, 4])
    assert len(np.unique(np.round(pan[:, 3], 4))) == 6
    with pytest.raises(ValueError, match="Unknown path 'spiral'"):
        render.make_path("spiral", scene, 3)


def test_default_paths_follow_the_dataset():
    assert render.default_path("shepard_metzler_5_parts") == "orbit"
    assert render.default_path("rooms_ring_camera") == "pan"


def test_render_path_is_deterministic_and_writes_gif_and_strip(sample_dir, tmp_path):
    model = GQN(get_preset("tiny"))
    info = datasets.get_dataset_info(DATASET)
    frames, raw = render.load_scene(shards.list_shards(sample_dir, DATASET, "test"), info, 2)
    assert frames.shape == (15, 64, 64, 3) and raw.shape == (15, 5)
    query = render.orbit_cameras(raw, 5)
    first = render.render_path(model, frames[:3], raw[:3], query, samples=3, seed=7)
    again = render.render_path(model, frames[:3], raw[:3], query, samples=3, seed=7)
    np.testing.assert_array_equal(first["samples"], again["samples"])
    assert first["samples"].shape == (5, 3, 64, 64, 3) and first["std"].shape == (5, 64, 64)
    np.testing.assert_allclose(first["mean"], first["samples"].mean(axis=1), atol=1e-6)
    other = render.render_path(model, frames[:3], raw[:3], query, samples=3, seed=8)
    assert not np.array_equal(first["samples"], other["samples"])

    gif = render.save_gif(tmp_path / "a.gif", first, scale=2)
    with Image.open(gif) as image:
        assert image.n_frames == 5
        # mean | 3 samples | std, 128 px each, 2 px gaps, a label row on top
        assert image.size[0] == 5 * 128 + 4 * 2
    strip = render.save_strip(tmp_path / "a.png", frames[:3], first, columns=4)
    with Image.open(strip) as image:
        assert image.mode == "RGB" and image.size[0] > 4 * 128


def test_a_scene_past_the_end_says_how_many_there_are(sample_dir):
    info = datasets.get_dataset_info(DATASET)
    with pytest.raises(IndexError, match="scene 500 does not exist: the shards hold 80 scenes"):
        render.load_scene(shards.list_shards(sample_dir, DATASET, "test"), info, 500)


def test_render_command_on_a_compact_model(tiny_trained_run, sample_dir, tmp_path):
    model, _ = checkpoints.load_model(str(tiny_trained_run))
    compact = checkpoints.save_compact(model, str(tmp_path / "m.npz"), {"step": 3})
    loaded, info = checkpoints.load_model(compact)
    assert info["step"] == 3
    for saved, restored in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(
            restored.numpy(), saved.numpy().astype(np.float16).astype(np.float32))
    out = tmp_path / "o.gif"
    args = [sys.executable, str(REPO_ROOT / "render.py"), "--model", compact, "--data_dir",
            str(sample_dir), "--scene", "1", "--num_frames", "4", "--samples", "2",
            "--out", str(out)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    with Image.open(out) as image:
        assert image.n_frames == 4
    assert (tmp_path / "o.png").exists()
    bad = subprocess.run(args[:-2] + ["--out", str(tmp_path / "o.mp4")], capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and "give a .gif file name" in bad.stderr
