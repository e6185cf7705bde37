"""Evaluation metrics: the ELBO terms and image errors of a GQN, per number of context views M.

Per image, as in DESIGN.md §3: −ELBO, KL and NLL in nats and in bits per dimension, and, because
the NLL has a floor set by σ (DESIGN.md §5), the mean squared error and PSNR of two mean images
against the target: the prior sample of `generate` (Algorithm S3, what the model predicts from
the context alone) and the reconstruction of the posterior pass (Algorithm S2). The KL between
posterior and prior as M grows is the "Bayesian surprise" of the paper's Fig. 4B.

`ContextCurve` accumulates per-image values over scenes for each M; means are over images, so a
row is the same whatever the batch size, and PSNR is the mean of the per-image PSNRs.
"""

import math

import numpy as np
import tensorflow as tf

from gqn_tf.model import distributions

# The per-image scalars of a row, in the order of the JSON and the progress line.
NATS_METRICS = ("neg_elbo", "kl", "nll")
IMAGE_METRICS = ("generation_mse", "generation_psnr", "reconstruction_mse",
                 "reconstruction_psnr")
# PSNR of a perfect image is infinite; per-image MSEs are clipped here (PSNR <= 120 dB).
_MIN_MSE = 1e-12


def mse_per_image(target, prediction):
    """Mean squared error of each image over its pixels and channels: [B, ...] → [B] float64."""
    target = np.asarray(target, np.float64)
    prediction = np.asarray(prediction, np.float64)
    if target.shape != prediction.shape:
        raise ValueError(f"target {target.shape} and prediction {prediction.shape} differ.")
    return np.mean((target - prediction) ** 2, axis=tuple(range(1, target.ndim)))


def psnr(mse, max_value=1.0):
    """Peak signal-to-noise ratio in dB of images in [0, max_value] with the given MSE."""
    mse = np.maximum(np.asarray(mse, np.float64), _MIN_MSE)
    return 10.0 * np.log10(max_value ** 2 / mse)


def nll_floor(sigma, num_dims):
    """The smallest Gaussian NLL of an image of `num_dims` values, in nats: the mean on the
    target exactly, D · ½ ln(2πσ²) (DESIGN.md §5)."""
    return num_dims * 0.5 * math.log(2.0 * math.pi * sigma ** 2)


def slice_context(batch, num_context):
    """The batch with only its first `num_context` context views (same query and target)."""
    return {**batch,
            "context_frames": batch["context_frames"][:, :num_context],
            "context_cameras": batch["context_cameras"][:, :num_context]}


class Evaluator:
    """The model's per-image metrics on a batch, compiled once for every batch size and M.

    For a batch (DESIGN.md §4 format) it runs the posterior pass (ELBO terms, reconstruction)
    and the prior pass (generation) with the same seed, so that the latent noise is shared by
    both and by every M: along a curve only the context changes.
    """

    def __init__(self, model, sigma):
        self.model = model
        self.sigma = tf.constant(sigma, tf.float32)
        size = model.gqn_config.image_size
        image = tf.TensorSpec([None, size, size, 3], tf.float32)
        self._step = tf.function(self._evaluate, input_signature=[
            tf.TensorSpec([None, None, size, size, 3], tf.float32),  # context_frames
            tf.TensorSpec([None, None, 7], tf.float32),  # context_cameras
            tf.TensorSpec([None, 7], tf.float32),  # query_camera
            image,  # target
            tf.TensorSpec([2], tf.int32),  # seed
        ])

    def _evaluate(self, context_frames, context_cameras, query_camera, target, seed):
        batch = {"context_frames": context_frames, "context_cameras": context_cameras,
                 "query_camera": query_camera, "target": target}
        terms = self.model.elbo_terms(batch, self.sigma, seed)
        generated = self.model.generate(context_frames, context_cameras, query_camera, seed)
        return {"neg_elbo": terms["loss"], "kl": terms["kl"], "nll": terms["nll"],
                "kl_per_layer": terms["kl_per_layer"], "reconstruction": terms["mean"],
                "generation": generated}

    def __call__(self, batch, seed):
        """Per-image values of `batch` as numpy: NATS_METRICS and IMAGE_METRICS [B],
        `kl_per_layer` [B, L], and the images `reconstruction` and `generation` [B, H, W, 3]."""
        out = self._step(tf.cast(batch["context_frames"], tf.float32),
                         tf.cast(batch["context_cameras"], tf.float32),
                         tf.cast(batch["query_camera"], tf.float32),
                         tf.cast(batch["target"], tf.float32),
                         tf.cast(seed, tf.int32))
        values = {name: value.numpy() for name, value in out.items()}
        for kind in ("generation", "reconstruction"):
            mse = mse_per_image(batch["target"], values[kind])
            values[f"{kind}_mse"], values[f"{kind}_psnr"] = mse, psnr(mse)
        return values


class ContextCurve:
    """Accumulates per-image metrics for each number of context views M over many batches."""

    def __init__(self, num_dims):
        self.num_dims = num_dims
        self._values = {}  # M → name → list of [B] arrays (or [B, L] for kl_per_layer)

    def add(self, num_context, values):
        """Adds the per-image `values` of one batch evaluated with `num_context` views."""
        row = self._values.setdefault(int(num_context), {})
        for name in (*NATS_METRICS, *IMAGE_METRICS, "kl_per_layer"):
            row.setdefault(name, []).append(np.asarray(values[name], np.float64))

    @property
    def context_sizes(self):
        return sorted(self._values)

    def _summarize(self, values, num_scenes):
        """Means (and standard errors of the means) of a dict name → [N] (or [N, L])."""
        row = {"num_scenes": int(num_scenes)}
        errors = {}
        for name in NATS_METRICS:
            mean = float(np.mean(values[name]))
            row[f"{name}_nats"] = mean
            row[f"{name}_bits_per_dim"] = float(distributions.bits_per_dim(mean, self.num_dims))
            errors[f"{name}_nats"] = _standard_error(values[name])
        for name in IMAGE_METRICS:
            row[name] = float(np.mean(values[name]))
            errors[name] = _standard_error(values[name])
        row["kl_per_layer_nats"] = [float(x) for x in np.mean(values["kl_per_layer"], axis=0)]
        row["standard_error"] = errors
        return row

    def rows(self):
        """One dict per M, in increasing M: `num_context`, `num_scenes`, `<name>_nats` and
        `<name>_bits_per_dim` for −ELBO, KL and NLL, the four image metrics, `kl_per_layer_nats`
        [L] and `standard_error` (of each scalar's mean over scenes)."""
        rows = []
        for m in self.context_sizes:
            values = {name: np.concatenate(parts) for name, parts in self._values[m].items()}
            rows.append({"num_context": m,
                         **self._summarize(values, len(values["neg_elbo"]))})
        return rows

    def overall(self):
        """The metrics over every (scene, M) pair: the expectation with M uniform over the
        evaluated context sizes, as Algorithm S1 draws it in training."""
        values = {name: np.concatenate([part for m in self.context_sizes
                                        for part in self._values[m][name]])
                  for name in (*NATS_METRICS, *IMAGE_METRICS, "kl_per_layer")}
        num_scenes = len(values["neg_elbo"]) // max(1, len(self.context_sizes))
        return self._summarize(values, num_scenes)


def _standard_error(values):
    values = np.asarray(values, np.float64)
    if len(values) < 2:
        return 0.0
    return float(np.std(values, ddof=1) / math.sqrt(len(values)))
