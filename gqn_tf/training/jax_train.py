"""Training on the JAX backend, without TensorFlow (train_jax.py): for a GPU machine that has
JAX and cannot install TensorFlow.

The update is `JaxTrainStep` (Algorithm S1 with Table S1's Adam and schedules); the batches come
from the original shards through `standalone.SceneSampler` (a pure function of seed and step,
the next one read in a thread while the device runs the current step). The run directory holds:

- `run_config.json`: the model config, dataset and flags (as train.py writes it), so evaluate.py
  finds the run's σ;
- `model.keras`: the model in full precision, which the TensorFlow side loads
  (`evaluate.py --model_dir RUN/model.keras`, `export/export_saved_model.py`);
- `model.npz`: the same weights as a compact float16 file that records the step, for
  `train.py --init_from` (schedules continue from it);
- `train_state.npz`: weights, Adam's moments and the step, to resume this run exactly;
- `metrics.jsonl`: one line per logging interval;
- with `eval_every`, `eval/metrics.jsonl`: the held-out curves of gqn_tf/evaluation/held_out.py
  (fixed test and train scenes every so many steps, at the start of a new run and at the end),
  with the run's cumulative CPU and wall seconds (also saved in `train_state.npz`).

Every file is written to a temporary name and renamed, so a crash or Ctrl-C never leaves a
half-written one; Ctrl-C and SIGTERM save and stop; a NaN or Inf loss stops without saving.
"""

import dataclasses
import json
import math
import os
import signal
import time
from concurrent import futures

import jax
import keras
import numpy as np

from gqn_tf import files
from gqn_tf.data import standalone
from gqn_tf.evaluation import held_out as held_outs
from gqn_tf.model import GQN, grow
from gqn_tf.training import checkpoints, compute as compute_lib, schedules
from gqn_tf.training.jax_step import JaxTrainStep

MODEL_FILE, COMPACT_FILE = "model.keras", "model.npz"
STATE_FILE, METRICS_FILE = "train_state.npz", "metrics.jsonl"
_STATE_FORMAT = "gqn-tf jax train state 1"


class NonFiniteLossError(RuntimeError):
    """A step's loss was NaN or Inf; nothing after the last save was written."""


@dataclasses.dataclass(frozen=True)
class JaxTrainConfig:
    """The run settings of train_jax.py (its flags)."""

    dataset: str
    data_dir: str
    model_dir: str
    max_steps: int
    batch_size: int = 36
    context_size: int | None = None
    max_context_size: int | None = None
    frame_size: int | None = None
    seed: int = 0
    log_every: int = 100
    save_every: int = 1000
    mixed_precision: str = "float32"
    max_cpu_seconds: float = 0.0
    max_wall_seconds: float = 0.0
    masked_context: bool = False
    init_from: str | None = None
    synthetic_scenes: int = 0
    synthetic_test_scenes: int = 0
    synthetic_seed: int = 0
    eval_every: int = 0
    eval_scenes: int = 64
    eval_context_size: int | None = None
    eval_batch_size: int = 8


def _state_arrays(train_step, compute):
    trainable, non_trainable, optimizer_variables = train_step.state
    arrays = {"format": np.array(_STATE_FORMAT), "compute_seconds": compute.array()}
    for group, values in (("trainable", trainable), ("non_trainable", non_trainable),
                          ("optimizer", optimizer_variables)):
        for i, value in enumerate(values):
            arrays[f"{group}_{i}"] = np.asarray(value)
    return arrays


def _load_state(train_step, path):
    """Puts a saved train_state.npz into `train_step` (ValueError if it does not fit); returns
    the run's compute seconds it holds (None in a file from before they were saved)."""
    with np.load(path) as saved:
        if str(saved.get("format", "")) != _STATE_FORMAT:
            raise ValueError(f"{path!r} is not a train_jax.py state file; move it away or "
                             f"pass a new --model_dir.")
        state = []
        for group, values in zip(("trainable", "non_trainable", "optimizer"), train_step.state):
            loaded = []
            for i, value in enumerate(values):
                key = f"{group}_{i}"
                if key not in saved or saved[key].shape != value.shape:
                    raise ValueError(f"{path!r} was written for another model (its {key} "
                                     f"does not fit); pass a new --model_dir.")
                loaded.append(jax.numpy.asarray(saved[key], value.dtype))
            state.append(loaded)
        compute = saved["compute_seconds"] if "compute_seconds" in saved else None
    train_step.state = tuple(state)
    return compute


class _Stop:
    """Ctrl-C or SIGTERM asks to stop after the current step (and save); a second Ctrl-C stops
    at once, saving nothing. The step itself is never interrupted: its input buffers are
    donated to it, so an interrupted step would leave no state to save."""

    def __init__(self):
        self.signal = None
        self._previous = {number: signal.signal(number, self._handle)
                          for number in (signal.SIGINT, signal.SIGTERM)}

    def _handle(self, number, frame):
        del frame
        if self.signal is not None and number == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal = signal.Signals(number).name

    def restore(self):
        for number, handler in self._previous.items():
            signal.signal(number, handler)


