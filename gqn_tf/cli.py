"""What the command-line scripts share: one-line user errors, a `--help` that exits 0, and a
quiet TensorFlow start-up.

This module imports no TensorFlow, so that a script's `--help` and flag errors return at once.

- `run(main)` replaces `absl.app.run(main)`. A flag mistake (an unknown or misspelt flag, a
  bad value, a missing required flag) and a `UserError` (or absl's `UsageError`) raised by
  `main` are printed as one line, `<script>: <message>`, and exit with 2; a `DataError` exits
  with 1; other exceptions keep their traceback (they are bugs to report). `--help`,
  `--helpshort` and `--helpfull` exit 0.
- `import_tensorflow()` imports TensorFlow with the C++ start-up lines it writes to stderr
  (CUDA probing on a machine without a GPU, the absl pre-initialisation warning) dropped, and
  TensorFlow's Python INFO lines silenced. Set GQN_TF_VERBOSE=1 to see all of them.
"""

import argparse
import logging as _std_logging
import os
import sys
import tempfile

from absl import app, flags
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
    """Drops INFO lines and deprecation warnings that TensorFlow, Keras, TFDS and JAX log
    through absl: nothing a user acts on (TFDS's "Failed to load dataset" precedes our own
    message on what to do; its deprecations are about its own internals)."""
    path = record.pathname.replace(os.sep, "/")
    if not any(f"/{package}/" in path
               for package in ("tensorflow", "keras", "tf_keras", "tensorflow_datasets", "jax",
                               "jaxlib")):
        return True
    if record.levelno >= _std_logging.ERROR:
        return True
    return record.levelno >= _std_logging.WARNING and "deprecated" not in record.getMessage()


def _script_name():
    """How the user ran the command: `train.py`, or `python -m gqn_tf.data.check`."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name and not spec.name.endswith("__main__"):
        return f"python -m {spec.name}"
    return os.path.basename(sys.argv[0]) or "gqn-tf"


def fail(message, code=USAGE_EXIT, at_once=False, prog=None):
    """Prints `<script>: message` on stderr and exits with `code`; `at_once` skips the
    interpreter's shutdown (`os._exit`), for when TensorFlow threads would block it."""
    sys.stderr.write(f"{prog or _script_name()}: {message}\n")
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
        app.run(guarded, flags_parser=_parse_flags)
    except SystemExit as exit_:
        # absl exits 1 after printing the help it was asked for; asking for help is no error.
        if exit_.code == 1 and _asks_for_help(sys.argv[1:]):
            sys.exit(0)
        raise


def _parse_flags(argv):
    """absl's flag parsing, with a flag mistake as one line and exit 2 (absl prints two lines,
    "FATAL Flags parsing error" and a pointer to --helpshort, and exits 1)."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as error:
        message = "; ".join(line.strip().rstrip(".") for line in str(error).splitlines()
                            if line.strip())
        message = message.replace(" ?", "?").rstrip(".")
        end = "" if message.endswith("?") else "."
        fail(f"{message}{end} Run {_script_name()} --help for the flags.", USAGE_EXIT)


class ArgumentParser(argparse.ArgumentParser):
    """argparse for the commands that take a free argument list (the launcher), with
    `run`'s conventions: a usage mistake is one line, `<prog>: <message>`, and exit 2."""

    def error(self, message):
        fail(f"{message}. Run {self.prog} --help for the arguments.", USAGE_EXIT,
             prog=self.prog)

    def exit(self, status=0, message=None):
        if message:
            sys.stderr.write(message)
        sys.exit(status)


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


def training_model_config(preset, assignments, frame_size, dataset):
    """The model a training script builds: --preset with its --model overrides, its image size
    following --frame_size (or the dataset's frames) unless --model sets image_size."""
    from gqn_tf.data import datasets
    from gqn_tf.model import get_preset

    overrides = model_overrides(assignments)
    if "image_size" not in overrides:  # the model follows the frames
        overrides["image_size"] = frame_size or datasets.DATASETS[dataset].frame_size
    return get_preset(preset, **overrides)


def define_training_study_flags():
    """Defines the flags that both trainers (train.py, train_jax.py) take beyond their own for
    the schedule, a compute budget and held-out evaluation; returns name → flag holder."""
    return {
        "sigma_schedule": flags.DEFINE_string(
            "sigma_schedule", "",
            "Instead of the σ_i → σ_f anneal, a piecewise-linear σ through STEP:SIGMA points, "
            "e.g. 0:2.0,2000:0.7,8000:0.7,10000:0.3 (anneal to 0.7, hold, then lower to 0.3); "
            "σ keeps the first point's value before it and the last point's after it."),
        "lr_schedule": flags.DEFINE_string(
            "lr_schedule", "",
            "Instead of the μ_i → μ_f anneal, a piecewise-linear learning rate through STEP:MU "
            "points, e.g. 0:5e-4,50000:5e-4,50001:2.5e-4 (halve μ at step 50,000); a resumed "
            "run follows the points from its step on, so points added later change only what "
            "is still to come."),
        "lr_warmup_steps": flags.DEFINE_float(
            "lr_warmup_steps", 0, "Scale μ by min(1, (step + 1) / N) over the first N steps (a "
            "warm-up for a higher --lr_initial; 0: none, as in Table S1).", lower_bound=0),
        "max_cpu_seconds": flags.DEFINE_float(
            "max_cpu_seconds", 0, "Also stop once the run's cumulative process CPU seconds "
            "(over every resume; held-out evaluation not counted) reach this: to compare "
            "recipes at equal compute. 0: no limit.", lower_bound=0),
        "eval_every": flags.DEFINE_integer(
            "eval_every", 0,
            "Every N steps (and at the start of a new run and at the end), evaluate fixed "
            "scenes of the test and of the train split: -ELBO, KL, NLL, the MSE and PSNR of one "
            "prior sample, of the mean of 4 samples and of the prior-mean render, each MSE as a "
            "ratio to the mean-image baseline, and the run's CPU and wall seconds so far, into "
            "MODEL_DIR/eval/metrics.jsonl (and, with train.py, TensorBoard runs eval/test and "
            "eval/train). 0: off. Needs a test split.", lower_bound=0),
        "eval_scenes": flags.DEFINE_integer(
            "eval_scenes", 64, "Scenes of each split in the held-out evaluation (the first "
            "ones in file order).", lower_bound=1),
        "eval_context_size": flags.DEFINE_integer(
            "eval_context_size", None, "Context views per scene in the held-out evaluation. "
            "Default: the largest the run trains with (--context_size, else "
            "--max_context_size, else S - 1).", lower_bound=0),
        "eval_batch_size": flags.DEFINE_integer(
            "eval_batch_size", 8, "Scenes per held-out evaluation batch; the latent noise of "
            "batch b is seeded by (--seed, b), as evaluate.py's with the same --batch_size.",
            lower_bound=1),
    }


def training_study_values(defined):
    """The values of `define_training_study_flags()`'s flags: (schedule fields, run fields)."""
    names = ("sigma_schedule", "lr_schedule", "lr_warmup_steps")
    schedule = {name: defined[name].value for name in names}
    run = {name: holder.value for name, holder in defined.items() if name not in schedule}
    return schedule, run
