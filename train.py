"""Trains a GQN on one of DeepMind's datasets (Algorithm S1, Table S1).

    python train.py --dataset shepard_metzler_7_parts --model_dir /tmp/gqn_sm7
    python train.py --dataset shepard_metzler_7_parts --data_dir data/sample --preset small \
        --max_steps 400 --batch_size 16 --model_dir /tmp/gqn_quick

Resumes from the latest checkpoint in --model_dir; Ctrl-C (SIGINT) or SIGTERM saves a
checkpoint and exits with 128 + the signal number. TensorBoard: tensorboard --logdir MODEL_DIR.
Several workers: set TF_CONFIG on each machine and run the same command there, or on one
machine `python -m gqn_tf.training.launch --num_workers 2 -- <these flags>`.
"""

import os
import pathlib
import signal
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))  # run from a checkout

from absl import flags  # noqa: E402

from gqn_tf import cli  # noqa: E402
from gqn_tf.data import datasets  # noqa: E402

# --- Data ---------------------------------------------------------------------------------
_DATASET = flags.DEFINE_enum(
    "dataset", None, sorted(datasets.DATASETS), "Dataset to train on.", required=True)
_DATA_DIR = flags.DEFINE_string(
    "data_dir", datasets.DEFAULT_DATA_DIR,
    "Root of the data: shards are read from <data_dir>/<dataset>/train/. Default: where "
    "data/download.py puts them ($GQN_DATA_DIR or ~/gqn-datasets); data/sample for the "
    "bundled sample.")
_TFDS_DIR = flags.DEFINE_string(
    "tfds_dir", None,
    "Read the train split through TFDS from the dataset registered under this directory "
    "(python -m gqn_tf.data.tfds_register) instead of the shards under --data_dir. Same "
    "records, same seeded order.")
_CONTEXT_SIZE = flags.DEFINE_integer(
    "context_size", None,
    "Context views per scene. Default: drawn per batch uniformly from 0..--max_context_size "
    "(Algorithm S1). Must be smaller than the views per scene S.", lower_bound=0)
_MAX_CONTEXT_SIZE = flags.DEFINE_integer(
    "max_context_size", None,
    "Largest random context size when --context_size is not set (default: S - 1).",
    lower_bound=0)
_FRAME_SIZE = flags.DEFINE_integer(
    "frame_size", None,
    "Resize the frames to NxN (bilinear) in the input pipeline and build the model for N. "
    "Default: the dataset's own frame size (64; 84 for mazes, 128 for "
    "rooms_free_camera_with_object_rotations). Must be a multiple of 4.", lower_bound=8)
_SKIP_BAD_RECORDS = flags.DEFINE_boolean(
    "skip_bad_records", False,
    "Skip damaged records (truncated shards, frames that are not JPEGs or do not decode), "
    "logging each once and counting them in the progress line and TensorBoard, instead of "
    "stopping at the first. Every frame is then test-decoded, so the input is slower.")
_BATCH_SIZE = flags.DEFINE_integer(
    "batch_size", 36, "Global batch (scenes per update, Table S1: 36), split evenly over the "
    "GPUs; lower it if memory runs out.", lower_bound=1)

# --- Model --------------------------------------------------------------------------------
_PRESET = flags.DEFINE_enum(
    "preset", "paper", ["paper", "small", "tiny"],
    "Model configuration: paper (Figs. S1-S2, GPU), small (a laptop CPU in minutes), "
    "tiny (tests).")
_MODEL = flags.DEFINE_multi_string(
    "model", [],
    "Override one model config field of the preset, NAME=VALUE, repeatable: e.g. "
    "--model representation=tower --model shared_cores=true --model num_layers=8.")

# --- Schedule (Table S1) ------------------------------------------------------------------
_LR_INITIAL = flags.DEFINE_float("lr_initial", 5e-4, "μ_i, the initial learning rate.")
_LR_FINAL = flags.DEFINE_float("lr_final", 5e-5, "μ_f, the final learning rate.")
_LR_STEPS = flags.DEFINE_float("lr_steps", 1.6e6, "Steps over which μ anneals to μ_f.")
_SIGMA_INITIAL = flags.DEFINE_float("sigma_initial", 2.0, "σ_i, the initial pixel std.")
_SIGMA_FINAL = flags.DEFINE_float("sigma_final", 0.7, "σ_f, the final pixel std.")
_SIGMA_STEPS = flags.DEFINE_float(
    "sigma_steps", 2e5, "Steps over which σ anneals to σ_f; for a short run, set it below "
    "--max_steps so that σ reaches σ_f and the samples sharpen.")
_BETA_1 = flags.DEFINE_float("beta_1", 0.9, "Adam β1.")
_BETA_2 = flags.DEFINE_float("beta_2", 0.999, "Adam β2.")
_EPSILON = flags.DEFINE_float("epsilon", 1e-8, "Adam ε.")

# --- Run ----------------------------------------------------------------------------------
_MODEL_DIR = flags.DEFINE_string(
    "model_dir", None, "Run directory: checkpoints, run_config.json and TensorBoard events. "
    "Training resumes from its latest checkpoint.", required=True)
_INIT_FROM = flags.DEFINE_string(
    "init_from", None, "Start a new run from a trained model's weights (a compact .npz such as "
    "pretrained/gqn_sm7_32.npz, a .keras file or a run directory) at the step it records, so "
    "the learning-rate and σ schedules continue; Adam's moments start afresh. The model flags "
    "must match it, except that --model hidden_channels=N or num_layers=N may grow it (what "
    "is new starts unread, so the grown model renders as the trained one at first). Ignored "
    "once --model_dir has a checkpoint (the run resumes from that).")
