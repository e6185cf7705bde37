"""Held-out curves while training (the paper's Fig. S3): fixed test and train scenes, evaluated
every N steps with evaluate.py's metrics, written to TensorBoard beside the training curves.

`HeldOut` reads, once at start-up, the first `num_scenes` scenes of the test split and of the
train split in file order, each with `context_size` context views drawn from `seed` (the same
scenes, views and query as `evaluate.py --num_scenes K --max_context M --seed S` at its row
M = context_size), and the mean image of the first `mean_image_scenes` training scenes. Every
evaluation then runs `metrics.Evaluator` on those batches with the latent noise of batch b
seeded by (seed, b), so two evaluations differ only by the weights and σ, and each figure
equals evaluate.py's on the same checkpoint, scenes, seeds, σ and context size.

It writes one JSON line per split and evaluation to `<model_dir>/eval/metrics.jsonl`, the file
to plot curves from, and on TensorFlow, for split in (test, train), TensorBoard events to
`<model_dir>/eval/<split>` (tags `eval/<name>` as in evaluate.py, the run's cumulative
`compute/*` seconds, and an image grid of the first test scenes). Nothing it does touches the
training state: no variable of the model or optimizer, no input iterator, no global RNG.

`for_tf_run` builds it for train.py (scenes through the tf.data pipeline, `metrics.Evaluator`),
`for_jax_run` for train_jax.py (scenes through the reader without TensorFlow,
`metrics.JaxEvaluator`, no TensorBoard: the JAX trainer writes JSON lines only). On JAX the
views come from the reader's own seeded draw and the latent noise from JAX's generator, so its
figures are those of the same scenes with other views and noise than evaluate.py's.
"""

import dataclasses
import json
import os
import time

import numpy as np

from gqn_tf.data import datasets, shards
from gqn_tf.evaluation import metrics

SPLITS = ("test", "train")
EVAL_DIR = "eval"
METRICS_FILE = "metrics.jsonl"


@dataclasses.dataclass(frozen=True)
class HeldOutConfig:
    """What a held-out evaluation during training is told.

    every: steps between evaluations (0: none). num_scenes: scenes K of each split.
    context_size: the M every scene is evaluated at. seed / batch_size: as evaluate.py's
    `--seed` / `--batch_size` (the noise of batch b is seeded by (seed, b)).
    latent_samples / mean_samples / mean_image_scenes: as evaluate.py's flags of those names.
    grid_scenes: test scenes in each image grid (0: no grid).
    """

    every: int = 0
    num_scenes: int = 64
    context_size: int = 5
    seed: int = 0
    batch_size: int = 8
    latent_samples: int = 8
    mean_samples: int = metrics.MEAN_OF_SAMPLES
    mean_image_scenes: int = 500
    grid_scenes: int = 4


def config_of(config):
    """The HeldOutConfig of a trainer's config (train.py's TrainConfig, train_jax.py's
    JaxTrainConfig: their `eval_*`, `seed` and context fields); its context size is
    `eval_context_size`, else the largest the run trains with."""
    context = config.eval_context_size
    if context is None:
        context = config.context_size
    if context is None:
        context = (datasets.get_dataset_info(config.dataset).sequence_size - 1
                   if config.max_context_size is None else config.max_context_size)
    return HeldOutConfig(every=config.eval_every, num_scenes=config.eval_scenes,
                         context_size=context, seed=config.seed,
                         batch_size=config.eval_batch_size)


def describe(step, rows, seconds, config):
    """The log line of one evaluation: the MSE ratios on test and train scenes."""
    def ratio(row, kind):
        value = row.get(f"{kind}_mse_ratio")
        return f"{value:.3f}x" if value is not None else f"MSE {row[f'{kind}_mse']:.5f}"

    test, train = rows["test"], rows["train"]
    return (f"Held-out at step {step} (M = {config.context_size}, {seconds:.1f} s): generated "
            f"MSE {ratio(test, 'generation')} of the mean image (one sample), "
            f"{ratio(test, 'sample_mean')} (mean of {config.mean_samples}), "
            f"{ratio(test, 'prior_mean')} (prior mean); train scenes "
            f"{' / '.join(ratio(train, k) for k in ('generation', 'sample_mean', 'prior_mean'))};"
            f" test -ELBO {test['neg_elbo_nats']:.1f} nats, KL {test['kl_nats']:.2f}.")


class HeldOutError(ValueError):
    """The data cannot give the held-out evaluation asked for (no test split, too few scenes)."""


