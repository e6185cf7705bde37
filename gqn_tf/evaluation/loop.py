"""Evaluates a trained GQN on one split: metrics per number of context views, figures, JSON.

`evaluate(config)` loads the latest checkpoint of a run directory (or a checkpoint prefix, or a
`.keras` file) and, for the first `num_scenes` scenes of the split in file order, computes the
metrics of `metrics.py` for every M = 0 .. max_context. It is deterministic: the scenes are read
without shuffling, each scene's views are one permutation drawn from `seed` by the input
pipeline, and for every M the context is views 0..M−1 of that permutation and the query is
view `max_context` — the same scene and query for every M, with the context growing, so the KL
curve shows the Bayesian surprise of the paper's Fig. 4B as views accumulate. The latent noise of
a batch is seeded by (seed, batch number), the same for every M. Results are a function of the
data, the checkpoint, `seed` and `batch_size`.

It writes into `output_dir`: `metrics.json`, `curves.png`, `grid_M<m>.png` for each grid
context size, and TensorBoard events (tags under `eval/`).
"""

import dataclasses
import os
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf
from PIL import Image
from absl import logging
from tqdm import tqdm

from gqn_tf import files as files_lib
from gqn_tf.data import check, datasets, pipeline, shards
from gqn_tf.evaluation import figures, metrics
from gqn_tf.model import distributions
from gqn_tf.training import checkpoints, schedules

SCHEMA_VERSION = 3  # 2: latent diagnostics, baselines, skipped records; 3: mean of samples,
# prior-mean render, PSNR of every render and baseline, ratios to the mean image
METRICS_FILE = "metrics.json"
CURVES_FILE = "curves.png"
# Scenes evaluated when `num_scenes` is not given: all of the split, at most this many.
DEFAULT_MAX_SCENES = 1000


class NotEnoughScenesError(ValueError):
    """More scenes were asked for than the split holds."""


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """What an evaluation is told.

    model_path: a run directory (latest checkpoint), a checkpoint prefix or a `.keras` file.
    num_scenes: scenes to evaluate, the first ones of the split in file order; None: all of
      them, at most DEFAULT_MAX_SCENES.
    max_context: the largest M evaluated (None: S − 1).
    samples: prior samples per scene in the grids.
    sigma: the pixel std σ of the likelihood; None: the final value of the run's schedule
      (see `resolve_sigma`; Table S1's 0.7 without a run config).
    grid_scenes: scenes (rows) per grid. grid_context_sizes: the M of each grid (None: 1 and
      max_context).
    frame_size: resize the frames to this side; None: to the model's image size (which the run
      recorded), so frames of another size are resized with a warning.
    skip_bad_records: skip (log and count) damaged records instead of stopping at the first.
    latent_samples: prior samples per scene for `sample_std`, the pixel std over samples that
      shows whether the latents change the rendering (0 or 1: not measured).
    mean_image_scenes: training scenes averaged into the mean image of the `mean_image_mse`
      baseline (0, or no train split: no such baseline).
    mean_samples: prior samples averaged into the `sample_mean` render.
    """

    dataset: str
    data_dir: str
    model_path: str
    output_dir: str
    split: str = "test"
    num_scenes: Optional[int] = None
    max_context: Optional[int] = None
    samples: int = 4
    sigma: Optional[float] = None
    seed: int = 0
    batch_size: int = 8
    grid_scenes: int = 4
    grid_context_sizes: Optional[Sequence[int]] = None
    progress: bool = True
    frame_size: Optional[int] = None
    skip_bad_records: bool = False
    latent_samples: int = 8
    mean_image_scenes: int = 500
    mean_samples: int = metrics.MEAN_OF_SAMPLES


