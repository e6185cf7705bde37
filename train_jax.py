"""Trains a GQN on the JAX backend, without TensorFlow: for a GPU machine that has JAX and
cannot install TensorFlow. Reads the original shards, writes a run directory that the
TensorFlow side evaluates, exports and continues (gqn_tf/training/jax_train.py).

    KERAS_BACKEND=jax python train_jax.py --dataset shepard_metzler_7_parts \
        --data_dir data/sample --preset small --frame_size 32 --batch_size 16 \
        --max_steps 2000 --model_dir /tmp/gqn_jax
    python export/export_saved_model.py --model_dir /tmp/gqn_jax/model.keras --export_dir ...

Running the same command again resumes from the run's train_state.npz. Ctrl-C or SIGTERM saves
and exits with 128 + the signal number.
"""

import os
import pathlib
import signal
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))  # run from a checkout

from absl import flags  # noqa: E402

from gqn_tf import cli  # noqa: E402
from gqn_tf.data import datasets  # noqa: E402

_DATASET = flags.DEFINE_enum(
    "dataset", None, sorted(datasets.DATASETS), "Dataset to train on.", required=True)
_DATA_DIR = flags.DEFINE_string(
    "data_dir", datasets.DEFAULT_DATA_DIR,
    "Root of the data: shards are read from <data_dir>/<dataset>/train/ (local files).")
_MODEL_DIR = flags.DEFINE_string(
    "model_dir", None, "Run directory: model.keras, model.npz, train_state.npz, "
    "run_config.json, metrics.jsonl. Training resumes from it.", required=True)
_PRESET = flags.DEFINE_enum(
    "preset", "paper", ["paper", "small", "tiny"], "Model configuration (as train.py).")
_MODEL = flags.DEFINE_multi_string(
    "model", [], "Override one model config field, NAME=VALUE, repeatable (as train.py).")
_FRAME_SIZE = flags.DEFINE_integer(
    "frame_size", None, "Resize the frames to NxN (Pillow, bilinear) and build the model for "
    "N. Default: the dataset's frame size.", lower_bound=8)
_BATCH_SIZE = flags.DEFINE_integer(
    "batch_size", 36, "Scenes per update (Table S1: 36).", lower_bound=1)
_CONTEXT_SIZE = flags.DEFINE_integer(
    "context_size", None, "Context views per scene. Default: drawn per batch from "
    "0..--max_context_size (Algorithm S1). JAX compiles the step once per context size, so a "
    "fixed one compiles once.", lower_bound=0)
_MAX_CONTEXT_SIZE = flags.DEFINE_integer(
    "max_context_size", None, "Largest random context size (default: S - 1).", lower_bound=0)
_MAX_STEPS = flags.DEFINE_integer(
    "max_steps", 2_000_000, "Train until this many updates.", lower_bound=1)
_SEED = flags.DEFINE_integer("seed", 0, "Seeds the weights, the batches and the latent noise.")
_LOG_EVERY = flags.DEFINE_integer(
    "log_every", 100, "Steps between progress lines (and metrics.jsonl lines).", lower_bound=1)
_SAVE_EVERY = flags.DEFINE_integer(
    "save_every", 1000, "Steps between saves of the run directory's files.", lower_bound=1)
_LR_INITIAL = flags.DEFINE_float("lr_initial", 5e-4, "μ_i, the initial learning rate.")
_LR_FINAL = flags.DEFINE_float("lr_final", 5e-5, "μ_f, the final learning rate.")
_LR_STEPS = flags.DEFINE_float("lr_steps", 1.6e6, "Steps over which μ anneals to μ_f.")
_SIGMA_INITIAL = flags.DEFINE_float("sigma_initial", 2.0, "σ_i, the initial pixel std.")
_SIGMA_FINAL = flags.DEFINE_float("sigma_final", 0.7, "σ_f, the final pixel std.")
_SIGMA_STEPS = flags.DEFINE_float("sigma_steps", 2e5, "Steps over which σ anneals to σ_f.")
_INIT_FROM = flags.DEFINE_string(
    "init_from", None, "Start a new run from a trained model's weights (a compact .npz such as "
    "pretrained/gqn_sm7_32.npz, or a .keras file) at the step it records, so the schedules "
    "continue and its compute seconds count on; Adam's moments start afresh. The model flags "
    "must match it, except that --model hidden_channels=N or num_layers=N may grow it (what "
    "is new starts unread, so the grown model renders as the trained one at first). Ignored "
    "once --model_dir holds a saved state (the run resumes).")
_SYNTHETIC_SCENES = flags.DEFINE_integer(
    "synthetic_scenes", 0, "Train on this many synthetic scenes rendered in memory (scenes "
    "0..N-1 of the train split exactly as data/synthesize.py --seed --synthetic_seed writes "
    "them) instead of the shards under --data_dir: for a machine without the files. "
    "Shepard-Metzler datasets only. 0: read the shards.", lower_bound=0)