def split_files(dataset, data_dir, split, tfds_dir=None):
    """The shard files of `split`: under `data_dir`, or those a TFDS registration under
    `tfds_dir` reads (the same original files)."""
    if tfds_dir is None:
        return shards.list_shards(data_dir, dataset, split)
    from gqn_tf.data import tfds as gqn_tfds  # imports tensorflow_datasets only when used

    try:
        return gqn_tfds.split_files(dataset, tfds_dir, split)
    except KeyError:
        raise shards.DataNotFoundError(
            f"The TFDS registration of {dataset} under {tfds_dir} has no {split} split.") from None


class HeldOut:
    """The held-out evaluation of one run; see the module docstring.

    batches: split → the numpy batches of its fixed scenes. evaluator: a `metrics.Evaluator`
    or `JaxEvaluator` of the run's model. summaries: also write TensorBoard events (TF only).
    """

    def __init__(self, config, batches, evaluator, model_dir, num_dims, summaries=False):
        self.config, self.batches, self.evaluator = config, batches, evaluator
        self.num_dims = num_dims
        self.directory = os.path.join(model_dir, EVAL_DIR)
        self.last_step = None
        self.writers = None
        if summaries:
            import tensorflow as tf

            self.writers = {split: tf.summary.create_file_writer(
                os.path.join(self.directory, split)) for split in SPLITS}

    def rows(self, sigma):
        """split → evaluate.py's row (metrics.ContextCurve) of the current weights at σ."""
        self.evaluator.set_sigma(sigma)
        rows, self.last_values = {}, {}
        for split in SPLITS:
            curve = metrics.ContextCurve(self.num_dims)
            for number, batch in enumerate(self.batches[split]):
                values = self.evaluator(batch, metrics.batch_seed(self.config.seed, number))
                curve.add(self.config.context_size, values)
                if number == 0:
                    self.last_values[split] = values
            rows[split] = curve.rows()[0]
        return rows

    def __call__(self, step, sigma, compute):
        """Evaluates both splits at `step` and writes them; `compute` holds the run's
        cumulative seconds so far (`cpu_seconds`, `wall_seconds`, ...). Returns
        (split → row, seconds the evaluation took)."""
        start = time.perf_counter()
        rows = self.rows(sigma)
        lines = []
        for split, row in rows.items():
            if self.writers is not None:
                self._summaries(split, row, step, sigma, compute)
            lines.append(json.dumps({"step": int(step), "split": split, "sigma": float(sigma),
                                     "context_size": self.config.context_size,
                                     **{k: float(v) for k, v in compute.items()}, **row}))
        os.makedirs(self.directory, exist_ok=True)
        with open(os.path.join(self.directory, METRICS_FILE), "a") as f:
            f.write("".join(line + "\n" for line in lines))
        return rows, time.perf_counter() - start

    def at(self, step, sigma, clock):
        """Evaluates at `step` (at pixel std `sigma`) unless that step was evaluated already,
        its cost counted as evaluation by `clock` (a compute.Clock); returns the log line of
        `describe`, or None."""
        if self.last_step == step:
            return None
        rows, seconds = clock.timed_evaluation(lambda: self(step, sigma, clock.totals()))
        self.last_step = step
        return describe(step, rows, seconds, self.config)

    def _summaries(self, split, row, step, sigma, compute):
        import tensorflow as tf

        from gqn_tf.evaluation import loop as evaluation

        with self.writers[split].as_default():
            for name in evaluation.SCALAR_NAMES:
                if row.get(name) is not None:
                    tf.summary.scalar(f"eval/{name}", row[name], step=step)
            tf.summary.scalar("eval/sigma", sigma, step=step)
            for name, value in compute.items():
                tf.summary.scalar(f"compute/{name}", value, step=step)
            if split == "test" and self.config.grid_scenes:
                tf.summary.image("eval/grid", self._grid()[None], step=step)
        self.writers[split].flush()

    def _grid(self):
        """Rows: the first test scenes; columns: context views, target, one prior sample, the
        mean of samples, the prior-mean render, the posterior's reconstruction."""
        batch, values = self.batches["test"][0], self.last_values["test"]
        n = self.config.grid_scenes
        renders = np.stack([values[kind][:n] for kind in ("generation", "sample_mean",
                                                          "prior_mean")], axis=1)
        from gqn_tf.evaluation import figures

        return figures.scene_grid(batch["context_frames"][:n], batch["target"][:n], renders,
                                  values["reconstruction"][:n])

    def close(self):
        for writer in (self.writers or {}).values():
            writer.close()