def count_scenes(filenames, limit=None, skip_bad_records=False):
    """Counts the scene records in the shard files, stopping at `limit` if given.

    Reads through the pipeline's reader, so a truncated shard is named rather than miscounted;
    with `skip_bad_records` the readable records are counted (the evaluation names the rest).
    """
    if skip_bad_records:
        records = tf.data.TFRecordDataset([str(name) for name in filenames]).ignore_errors()
    else:
        records = pipeline.read_records(filenames, shuffle=False)
    if limit is not None:
        records = records.take(limit)
    return int(records.reduce(np.int64(0), lambda count, _: count + 1).numpy())


def run_config_of(model_path):
    """The run_config.json that belongs to `model_path`, or None (e.g. a lone .keras file)."""
    path = str(model_path)
    if path.endswith(checkpoints.COMPACT_SUFFIX):  # a shipped model carries its run's config
        return checkpoints.load_compact(path)[1]["metadata"].get("run_config")
    if os.path.isdir(path):
        model_dir = path
    elif path.endswith(".keras"):
        model_dir = os.path.dirname(os.path.abspath(path))
    else:  # a checkpoint prefix <model_dir>/checkpoints/ckpt-N
        model_dir = os.path.dirname(os.path.dirname(os.path.abspath(path)))
    try:
        return checkpoints.read_run_config(model_dir)
    except FileNotFoundError:
        return None


def trained_context(run_config):
    """The largest context size M a run trained with (its fixed `context_size`, else its
    `max_context_size`), or None when the run config does not say (or said S − 1)."""
    train = (run_config or {}).get("train") or {}
    if train.get("context_size") is not None:
        return int(train["context_size"])
    if train.get("max_context_size") is not None:
        return int(train["max_context_size"])
    return None


def resolve_sigma(sigma, run_config):
    """(σ, where it came from): the flag, the run's final σ (the last point of its
    sigma_schedule when it has one, else its sigma_final), or Table S1's σ_f."""
    if sigma is not None:
        if sigma <= 0:
            raise ValueError(f"sigma must be positive, got {sigma}.")
        return float(sigma), "flag"
    schedule = (run_config or {}).get("schedule") or {}
    points = schedules.parse_points(schedule.get("sigma_schedule") or "")
    if points:
        return float(points[-1][1]), "run_config sigma_schedule"
    final = schedule.get("sigma_final")
    if final is not None:
        return float(final), "run_config"
    return schedules.ScheduleConfig().sigma_final, "table_s1"


def _check(config, info):
    if config.num_scenes is not None and config.num_scenes < 1:
        raise ValueError(f"num_scenes must be at least 1, got {config.num_scenes}.")
    if config.samples < 0 or config.grid_scenes < 0:
        raise ValueError("samples and grid_scenes must be >= 0.")
    if config.mean_samples < 1:
        raise ValueError(f"mean_samples must be at least 1, got {config.mean_samples}.")
    if config.batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {config.batch_size}.")
    max_context = info.sequence_size - 1 if config.max_context is None else config.max_context
    pipeline.check_context_size(info, None, max_context)
    grid_sizes = config.grid_context_sizes
    if grid_sizes is None:
        grid_sizes = sorted({min(1, max_context), max_context})
    for m in grid_sizes:
        if not 0 <= m <= max_context:
            raise ValueError(f"grid context size {m} is outside 0..{max_context} (max_context).")
    return max_context, sorted(set(grid_sizes))


def scene_batches(filenames, info, *, num_scenes, context_size, seed, batch_size,
                  frame_size=None, skip_bad_records=False, bad_records=None):
    """Batches of the first `num_scenes` scenes of `filenames` in file order, with
    `context_size` context views each: each scene's views are one permutation drawn from
    `seed`, so the same arguments give the same scenes, views and query."""
    records = pipeline.read_records(filenames, shuffle=False,
                                    skip_bad_records=skip_bad_records,
                                    bad_record_counter=bad_records).take(num_scenes)
    return pipeline.scenes_from_records(
        records, info, batch_size=batch_size, context_size=context_size,
        seed=seed, frame_size=frame_size, drop_remainder=False,
        skip_bad_records=skip_bad_records, bad_record_counter=bad_records)



