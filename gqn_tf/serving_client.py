"""A client of the exported GQN on TensorFlow Serving's REST API (export/README.md).

Request bodies and responses follow TF Serving's documented JSON formats (`api_rest.md`):
`{"signature_name": ..., "instances": [{name: value, ...}, ...]}` (row format: every input
shares its first dimension, one object per scene) or `{"signature_name": ..., "inputs":
{name: value, ...}}` (columnar), with binary strings as `{"b64": ...}`. Responses are
`{"predictions": ...}` to a row request, `{"outputs": ...}` to a columnar one, where a single
named output appears without its name, and `{"error": ...}` on failure.

JSON nests lists, so an empty context (M = 0) has no shape to send: the request builder refuses
empty tensors (the SavedModel itself accepts M = 0; use gRPC, whose TensorProto carries a shape).
"""

import base64
import json
import urllib.error
import urllib.request

import numpy as np

from gqn_tf.serving import GENERATE_JPEG, GENERATE_SEEDED, SERVING_DEFAULT

ROW, COLUMNAR = "row", "columnar"


class ServingError(RuntimeError):
    """TF Serving answered with an error (its `{"error": ...}` body) or an unexpected body."""


def predict_url(server, model_name, version=None):
    """`<server>/v1/models/<model_name>[/versions/<version>]:predict`."""
    path = f"/v1/models/{model_name}" + (f"/versions/{version}" if version is not None else "")
    return server.rstrip("/") + path + ":predict"


# --- Requests ------------------------------------------------------------------------------

def _to_json(value):
    """bytes → {"b64": ...}; arrays → nested lists; lists of bytes → lists of b64 objects."""
    if isinstance(value, bytes):
        return {"b64": base64.b64encode(value).decode("ascii")}
    if isinstance(value, (list, tuple)):
        return [_to_json(item) for item in value]
    array = np.asarray(value)
    if array.dtype.kind in "SO":
        return _to_json(array.tolist())
    return array.tolist()


def _length(value):
    return len(value) if isinstance(value, (list, tuple)) else np.shape(value)[0]


def _check_not_empty(name, value):
    shape = np.shape(value) if not isinstance(value, (list, tuple)) else (
        (len(value),) + (np.shape(value[0]) if len(value) and not isinstance(value[0], bytes)
                         else ()))
    if 0 in shape:
        raise ValueError(
            f"{name} is empty (shape {list(shape)}): JSON cannot carry the shape of an empty "
            f"tensor, so M = 0 (no context views) cannot be sent over REST. Send at least one "
            f"context view, or call the SavedModel over gRPC or directly.")


