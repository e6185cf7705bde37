"""A novel-view viewer in the browser: pick a scene and its context views, move the camera, and
watch the model render the scene with its uncertainty (the paper's movie S1, interactive).

    python view.py --model pretrained/gqn_sm7_32.npz --data_dir data/sample --resize

prints the page's address (http://127.0.0.1:8000/ by default) and serves until Ctrl-C. Images
come from the exported model's `generate_seeded` signature: in this process by default, or
from TF Serving with --server http://HOST:8501 (REST) or grpc://HOST:8500 (gRPC, which also
carries an empty context), where --model names the export that the server serves.
"""

import os
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))  # run from a checkout

from absl import flags  # noqa: E402

from gqn_tf import cli  # noqa: E402
from gqn_tf.data import datasets  # noqa: E402

_MODEL = flags.DEFINE_string(
    "model", None, "The model: an exported SavedModel version directory (export/1), a .keras "
    "or pretrained .npz file, a train.py run directory or a checkpoint prefix. With --server: "
    "the export the server serves (the viewer reads its frame size).", required=True)
_DATA_DIR = flags.DEFINE_string(
    "data_dir", datasets.DEFAULT_DATA_DIR,
    "Root of the scenes: <data_dir>/<dataset>/{train,test}/ (data/sample for the bundled "
    "sample).")
_DATASET = flags.DEFINE_enum(
    "dataset", "shepard_metzler_7_parts", sorted(datasets.DATASETS), "Dataset of the scenes.")
_RESIZE = flags.DEFINE_bool(
    "resize", False, "Scale the data's frames to the model's frame size. Without it, a model "
    "of another frame size than the data is refused on the page.")
_SAMPLES = flags.DEFINE_integer(
    "samples", 4, "Prior samples K per camera at start (the page can change it).",
    lower_bound=1, upper_bound=16)
_SERVER = flags.DEFINE_string(
    "server", None, "Render on TF Serving instead of in this process: http://HOST:PORT (REST, "
    "--rest_api_port) or grpc://HOST:PORT (gRPC, --port).")
_MODEL_NAME = flags.DEFINE_string(
    "model_name", "gqn", "With --server: the --model_name given to tensorflow_model_server.")
_HOST = flags.DEFINE_string(
    "host", "127.0.0.1", "Address to listen on. The default serves this machine only; "
    "0.0.0.0 serves every network the machine is on.")
_PORT = flags.DEFINE_integer(
    "port", 8000, "Port to listen on (0: any free port; the address is printed).",
    lower_bound=0, upper_bound=65535)


def main(argv):
    if len(argv) > 1:
        raise cli.UserError(f"Unexpected arguments: {' '.join(argv[1:])}")
    from gqn_tf.serving import client

    if _SERVER.value is not None:
        try:
            client.check_server(_SERVER.value)  # before TensorFlow: the answer comes at once
        except ValueError as error:
            raise cli.UserError(f"--server: {error}") from None
    cli.import_tensorflow()
    from gqn_tf.serving import viewer

    model_path = os.path.expanduser(_MODEL.value)
    try:
        if _SERVER.value is None:
            renderer, image_size = viewer.local_renderer(model_path)
        else:
            image_size = viewer.model_image_size(model_path)
            if image_size is None:
                raise cli.UserError(
                    f"--model {model_path!r} is not an exported SavedModel (no "
                    f"{os.path.join(model_path, viewer.CONFIG_FILE)}): with --server, pass the "
                    f"version directory the server serves (export/1).")
            renderer = viewer.ServerRenderer(_SERVER.value, _MODEL_NAME.value)
        scenes = viewer.Scenes(os.path.expanduser(_DATA_DIR.value), _DATASET.value,
                               image_size if _RESIZE.value else None)
    except FileNotFoundError as error:
        raise cli.DataError(str(error)) from None
    page = viewer.Viewer(renderer, scenes, image_size, _MODEL.value, samples=_SAMPLES.value)
    try:
        server = viewer.make_server(page, _HOST.value, _PORT.value)
    except OSError as error:
        raise cli.UserError(f"Cannot listen on {_HOST.value}:{_PORT.value}: {error.strerror}; "
                            f"pass another --port (0 picks a free one).") from None
    host, port = server.server_address[:2]
    shown = "127.0.0.1" if host == "0.0.0.0" else host
    print(f"GQN viewer of {scenes.info.name} ({', '.join(scenes.splits)} in "
          f"{scenes.data_dir}), rendered by {renderer.description}: http://{shown}:{port}/ "
          f"(Ctrl-C stops it)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("Stopped.", flush=True)
    finally:
        server.server_close()


if __name__ == "__main__":
    cli.run(main)