def _frame_size(config, info, model, run_config):
    """The size frames are resized to (None: they stay as they are), warning where the data
    differ from what the run trained on."""
    image_size = model.gqn_config.image_size
    if config.frame_size is not None and config.frame_size != image_size:
        raise ValueError(
            f"frame_size {config.frame_size} differs from the model's image size {image_size}: "
            f"the model renders {image_size}x{image_size} images, so pass --frame_size "
            f"{image_size} or leave it unset.")
    trained_on = (run_config or {}).get("dataset")
    if trained_on and trained_on != config.dataset:
        logging.warning("The model was trained on %s and is evaluated on %s.", trained_on,
                        config.dataset)
    if image_size != info.frame_size:
        if config.frame_size is None:
            logging.warning("The %s frames are %dx%d and the model takes %dx%d: resizing them "
                            "(bilinear); pass --frame_size %d to say so.", config.dataset,
                            info.frame_size, info.frame_size, image_size, image_size,
                            image_size)
        return image_size
    return None


class _Grids:
    """Collects the first `num` scenes' images for the grid of each context size."""

    def __init__(self, model, grid_sizes, num, samples):
        self.model, self.num, self.samples = model, num, samples
        self.parts = {m: {"context": [], "target": [], "samples": [], "reconstruction": []}
                      for m in grid_sizes}

    def add(self, m, batch, values, seed):
        if m not in self.parts:
            return
        parts = self.parts[m]
        take = self.num - sum(len(x) for x in parts["target"])
        if take <= 0:
            return
        shown = {name: np.asarray(value)[:take] for name, value in batch.items()}
        size = shown["target"].shape[1:]
        samples = np.zeros((len(shown["target"]), self.samples, *size), np.float32)
        # Sample k has its own seed split from the batch's; the evaluated generation keeps it.
        sample_seeds = tf.random.experimental.stateless_split(seed, num=max(1, self.samples))
        for k in range(self.samples):
            samples[:, k] = self.model.generate(
                shown["context_frames"], shown["context_cameras"], shown["query_camera"],
                tf.cast(sample_seeds[k], tf.int32)).numpy()
        parts["context"].append(shown["context_frames"])
        parts["target"].append(shown["target"])
        parts["samples"].append(samples)
        parts["reconstruction"].append(values["reconstruction"][:take])

    def arrays(self):
        """M → (context, target, samples, reconstruction) of the grid's scenes (only for
        context sizes with scenes)."""
        return {m: tuple(np.concatenate(parts[name]) for name in
                         ("context", "target", "samples", "reconstruction"))
                for m, parts in self.parts.items() if parts["target"]}

    def images(self):
        """M → the grid image [H', W', 3] (only for context sizes with scenes)."""
        return {m: figures.scene_grid(*arrays) for m, arrays in self.arrays().items()}


def _mean_training_image(config, info, frame_size):
    """The per-pixel mean of every view of the first `mean_image_scenes` training scenes, or
    None when there is no train split (or the baseline is off)."""
    if config.mean_image_scenes <= 0:
        return None
    try:
        filenames = shards.list_shards(config.data_dir, config.dataset, "train")
    except shards.DataNotFoundError:
        logging.warning("No train split of %s in %s: no mean-image baseline.", config.dataset,
                        config.data_dir)
        return None
    return mean_image_of(filenames, info, config.mean_image_scenes, config.seed, frame_size)


def mean_image_of(filenames, info, num_scenes, seed, frame_size=None):
    """The per-pixel mean [H, W, 3] of every view of the first `num_scenes` scenes of
    `filenames` (the mean-image baseline's prediction)."""
    batches = scene_batches(filenames, info, num_scenes=num_scenes,
                            context_size=info.sequence_size - 1, seed=seed, batch_size=64,
                            frame_size=frame_size)
    return metrics.mean_frame(named_errors(batches, filenames, info))


