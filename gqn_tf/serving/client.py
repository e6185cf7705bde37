"""What every client of an exported GQN shares, whatever carries the request: the signature's
named inputs for a scene, the error a server's answer becomes, and scenes read from the dataset
files. `connect` picks the protocol from the server's address: `http://` or `https://` for TF
Serving's REST API (`rest`), `grpc://` for its gRPC PredictionService (`grpc_client`).
"""

import numpy as np

REST_SCHEMES = ("http://", "https://")
GRPC_SCHEME = "grpc://"


class ServingError(RuntimeError):
    """The server answered with an error, answered something unexpected, or cannot be reached."""


def check_server(server):
    """Raises a ValueError saying how to write `server` when it names no protocol."""
    if not server.startswith((GRPC_SCHEME, *REST_SCHEMES)):
        raise ValueError(
            f"server {server!r} has no protocol: write http://HOST:PORT for TF Serving's REST "
            f"port (--rest_api_port, 8501 by default) or grpc://HOST:PORT for its gRPC port "
            f"(--port, 8500 by default).")


def connect(server, model_name, version=None, timeout=60.0):
    """A client of `model_name` on TF Serving at `server`: `http(s)://host:port` (the REST port,
    8501 by default in TF Serving) or `grpc://host:port` (the gRPC port, 8500). The client's
    `predict(signature_name, inputs, output_name)` returns the output as a float32 array, or a
    list of bytes for a binary output, and raises ServingError on failure."""
    check_server(server)
    if server.startswith(GRPC_SCHEME):
        from gqn_tf.serving import grpc_client

        return grpc_client.GrpcClient(server[len(GRPC_SCHEME):], model_name, version, timeout)
    from gqn_tf.serving import rest

    return rest.RestClient(server, model_name, version, timeout)


def gqn_inputs(context, context_cameras, query_camera, seed=None):
    """The named inputs of a GQN signature and the signature's name.

    context: frames [B, M, H, W, 3] float in [0, 1] (serving_default, or generate_seeded with
    a `seed`), or JPEG bytes as B lists of M byte strings (generate_jpeg).
    context_cameras [B, M, 5] and query_camera [B, 5]: raw cameras (x, y, z, yaw, pitch).
    seed: None, an int (as the model's [seed, 0]) or a pair.
    """
    from gqn_tf.serving.signatures import GENERATE_JPEG, GENERATE_SEEDED, SERVING_DEFAULT

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
