"""A client of the exported GQN on TensorFlow Serving's gRPC API (`PredictionService.Predict`).

Inputs travel as TensorProtos, which carry their shape, so an empty context (M = 0, the prior
alone) is sent as it is: the one request the JSON of the REST API cannot express. The protos
come from `tensorflow-serving-api`; TensorFlow converts arrays to and from them.
"""

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from gqn_tf.serving.client import ServingError

# A 32-view batch of 64x64 float frames is ~1.6 MB; the gRPC default caps messages at 4 MB.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
_DTYPES = {"context_jpeg": tf.string, "seed": tf.int32}


def predict_request(model_name, signature_name, inputs, version=None):
    """A PredictRequest for the named `inputs` {name: array, or nested lists of bytes}: JPEG
    context as strings, the seed as int32, everything else as float32."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    if version is not None:
        request.model_spec.version.value = int(version)
    for name, value in inputs.items():
        dtype = _DTYPES.get(name, tf.float32)
        if dtype == tf.string:
            value = np.array(value, dtype=object)
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value, dtype=dtype))
    return request


def parse_predict_response(response, output_name):
    """The output `output_name` of a PredictResponse: a float32 array, or a list of bytes for
    a binary output. Raises ServingError naming the outputs there are when it is missing."""
    if output_name not in response.outputs:
        raise ServingError(f"No output {output_name!r} in the response; it has "
                           f"{sorted(response.outputs)}.")
    value = tf.make_ndarray(response.outputs[output_name])
    if value.dtype == object:
        return list(value.reshape(-1))
    return value.astype(np.float32)


class GrpcClient:
    """`predict` over TF Serving's gRPC port (`tensorflow_model_server --port`, 8500 by
    default). One channel per client, opened on first use; safe to share between threads."""

    protocol = "gRPC"

    def __init__(self, target, model_name, version=None, timeout=60.0):
        self.target, self.model_name, self.version, self.timeout = (
            target, model_name, version, timeout)
        self._channel = grpc.insecure_channel(target, options=[
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)])
        self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)

    def predict(self, signature_name, inputs, output_name):
        request = predict_request(self.model_name, signature_name, inputs, self.version)
        try:
            response = self._stub.Predict(request, timeout=self.timeout)
        except grpc.RpcError as error:
            raise ServingError(_describe(error, self.target)) from None
        return parse_predict_response(response, output_name)

    def close(self):
        self._channel.close()

    def __str__(self):
        return f"grpc://{self.target} (model {self.model_name})"


def _describe(error, target):
    code, details = error.code(), error.details()
    if code == grpc.StatusCode.UNAVAILABLE:
        return (f"Cannot reach grpc://{target}: {details}. Is tensorflow_model_server running "
                f"with --port (see export/README.md)?")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"grpc://{target} did not answer in time: {details}"
    return f"grpc://{target} answered {code.name}: {details}"