def _initial_weights(model, init_from):
    """Puts the weights of `init_from` (a compact .npz or a .keras file) into `model`, grown
    when `model` is larger (gqn_tf/model/grow.py); returns `checkpoints.load_model`'s info (its
    step and compute seconds) with "grown" (the config change), or None without it."""
    if init_from is None:
        return None
    if not init_from.endswith((checkpoints.COMPACT_SUFFIX, ".keras")):
        raise ValueError(f"--init_from {init_from!r}: give a compact .npz or a .keras file "
                         f"(a train.py run directory needs TensorFlow; export it with "
                         f"export/save_compact.py).")
    source, info = checkpoints.load_model(init_from)
    return {**info, "grown": grow.start_from(model, source, init_from)}


def save(model_dir, model, train_step, run_config, compute):
    """Writes the run's model.keras, model.npz and train_state.npz (each atomically)."""
    train_step.sync()
    step = train_step.step
    files.write_atomically(os.path.join(model_dir, STATE_FILE),
                           lambda path: np.savez(path, **_state_arrays(train_step, compute)))
    files.write_atomically(os.path.join(model_dir, MODEL_FILE), model.save)
    files.write_atomically(
        os.path.join(model_dir, COMPACT_FILE),
        lambda path: checkpoints.save_compact(
            model, path, {"source": os.path.join(model_dir, MODEL_FILE), "step": step,
                          "run_config": run_config, "backend": "jax",
                          "compute_seconds": compute.totals()}))
    return step


