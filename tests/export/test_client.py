"""The REST client: request bodies and response parsing against TF Serving's documented JSON
formats (tensorflow_serving/g3doc/api_rest.md), and export/client.py end to end against a
loopback HTTP server that answers :predict with the exported SavedModel."""

import base64
import json
import pathlib
import socket
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from gqn_tf.serving import client as serving_client
from gqn_tf.serving import grpc_client, rest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


def _inputs(batch=2, views=1, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.uniform(size=(batch, views, 4, 4, 3)).astype(np.float32),
            rng.normal(size=(batch, views, 5)).astype(np.float32),
            rng.normal(size=(batch, 5)).astype(np.float32))


def test_predict_url_follows_the_rest_paths():
    assert rest.predict_url("http://localhost:8501/", "gqn") == (
        "http://localhost:8501/v1/models/gqn:predict")
    assert rest.predict_url("http://h:1", "gqn", 3) == (
        "http://h:1/v1/models/gqn/versions/3:predict")


def test_row_request_has_one_named_object_per_scene():
    frames, cameras, query = _inputs()
    signature, inputs = serving_client.gqn_inputs(frames, cameras, query)
    body = json.loads(json.dumps(rest.build_predict_request(inputs, signature, "row")))
    assert set(body) == {"signature_name", "instances"}
    assert body["signature_name"] == "serving_default"
    assert len(body["instances"]) == 2
    for i, instance in enumerate(body["instances"]):
        assert set(instance) == {"context_frames", "context_cameras", "query_camera"}
        np.testing.assert_array_equal(np.asarray(instance["context_frames"], np.float32), frames[i])
        np.testing.assert_array_equal(np.asarray(instance["context_cameras"], np.float32),
                                      cameras[i])
        assert instance["query_camera"] == query[i].tolist()


def test_columnar_request_maps_names_to_whole_tensors_with_the_seed():
    frames, cameras, query = _inputs()
    signature, inputs = serving_client.gqn_inputs(frames, cameras, query, seed=5)
    body = json.loads(json.dumps(rest.build_predict_request(inputs, signature, "columnar")))
    assert body["signature_name"] == "generate_seeded"
    assert set(body["inputs"]) == {"context_frames", "context_cameras", "query_camera", "seed"}
    assert body["inputs"]["seed"] == [5, 0]
    np.testing.assert_array_equal(np.asarray(body["inputs"]["context_frames"], np.float32), frames)
    assert np.shape(body["inputs"]["query_camera"]) == (2, 5)


def test_row_request_refuses_inputs_without_a_shared_batch_dimension():
    signature, inputs = serving_client.gqn_inputs(*_inputs(batch=3), seed=[1, 2])
    with pytest.raises(ValueError, match="columnar"):
        rest.build_predict_request(inputs, signature, "row")


def test_jpeg_request_sends_binary_frames_as_b64_objects():
    jpegs = [[b"\xff\xd8one\xff\xd9", b"\xff\xd8two\xff\xd9"]]
    signature, inputs = serving_client.gqn_inputs(jpegs, np.zeros((1, 2, 5)), np.zeros((1, 5)))
    assert signature == "generate_jpeg"
    row = rest.build_predict_request(inputs, signature, "row")["instances"][0]
    assert row["context_jpeg"] == [{"b64": base64.b64encode(j).decode()} for j in jpegs[0]]
    columns = rest.build_predict_request(inputs, signature, "columnar")["inputs"]
    assert columns["context_jpeg"] == [row["context_jpeg"]]
    assert base64.b64decode(columns["context_jpeg"][0][1]["b64"]) == jpegs[0][1]


def test_empty_context_is_refused_with_the_reason():
    signature, inputs = serving_client.gqn_inputs(*_inputs(views=0))
    with pytest.raises(ValueError, match="M = 0"):
        rest.build_predict_request(inputs, signature)
    with pytest.raises(ValueError, match="M = 0"):
        rest.build_predict_request(*reversed(serving_client.gqn_inputs(
            [[]], np.zeros((1, 0, 5)), np.zeros((1, 5)))))


_IMAGES = np.arange(2 * 2 * 2 * 3, dtype=np.float32).reshape(2, 2, 2, 3) / 24


