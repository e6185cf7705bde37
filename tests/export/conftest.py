"""One tiny exported model shared by the serving, client and viewer tests (exporting takes
seconds), and stand-ins for tensorflow_model_server in the test process: the loaded SavedModel
answered over TF Serving's REST API (its documented JSON, api_rest.md) and over its gRPC
PredictionService (the tensorflow-serving-api protos), each on a loopback port of its own."""

import base64
import concurrent.futures
import contextlib
import http.server
import json
import pathlib
import subprocess
import sys
import threading

import grpc
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from gqn_tf.model import GQN, get_preset
from gqn_tf.training import checkpoints

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """A tiny GQN saved as .keras, exported by export/export_saved_model.py (default version,
    so version 1), the in-memory model read back with load_model, and the loaded SavedModel."""
    root = tmp_path_factory.mktemp("export")
    keras_file = str(root / "tiny.keras")
    GQN(get_preset("tiny")).save(keras_file)
    base = root / "gqn"
    subprocess.run(
        [sys.executable, str(REPO_ROOT / "export" / "export_saved_model.py"),
         "--model_dir", keras_file, "--export_dir", str(base)],
        check=True, capture_output=True, text=True, timeout=300)
    model, _ = checkpoints.load_model(keras_file)
    path = base / "1"
    return {"base": base, "path": path, "model": model, "loaded": tf.saved_model.load(str(path))}


def _not_found(model):
    return f"Servable not found for request: Latest({model})"


def _call(loaded, signature_name, values):
    """The signature on {name: value}, each made a tensor of the dtype the signature declares."""
    signature = loaded.signatures[signature_name or "serving_default"]
    specs = signature.structured_input_signature[1]
    return signature(**{name: tf.constant(values[name], specs[name].dtype) for name in specs})


def serve_rest_predict(loaded, body):
    """What TF Serving does with a :predict body, per api_rest.md, on the loaded SavedModel."""

    def decode(value):
        if isinstance(value, dict):
            return base64.b64decode(value["b64"])
        return [decode(v) for v in value] if isinstance(value, list) else value

    if "instances" in body:
        rows = body["instances"]
        columns = {name: [row[name] for row in rows] for name in rows[0]}
    else:
        columns = body["inputs"]
    outputs = _call(loaded, body.get("signature_name"),
                    {name: decode(value) for name, value in columns.items()})

    def encode(name, tensor):
        if name.endswith("_bytes"):
            return [{"b64": base64.b64encode(v).decode()} for v in tensor.numpy().tolist()]
        return tensor.numpy().tolist()

    (name, tensor), = outputs.items()  # one named output: TF Serving omits its name
    return {("predictions" if "instances" in body else "outputs"): encode(name, tensor)}


@contextlib.contextmanager
def rest_server(loaded, model_name="gqn"):
    """Yields (address, requests): `http://127.0.0.1:PORT`, and the (path, body) of every
    :predict request it received. Other models answer 404, failing signatures 400."""
    requests = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            requests.append((self.path, body))
            model = self.path.split("/")[3].split(":")[0]
            if self.path != f"/v1/models/{model_name}:predict":
                status, answer = 404, {"error": _not_found(model)}
            else:
                try:
                    status, answer = 200, serve_rest_predict(loaded, body)
                except Exception as error:  # noqa: BLE001 - sent to the client as TF Serving does
                    status, answer = 400, {"error": str(error)}
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}", requests
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


class _PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, loaded, model_name, requests):
        self.loaded, self.model_name, self.requests = loaded, model_name, requests

    def Predict(self, request, context):  # noqa: N802 - the service's method name
        self.requests.append(request)
        if request.model_spec.name != self.model_name:
            context.abort(grpc.StatusCode.NOT_FOUND, _not_found(request.model_spec.name))
        values = {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}
        try:
            outputs = _call(self.loaded, request.model_spec.signature_name, values)
        except Exception as error:  # noqa: BLE001 - sent to the client as TF Serving does
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        response = predict_pb2.PredictResponse()
        response.model_spec.CopyFrom(request.model_spec)
        for name, tensor in outputs.items():
            response.outputs[name].CopyFrom(tf.make_tensor_proto(tensor.numpy()))
        return response


@contextlib.contextmanager
def grpc_server_of(loaded, model_name="gqn"):
    """Yields (address, requests): `grpc://127.0.0.1:PORT`, and every PredictRequest it got."""
    requests = []
    server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=4))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        _PredictionService(loaded, model_name, requests), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"grpc://127.0.0.1:{port}", requests
    finally:
        server.stop(grace=None).wait()


@pytest.fixture
def server(exported):
    """TF Serving's REST API over the exported model: (address, requests received)."""
    with rest_server(exported["loaded"]) as served:
        yield served


@pytest.fixture
def grpc_server(exported):
    """TF Serving's gRPC PredictionService over the exported model: (address, requests)."""
    with grpc_server_of(exported["loaded"]) as served:
        yield served
