"""The training loop of Algorithm S1: strategy, input, steps, checkpoints, summaries, progress.

`train(model_config, config)` trains a GQN on one dataset until `config.max_steps` updates,
resuming from the latest checkpoint in `config.model_dir`. What it guarantees:

- One device or N replicas make the same update: the global batch is cut into consecutive
  per-replica slices, in the order `TrainStep` assumes for the latent noise and loss scale.
- A stopped and resumed run continues exactly: the checkpoint holds the model, the optimizer
  (so the step counter, μ and σ) and the state of the input iterator (with its shuffle buffer,
  some MB), and the step's noise is seeded by (seed, step). Resumed with other input settings
  (batch size, context size, data, seed), the input restarts with a new seed instead.
- The latest checkpoint is always a good one: a non-finite loss stops training before anything
  is saved (`NonFiniteLossError`), weights are checked to be finite before every save, and
  `tf.train.CheckpointManager` writes the files before it updates its `checkpoint` index.
  SIGINT / SIGTERM stop training between steps and save first (a second Ctrl-C quits at once).
- With `eval_every`, fixed test and train scenes are evaluated every so many steps, at the start
  of a new run and at the end (gqn_tf/evaluation/held_out.py), by the chief only; it reads no
  training state but the weights, so the updates are those of a run without it.
- The run's cumulative process CPU seconds and wall seconds (and the part of them spent on
  held-out evaluation) are saved with each checkpoint, so a resumed run counts on.
"""

import contextlib
import dataclasses
import json
import math
import os
import shutil
import signal
import sys
import time
from typing import Optional

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from gqn_tf.data import check, datasets, pipeline, shards
from gqn_tf.evaluation import held_out as held_outs
from gqn_tf.model import GQN, grow
from gqn_tf.training import checkpoints, cluster as clusters, schedules, summaries
from gqn_tf.training import compute as compute_lib
from gqn_tf.training.step import TrainStep

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
STRATEGIES = ("auto", "mirrored", "multi_worker")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """What a training run is told besides the model config and Table S1.

    context_size: views per scene given as context, or None to draw M per batch uniformly from
      0..max_context_size (Algorithm S1; max_context_size None means S − 1).
    batch_size: the global batch B, split evenly across replicas.
    log_every / image_every / checkpoint_every: intervals in steps (0 disables images).
    mixed_precision: "float32", "mixed_bfloat16" or "mixed_float16" (with loss scaling).
    frame_size: resize the frames to this side (bilinear) in the pipeline; None keeps the
      dataset's own size. The model's `image_size` must equal the size the frames arrive at.
    skip_bad_records: skip (log once and count) damaged records instead of stopping on the
      first; every frame is then test-decoded, which slows the input pipeline.
    tfds_dir: read the train split through the TFDS bridge (gqn_tf/data/tfds.py) from the
      dataset registered under this directory instead of the shards under `data_dir`.
    init_from: a trained model (compact .npz, .keras file, run directory or checkpoint
      prefix, as `checkpoints.load_model` reads) whose weights a new run starts from, at the
      step it records (so μ and σ continue their schedules; Adam's moments start at zero). A
      run that already has a checkpoint in `model_dir` resumes from it and ignores this.
    strategy: "auto" (several workers when TF_CONFIG names several tasks, else the local
      devices), "mirrored" (this machine's devices, TF_CONFIG ignored) or "multi_worker"
      (TF_CONFIG must name the cluster); see gqn_tf/training/cluster.py.
    worker_timeout: seconds a worker waits for all tasks of its cluster to start.
    max_cpu_seconds: stop (and save) once the run's cumulative process CPU seconds, less those
      of held-out evaluation, reach this (0: no limit); for comparing runs at equal compute.
    eval_every: steps between held-out evaluations (0: none); eval_scenes: scenes of each split
      evaluated; eval_context_size: their context size (None: the largest the run trains
      with); eval_batch_size: scenes per evaluation batch (the noise of batch b is seeded by
      (seed, b), as in evaluate.py).
    """

    dataset: str = "shepard_metzler_7_parts"
    data_dir: str = datasets.DEFAULT_DATA_DIR
    model_dir: str = "/tmp/gqn_run"
    max_steps: int = 2_000_000  # S_max of Table S1
    batch_size: int = 36  # B of Table S1
    context_size: Optional[int] = None
    max_context_size: Optional[int] = None
    seed: int = 0
    log_every: int = 100
    image_every: int = 1000
    checkpoint_every: int = 1000
    keep_checkpoints: int = 5
    num_images: int = 4
    jit_compile: bool = False
    mixed_precision: str = "float32"
    shuffle_buffer_size: int = 1000
    frame_size: Optional[int] = None
    skip_bad_records: bool = False
    tfds_dir: Optional[str] = None
    init_from: Optional[str] = None
    strategy: str = "auto"
    worker_timeout: float = 300.0
    max_cpu_seconds: float = 0.0
    eval_every: int = 0
    eval_scenes: int = 64
    eval_context_size: Optional[int] = None
    eval_batch_size: int = 8

    def to_dict(self):
        return dataclasses.asdict(self)