def train(model_config, config, schedule=schedules.ScheduleConfig(), log=print):
    """Trains (or resumes) a GQN on JAX; returns (final step, how it stopped: "max_steps",
    "SIGINT" or "SIGTERM"). `log(line)` prints progress. Raises ValueError for bad settings,
    FileNotFoundError when the data are missing, standalone.BadDataError for a damaged record
    and NonFiniteLossError."""
    if os.path.isdir(os.path.join(config.model_dir, checkpoints.CHECKPOINT_DIR)):
        raise ValueError(f"{config.model_dir!r} holds a train.py (TensorFlow) run; give "
                         f"train_jax.py a --model_dir of its own.")
    state_path = os.path.join(config.model_dir, STATE_FILE)
    if os.path.exists(state_path):
        checkpoints.check_same_model(config.model_dir, model_config)

    def indexed(done, total, scenes):
        if done == total or (total >= 20 and done % (total // 10) == 0):
            log(f"Indexed {scenes} scenes in {done} of {total} shard files.")

    sampling = dict(batch_size=config.batch_size, context_size=config.context_size,
                    max_context_size=config.max_context_size, frame_size=config.frame_size,
                    seed=config.seed, masked_context=config.masked_context)
    if config.init_from and not os.path.exists(config.init_from):
        raise FileNotFoundError(f"--init_from {config.init_from!r}: no such model file.")
    # Scenes are rendered (in forked processes) before JAX starts its threads.
    eval_samplers = None
    if config.synthetic_scenes:
        log(f"Rendering {config.synthetic_scenes} synthetic training scenes (seed "
            f"{config.synthetic_seed}).")
        sampler = standalone.SyntheticSceneSampler(
            config.dataset, "train", config.synthetic_scenes, config.synthetic_seed,
            **sampling)
        if config.eval_every:
            eval_samplers = {"train": sampler, "test": standalone.SyntheticSceneSampler(
                config.dataset, "test", config.synthetic_test_scenes or config.eval_scenes,
                config.synthetic_seed, frame_size=config.frame_size, seed=config.seed)}
    else:
        sampler = standalone.SceneSampler(config.data_dir, config.dataset, "train",
                                          progress=indexed, **sampling)
        if config.eval_every:
            eval_samplers = held_outs.shard_samplers(config.dataset, config.data_dir,
                                                     config.frame_size, config.seed)
    if sampler.frame_size != model_config.image_size:
        raise ValueError(f"The model is built for {model_config.image_size}x"
                         f"{model_config.image_size} frames but the input gives "
                         f"{sampler.frame_size}x{sampler.frame_size}; set --frame_size "
                         f"{model_config.image_size} or build the model for the frames.")
    keras.utils.set_random_seed(config.seed)
    previous_policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(config.mixed_precision)
    resumed = os.path.exists(state_path)
    try:
        model = GQN(model_config)
        initial = None if resumed else _initial_weights(model, config.init_from)
        train_step = JaxTrainStep(model, schedule, seed=config.seed)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
    compute = compute_lib.Clock()
    if resumed:
        compute.start(_load_state(train_step, state_path))
        log(f"Resumed from {state_path} at step {train_step.step}.")
    elif initial is not None:
        train_step.set_step(initial["step"] or 0)
        if initial.get("compute_seconds"):  # the compute of the run it continues
            compute.start([initial["compute_seconds"].get(name, 0.0)
                           for name in compute_lib.COMPUTE])
        log(f"Starting from the weights of {config.init_from} at step {train_step.step}"
            f"{grow.describe(initial['grown'])}.")
    held_out = None
    if config.eval_every:
        held_out = held_outs.for_jax_run(model, held_outs.config_of(config),
                                         lambda: train_step.state[:2], eval_samplers,
                                         model_dir=config.model_dir)
    extra = {"dataset": config.dataset, "data_dir": config.data_dir,
             "train": dataclasses.asdict(config), "schedule": dataclasses.asdict(schedule),
             "backend": "jax"}
    checkpoints.write_run_config(config.model_dir, model_config, **extra)
    run_config = {"model": model_config.to_dict(), **extra}  # also kept in model.npz

    step = saved_step = train_step.step

    def evaluate():
        line = held_out and held_out.at(step, float(schedules.pixel_std(step, schedule)),
                                        compute)
        if line:
            log(line)

    if not resumed:  # where a new run's curves start
        evaluate()
    stop = _Stop()
    reader = futures.ThreadPoolExecutor(1)
    next_batch = reader.submit(sampler.batch, step)
    sums, count, started = None, 0, time.perf_counter()

    def check_finite():
        if sums is not None and not all(np.isfinite(np.asarray(v)).all() for v in sums.values()):
            kept = (f"nothing was saved after step {saved_step}, so resume from that save"
                    if saved_step else "nothing of this run was saved")
            raise NonFiniteLossError(
                f"The loss became NaN or Inf between steps {step - count + 1} and {step}; "
                f"{kept}. Lower --lr_initial and run again.")

    try:
        while (step < config.max_steps and stop.signal is None
               and not (config.max_cpu_seconds
                        and compute.training_cpu() >= config.max_cpu_seconds)
               and not (config.max_wall_seconds
                        and compute.process_wall() >= config.max_wall_seconds)):
            try:
                batch = next_batch.result()
            except standalone.BadDataError:
                if step > saved_step:
                    check_finite()
                    saved_step = save(config.model_dir, model, train_step, run_config, compute)
                    log(f"Saved step {saved_step} in {config.model_dir} before stopping.")
                raise
            next_batch = reader.submit(sampler.batch, step + 1)
            metrics = train_step(batch)
            step += 1
            sums = metrics if sums is None else jax.tree.map(lambda a, b: a + b, sums, metrics)
            count += 1
            report = step % config.log_every == 0 or step == config.max_steps
            if report or step % config.save_every == 0 or stop.signal:
                check_finite()
            if report:
                rate = count / (time.perf_counter() - started)
                means = {k: np.asarray(v) / count for k, v in sums.items()}
                line = {"step": step, "loss": float(means["loss"]), "kl": float(means["kl"]),
                        "nll": float(means["nll"]), "sigma": float(metrics["sigma"]),
                        "learning_rate": float(metrics["learning_rate"]),
                        "kl_per_layer": [round(float(v), 4) for v in means["kl_per_layer"]],
                        "steps_per_sec": round(rate, 3)}
                with open(os.path.join(config.model_dir, METRICS_FILE), "a") as f:
                    f.write(json.dumps(line) + "\n")
                eta = (config.max_steps - step) / rate if rate > 0 else math.inf
                log(f"step {step}/{config.max_steps}  -ELBO {line['loss']:.1f}  "
                    f"KL {line['kl']:.1f}  NLL {line['nll']:.1f}  σ {line['sigma']:.4f}  "
                    f"μ {line['learning_rate']:.2e}  {rate:.2f} steps/s  "
                    f"ETA {eta / 60:.1f} min")
                sums, count, started = None, 0, time.perf_counter()
            if config.eval_every and step % config.eval_every == 0:
                evaluate()
            if step % config.save_every == 0 or step == config.max_steps or stop.signal:
                saved_step = save(config.model_dir, model, train_step, run_config, compute)
        if stop.signal is None:
            evaluate()
            if step > saved_step:  # stopped by --max_cpu_seconds between saves
                check_finite()
                saved_step = save(config.model_dir, model, train_step, run_config, compute)
    finally:
        stop.restore()
        reader.shutdown(wait=True, cancel_futures=True)
    stopped_by = stop.signal or ("max_steps" if step >= config.max_steps else "time budget")
    log(f"Stopped at step {step} ({stopped_by}); saved in {config.model_dir}. XLA compiled "
        f"{train_step.programs} training program(s) in this process.")
    return step, stopped_by
