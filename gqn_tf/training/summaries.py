"""TensorBoard output of a training run: scalars, image grids and the run's hyperparameters.

Scalar tags (per image, averaged over the logging interval): `loss/neg_elbo`, `loss/kl`,
`loss/nll`, `loss/bits_per_dim`, `schedule/learning_rate` (μ), `schedule/sigma` (σ),
`speed/steps_per_sec`, `speed/images_per_sec`, `latents/kl_layer_<l>` (the KL of each latent
layer), `data/bad_records_skipped` (with `skip_bad_records`, the total so far); on image steps
`reconstruction/mse` and `reconstruction/psnr` of the posterior mean image against the target,
because the NLL has a floor set by σ, `generation/mse` of a prior sample, and whether the latents
matter: `latents/sample_std` (pixel std over 4 prior samples of the shown scenes; 0 when z is
ignored) and `latents/prior_posterior_mse` (prior sample against posterior mean). Image tags: `images/context`, `images/target`, `images/reconstruction`,
`images/prior_sample` (one tiled grid each, a row per scene) and `images/overview` (all of them
side by side, a row per scene).
"""

import numpy as np
import tensorflow as tf
from tensorboard.plugins.hparams import api as hparams_api

from gqn_tf.evaluation import metrics
from gqn_tf.model import distributions

SCALAR_TAGS = {
    "loss": "loss/neg_elbo",
    "kl": "loss/kl",
    "nll": "loss/nll",
    "bits_per_dim": "loss/bits_per_dim",
    "learning_rate": "schedule/learning_rate",
    "sigma": "schedule/sigma",
    "steps_per_sec": "speed/steps_per_sec",
    "images_per_sec": "speed/images_per_sec",
    "mse": "reconstruction/mse",
    "psnr": "reconstruction/psnr",
    "bad_records": "data/bad_records_skipped",
    "sample_std": "latents/sample_std",
    "prior_posterior_mse": "latents/prior_posterior_mse",
    "generation_mse": "generation/mse",
}
# Prior samples per shown scene for latents/sample_std on image steps.
LATENT_SAMPLES = 4
IMAGE_TAGS = ("images/context", "images/target", "images/reconstruction", "images/prior_sample",
              "images/overview")
_GAP = 2  # pixels of white between tiles


def bits_per_dim(nats, image_size):
    """−ELBO (or any per-image nats) in bits per dimension of an image_size² RGB image."""
    return distributions.bits_per_dim(nats, image_size * image_size * 3)


def tile(rows):
    """Tiles a list of rows, each a list of [H, W, 3] images, into one [1, H', W', 3] grid.

    Short rows are padded with white; an empty grid (no images at all) is one white tile row.
    """
    rows = [[np.asarray(image, np.float32) for image in row] for row in rows]
    sample = next((image for row in rows for image in row), None)
    height, width = sample.shape[:2] if sample is not None else (8, 8)
    columns = max(1, max(len(row) for row in rows))
    grid = np.ones((len(rows) * (height + _GAP) - _GAP, columns * (width + _GAP) - _GAP, 3),
                   np.float32)
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            top, left = r * (height + _GAP), c * (width + _GAP)
            grid[top:top + height, left:left + width] = np.clip(image, 0.0, 1.0)
    return grid[None]


def scene_grids(batch, reconstruction, sample):
    """The image grids of a few scenes: a dict image tag → [1, H', W', 3], a row per scene."""
    context = np.asarray(batch["context_frames"])  # [N, M, H, W, 3]
    target, reconstruction, sample = (np.asarray(x) for x in
                                      (batch["target"], reconstruction, sample))
    n, m = context.shape[:2]
    blank = np.ones_like(target[0])
    return {
        "images/context": tile([list(context[i]) or [blank] for i in range(n)]),
        "images/target": tile([[target[i]] for i in range(n)]),
        "images/reconstruction": tile([[reconstruction[i]] for i in range(n)]),
        "images/prior_sample": tile([[sample[i]] for i in range(n)]),
        # Context views | target | reconstruction (posterior) | sample (prior).
        "images/overview": tile([list(context[i]) + [blank, target[i], reconstruction[i],
                                                     sample[i]] for i in range(n)]),
    }


def reconstruction_errors(target, mean):
    """Mean squared error over the batch and its PSNR (dB, images in [0, 1]) of the mean images,
    with the evaluation's own image metrics."""
    mse = float(np.mean(metrics.mse_per_image(target, mean)))
    return {"mse": mse, "psnr": float(metrics.psnr(mse))}


class SummaryWriter:
    """Writes one run's TensorBoard events under `logdir`."""

    def __init__(self, logdir):
        self.logdir = logdir
        self._writer = tf.summary.create_file_writer(logdir)

    def hparams(self, values, trial_id=None):
        """Records the run's hyperparameters (plain values; None is written as "none")."""
        clean = {name: ("none" if value is None else value) for name, value in values.items()}
        with self._writer.as_default():
            hparams_api.hparams(clean, trial_id=trial_id)
        self._writer.flush()

    def scalars(self, step, values):
        """Writes the scalars in `values` (tags from SCALAR_TAGS) at `step`; `kl_per_layer`
        [L] becomes `latents/kl_layer_<l>`."""
        with self._writer.as_default(step=int(step)):
            for name, value in values.items():
                if name == "kl_per_layer":
                    for layer, kl in enumerate(np.ravel(value)):
                        tf.summary.scalar(f"latents/kl_layer_{layer}", float(kl))
                else:
                    tf.summary.scalar(SCALAR_TAGS.get(name, name), float(value))

    def images(self, step, model, batch, seed, max_images=4):
        """Reconstructs (posterior) and samples (prior) the query views of `batch` with `seed`,
        writes the grids of its first `max_images` scenes, and returns and writes the MSE and
        PSNR of the reconstruction over the whole batch."""
        args = (batch["context_frames"], batch["context_cameras"], batch["query_camera"])
        reconstruction = model.reconstruct(*args, batch["target"], seed=seed).numpy()
        errors = reconstruction_errors(batch["target"], reconstruction)
        shown = {name: np.asarray(value)[:max_images] for name, value in batch.items()}
        shown_args = (shown["context_frames"], shown["context_cameras"], shown["query_camera"])
        pair = [seed, 0] if isinstance(seed, int) else seed
        seeds = tf.random.experimental.stateless_split(tf.cast(pair, tf.int32), LATENT_SAMPLES)
        samples = np.stack([model.generate(*shown_args, seed=seed).numpy()] + [
            model.generate(*shown_args, seed=tf.cast(s, tf.int32)).numpy()
            for s in seeds[1:]], axis=1)  # [N, K, H, W, 3], sample 0 with `seed` itself
        sample = samples[:, 0]
        grids = scene_grids(shown, reconstruction[:max_images], sample)
        with self._writer.as_default(step=int(step)):
            for tag, grid in grids.items():
                tf.summary.image(tag, grid, max_outputs=1)
        # Do the latents matter? Spread over prior samples, and prior vs posterior means.
        errors.update(
            sample_std=float(np.mean(metrics.sample_spread(samples))),
            prior_posterior_mse=float(np.mean(metrics.mse_per_image(
                sample, reconstruction[:max_images]))),
            generation_mse=float(np.mean(metrics.mse_per_image(shown["target"], sample))))
        self.scalars(step, errors)
        return errors

    def flush(self):
        self._writer.flush()

    def close(self):
        self._writer.close()
