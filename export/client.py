"""Renders a query view of a dataset scene on a GQN served by TF Serving, over REST or gRPC.

    python export/client.py --server http://localhost:8501 --model_name gqn \
        --data_dir data/sample --dataset shepard_metzler_7_parts --split test --scene 0 \
        --context_size 3 --query_view 4 --out image.png

Sends the scene's first --context_size views other than --query_view as context, with the
query view's raw camera, and saves the returned image as a PNG. --server grpc://HOST:PORT
sends the same request over gRPC, which also carries --context_size 0 (the prior alone).
See export/README.md.
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # run from a checkout

from absl import flags  # noqa: E402

from gqn_tf import cli  # noqa: E402

from gqn_tf.data import datasets  # noqa: E402

# --- Server ---------------------------------------------------------------------------------
_SERVER = flags.DEFINE_string(
    "server", "http://localhost:8501", "TF Serving's address: http://HOST:PORT for its REST "
    "API (--rest_api_port, 8501 by default) or grpc://HOST:PORT for gRPC (--port, 8500).")
_MODEL_NAME = flags.DEFINE_string(
    "model_name", "gqn", "The --model_name given to tensorflow_model_server.")
_MODEL_VERSION = flags.DEFINE_integer(
    "model_version", None, "Version to query. Default: the latest the server loaded.")
_SIGNATURE = flags.DEFINE_enum(
    "signature", "serving_default", ["serving_default", "generate_seeded", "generate_jpeg"],
    "serving_default: frames as float lists, a random sample; generate_seeded: the same with "
    "--seed, reproducible; generate_jpeg: frames and result as base64 JPEGs (smallest request).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of generate_seeded (the model's seed [seed, 0]).")
_LAYOUT = flags.DEFINE_enum(
    "layout", None, ["row", "columnar"],
    "REST only: the JSON layout, row ('instances') or columnar ('inputs'). Default: row, except "
    "columnar for generate_seeded, whose seed has no batch dimension.")
_TIMEOUT = flags.DEFINE_float("timeout", 60.0, "Seconds to wait for the server.")

# --- Scene ----------------------------------------------------------------------------------
_DATA_DIR = flags.DEFINE_string(
    "data_dir", datasets.DEFAULT_DATA_DIR,
    "Root of the data (<data_dir>/<dataset>/<split>/); data/sample for the bundled sample.")
_DATASET = flags.DEFINE_enum(
    "dataset", "shepard_metzler_7_parts", sorted(datasets.DATASETS), "Dataset of the scene.")
_SPLIT = flags.DEFINE_enum("split", "test", ["train", "test"], "Split of the scene.")
_SCENE = flags.DEFINE_integer("scene", 0, "Scene index in the split (from 0).", lower_bound=0)
_CONTEXT_SIZE = flags.DEFINE_integer(
    "context_size", 3, "Context views M. 0 (the prior alone) needs gRPC: JSON cannot carry an "
    "empty tensor.", lower_bound=0)
_QUERY_VIEW = flags.DEFINE_integer(
    "query_view", 4, "Index of the view to render; its camera is the query.", lower_bound=0)
_OUT = flags.DEFINE_string("out", "image.png", "Where to write the rendered view (PNG).")


def main(argv):
    del argv
    from gqn_tf.serving import client

    sequence_size = datasets.get_dataset_info(_DATASET.value).sequence_size
    if _QUERY_VIEW.value >= sequence_size or _CONTEXT_SIZE.value >= sequence_size:
        raise cli.UserError(
            f"{_DATASET.value} has {sequence_size} views per scene: --query_view must be below "
            f"{sequence_size} and --context_size below it too.")
    try:
        server = client.connect(_SERVER.value, _MODEL_NAME.value, _MODEL_VERSION.value,
                                _TIMEOUT.value)
    except ValueError as error:
        raise cli.UserError(f"--server: {error}") from None
    if _LAYOUT.value is not None and server.protocol != "REST":
        raise cli.UserError("--layout is a REST option: leave it out with a grpc:// --server.")
    jpegs, cameras = client.load_scene(
        _DATA_DIR.value, _DATASET.value, _SPLIT.value, _SCENE.value)
    views = [i for i in range(sequence_size) if i != _QUERY_VIEW.value][:_CONTEXT_SIZE.value]

    seed = _SEED.value if _SIGNATURE.value == "generate_seeded" else None
    if _SIGNATURE.value == "generate_jpeg":
        context = [[jpegs[i] for i in views]]
    else:
        context = client.decode_frames(jpegs)[views][None]  # [1, M, H, W, 3], M = 0 too
    signature, inputs = client.gqn_inputs(
        context, cameras[views][None], cameras[_QUERY_VIEW.value][None], seed=seed)
    if server.protocol == "REST":
        server.layout = _LAYOUT.value or ("columnar" if signature == "generate_seeded" else "row")
    output = "image_jpeg_bytes" if signature == "generate_jpeg" else "image"
    try:
        image = server.predict(signature, inputs, output)[0]
    except ValueError as error:  # a request the protocol cannot carry (M = 0 over REST)
        raise cli.UserError(str(error)) from None
    except client.ServingError as error:
        raise cli.DataError(str(error)) from None
    client.write_png(_OUT.value, image)
    print(f"Wrote {_OUT.value}: view {_QUERY_VIEW.value} of {_DATASET.value} {_SPLIT.value} scene "
          f"{_SCENE.value} from views {views} via {signature} at {server}")


if __name__ == "__main__":
    cli.run(main)