@dataclasses.dataclass
class TrainResult:
    """How `train` ended: the step reached, the last step's metrics, the last checkpoint, and
    the signal that stopped it early (None when it reached max_steps)."""

    step: int
    metrics: dict
    checkpoint: Optional[str]
    stopped_by: Optional[str] = None


class NonFiniteLossError(FloatingPointError):
    """The loss of a step was NaN or Inf; nothing was saved after the last good checkpoint."""


def default_strategy():
    """MirroredStrategy over all visible GPUs, or over the CPU when there is none."""
    gpus = tf.config.list_logical_devices("GPU")
    return tf.distribute.MirroredStrategy([d.name for d in gpus] or ["/cpu:0"])


def check_config(config, num_replicas=1):
    """Raises a ValueError naming the first thing wrong in `config` (before any work)."""
    info = datasets.get_dataset_info(config.dataset)
    pipeline.check_context_size(info, config.context_size, config.max_context_size)
    if config.mixed_precision not in PRECISIONS:
        raise ValueError(f"mixed_precision must be one of {PRECISIONS}, "
                         f"got {config.mixed_precision!r}.")
    for name in ("max_steps", "batch_size", "log_every", "checkpoint_every",
                 "keep_checkpoints", "num_images"):
        if getattr(config, name) < 1:
            raise ValueError(f"{name} must be at least 1, got {getattr(config, name)}.")
    if config.image_every < 0:
        raise ValueError(f"image_every must be >= 0 (0: no images), got {config.image_every}.")
    if config.max_cpu_seconds < 0:
        raise ValueError(f"max_cpu_seconds must be >= 0 (0: no limit), got "
                         f"{config.max_cpu_seconds}.")
    if config.eval_every < 0:
        raise ValueError(f"eval_every must be >= 0 (0: no held-out evaluation), got "
                         f"{config.eval_every}.")
    if config.eval_every:
        for name in ("eval_scenes", "eval_batch_size"):
            if getattr(config, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(config, name)}.")
        pipeline.check_context_size(info, config.eval_context_size)
    if config.frame_size is not None and (config.frame_size < 1):
        raise ValueError(f"frame_size must be at least 1, got {config.frame_size}.")
    if config.strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {config.strategy!r}.")
    if config.worker_timeout <= 0:
        raise ValueError(f"worker_timeout must be positive, got {config.worker_timeout}.")
    if config.batch_size % num_replicas:
        raise ValueError(
            f"batch_size {config.batch_size} does not split evenly over {num_replicas} "
            f"replicas: use a multiple of {num_replicas}.")


def check_image_size(model_config, config):
    """Raises a ValueError when the model is built for another image size than the frames
    arrive at (the dataset's frame size, or `config.frame_size` when it resizes them)."""
    info = datasets.get_dataset_info(config.dataset)
    size = config.frame_size or info.frame_size
    if model_config.image_size != size:
        where = (f"--frame_size resizes the frames to {size}x{size}" if config.frame_size
                 else f"the frames of {config.dataset} are {size}x{size}")
        raise ValueError(
            f"The model is built for {model_config.image_size}x{model_config.image_size} "
            f"images but {where}: pass --frame_size {model_config.image_size} to resize the "
            f"frames to the model, or leave image_size unset so the model follows the frames.")


