import io
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from gqn_tf.data import records, synthetic

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATASET = "shepard_metzler_7_parts"
S = 15


def _read_split(root, dataset, split):
    """{shard name: [parsed scenes]} of a written split, parsed with the original spec."""
    directory = records.split_dir(str(root), dataset, split)
    shards = {}
    for name in sorted(os.listdir(directory)):
        scenes = tf.data.TFRecordDataset(os.path.join(directory, name)).map(
            lambda r: tf.io.parse_single_example(r, records.feature_spec(S)))
        shards[name] = [{k: v.numpy() for k, v in scene.items()} for scene in scenes]
    return shards


def _decode(jpeg):
    return np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))


def _foreground(frame):
    return frame.astype(int).sum(-1) > 60  # background is black; the darkest face is brighter


def _file_bytes(root):
    out = {}
    for directory, _, names in os.walk(root):
        for name in names:
            path = os.path.join(directory, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = f.read()
    return out


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    synthetic.synthesize(str(root), DATASET, train_scenes=7, test_scenes=3, scenes_per_shard=3,
                         seed=0, workers=1)
    return root


def test_shards_are_named_like_the_original_and_hold_every_scene(written):
    train = _read_split(written, DATASET, "train")
    test = _read_split(written, DATASET, "test")
    assert list(train) == [records.shard_name(i, 3) for i in (1, 2, 3)]
    assert [len(scenes) for scenes in train.values()] == [3, 3, 1]
    assert list(test) == ["1-of-1.tfrecord"] and len(test["1-of-1.tfrecord"]) == 3


def test_frames_are_64x64_rgb_and_show_a_multicoloured_object(written):
    for scenes in _read_split(written, DATASET, "train").values():
        for scene in scenes:
            for jpeg in scene["frames"]:
                frame = tf.io.decode_jpeg(jpeg).numpy()
                assert frame.shape == (64, 64, 3)
                assert 0.02 < _foreground(frame).mean() < 0.6
            # Several cubes of different colours: many well-populated colour bins.
            pixels = np.concatenate([_decode(j)[_foreground(_decode(j))] for j in scene["frames"]])
            bins, counts = np.unique(pixels // 64, axis=0, return_counts=True)
            assert (counts > 100).sum() >= 3


def test_cameras_look_at_the_object_centre_from_a_fixed_distance(written):
    cameras = np.concatenate([scene["cameras"].reshape(S, 5)
                              for scenes in _read_split(written, DATASET, "train").values()
                              for scene in scenes])
    position, yaw, pitch = cameras[:, :3], cameras[:, 3], cameras[:, 4]
    distance = np.linalg.norm(position, axis=-1)
    np.testing.assert_allclose(distance, synthetic.CAMERA_DISTANCE, rtol=1e-5)
    # Documented convention: position = centre - d * look_direction(yaw, pitch), centre = 0.
    np.testing.assert_allclose(synthetic.look_direction(yaw, pitch),
                               -position / distance[:, None], atol=1e-5)
    assert np.all((-np.pi <= yaw) & (yaw < np.pi))
    assert np.all((synthetic.PITCH_RANGE[0] <= pitch) & (pitch <= synthetic.PITCH_RANGE[1]))
    assert yaw.std() > 1.0 and pitch.std() > 0.3  # views spread around the object


def test_render_follows_the_camera_convention():
    """z is up and yaw = 0 looks along +x, so +y is on the image's left; the centre is centred."""
    camera = np.array([[-synthetic.CAMERA_DISTANCE, 0.0, 0.0, 0.0, 0.0]])
    centres = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 2.0], [0.0, 2.0, 0.0]])
    colours = np.array([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    frame = synthetic.render_views(centres, colours, camera)[0].astype(int)
    rows, cols = np.nonzero((frame[..., 0] > 60) & (frame[..., 1] > 60))  # the white centre cube
    assert abs(rows.mean() - 31.5) < 1 and abs(cols.mean() - 31.5) < 1
    red_rows, _ = np.nonzero((frame[..., 0] > 60) & (frame[..., 1] < 30))
    _, blue_cols = np.nonzero((frame[..., 2] > 60) & (frame[..., 0] < 30))
    assert red_rows.mean() < rows.min() and blue_cols.mean() < cols.min()


def test_a_cube_at_the_centre_is_centred_and_shaded_from_any_camera():
    cameras = synthetic.random_cameras(np.random.default_rng(1), 20)
    frames = synthetic.render_views(np.zeros((1, 3)), np.ones((1, 3)), cameras).astype(int)
    for frame in frames:
        rows, cols = np.nonzero(_foreground(frame))
        assert abs((rows.min() + rows.max()) / 2 - 31.5) < 1.5
        assert abs((cols.min() + cols.max()) / 2 - 31.5) < 1.5
        shades = np.unique(frame[_foreground(frame)][:, 0] // 8)
        assert len(shades) >= 2  # at least two visible faces, lit differently


def test_output_depends_on_the_seed_only(tmp_path):
    kwargs = dict(dataset=DATASET, train_scenes=5, test_scenes=2, scenes_per_shard=2)
    synthetic.synthesize(str(tmp_path / "a"), seed=3, workers=1, **kwargs)
    synthetic.synthesize(str(tmp_path / "b"), seed=3, workers=2, **kwargs)
    synthetic.synthesize(str(tmp_path / "c"), seed=4, workers=1, **kwargs)
    a, b, c = (_file_bytes(tmp_path / name) for name in "abc")
    assert a == b
    assert a.keys() == c.keys() and all(a[k] != c[k] for k in a)
    # only the finished shards: no temporary file is left behind
    assert len(a) == 4 and all(os.path.basename(name).endswith(".tfrecord")
                               and not os.path.basename(name).startswith(".") for name in a)


def test_train_and_test_scenes_differ(written):
    train = _read_split(written, DATASET, "train")["1-of-3.tfrecord"][0]
    test = _read_split(written, DATASET, "test")["1-of-1.tfrecord"][0]
    assert not np.array_equal(train["cameras"], test["cameras"])


def test_five_parts_objects_are_self_avoiding_walks_of_five_cubes(tmp_path):
    rng = np.random.default_rng(0)
    for _ in range(50):
        cells = synthetic.random_walk(rng, 5)
        assert len({tuple(c) for c in cells}) == 5
        assert np.all(np.abs(np.diff(cells, axis=0)).sum(-1) == 1)
    synthetic.synthesize(str(tmp_path), "shepard_metzler_5_parts", 2, 1, workers=1)
    assert [len(s) for s in _read_split(tmp_path, "shepard_metzler_5_parts", "train").values()] == [2]


@pytest.mark.parametrize("name", ["rooms", "shepard_metzler"])
def test_other_datasets_cannot_be_synthesized(tmp_path, name):
    with pytest.raises(ValueError, match="Cannot synthesize dataset.*shepard_metzler_7_parts"):
        synthetic.synthesize(str(tmp_path), name, 1, 1)
    assert not os.listdir(tmp_path)


def test_refuses_to_mix_with_shards_of_another_run(tmp_path):
    synthetic.synthesize(str(tmp_path), DATASET, 4, 0, scenes_per_shard=2, workers=1)
    with pytest.raises(ValueError, match="1-of-2.tfrecord, a shard of a set of 2.*remove the old shards"):
        synthetic.synthesize(str(tmp_path), DATASET, 3, 0, scenes_per_shard=1, workers=1)


def test_command_line_writes_shards_and_rejects_other_datasets(tmp_path):
    script = os.path.join(REPO_ROOT, "data", "synthesize.py")
    done = subprocess.run(
        [sys.executable, script, "--out", str(tmp_path), "--dataset", "shepard_metzler_5_parts",
         "--train_scenes", "3", "--test_scenes", "1", "--scenes_per_shard", "2",
         "--workers", "1"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert sorted(os.listdir(tmp_path / "shepard_metzler_5_parts" / "train")) == [
        "1-of-2.tfrecord", "2-of-2.tfrecord"]
    failed = subprocess.run([sys.executable, script, "--out", str(tmp_path), "--dataset", "jac"],
                            capture_output=True, text=True)
    assert failed.returncode != 0
    assert "Cannot synthesize dataset 'jac'" in failed.stderr