@pytest.mark.parametrize("body", [
    {"predictions": _IMAGES.tolist()},  # row request, one output: names omitted
    {"predictions": [{"image": image.tolist(), "other": 1} for image in _IMAGES]},
    {"outputs": _IMAGES.tolist()},  # columnar request, one output
    {"outputs": {"image": _IMAGES.tolist(), "other": [1, 2]}},
])
def test_documented_responses_are_parsed(body):
    for text in (body, json.dumps(body), json.dumps(body).encode()):
        image = rest.parse_predict_response(text, "image")
        assert image.dtype == np.float32
        np.testing.assert_array_equal(image, _IMAGES)


@pytest.mark.parametrize("body", [
    {"predictions": [{"b64": "AAE="}, {"b64": "/9g="}]},
    {"predictions": [{"image_jpeg_bytes": {"b64": "AAE="}}, {"image_jpeg_bytes": {"b64": "/9g="}}]},
    {"outputs": [{"b64": "AAE="}, {"b64": "/9g="}]},
    {"outputs": {"image_jpeg_bytes": [{"b64": "AAE="}, {"b64": "/9g="}]}},
])
def test_binary_outputs_are_decoded_from_b64(body):
    assert rest.parse_predict_response(body, "image_jpeg_bytes") == [b"\x00\x01", b"\xff\xd8"]


def test_error_and_unexpected_bodies_raise_serving_error():
    with pytest.raises(rest.ServingError, match="Servable not found"):
        rest.parse_predict_response('{ "error": "Servable not found for request: Latest(x)" }',
                                      "image")
    with pytest.raises(rest.ServingError, match="'image'"):
        rest.parse_predict_response({"outputs": {"representation": [1.0]}}, "image")
    with pytest.raises(rest.ServingError, match="predictions"):
        rest.parse_predict_response({"result": []}, "image")


# --- End to end over loopback ----------------------------------------------------------------

def _assert_png_is_the_seeded_render(png_path, exported, sample_dir, views):
    """The PNG export/client.py wrote equals, pixel for pixel, generate_seeded on test scene 1
    with `views` as context, view 4's camera as the query and seed [9, 0]."""
    jpegs, cameras = serving_client.load_scene(str(sample_dir), "shepard_metzler_7_parts",
                                               "test", 1)
    expected = exported["loaded"].signatures["generate_seeded"](
        context_frames=serving_client.decode_frames(jpegs)[views][None],
        context_cameras=cameras[views][None], query_camera=cameras[[4]],
        seed=tf.constant([9, 0]))["image"][0]
    png = tf.io.decode_png(tf.io.read_file(str(png_path))).numpy()
    np.testing.assert_array_equal(png, np.round(expected.numpy() * 255).astype(np.uint8))


def test_client_script_renders_a_sample_scene_through_rest(exported, server, sample_dir, tmp_path):
    address, requests = server
    out = tmp_path / "image.png"
    subprocess.run(
        [sys.executable, str(REPO_ROOT / "export" / "client.py"), "--server", address,
         "--model_name", "gqn", "--data_dir", str(sample_dir),
         "--dataset", "shepard_metzler_7_parts", "--split", "test", "--scene", "1",
         "--context_size", "3", "--query_view", "4", "--signature", "generate_seeded",
         "--seed", "9", "--out", str(out)],
        check=True, capture_output=True, text=True, timeout=300)
    (path, body), = requests
    assert "inputs" in body and body["signature_name"] == "generate_seeded"

    _assert_png_is_the_seeded_render(out, exported, sample_dir, views=[0, 1, 2])


def test_jpeg_round_trip_and_server_errors_through_rest(exported, server, sample_dir):
    address, _ = server
    url = rest.predict_url(address, "gqn")
    jpegs, cameras = serving_client.load_scene(str(sample_dir), "shepard_metzler_7_parts", "test", 0)
    signature, inputs = serving_client.gqn_inputs([jpegs[:2], jpegs[2:4]], np.stack([cameras[:2],
                                          cameras[2:4]]), cameras[[5, 6]])
    for layout in ("row", "columnar"):
        response = rest.post_predict(url, rest.build_predict_request(inputs, signature, layout))
        images = rest.parse_predict_response(response, "image_jpeg_bytes")
        assert [tf.io.decode_jpeg(image).shape for image in images] == [(64, 64, 3)] * 2

    signature, inputs = serving_client.gqn_inputs(serving_client.decode_frames(jpegs[:2])[None],
                                          cameras[None, :2, :3], cameras[[5]])
    with pytest.raises(rest.ServingError, match="(?s)HTTP 400.*context_cameras must be"):
        rest.post_predict(url, rest.build_predict_request(inputs, signature))
    with pytest.raises(rest.ServingError, match="HTTP 404: Servable not found"):
        rest.post_predict(rest.predict_url(address, "other"), {"instances": []})