def named_errors(dataset, filenames, info):
    """Iterates `dataset`, turning a TensorFlow data error into a BadDataError naming the
    record."""
    iterator = iter(dataset)
    while True:
        try:
            with check.naming_bad_records(filenames, info.sequence_size):
                batch = next(iterator)
        except StopIteration:
            return
        yield batch


def evaluate(config):
    """Runs the evaluation of `config` (an EvalConfig); returns the dict written to
    metrics.json. Raises NotEnoughScenesError (a ValueError) when `num_scenes` exceeds the
    split, ValueError for bad settings and DataNotFoundError when there are no shards."""
    info = datasets.get_dataset_info(config.dataset)
    run_config = run_config_of(config.model_path)
    trained = trained_context(run_config)
    if config.max_context is None and trained is not None and trained < info.sequence_size - 1:
        logging.warning("Evaluating M = 0..%d, the context sizes the model was trained with "
                        "(its run config); pass --max_context up to %d for more views.",
                        trained, info.sequence_size - 1)
        config = dataclasses.replace(config, max_context=trained)
    max_context, grid_sizes = _check(config, info)
    filenames = shards.list_shards(config.data_dir, config.dataset, config.split)
    directory = os.path.dirname(str(filenames[0]))
    with check.naming_bad_records(filenames, info.sequence_size):
        num_scenes = count_scenes(filenames, config.num_scenes or DEFAULT_MAX_SCENES,
                                  config.skip_bad_records)
    if config.num_scenes is None:
        if num_scenes == DEFAULT_MAX_SCENES:
            logging.info("Evaluating the first %d scenes of %s (the default cap); set "
                         "num_scenes for more.", num_scenes, directory)
    else:
        if num_scenes < config.num_scenes:
            raise NotEnoughScenesError(
                f"num_scenes {config.num_scenes} is more than the {config.split} split of "
                f"{config.dataset} holds: {directory} has {num_scenes} scenes in "
                f"{len(filenames)} shard files. Ask for at most {num_scenes}, or leave "
                f"num_scenes unset to evaluate all of them.")
    if num_scenes == 0:
        raise NotEnoughScenesError(f"The shards in {directory} hold no scenes.")

    model, source = checkpoints.load_model(config.model_path)
    sigma, sigma_source = resolve_sigma(config.sigma, run_config)
    image_size = model.gqn_config.image_size
    frame_size = _frame_size(config, info, model, run_config)
    num_dims = image_size * image_size * 3
    logging.info("Evaluating %s (step %s) on %d %s scenes of %s, M = 0..%d, σ = %g (%s).",
                 source["source"], source["step"], num_scenes, config.split, config.dataset,
                 max_context, sigma, sigma_source)

    mean_image = _mean_training_image(config, info, frame_size)
    evaluator = metrics.Evaluator(model, sigma, config.latent_samples, mean_image,
                                  config.mean_samples)
    curve = metrics.ContextCurve(num_dims)
    grids = _Grids(model, grid_sizes, config.grid_scenes, config.samples)
    bad_records = pipeline.BadRecordCounter() if config.skip_bad_records else None
    dataset = scene_batches(
        filenames, info, num_scenes=num_scenes, context_size=max_context, seed=config.seed,
        batch_size=config.batch_size, frame_size=frame_size,
        skip_bad_records=config.skip_bad_records, bad_records=bad_records)
    with tqdm(total=num_scenes, unit="scene", desc="evaluate", disable=not config.progress,
              dynamic_ncols=True) as bar:
        for batch_number, batch in enumerate(named_errors(dataset, filenames, info)):
            batch = {name: value.numpy() for name, value in batch.items()}
            seed = metrics.batch_seed(config.seed, batch_number)
            for m in range(max_context + 1):
                context_batch = metrics.slice_context(batch, m)
                values = evaluator(context_batch, seed)
                curve.add(m, values)
                grids.add(m, context_batch, values, seed)
            bar.update(len(batch["target"]))
            last = curve.overall()
            bar.set_postfix_str(f"−ELBO {last['neg_elbo_bits_per_dim']:.3f} bits/dim, "
                                f"KL {last['kl_nats']:.1f} nats")

    os.makedirs(config.output_dir, exist_ok=True)
    rows = curve.rows()
    floor = metrics.nll_floor(sigma, num_dims)
    floor_bits = float(distributions.bits_per_dim(floor, num_dims))
    files = {"curves": CURVES_FILE, "grids": {}}
    title = (f"{config.dataset} {config.split}, {num_scenes} scenes, step {source['step']}, "
             f"σ = {sigma:g}")
    figures.plot_curves(rows, os.path.join(config.output_dir, CURVES_FILE), title=title,
                        nll_floor_bits_per_dim=floor_bits)
    grid_images = grids.images()
    for m, arrays in grids.arrays().items():  # the PNGs with their columns labelled
        name = f"grid_M{m:02d}.png"
        Image.fromarray(figures.labelled_scene_grid(*arrays)).save(
            os.path.join(config.output_dir, name), format="PNG")
        files["grids"][str(m)] = name

    result = {
        "schema_version": SCHEMA_VERSION,
        "dataset": config.dataset,
        "split": config.split,
        "data_dir": str(config.data_dir),
        "model": {"path": str(config.model_path), "source": source["source"],
                  "step": source["step"], "config": model.gqn_config.to_dict()},
        "sigma": sigma,
        "sigma_source": sigma_source,
        "seed": config.seed,
        "batch_size": config.batch_size,
        "num_scenes": num_scenes,
        "max_context": max_context,
        "samples": config.samples,
        "image_size": image_size,
        "num_dims": num_dims,
        "nll_floor": {"nats": floor, "bits_per_dim": floor_bits},
        "bad_records_skipped": bad_records.count if bad_records is not None else 0,
        "latent_samples": config.latent_samples,
        "mean_samples": config.mean_samples,
        "mean_image_scenes": config.mean_image_scenes if mean_image is not None else 0,
        "overall": curve.overall(),
        "per_context": rows,
        "files": files,
    }
    files_lib.write_json(os.path.join(config.output_dir, METRICS_FILE), result, indent=2)
    write_summaries(config.output_dir, result, grid_images)
    return result


