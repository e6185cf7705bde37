"""One tiny exported model shared by the serving and client tests (exporting takes seconds)."""

import pathlib
import subprocess
import sys

import pytest
import tensorflow as tf

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