def build_predict_request(inputs, signature_name=None, layout=ROW):
    """The JSON body of a `:predict` request for the named `inputs` {name: array or bytes}.

    layout "row": `{"instances": [{name: value[i], ...} for each i]}`, which needs every input
    to share its first dimension; "columnar": `{"inputs": {name: value, ...}}`.
    Binary values (bytes, or arrays of them) are sent as `{"b64": ...}`.
    """
    for name, value in inputs.items():
        _check_not_empty(name, value)
    body = {} if signature_name is None else {"signature_name": signature_name}
    if layout == COLUMNAR:
        body["inputs"] = {name: _to_json(value) for name, value in inputs.items()}
    elif layout == ROW:
        lengths = {name: _length(value) for name, value in inputs.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(
                f"The row (instances) format needs every input to share its first dimension, "
                f"got {lengths}: use the columnar layout.")
        count = next(iter(lengths.values()))
        body["instances"] = [{name: _to_json(value[i]) for name, value in inputs.items()}
                             for i in range(count)]
    else:
        raise ValueError(f"layout must be {ROW!r} or {COLUMNAR!r}, got {layout!r}.")
    return body


def gqn_inputs(context, context_cameras, query_camera, seed=None):
    """The named inputs of a GQN signature and the signature's name.

    context: frames [B, M, H, W, 3] float in [0, 1] (serving_default, or generate_seeded with
    a `seed`), or JPEG bytes as B lists of M byte strings (generate_jpeg).
    context_cameras [B, M, 5] and query_camera [B, 5]: raw cameras (x, y, z, yaw, pitch).
    seed: None, an int (as the model's [seed, 0]) or a pair.
    """
    cameras = np.asarray(context_cameras, np.float32)
    query = np.asarray(query_camera, np.float32)
    jpeg = isinstance(context, (list, tuple)) and context and isinstance(context[0], (list, tuple))
    if jpeg:
        if seed is not None:
            raise ValueError("generate_jpeg draws its own seed: pass JPEGs without a seed, or "
                             "decoded frames with one.")
        return GENERATE_JPEG, {"context_jpeg": [list(views) for views in context],
                               "context_cameras": cameras, "query_camera": query}
    inputs = {"context_frames": np.asarray(context, np.float32), "context_cameras": cameras,
              "query_camera": query}
    if seed is None:
        return SERVING_DEFAULT, inputs
    inputs["seed"] = np.asarray([seed, 0] if np.ndim(seed) == 0 else seed, np.int32)
    return GENERATE_SEEDED, inputs


# --- Responses -----------------------------------------------------------------------------

def _from_json(value):
    """{"b64": ...} → bytes, recursively; everything else unchanged."""
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"])
    if isinstance(value, list):
        return [_from_json(item) for item in value]
    return value


def _as_array(value):
    if isinstance(value, list) and value and isinstance(value[0], bytes):
        return value
    return np.asarray(value, np.float32)


def parse_predict_response(body, output_name):
    """The output `output_name` of a `:predict` response body (str, bytes or parsed JSON).

    Handles `{"predictions": [...]}` (a list of values when the signature has one output,
    else a list of objects), `{"outputs": ...}` (the value, or an object of named outputs),
    and b64-encoded binary outputs. Returns a float32 array, or a list of bytes for binary
    outputs. Raises ServingError for `{"error": ...}` or a body without the output.
    """
    if isinstance(body, (str, bytes)):
        body = json.loads(body)
    if not isinstance(body, dict):
        raise ServingError(f"Unexpected response body: {str(body)[:200]}")
    if "error" in body:
        raise ServingError(f"TF Serving error: {body['error']}")
    if "predictions" in body:
        rows = body["predictions"]
        if rows and all(isinstance(row, dict) and output_name in row for row in rows):
            rows = [row[output_name] for row in rows]
        elif rows and isinstance(rows[0], dict) and set(rows[0]) != {"b64"}:
            raise ServingError(f"No output {output_name!r} in the predictions; they have "
                               f"{sorted(rows[0])}.")
        return _as_array(_from_json(rows))
    if "outputs" in body:
        outputs = body["outputs"]
        if isinstance(outputs, dict) and set(outputs) != {"b64"}:
            if output_name not in outputs:
                raise ServingError(f"No output {output_name!r} in the outputs; they have "
                                   f"{sorted(outputs)}.")
            outputs = outputs[output_name]
        return _as_array(_from_json(outputs))
    raise ServingError(f"A predict response has \"predictions\" or \"outputs\"; got keys "
                       f"{sorted(body)}.")


def post_predict(url, body, timeout=60.0):
    """POSTs a request body to a `:predict` URL; returns the parsed JSON response, raising
    ServingError with the server's message on an HTTP error."""
    data = json.dumps(body).encode("utf-8")
    request = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        text = error.read().decode("utf-8", "replace")
        try:
            message = json.loads(text).get("error", text)
        except (ValueError, AttributeError):
            message = text
        raise ServingError(f"{url} answered HTTP {error.code}: {message}") from None
    except urllib.error.URLError as error:
        raise ServingError(
            f"Cannot reach {url}: {error.reason}. Is tensorflow_model_server running with "
            f"--rest_api_port (see export/README.md)?") from None


# --- Scenes from the dataset files -----------------------------------------------------------

def load_scene(data_dir, dataset, split, index):
    """Scene `index` (counting from 0 over the split's shards in order): (JPEG frames, a list
    of S byte strings; raw cameras [S, 5] float32)."""
    import tensorflow as tf

    from gqn_tf.data import datasets, records, shards

    info = datasets.get_dataset_info(dataset)
    files = shards.list_shards(data_dir, dataset, split)
    scenes = tf.data.TFRecordDataset(files).skip(index).take(1)
    for record in scenes:
        scene = tf.io.parse_single_example(record, records.feature_spec(info.sequence_size))
        cameras = tf.reshape(scene["cameras"], [info.sequence_size, -1]).numpy()
        return list(scene["frames"].numpy()), cameras
    raise IndexError(f"{dataset} {split} in {data_dir} has fewer than {index + 1} scenes.")


def decode_frames(jpegs):
    """JPEG byte strings → frames [N, H, W, 3] float32 in [0, 1], as the pipeline decodes."""
    import tensorflow as tf

    frames = [tf.cast(tf.io.decode_jpeg(jpeg, channels=3), tf.float32) * (1.0 / 255.0)
              for jpeg in jpegs]
    return np.stack([frame.numpy() for frame in frames])


def write_png(path, image):
    """Writes an image [H, W, 3] in [0, 1] (or JPEG bytes) as a PNG file."""
    import tensorflow as tf

    if isinstance(image, bytes):
        pixels = tf.io.decode_jpeg(image, channels=3)
    else:
        pixels = tf.cast(tf.round(tf.clip_by_value(image, 0.0, 1.0) * 255.0), tf.uint8)
    tf.io.write_file(path, tf.io.encode_png(pixels))