def hparams(model_config, config, schedule):
    """The flat dict of hyperparameters recorded in TensorBoard."""
    values = {f"model/{k}": v for k, v in model_config.to_dict().items()}
    values.update({f"schedule/{k}": v for k, v in dataclasses.asdict(schedule).items()})
    skip = {"model_dir", "data_dir", "log_every", "image_every", "checkpoint_every",
            "keep_checkpoints", "num_images", "strategy", "worker_timeout", "eval_every",
            "eval_scenes", "eval_context_size", "eval_batch_size"}
    values.update({f"train/{k}": v for k, v in config.to_dict().items() if k not in skip})
    if config.context_size is None:
        values["train/context_size"] = "random"
    return values


def distribute_batch(strategy, batch, global_batch_size, first_row=0):
    """Cuts a global batch into consecutive per-replica slices (replica i gets rows
    [i·b, (i+1)·b) with b = B / replicas), matching TrainStep's noise offsets. Under several
    workers `batch` holds only this worker's rows, the first of which is `first_row`."""
    replicas = strategy.num_replicas_in_sync
    if replicas == 1:
        return batch
    local = global_batch_size // replicas

    def slice_for(context):
        start = context.replica_id_in_sync_group * local - first_row
        return {name: value[start:start + local] for name, value in batch.items()}

    return strategy.experimental_distribute_values_from_function(slice_for)


class _StopSignal:
    """Turns SIGINT / SIGTERM into a flag checked between steps; a second signal quits."""

    def __init__(self):
        self.received = None

    def _handle(self, signum, frame):
        name = signal.Signals(signum).name
        if self.received is not None:
            raise KeyboardInterrupt(f"second {name}: quitting without saving")
        self.received = name
        logging.warning("%s received: saving a checkpoint after this step, then stopping "
                        "(send it again to quit without saving).", name)

    @contextlib.contextmanager
    def installed(self):
        previous = {}
        try:
            for signum in (signal.SIGINT, signal.SIGTERM):
                previous[signum] = signal.signal(signum, self._handle)
        except ValueError:  # not the main thread: no handlers, train until done
            pass
        try:
            yield self
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


class _Progress:
    """The terminal progress line: step, loss, steps/s, ETA. Updates one line on a TTY,
    logs a line per logging interval otherwise."""

    def __init__(self, max_steps, stream=None, quiet=False):
        self.max_steps = max_steps
        self.stream = stream or sys.stdout
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.quiet = quiet  # a worker other than the chief shows no progress
        self._open = False  # a progress line without its newline is on the terminal

    def update(self, step, values):
        if self.quiet:
            return
        rate = values.get("steps_per_sec", 0.0)
        eta = (self.max_steps - step) / rate if rate > 0 else float("inf")
        line = (f"step {step}/{self.max_steps}  -ELBO {values['loss']:.1f}  "
                f"KL {values['kl']:.1f}  NLL {values['nll']:.1f}  "
                f"{values['bits_per_dim']:.3f} bits/dim  σ {values['sigma']:.4f}  "
                f"μ {values['learning_rate']:.2e}  {rate:.2f} steps/s  ETA {_duration(eta)}")
        if "bad_records" in values:
            line += f"  {int(values['bad_records'])} bad records skipped"
        if self.tty:
            self.stream.write("\r\033[K" + line)
            self.stream.flush()
            self._open = True
        else:
            logging.info(line)

    def end(self):
        """Ends the updating line, so that log messages start on a line of their own."""
        if self._open:
            self.stream.write("\n")
            self.stream.flush()
            self._open = False


def _duration(seconds):
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    days, seconds = divmod(seconds, 86400)
    text = f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
    return f"{days}d {text}" if days else text


# The TrainConfig fields that define the input stream saved with each checkpoint.
_INPUT_FIELDS = ("dataset", "data_dir", "batch_size", "context_size", "max_context_size",
                 "seed", "shuffle_buffer_size", "frame_size", "skip_bad_records", "tfds_dir")
# Recorded only when set, so that runs from before these options resume with their stream.
_OPTIONAL_INPUT_FIELDS = {"frame_size": None, "skip_bad_records": False, "tfds_dir": None}


