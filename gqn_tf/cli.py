"""What the command-line scripts share: one-line user errors, a `--help` that exits 0, and a
quiet TensorFlow start-up.

This module imports no TensorFlow, so that a script's `--help` and flag errors return at once.

- `run(main)` replaces `absl.app.run(main)`. A `UserError` (or absl's `UsageError`) raised by
  `main` is printed as one line, `<script>: <message>`, and exits with 2; a `DataError` exits
  with 1; other exceptions keep their traceback (they are bugs to report). `--help`,
  `--helpshort` and `--helpfull` exit 0.
- `import_tensorflow()` imports TensorFlow with the C++ start-up lines it writes to stderr
  (CUDA probing on a machine without a GPU, the absl pre-initialisation warning) dropped, and
  TensorFlow's Python INFO lines silenced. Set GQN_TF_VERBOSE=1 to see all of them.
"""

import logging as _std_logging
import os
import sys
import tempfile

from absl import app
from absl import logging as absl_logging

VERBOSE_ENV = "GQN_TF_VERBOSE"
# Exit codes: a bad flag or setting, and bad or missing data / model files.
USAGE_EXIT, DATA_EXIT = 2, 1
_HELP_FLAGS = ("help", "?", "helpshort", "helpfull", "helpxml")


class UserError(ValueError):
    """A mistake in the command line or settings that the user can fix; printed as one line."""


class DataError(Exception):
    """Missing, damaged or mismatched data or model files; printed as one line."""


def verbose():
    """True when GQN_TF_VERBOSE asks for TensorFlow's own log lines."""
    return os.environ.get(VERBOSE_ENV, "").lower() not in ("", "0", "false", "no")


def import_tensorflow():
    """Imports TensorFlow (and probes its devices) without its C++ start-up noise; returns it.

    TensorFlow writes those lines straight to file descriptor 2 before its logging is set up,
    so no environment variable silences all of them: stderr is pointed at a temporary file for
    the import and the device probe, and the captured text is replayed only if the import fails
    (or GQN_TF_VERBOSE is set).
    """
    if "tensorflow" in sys.modules or verbose():
        import tensorflow as tf
        return tf
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    captured = tempfile.TemporaryFile()
    os.dup2(captured.fileno(), 2)
    failed = True
    try:
        import tensorflow as tf
        tf.config.list_physical_devices("GPU")  # the CUDA probe logs here, not at import
        failed = False
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        if failed:
            captured.seek(0)
            sys.stderr.write(captured.read().decode("utf-8", "replace"))
        captured.close()
    tf.get_logger().setLevel(_std_logging.WARNING)  # e.g. "Using MirroredStrategy with ..."
    quiet_library_logs()  # "Sharding callback ..."
    return tf


def quiet_library_logs():
    """Drops the INFO lines that the libraries log through absl (see `_drop_library_info`),
    unless GQN_TF_VERBOSE is set."""
    if not verbose():
        absl_logging.get_absl_handler().addFilter(_drop_library_info)


def _drop_library_info(record):
    """Drops INFO lines that TensorFlow, Keras, TFDS and JAX log through absl: nothing a user
    acts on (TFDS's "Failed to load dataset" precedes our own message on what to do)."""
    path = record.pathname.replace(os.sep, "/")
    return record.levelno >= _std_logging.WARNING or not any(
        f"/{package}/" in path
        for package in ("tensorflow", "keras", "tf_keras", "tensorflow_datasets", "jax",
                        "jaxlib"))


def _script_name():
    return os.path.basename(sys.argv[0]) or "gqn-tf"


def fail(message, code=USAGE_EXIT, at_once=False):
    """Prints `<script>: message` on stderr and exits with `code`; `at_once` skips the
    interpreter's shutdown (`os._exit`), for when TensorFlow threads would block it."""
    sys.stderr.write(f"{_script_name()}: {message}\n")
    sys.stderr.flush()
    if at_once:
        sys.stdout.flush()
        os._exit(code)
    sys.exit(code)


def run(main):
    """`absl.app.run(main)` with one-line user errors and a `--help` that exits 0."""

    def guarded(argv):
        try:
            return main(argv)
        except (UserError, app.UsageError) as error:
            fail(str(error), USAGE_EXIT)
        except DataError as error:
            fail(str(error), DATA_EXIT)

    try:
        app.run(guarded)
    except SystemExit as exit_:
        # absl exits 1 after printing the help it was asked for; asking for help is no error.
        if exit_.code == 1 and _asks_for_help(sys.argv[1:]):
            sys.exit(0)
        raise


def _asks_for_help(args):
    for arg in args:
        if arg == "--":
            break
        if arg.startswith("-") and arg.lstrip("-").split("=")[0] in _HELP_FLAGS:
            return True
    return False


def model_overrides(assignments):
    """--model flags of the training scripts, ["num_layers=8", "shared_cores=true"] →
    {"num_layers": 8, "shared_cores": True}; a UserError names a bad one."""
    from gqn_tf.model import GQNConfig

    types = {name: type(value) for name, value in GQNConfig().to_dict().items()}
    overrides = {}
    for assignment in assignments:
        name, sep, text = assignment.partition("=")
        if not sep or name not in types:
            raise UserError(
                f"--model {assignment!r}: expected NAME=VALUE with NAME one of "
                f"{', '.join(sorted(types))}.")
        kind = types[name]
        try:
            if kind is bool:
                if text.lower() not in ("true", "false", "1", "0"):
                    raise ValueError(text)
                value = text.lower() in ("true", "1")
            else:
                value = kind(text)
        except ValueError:
            raise UserError(
                f"--model {assignment!r}: {text!r} is not a valid {kind.__name__}.") from None
        overrides[name] = value
    return overrides