# --- gRPC ------------------------------------------------------------------------------------

def test_grpc_request_carries_shapes_dtypes_and_an_empty_context():
    frames, cameras, query = _inputs(views=0)
    signature, inputs = serving_client.gqn_inputs(frames, cameras, query, seed=3)
    request = grpc_client.predict_request("gqn", signature, inputs, version=2)
    assert (request.model_spec.name, request.model_spec.signature_name,
            request.model_spec.version.value) == ("gqn", "generate_seeded", 2)
    assert tf.make_ndarray(request.inputs["context_frames"]).shape == (2, 0, 4, 4, 3)
    assert tf.make_ndarray(request.inputs["seed"]).tolist() == [3, 0]
    assert request.inputs["seed"].dtype == tf.int32.as_datatype_enum
    jpegs = [[b"\xff\xd8a", b"\xff\xd8b"]]
    _, inputs = serving_client.gqn_inputs(jpegs, np.zeros((1, 2, 5)), np.zeros((1, 5)))
    proto = grpc_client.predict_request("gqn", "generate_jpeg", inputs).inputs["context_jpeg"]
    assert tf.make_ndarray(proto).tolist() == jpegs


@pytest.mark.parametrize("context_size", [0, 3])
def test_client_script_renders_through_grpc_with_any_context(
        exported, grpc_server, sample_dir, tmp_path, context_size):
    address, requests = grpc_server
    out = tmp_path / "image.png"
    subprocess.run(
        [sys.executable, str(REPO_ROOT / "export" / "client.py"), "--server", address,
         "--data_dir", str(sample_dir), "--scene", "1", "--context_size", str(context_size),
         "--query_view", "4", "--signature", "generate_seeded", "--seed", "9",
         "--out", str(out)],
        check=True, capture_output=True, text=True, timeout=300)
    request, = requests
    assert tf.make_ndarray(request.inputs["context_frames"]).shape == (1, context_size, 64, 64, 3)

    _assert_png_is_the_seeded_render(out, exported, sample_dir, views=[0, 1, 2][:context_size])


def test_grpc_jpeg_round_trip_and_errors(exported, grpc_server, sample_dir):
    address, _ = grpc_server
    server = serving_client.connect(address, "gqn")
    jpegs, cameras = serving_client.load_scene(str(sample_dir), "shepard_metzler_7_parts",
                                               "test", 0)
    signature, inputs = serving_client.gqn_inputs([jpegs[:2], jpegs[2:4]], np.stack(
        [cameras[:2], cameras[2:4]]), cameras[[5, 6]])
    images = server.predict(signature, inputs, "image_jpeg_bytes")
    assert [tf.io.decode_jpeg(image).shape for image in images] == [(64, 64, 3)] * 2

    signature, inputs = serving_client.gqn_inputs(
        serving_client.decode_frames(jpegs[:2])[None], cameras[None, :2, :3], cameras[[5]])
    with pytest.raises(serving_client.ServingError,
                       match="(?s)INVALID_ARGUMENT.*context_cameras must be"):
        server.predict(signature, inputs, "image")
    with pytest.raises(serving_client.ServingError, match="NOT_FOUND.*Servable not found"):
        serving_client.connect(address, "other").predict(signature, inputs, "image")


def test_unreachable_servers_and_addresses_without_a_protocol_are_named(sample_dir):
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    frames, cameras, query = _inputs(batch=1)
    signature, inputs = serving_client.gqn_inputs(frames, cameras, query)
    for address in (f"grpc://127.0.0.1:{port}", f"http://127.0.0.1:{port}"):
        with pytest.raises(serving_client.ServingError, match="Cannot reach"):
            serving_client.connect(address, "gqn", timeout=5).predict(signature, inputs, "image")
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "export" / "client.py"), "--server", f"127.0.0.1:{port}",
         "--data_dir", str(sample_dir)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(
        "client.py: --server: server '127.0.0.1:"), result.stderr
    assert "grpc://HOST:PORT" in result.stderr
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "export" / "client.py"), "--server",
         f"http://127.0.0.1:{port}", "--context_size", "0", "--data_dir", str(sample_dir)],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "M = 0" in result.stderr, result.stderr
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "export" / "client.py"), "--server",
         f"grpc://127.0.0.1:{port}", "--layout", "row", "--data_dir", str(sample_dir)],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "client.py: --layout is a REST option: leave it out with a grpc:// --server.")