_INPUT_KEY = "input_settings/.ATTRIBUTES/VARIABLE_VALUE"
COMPUTE = compute_lib.COMPUTE


def _input_settings(config):
    settings = {name: getattr(config, name) for name in _INPUT_FIELDS
                if getattr(config, name) != _OPTIONAL_INPUT_FIELDS.get(name, ())}
    return json.dumps(settings, sort_keys=True)


def _saved_input(prefix):
    """(input settings, step) stored in the checkpoint `prefix`."""
    reader = tf.train.load_checkpoint(prefix)
    step = int(reader.get_tensor("optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE"))
    if not reader.has_tensor(_INPUT_KEY):
        return None, step
    return reader.get_tensor(_INPUT_KEY).decode("utf-8"), step


def _has_compute(prefix):
    """Whether the checkpoint `prefix` holds the run's compute seconds (older ones do not)."""
    return checkpoints.compute_seconds_of(prefix) is not None


def _weights_finite(model):
    return all(bool(tf.reduce_all(tf.math.is_finite(tf.cast(v, tf.float32))))
               for v in model.trainable_variables)


@contextlib.contextmanager
def _saving_on_error(save):
    """Calls `save(error)` when the block raises (not for NonFiniteLossError, whose state is
    not to be kept, nor for a lost peer, whose step may be half done, nor for a second
    Ctrl-C, which quits at once), then re-raises."""
    try:
        yield
    except (NonFiniteLossError, clusters.PeerLostError):
        raise
    except Exception as error:
        save(error)
        raise


def _initial_model(config, model_config, resume_from):
    """(model, info) that a new run with `config.init_from` starts from (info as
    `checkpoints.load_model` gives it), else (None, {})."""
    if resume_from is not None or config.init_from is None:
        if resume_from is not None and config.init_from is not None:
            logging.info("Resuming from %s; --init_from %s is not read.", resume_from,
                         config.init_from)
        return None, {}
    model, info = checkpoints.load_model(config.init_from)
    grow.check_startable(model.gqn_config, model_config, config.init_from)
    return model, info


def _training_input(config, seed, bad_records, rows=None):
    """(shard files, dataset) of the train split: the shards under `config.data_dir`, or the
    registered TFDS dataset under `config.tfds_dir` when it is set; `rows` as in
    `pipeline.make_dataset` (a worker's part of each global batch)."""
    options = dict(
        rows=rows, batch_size=config.batch_size, context_size=config.context_size,
        max_context_size=config.max_context_size, seed=seed,
        shuffle_buffer_size=config.shuffle_buffer_size, frame_size=config.frame_size,
        skip_bad_records=config.skip_bad_records, bad_record_counter=bad_records)
    if config.tfds_dir is None:
        filenames = shards.list_shards(config.data_dir, config.dataset, "train")
        return filenames, pipeline.make_dataset(
            config.dataset, config.data_dir, "train", filenames=filenames, **options)
    from gqn_tf.data import tfds as gqn_tfds  # imports tensorflow_datasets only when used

    filenames = gqn_tfds.split_files(config.dataset, config.tfds_dir, "train")
    return filenames, gqn_tfds.make_tfds_dataset(
        config.dataset, config.tfds_dir, "train", **options)


def cluster_of(config):
    """The multi-worker `Cluster` that `config.strategy` and TF_CONFIG ask for, or None."""
    if config.strategy == "mirrored":
        return None
    cluster = clusters.from_environment()
    if cluster is None and config.strategy == "multi_worker":
        raise ValueError(
            f"strategy multi_worker needs {clusters.TF_CONFIG} naming two or more tasks (see "
            f"the README's multi-worker section, or use python -m gqn_tf.training.launch).")
    return cluster


class _NoSummaries:
    """The SummaryWriter of a worker other than the chief: it writes nothing."""

    def hparams(self, values):
        pass

    def scalars(self, step, values):
        pass

    def images(self, *args, **kwargs):
        return {}

    def flush(self):
        pass

    def close(self):
        pass