_SYNTHETIC_TEST_SCENES = flags.DEFINE_integer(
    "synthetic_test_scenes", 0, "With --synthetic_scenes: test-split scenes rendered for the "
    "held-out evaluation (default: --eval_scenes).", lower_bound=0)
_SYNTHETIC_SEED = flags.DEFINE_integer(
    "synthetic_seed", 0, "With --synthetic_scenes: data/synthesize.py's --seed of the scenes.",
    lower_bound=0)
_MASKED_CONTEXT = flags.DEFINE_boolean(
    "masked_context", False, "With a random context size: give every batch "
    "--max_context_size views and a mask of the M drawn, so that one compiled program serves "
    "every M (the same update; XLA compiles once instead of once per M).")
_MAX_WALL_SECONDS = flags.DEFINE_float(
    "max_wall_seconds", 0, "Also stop (and save) once this process has trained this many "
    "wall seconds (compilation included): a fixed budget on a lent machine. 0: no limit.",
    lower_bound=0)
# Schedule extras, compute budget, held-out evaluation (shared with train.py).
_STUDY = cli.define_training_study_flags()
flags.adopt_module_key_flags(cli)  # listed by --help as the script's own
_MIXED_PRECISION = flags.DEFINE_enum(
    "mixed_precision", "float32", ["float32", "mixed_bfloat16"],
    "Compute dtype: mixed_bfloat16 on recent GPUs; variables and losses stay float32.")


def main(argv):
    if len(argv) > 1:
        raise cli.UserError(f"Unexpected arguments: {' '.join(argv[1:])}")
    os.environ.setdefault("KERAS_BACKEND", "jax")
    try:  # where TensorFlow is installed Keras seeds it too, and the shard listing uses it
        cli.import_tensorflow()  # without its start-up lines
    except ImportError:
        pass  # the machine this script is for
    cli.quiet_library_logs()  # e.g. JAX's "Unable to initialize backend 'tpu'"
    import keras

    if keras.backend.backend() != "jax":
        raise cli.UserError(f"train_jax.py runs on the JAX backend, but KERAS_BACKEND is "
                            f"{keras.backend.backend()!r}: unset it or set it to jax (train.py "
                            f"is the TensorFlow trainer).")
    from gqn_tf.data import shards, standalone
    from gqn_tf.training import jax_train, schedules

    try:
        frame_size = _FRAME_SIZE.value
        model_config = cli.training_model_config(_PRESET.value, _MODEL.value, frame_size,
                                                 _DATASET.value)
        study_schedule, study_run = cli.training_study_values(_STUDY)
        schedule = schedules.ScheduleConfig(
            lr_initial=_LR_INITIAL.value, lr_final=_LR_FINAL.value, lr_steps=_LR_STEPS.value,
            sigma_initial=_SIGMA_INITIAL.value, sigma_final=_SIGMA_FINAL.value,
            sigma_steps=_SIGMA_STEPS.value, **study_schedule)
        config = jax_train.JaxTrainConfig(
            dataset=_DATASET.value, data_dir=os.path.expanduser(_DATA_DIR.value),
            model_dir=os.path.expanduser(_MODEL_DIR.value), max_steps=_MAX_STEPS.value,
            batch_size=_BATCH_SIZE.value, context_size=_CONTEXT_SIZE.value,
            max_context_size=_MAX_CONTEXT_SIZE.value, frame_size=frame_size, seed=_SEED.value,
            log_every=_LOG_EVERY.value, save_every=_SAVE_EVERY.value,
            mixed_precision=_MIXED_PRECISION.value, masked_context=_MASKED_CONTEXT.value,
            max_wall_seconds=_MAX_WALL_SECONDS.value, synthetic_scenes=_SYNTHETIC_SCENES.value,
            synthetic_test_scenes=_SYNTHETIC_TEST_SCENES.value,
            synthetic_seed=_SYNTHETIC_SEED.value,
            init_from=_INIT_FROM.value and os.path.expanduser(_INIT_FROM.value), **study_run)
        _, stopped_by = jax_train.train(model_config, config, schedule,
                                        log=lambda line: print(line, flush=True))
    except (shards.DataNotFoundError, shards.ShardNamingError, standalone.BadDataError,
            jax_train.NonFiniteLossError, FileNotFoundError) as error:
        raise cli.DataError(str(error)) from None
    except ValueError as error:
        raise cli.UserError(str(error)) from None
    if stopped_by in ("SIGINT", "SIGTERM"):
        sys.exit(128 + signal.Signals[stopped_by].value)


if __name__ == "__main__":
    cli.run(main)
