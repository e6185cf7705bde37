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

from gqn_tf.serving.client import ServingError

ROW, COLUMNAR = "row", "columnar"


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


class RestClient:
    """`predict` over TF Serving's REST API. The columnar layout (the default) carries inputs
    of any first dimension (generate_seeded's seed has none); either layout refuses empty
    tensors (M = 0), which JSON cannot shape."""

    protocol = "REST"

    def __init__(self, server, model_name, version=None, timeout=60.0, layout=COLUMNAR):
        self.url = predict_url(server, model_name, version)
        self.timeout = timeout
        self.layout = layout

    def predict(self, signature_name, inputs, output_name):
        body = build_predict_request(inputs, signature_name, self.layout)
        return parse_predict_response(post_predict(self.url, body, self.timeout), output_name)

    def __str__(self):
        return self.url
