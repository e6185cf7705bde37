"""The exported SavedModel: signatures on any B and M, seeded output equal to the in-memory
model's, named errors for wrong inputs, stock ops only, saved_model_cli, and versioned writes."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from gqn_tf import serving
from gqn_tf.data import cameras as cameras_lib

SIZE = 64  # the tiny preset's frame size


def _scene(batch, views, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "context_frames": rng.uniform(size=(batch, views, SIZE, SIZE, 3)).astype(np.float32),
        "context_cameras": rng.normal(size=(batch, views, 5)).astype(np.float32),
        "query_camera": rng.normal(size=(batch, 5)).astype(np.float32),
    }


def _jpegs(frames):
    pixels = tf.cast(tf.round(frames * 255.0), tf.uint8)
    return tf.reshape(tf.map_fn(tf.io.encode_jpeg, tf.reshape(pixels, [-1, SIZE, SIZE, 3]),
                                fn_output_signature=tf.string), tf.shape(frames)[:2])


@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("views", [0, 1, 3, 7])
def test_every_signature_serves_any_batch_and_context_size(exported, batch, views):
    model, signatures = exported["model"], exported["loaded"].signatures
    scene = _scene(batch, views)
    context = (scene["context_frames"], cameras_lib.transform_cameras(scene["context_cameras"]))
    query = cameras_lib.transform_cameras(scene["query_camera"])
    seed = tf.constant([7, 3], tf.int32)

    seeded = signatures["generate_seeded"](**scene, seed=seed)["image"]
    np.testing.assert_allclose(seeded, model.generate(*context, query, seed=seed), atol=1e-6)

    image = signatures["serving_default"](**scene)["image"].numpy()
    assert image.shape == (batch, SIZE, SIZE, 3) and 0 <= image.min() and image.max() <= 1

    r = signatures["represent"](context_frames=scene["context_frames"],
                                context_cameras=scene["context_cameras"])["representation"]
    np.testing.assert_allclose(r, model.represent(*context), atol=1e-5)
    assert r.shape == (batch, SIZE // 4, SIZE // 4, model.gqn_config.r_channels)
    if views == 0:
        assert not np.any(r)

    jpegs = signatures["generate_jpeg"](
        context_jpeg=_jpegs(scene["context_frames"]), context_cameras=scene["context_cameras"],
        query_camera=scene["query_camera"])["image_jpeg_bytes"].numpy()
    assert jpegs.shape == (batch,)
    assert all(tf.io.decode_jpeg(jpeg).shape == (SIZE, SIZE, 3) for jpeg in jpegs)


def test_seed_makes_generation_reproducible_and_default_is_random(exported):
    signatures = exported["loaded"].signatures
    scene = _scene(2, 3, seed=1)
    seeded = signatures["generate_seeded"]

    def image(seed):
        return seeded(**scene, seed=tf.constant(seed, tf.int32))["image"].numpy()

    np.testing.assert_array_equal(image([1, 2]), image([1, 2]))
    assert not np.array_equal(image([1, 2]), image([2, 2]))
    first, second = (signatures["serving_default"](**scene)["image"].numpy() for _ in range(2))
    assert not np.array_equal(first, second)


def test_jpeg_context_is_decoded_like_the_pipeline(exported):
    """The JPEG frames reach the network as the pipeline decodes them (cast, times 1/255)."""
    module = serving.GQNServingModule(exported["model"])
    scene = _scene(2, 3, seed=2)
    jpegs = _jpegs(scene["context_frames"])
    decoded = module._decode_context(jpegs)
    expected = tf.cast(tf.io.decode_jpeg(jpegs[1, 2]), tf.float32) * (1.0 / 255.0)
    np.testing.assert_array_equal(decoded[1, 2], expected)
    assert decoded.shape == (2, 3, SIZE, SIZE, 3)


def test_camera_transform_is_the_pipelines_function():
    assert serving.signatures.transform_cameras is cameras_lib.transform_cameras


def _bad(**changes):
    scene = _scene(2, 3)
    scene.update(changes)
    return scene


_PNG = tf.io.encode_png(tf.zeros([SIZE, SIZE, 3], tf.uint8)).numpy()
_SMALL_JPEG = tf.io.encode_jpeg(tf.zeros([32, 32, 3], tf.uint8)).numpy()
_GOOD_JPEG = tf.io.encode_jpeg(tf.zeros([SIZE, SIZE, 3], tf.uint8)).numpy()


@pytest.mark.parametrize("signature, inputs, name, words", [
    ("serving_default", _bad(context_frames=np.zeros((2, 3, 32, 32, 3), np.float32)),
     "context_frames", "[B, M, 64, 64, 3]"),
    ("represent", {"context_frames": np.zeros((2, 3, SIZE, SIZE, 4), np.float32),
                   "context_cameras": np.zeros((2, 3, 5), np.float32)},
     "context_frames", "[B, M, 64, 64, 3]"),
    ("generate_seeded", {**_bad(context_frames=np.full((2, 3, SIZE, SIZE, 3), 255, np.float32)),
                         "seed": np.array([1, 2], np.int32)},
     "context_frames", "outside [0, 1]"),
    ("serving_default", _bad(context_cameras=np.zeros((2, 3, 7), np.float32)),
     "context_cameras", "[B, M, 5]"),
    ("serving_default", _bad(context_cameras=np.zeros((2, 2, 5), np.float32)),
     "context_cameras", "one camera per context frame"),
    ("serving_default", _bad(query_camera=np.zeros((2, 7), np.float32)),
     "query_camera", "[B, 5]"),
    ("serving_default", _bad(query_camera=np.zeros((3, 5), np.float32)),
     "query_camera", "one camera per scene"),
    ("generate_jpeg", {"context_jpeg": [[_SMALL_JPEG]], "context_cameras": np.zeros((1, 1, 5)),
                       "query_camera": np.zeros((1, 5))}, "context_jpeg", "64x64"),
    ("generate_jpeg", {"context_jpeg": [[_GOOD_JPEG, _PNG]], "context_cameras": np.zeros((1, 2, 5)),
                       "query_camera": np.zeros((1, 5))},
     "context_jpeg", "are not JPEGs:] [[0 1]]"),
])
def test_wrong_inputs_fail_with_errors_naming_the_input(exported, signature, inputs, name, words):
    function = exported["loaded"].signatures[signature]
    inputs = {key: tf.constant(value, tf.string if key == "context_jpeg" else None)
              for key, value in inputs.items()}
    inputs = {key: tf.cast(value, tf.float32) if value.dtype == tf.float64 else value
              for key, value in inputs.items()}
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        function(**inputs)
    message = str(error.value)
    assert name in message and words in message, message


def test_wrong_rank_is_refused_naming_the_input(exported):
    function = exported["loaded"].signatures["serving_default"]
    scene = _scene(2, 3)
    for name, value in [("context_frames", scene["context_frames"][0]),
                        ("context_cameras", scene["context_cameras"][0]),
                        ("query_camera", scene["query_camera"][0])]:
        with pytest.raises((TypeError, ValueError), match=name):
            function(**{**scene, name: value})


def test_every_op_is_a_stock_tensorflow_op(exported):
    ops = serving.saved_model_op_types(str(exported["path"]))
    assert {"Conv2D", "Assert", "StatelessRandomNormalV2", "DecodeJpeg"} <= set(ops)
    foreign = {op: where[:3] for op, where in ops.items() if not hasattr(tf.raw_ops, op)}
    assert not foreign


def test_loads_and_runs_without_gqn_tf(exported, tmp_path):
    """A serving host has TensorFlow only: block the package and load the export afresh."""
    scene = _scene(1, 2, seed=3)
    np.savez(tmp_path / "scene.npz", **scene)
    script = (
        "import sys; sys.modules['gqn_tf'] = None\n"
        "import numpy as np, tensorflow as tf\n"
        f"scene = dict(np.load({str(tmp_path / 'scene.npz')!r}))\n"
        f"model = tf.saved_model.load({str(exported['path'])!r})\n"
        "image = model.signatures['generate_seeded'](**scene, seed=tf.constant([4, 5]))['image']\n"
        f"np.save({str(tmp_path / 'image.npy')!r}, image.numpy())\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, timeout=300,
                   cwd=tmp_path, env={**os.environ, "PYTHONPATH": ""})
    expected = exported["loaded"].signatures["generate_seeded"](**scene, seed=tf.constant([4, 5]))
    np.testing.assert_array_equal(np.load(tmp_path / "image.npy"), expected["image"])


def test_saved_model_cli_lists_signatures_with_unknown_context_size(exported):
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    shown = subprocess.run([cli, "show", "--dir", str(exported["path"]), "--all"], check=True,
                           capture_output=True, text=True, timeout=300).stdout
    blocks = dict(re.findall(r"signature_def\['(\w+)'\]:\n(.*?)Method name is: (?:\S*)",
                             shown, re.S))
    assert set(serving.SIGNATURES) <= set(blocks)

    def shape(block, kind, name):
        found = re.search(rf"{kind}\['{name}'\] tensor_info:\n\s*dtype: (\w+)\n\s*shape: (.*)",
                          block)
        return found.group(1), found.group(2)

    for name in ("serving_default", "generate_seeded", "represent"):
        assert shape(blocks[name], "inputs", "context_frames") == (
            "DT_FLOAT", "(-1, -1, -1, -1, -1)")
        assert shape(blocks[name], "inputs", "context_cameras") == ("DT_FLOAT", "(-1, -1, -1)")
    assert shape(blocks["generate_seeded"], "inputs", "seed") == ("DT_INT32", "(2)")
    assert shape(blocks["serving_default"], "outputs", "image") == ("DT_FLOAT", "(-1, 64, 64, 3)")
    assert shape(blocks["generate_jpeg"], "inputs", "context_jpeg") == ("DT_STRING", "(-1, -1)")
    assert shape(blocks["generate_jpeg"], "outputs", "image_jpeg_bytes") == ("DT_STRING", "(-1)")
    assert shape(blocks["represent"], "outputs", "representation")[1] == "(-1, 16, 16, 16)"


def test_export_writes_versions_atomically_and_refuses_to_overwrite(exported, tmp_path):
    base = tmp_path / "exports"
    (base / "3").mkdir(parents=True)
    (base / "notes").mkdir()
    assert serving.existing_versions(str(base)) == [3] and serving.next_version(str(base)) == 4
    with pytest.raises(FileExistsError, match="already exists"):
        serving.export_saved_model(exported["model"], str(base), version=3)
    assert os.listdir(base / "3") == []

    path = serving.export_saved_model(exported["model"], str(base), version=3, overwrite=True)
    assert path == str(base / "3")
    assert {"saved_model.pb", "variables", "assets.extra"} <= set(os.listdir(path))
    assert sorted(os.listdir(base)) == ["3", "notes"]  # no staging folder left behind
    assert serving.next_version(str(base)) == 4
    with pytest.raises(ValueError, match="positive"):
        serving.export_saved_model(exported["model"], str(base), version=0)


def test_export_script_writes_the_next_version_with_its_config(exported):
    assert serving.existing_versions(str(exported["base"])) == [1]
    assert sorted(os.listdir(exported["base"])) == ["1"]
    with open(exported["path"] / serving.CONFIG_FILE) as f:
        config = json.load(f)
    assert config["model"] == exported["model"].gqn_config.to_dict()
    assert config["signatures"] == list(serving.SIGNATURES) and config["step"] is None