SCALAR_NAMES = ("neg_elbo_nats", "neg_elbo_bits_per_dim", "kl_nats", "kl_bits_per_dim",
                "nll_nats", "nll_bits_per_dim", *metrics.IMAGE_METRICS,
                *metrics.LATENT_METRICS, *metrics.BASELINE_METRICS, "mean_image_mse",
                "mean_image_psnr", *(f"{name}_ratio" for name in metrics.RATIO_METRICS))


def write_summaries(logdir, result, grid_images):
    """TensorBoard events under `eval/`: the overall metrics as `eval/<name>` at the
    checkpoint's step, the per-M curves as `eval/by_context/<name>` with step = M, and the
    grids as `eval/grid/M=<m>` images."""
    step = result["model"]["step"] or 0
    writer = tf.summary.create_file_writer(logdir)
    with writer.as_default():
        for name in SCALAR_NAMES:
            if result["overall"].get(name) is not None:
                tf.summary.scalar(f"eval/{name}", result["overall"][name], step=step)
        for row in result["per_context"]:
            for name in SCALAR_NAMES:
                if row.get(name) is not None:
                    tf.summary.scalar(f"eval/by_context/{name}", row[name],
                                      step=row["num_context"])
            for layer, kl in enumerate(row["kl_per_layer_nats"]):
                tf.summary.scalar(f"eval/by_context/kl_layer_{layer}", kl,
                                  step=row["num_context"])
        for m, image in grid_images.items():
            tf.summary.image(f"eval/grid/M={m}", image[None], step=step)
    writer.flush()
    writer.close()