def train(model_config, config, schedule=schedules.ScheduleConfig(), strategy=None,
          progress_stream=None):
    """Trains (or resumes training) a GQN; returns a `TrainResult`.

    model_config: a GQNConfig. config: a TrainConfig. schedule: Table S1's constants.
    strategy: a tf.distribute strategy (default: MultiWorkerMirroredStrategy when
    `cluster_of(config)` names a cluster, else `default_strategy()`).
    Raises ValueError for a bad config, DataNotFoundError when the data are missing (both
    before any work), NonFiniteLossError when a step's loss is NaN or Inf, and under several
    workers ClusterError (the cluster did not start) or PeerLostError (a worker was lost).
    """
    check_config(config)
    cluster = cluster_of(config)
    if cluster and config.max_cpu_seconds:
        raise ValueError("max_cpu_seconds counts the CPU time of one process, so several "
                         "workers would stop at different steps: use it with one worker, or "
                         "--max_steps.")
    if strategy is None:
        strategy = (clusters.make_strategy(cluster, config.worker_timeout) if cluster
                    else default_strategy())
    check_config(config, strategy.num_replicas_in_sync)
    is_chief = cluster is None or cluster.is_chief
    rows = cluster.rows(config.batch_size) if cluster else None
    check_image_size(model_config, config)
    resume_from = checkpoints.latest_checkpoint(config.model_dir)
    if resume_from:
        checkpoints.check_same_model(config.model_dir, model_config)
    settings = _input_settings(config)
    saved_settings, resume_step = _saved_input(resume_from) if resume_from else (settings, 0)
    same_input = saved_settings == settings
    initial_model, initial_info = _initial_model(config, model_config, resume_from)
    initial_step = initial_info.get("step") or 0
    if initial_step:  # a new input stream, not the one a run from step 0 would replay
        same_input, resume_step = False, initial_step
    # Before the dataset too: tf.data's seeded shuffles also read the global seed.
    keras.utils.set_random_seed(config.seed)
    data_seed = config.seed if same_input else config.seed + 1_000_003 * resume_step
    info = datasets.get_dataset_info(config.dataset)
    bad_records = pipeline.BadRecordCounter() if config.skip_bad_records else None
    filenames, dataset = _training_input(config, data_seed, bad_records, rows)

    previous_policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(config.mixed_precision)
    try:
        with strategy.scope():
            model = GQN(model_config)
            optimizer = schedules.make_optimizer(schedule)
            extra = {} if bad_records is None else {"bad_records": bad_records.variable}
            if config.mixed_precision == "mixed_float16":
                # The inner Adam stays `optimizer` in the checkpoint, so readers find its step.
                extra["loss_scale"] = step_optimizer = keras.optimizers.LossScaleOptimizer(
                    optimizer)
            else:
                step_optimizer = optimizer
            train_step = TrainStep(model, step_optimizer, config.batch_size, strategy,
                                   schedule, seed=config.seed, jit_compile=config.jit_compile)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)

    iterator = iter(dataset)
    input_settings = tf.Variable(settings, trainable=False, name="input_settings")
    compute = compute_lib.Clock()
    compute_seconds = tf.Variable(tf.zeros([len(COMPUTE)], tf.float64), trainable=False,
                                  name="compute_seconds")
    checkpoint = checkpoints.make_checkpoint(model, optimizer, data=iterator,
                                             input_settings=input_settings,
                                             compute_seconds=compute_seconds, **extra)
    # Another worker than the chief saves into a directory of its own, deleted after each save
    # (the manager creates it only when it saves).
    scratch = None if is_chief else clusters.scratch_dir()
    manager = checkpoints.checkpoint_manager(checkpoint, scratch or config.model_dir,
                                             config.keep_checkpoints)
    if resume_from:
        # With other input settings the saved iterator does not fit: restore the rest only.
        # A checkpoint from before compute seconds were saved counts them from now on.
        kept = dict(extra)
        if _has_compute(resume_from):
            kept["compute_seconds"] = compute_seconds
        else:
            logging.info("%s holds no compute seconds (an older checkpoint): counting them "
                         "from now.", resume_from)
        if same_input:
            restored = checkpoints.make_checkpoint(model, optimizer, data=iterator,
                                                   input_settings=input_settings, **kept)
        else:
            restored = checkpoints.make_checkpoint(
                model, optimizer, **{k: v for k, v in kept.items() if k != "bad_records"})
        try:
            restored.restore(resume_from).assert_existing_objects_matched()
        except (AssertionError, tf.errors.OpError, ValueError) as error:
            raise ValueError(
                f"Cannot resume from {resume_from}: {error}. It was written by another model "
                f"or program version; pass a new --model_dir.") from error
        logging.info("Resumed from %s at step %d.", resume_from,
                     int(optimizer.iterations.numpy()))
        if not same_input:
            input_settings.assign(settings)
            logging.warning(
                "The input settings differ from the saved run's (%s, now %s), so the input "
                "pipeline starts afresh (seed %d) instead of continuing where it stopped.",
                saved_settings, settings, data_seed)
    elif initial_model is not None:
        grown = grow.start_from(model, initial_model, config.init_from)
        optimizer.iterations.assign(initial_step)
        if initial_info.get("compute_seconds"):  # the compute of the run it continues
            compute_seconds.assign([initial_info["compute_seconds"].get(name, 0.0)
                                    for name in COMPUTE])
        logging.info("Starting from the weights of %s at step %d%s.", config.init_from,
                     initial_step, grow.describe(grown))
    held_out = None
    if is_chief and config.eval_every:
        start = time.perf_counter()
        held_out = held_outs.for_tf_run(
            model, held_outs.config_of(config), dataset=config.dataset,
            data_dir=config.data_dir, model_dir=config.model_dir, tfds_dir=config.tfds_dir,
            frame_size=config.frame_size)
        logging.info("Held-out evaluation every %d steps: %d test and %d train scenes at M = "
                     "%d (read in %.1f s).", config.eval_every, config.eval_scenes,
                     config.eval_scenes, held_out.config.context_size,
                     time.perf_counter() - start)
    if is_chief:
        checkpoints.write_run_config(
            config.model_dir, model_config, dataset=config.dataset, data_dir=config.data_dir,
            train=config.to_dict(), schedule=dataclasses.asdict(schedule))
        writer = summaries.SummaryWriter(os.path.join(config.model_dir, "train"))
    else:
        writer = _NoSummaries()
    writer.hparams(hparams(model_config, config, schedule))
    progress = _Progress(config.max_steps, progress_stream, quiet=not is_chief)

    # One trace for every context size M (the spec leaves M unknown): a trace per M would cost
    # a compilation each and give a resumed run other kernels than an uninterrupted one.
    @tf.function(input_signature=[dataset.element_spec])
    def run_step(batch):
        return train_step(distribute_batch(strategy, batch, config.batch_size,
                                           rows[0] if rows else 0))

    image_size = model_config.image_size

    step = int(optimizer.iterations.numpy())
    saved_step = step if resume_from else None
    last_checkpoint = resume_from
    metrics, interval, interval_time = {}, [], 0.0
    compute.start(compute_seconds.numpy())

    def evaluate():
        """The held-out evaluation at this step (chief only), its cost counted apart."""
        line = held_out and held_out.at(step, float(schedules.pixel_std(step, schedule)),
                                        compute)
        if line:
            progress.end()
            logging.info("%s", line)

    def save():
        nonlocal saved_step, last_checkpoint
        if saved_step == step:
            return
        compute_seconds.assign(compute.array())
        if not _weights_finite(model):
            raise NonFiniteLossError(
                f"The weights are not finite after step {step} although its loss was; not "
                f"saving. The last good checkpoint is {last_checkpoint}. Lower the learning "
                f"rate (--lr_initial) or check the data.")
        saved = manager.save(checkpoint_number=step)
        saved_step = step
        if scratch is not None:  # the chief's copy, written at the same step, is the one kept
            shutil.rmtree(scratch, ignore_errors=True)
            last_checkpoint = os.path.join(config.model_dir, checkpoints.CHECKPOINT_DIR,
                                           os.path.basename(saved))
            return
        last_checkpoint = saved
        progress.end()
        logging.info("Saved checkpoint %s.", last_checkpoint)

    def next_batch():
        with check.naming_bad_records(filenames, info.sequence_size, on_error=progress.end):
            return next(iterator)

    def save_before_failing(error):
        """Any error after trained steps saves them first, unless the weights are not finite."""
        try:
            save()
        except NonFiniteLossError as reason:
            logging.error("Not saving after the error: %s", reason)
            return
        if saved_step == step and last_checkpoint:
            logging.warning("Saved checkpoint %s (step %d) before stopping on the error below; "
                            "run the same command to resume from it.", last_checkpoint, step)

    def out_of_cpu():
        if not config.max_cpu_seconds or compute.training_cpu() < config.max_cpu_seconds:
            return False
        logging.info("The run's training CPU time reached --max_cpu_seconds %g at step %d.",
                     config.max_cpu_seconds, step)
        return True

    stop = _StopSignal()
    agreed_stop = clusters.agreed_stop(strategy) if cluster else None

    def stopping():
        """Whether to stop now; under several workers, whether any of them was asked to."""
        if agreed_stop is not None:
            with peer_errors():
                anyone = agreed_stop(stop.received is not None)
            if anyone and stop.received is None:
                logging.warning("Another worker was asked to stop: stopping after step %d.",
                                step)
                stop.received = "SIGTERM"
        return stop.received is not None

    @contextlib.contextmanager
    def peer_errors():
        """Under several workers, a failed collective op means a lost peer."""
        try:
            yield
        except tf.errors.OpError as error:
            if cluster is None or isinstance(error, tf.errors.ResourceExhaustedError):
                raise
            progress.end()
            raise clusters.describe_lost_peer(error, cluster, step, last_checkpoint) from None

    with stop.installed(), _saving_on_error(save_before_failing):
        if not resume_from:  # where a new run's curves start
            evaluate()
        while step < config.max_steps and not stopping() and not out_of_cpu():
            start = time.perf_counter()
            batch = next_batch()
            with peer_errors():
                outputs = run_step(batch)
            metrics = {name: np.asarray(value) if name == "kl_per_layer" else float(value)
                       for name, value in outputs.items()}
            interval_time += time.perf_counter() - start
            if not all(math.isfinite(metrics[name]) for name in ("loss", "kl", "nll")):
                progress.end()
                raise NonFiniteLossError(
                    f"Non-finite loss at step {step + 1}: -ELBO {metrics['loss']}, KL "
                    f"{metrics['kl']}, NLL {metrics['nll']} (σ {metrics['sigma']:.4f}, μ "
                    f"{metrics['learning_rate']:.3g}). Training stopped without saving; the last "
                    f"good checkpoint is {last_checkpoint or 'none (no step was saved)'}. Try a "
                    f"lower learning rate (--lr_initial), float32 instead of mixed precision, "
                    f"or check the data.")
            previous, step = step, int(optimizer.iterations.numpy())
            metrics["bits_per_dim"] = summaries.bits_per_dim(metrics["loss"], image_size)
            interval.append(metrics)
            if step == previous:  # mixed_float16 skipped an overflowing update; scale lowered
                logging.info("Loss scaling skipped an update at step %d.", step)
                continue

            if step % config.log_every == 0 or step >= config.max_steps:
                means = {name: np.mean([m[name] for m in interval], axis=0)
                         for name in interval[0]}
                means["steps_per_sec"] = len(interval) / max(interval_time, 1e-9)
                means["images_per_sec"] = means["steps_per_sec"] * config.batch_size
                if bad_records is not None:
                    means["bad_records"] = bad_records.count
                writer.scalars(step, means)
                progress.update(step, means)
                interval, interval_time = [], 0.0
            if config.image_every and step % config.image_every == 0:
                seed = tf.constant([config.seed, step], tf.int32)
                metrics = {**metrics, **writer.images(step, model, batch, seed, config.num_images)}
            if config.eval_every and step % config.eval_every == 0:
                evaluate()
            if step % config.checkpoint_every == 0:
                save()
                writer.flush()
        if not stop.received:
            evaluate()
    progress.end()
    save()
    writer.close()
    if held_out is not None:
        held_out.close()
    if is_chief:  # only the chief says how the run ended, as only it shows progress
        if stop.received:
            logging.warning("Stopped by %s at step %d; checkpoint %s. Run the same command "
                            "to resume.", stop.received, step, last_checkpoint)
        else:
            logging.info("Reached step %d; checkpoint %s.", step, last_checkpoint)
    return TrainResult(step=step, metrics=metrics, checkpoint=last_checkpoint,
                       stopped_by=stop.received)