_MAX_STEPS = flags.DEFINE_integer(
    "max_steps", 2_000_000, "Train until this many updates (Table S1: 2e6).", lower_bound=1)
_SEED = flags.DEFINE_integer(
    "seed", 0, "Seeds the weights, the input pipeline and the latent noise; same seed, same run.")
_LOG_EVERY = flags.DEFINE_integer(
    "log_every", 100, "Steps between scalar summaries and progress lines.", lower_bound=1)
_IMAGE_EVERY = flags.DEFINE_integer(
    "image_every", 1000, "Steps between image grids and reconstruction MSE (0: never).",
    lower_bound=0)
_NUM_IMAGES = flags.DEFINE_integer(
    "num_images", 4, "Scenes shown in each image grid.", lower_bound=1)
_CHECKPOINT_EVERY = flags.DEFINE_integer(
    "checkpoint_every", 1000, "Steps between checkpoints.", lower_bound=1)
_KEEP_CHECKPOINTS = flags.DEFINE_integer(
    "keep_checkpoints", 5, "How many of the latest checkpoints to keep.", lower_bound=1)

# --- Schedule extras, compute budget, held-out evaluation (shared with train_jax.py) ---
_STUDY = cli.define_training_study_flags()
flags.adopt_module_key_flags(cli)  # listed by --help as the script's own

# --- Performance --------------------------------------------------------------------------
_JIT_COMPILE = flags.DEFINE_boolean(
    "jit_compile", False, "Compile each replica's forward and backward pass with XLA "
    "(faster on GPU). XLA compiles once per context size, so with a random context size the "
    "first steps of each new size are slow; a fixed --context_size compiles once.")
_MIXED_PRECISION = flags.DEFINE_enum(
    "mixed_precision", "float32", ["float32", "mixed_bfloat16", "mixed_float16"],
    "Compute dtype: mixed_float16 on recent NVIDIA GPUs (with loss scaling), mixed_bfloat16 on "
    "TPUs / recent CPUs; variables and losses stay float32.")

# --- Several machines ---------------------------------------------------------------------
_STRATEGY = flags.DEFINE_enum(
    "strategy", "auto", ["auto", "mirrored", "multi_worker"],
    "auto: MultiWorkerMirroredStrategy over all workers' devices when TF_CONFIG names several "
    "tasks, else MirroredStrategy over this machine's GPUs (or the CPU); mirrored: this "
    "machine only, TF_CONFIG ignored; multi_worker: TF_CONFIG must name the cluster.")
_WORKER_TIMEOUT = flags.DEFINE_float(
    "worker_timeout", 300.0, "Seconds a worker waits for every task of TF_CONFIG to start "
    "before it exits naming the missing ones.", lower_bound=1.0)


def main(argv):
    if len(argv) > 1:
        raise cli.UserError(f"Unexpected arguments: {' '.join(argv[1:])}")
    # Imported here so that --help and flag errors do not wait for TensorFlow.
    cli.import_tensorflow()
    from gqn_tf.data import shards
    from gqn_tf.training import cluster, loop, schedules

    try:
        frame_size = _FRAME_SIZE.value
        model_config = cli.training_model_config(_PRESET.value, _MODEL.value, frame_size,
                                                 _DATASET.value)
        study_schedule, study_run = cli.training_study_values(_STUDY)
        schedule = schedules.ScheduleConfig(
            lr_initial=_LR_INITIAL.value, lr_final=_LR_FINAL.value, lr_steps=_LR_STEPS.value,
            sigma_initial=_SIGMA_INITIAL.value, sigma_final=_SIGMA_FINAL.value,
            sigma_steps=_SIGMA_STEPS.value, beta_1=_BETA_1.value, beta_2=_BETA_2.value,
            epsilon=_EPSILON.value, **study_schedule)
        config = loop.TrainConfig(
            dataset=_DATASET.value, data_dir=os.path.expanduser(_DATA_DIR.value),
            model_dir=os.path.expanduser(_MODEL_DIR.value), max_steps=_MAX_STEPS.value,
            batch_size=_BATCH_SIZE.value, context_size=_CONTEXT_SIZE.value,
            max_context_size=_MAX_CONTEXT_SIZE.value, seed=_SEED.value,
            log_every=_LOG_EVERY.value, image_every=_IMAGE_EVERY.value,
            checkpoint_every=_CHECKPOINT_EVERY.value, keep_checkpoints=_KEEP_CHECKPOINTS.value,
            num_images=_NUM_IMAGES.value, jit_compile=_JIT_COMPILE.value,
            mixed_precision=_MIXED_PRECISION.value, frame_size=frame_size,
            skip_bad_records=_SKIP_BAD_RECORDS.value,
            tfds_dir=_TFDS_DIR.value and os.path.expanduser(_TFDS_DIR.value),
            init_from=_INIT_FROM.value and os.path.expanduser(_INIT_FROM.value),
            strategy=_STRATEGY.value, worker_timeout=_WORKER_TIMEOUT.value, **study_run)
        loop.check_config(config)
        result = loop.train(model_config, config, schedule)
    except (cluster.ClusterError, cluster.PeerLostError) as error:
        # TensorFlow's runtime may wait for the lost or missing peer at exit: leave at once.
        cli.fail(str(error), cli.DATA_EXIT, at_once=True)
    except (shards.DataNotFoundError, shards.ShardNamingError, loop.NonFiniteLossError,
            FileNotFoundError) as error:
        raise cli.DataError(str(error)) from None
    except ValueError as error:
        raise cli.UserError(str(error)) from None
    if result.stopped_by:
        sys.exit(128 + signal.Signals[result.stopped_by].value)


if __name__ == "__main__":
    cli.run(main)
