"""Exports a trained GQN as a SavedModel for TensorFlow Serving (see export/README.md).

    python export/export_saved_model.py --model_dir /tmp/gqn_quick --export_dir /tmp/gqn_export
    tensorflow_model_server --rest_api_port=8501 --model_name=gqn \
        --model_base_path=/tmp/gqn_export

Writes <export_dir>/<version>/ (the layout TF Serving watches) with the signatures
serving_default, generate_seeded, represent and generate_jpeg, which take raw 5-dim cameras.
"""

import os
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # run from a checkout

from absl import flags, logging  # noqa: E402

from gqn_tf import cli  # noqa: E402

_MODEL_DIR = flags.DEFINE_string(
    "model_dir", None,
    "The model to export: a run directory written by train.py (its latest checkpoint), a "
    "checkpoint prefix inside one (<run>/checkpoints/ckpt-N), a .keras file or a compact .npz "
    "file (export/save_compact.py, e.g. the bundled pretrained model).", required=True)
_EXPORT_DIR = flags.DEFINE_string(
    "export_dir", None,
    "Base folder of the exports: the model goes to <export_dir>/<version>/. Pass the same "
    "folder to tensorflow_model_server as --model_base_path.", required=True)
_VERSION = flags.DEFINE_integer(
    "version", None,
    "Version folder to write. Default: 1 + the largest existing numeric version (or 1). TF "
    "Serving serves the largest version.", lower_bound=1)
_OVERWRITE = flags.DEFINE_bool(
    "overwrite", False, "Replace --version if it already exists (refused otherwise).")


def main(argv):
    del argv
    cli.import_tensorflow()
    from gqn_tf import serving
    from gqn_tf.training import checkpoints

    try:
        model, info = checkpoints.load_model(_MODEL_DIR.value)
    except FileNotFoundError as error:
        raise cli.DataError(f"--model_dir: {error}") from None
    logging.info("Loaded %s (step %s).", info["source"], info["step"])
    try:
        path = serving.export_saved_model(
            model, _EXPORT_DIR.value, version=_VERSION.value, overwrite=_OVERWRITE.value,
            metadata={"source": info["source"], "step": info["step"]})
    except FileExistsError as error:
        raise cli.UserError(str(error)) from None
    print(f"Exported {info['source']} to {path}\nSignatures: {', '.join(serving.SIGNATURES)}\n"
          f"Inspect: saved_model_cli show --dir {path} --all")


if __name__ == "__main__":
    cli.run(main)