def _missing_split(split, error):
    return HeldOutError(f"--eval_every needs the {split} split: {error} Pass --eval_every 0 to "
                        f"train without held-out evaluation.")


def _too_few(config, split, directory, count):
    return HeldOutError(f"--eval_scenes {config.num_scenes} is more than the {split} split "
                        f"holds: {directory} has {count} scenes. Pass --eval_scenes {count} "
                        f"or fewer.")


def for_tf_run(model, config, *, dataset, data_dir, model_dir, tfds_dir=None,
               frame_size=None):
    """The HeldOut of a train.py run: scenes read by the tf.data pipeline (from the shards of
    `data_dir`, or those a TFDS registration under `tfds_dir` reads), evaluate.py's Evaluator,
    TensorBoard events. Raises HeldOutError when a split is missing or too small."""
    from gqn_tf.data import check
    from gqn_tf.evaluation import loop as evaluation

    info = datasets.get_dataset_info(dataset)
    batches, files = {}, {}
    for split in SPLITS:
        try:
            files[split] = split_files(dataset, data_dir, split, tfds_dir)
        except shards.DataNotFoundError as error:
            raise _missing_split(split, error) from None
        with check.naming_bad_records(files[split], info.sequence_size):
            count = evaluation.count_scenes(files[split], config.num_scenes)
        if count < config.num_scenes:
            raise _too_few(config, split, os.path.dirname(str(files[split][0])), count)
        dataset_ = evaluation.scene_batches(
            files[split], info, num_scenes=config.num_scenes, context_size=config.context_size,
            seed=config.seed, batch_size=config.batch_size, frame_size=frame_size)
        batches[split] = [{name: value.numpy() for name, value in batch.items()}
                          for batch in evaluation.named_errors(dataset_, files[split], info)]
    mean_image = (evaluation.mean_image_of(files["train"], info, config.mean_image_scenes,
                                           config.seed, frame_size)
                  if config.mean_image_scenes > 0 else None)
    evaluator = metrics.Evaluator(model, 1.0, config.latent_samples, mean_image,
                                  config.mean_samples)
    return HeldOut(config, batches, evaluator, model_dir, model.gqn_config.image_size ** 2 * 3,
                   summaries=True)


def shard_samplers(dataset, data_dir, frame_size, seed):
    """split → a `standalone.SceneSampler` of the shards under `data_dir` (for `for_jax_run`);
    a HeldOutError when a split is missing."""
    from gqn_tf.data import standalone

    samplers = {}
    for split in SPLITS:
        try:
            samplers[split] = standalone.SceneSampler(data_dir, dataset, split,
                                                      frame_size=frame_size, seed=seed)
        except shards.DataNotFoundError as error:
            raise _missing_split(split, error) from None
    return samplers


def for_jax_run(model, config, weights, samplers, *, model_dir):
    """The HeldOut of a train_jax.py run: scenes read without TensorFlow by `samplers` (split →
    a standalone SceneSampler or SyntheticSceneSampler; `fixed_batches`),
    `metrics.JaxEvaluator` on `weights()`, JSON lines only. Raises HeldOutError when a split
    holds too few scenes."""
    for split in SPLITS:
        if samplers[split].num_scenes < config.num_scenes:
            raise _too_few(config, split, os.path.dirname(str(samplers[split].files[0])),
                           samplers[split].num_scenes)
    batches = {split: sampler.fixed_batches(config.num_scenes, config.context_size,
                                            config.batch_size)
               for split, sampler in samplers.items()}
    mean_image = None
    if config.mean_image_scenes > 0:
        train = samplers["train"]
        views = train.sequence_size - 1
        mean_image = metrics.mean_frame(train.fixed_batches(
            min(config.mean_image_scenes, train.num_scenes), views, 64))
    evaluator = metrics.JaxEvaluator(model, 1.0, weights, config.latent_samples, mean_image,
                                     config.mean_samples)
    return HeldOut(config, batches, evaluator, model_dir, model.gqn_config.image_size ** 2 * 3)


def read_metrics(model_dir):
    """The lines of `<model_dir>/eval/metrics.jsonl` as dicts; of a step evaluated twice (a
    run resumed from before it), the last."""
    path = os.path.join(model_dir, EVAL_DIR, METRICS_FILE)
    latest = {}
    with open(path) as f:
        for line in f:
            if line.strip():
                entry = json.loads(line)
                latest[(entry["step"], entry["split"])] = entry
    return [latest[key] for key in sorted(latest)]
