"""Evaluation metrics: the ELBO terms and image errors of a GQN, per number of context views M.

Per image, as in docs/design.md §3: −ELBO, KL and NLL in nats and in bits per dimension, and, because
the NLL has a floor set by σ (docs/design.md §5), the mean squared error and PSNR of two mean images
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
# Whether the latents matter: the pixel std over prior samples (0 when z is ignored), the MSE
# between the prior's and the posterior's mean images, and the nearest-context-view baseline.
LATENT_METRICS = ("sample_std", "prior_posterior_mse")
BASELINE_METRICS = ("nearest_view_mse",)
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
    target exactly, D · ½ ln(2πσ²) (docs/design.md §5)."""
    return num_dims * 0.5 * math.log(2.0 * math.pi * sigma ** 2)


def nearest_view(context_cameras, query_camera, context_frames):
    """The context frame whose viewpoint is nearest to the query's, per scene: [B, H, W, 3].

    Nearest in the 7-dim viewpoint (position, and sine and cosine of yaw and pitch, so that
    both where the camera is and where it looks count). Needs at least one context view.
    """
    cameras = np.asarray(context_cameras, np.float64)  # [B, M, 7]
    query = np.asarray(query_camera, np.float64)[:, None]  # [B, 1, 7]
    if cameras.shape[1] == 0:
        raise ValueError("nearest_view needs at least one context view.")
    nearest = np.argmin(np.sum((cameras - query) ** 2, axis=-1), axis=1)  # [B]
    return np.asarray(context_frames)[np.arange(len(nearest)), nearest]


def sample_spread(samples):
    """The mean over pixels of the per-pixel std over K samples [B, K, H, W, 3] → [B]; 0 for
    K < 2 or when every sample is the same (the generator ignores z)."""
    samples = np.asarray(samples, np.float64)
    if samples.shape[1] < 2:
        return np.zeros(samples.shape[0])
    return np.mean(np.std(samples, axis=1), axis=tuple(range(1, samples.ndim - 1)))


def mean_image_mse(targets, mean_image):
    """MSE of each target [B, H, W, 3] against one fixed image [H, W, 3] (the baseline that
    always predicts the mean training image) → [B]."""
    targets = np.asarray(targets, np.float64)
    return mse_per_image(targets, np.broadcast_to(np.asarray(mean_image, np.float64),
                                                  targets.shape))


def slice_context(batch, num_context):
    """The batch with only its first `num_context` context views (same query and target)."""
    return {**batch,
            "context_frames": batch["context_frames"][:, :num_context],
            "context_cameras": batch["context_cameras"][:, :num_context]}


class Evaluator:
    """The model's per-image metrics on a batch, compiled once for every batch size and M.

    For a batch (docs/design.md §4 format) it runs the posterior pass (ELBO terms, reconstruction)
    and the prior pass (generation) with the same seed, so that the latent noise is shared by
    both and by every M: along a curve only the context changes.
    """

    def __init__(self, model, sigma, samples=0, mean_image=None):
        self.model = model
        self.sigma = tf.constant(sigma, tf.float32)
        self.samples = int(samples)  # extra prior samples for `sample_std`
        self.mean_image = mean_image
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
        outputs = {"neg_elbo": terms["loss"], "kl": terms["kl"], "nll": terms["nll"],
                   "kl_per_layer": terms["kl_per_layer"], "reconstruction": terms["mean"],
                   "generation": generated}
        if self.samples > 1:
            seeds = tf.random.experimental.stateless_split(seed, num=self.samples)
            outputs["samples"] = tf.stack(  # [B, K, H, W, 3]
                [self.model.generate(context_frames, context_cameras, query_camera,
                                     tf.cast(seeds[k], tf.int32))
                 for k in range(self.samples)], axis=1)
        return outputs

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
        values["prior_posterior_mse"] = mse_per_image(values["generation"],
                                                      values["reconstruction"])
        values["sample_std"] = sample_spread(values.pop("samples")) if "samples" in values \
            else np.zeros(len(values["generation"]))
        if np.shape(batch["context_cameras"])[1] > 0:
            values["nearest_view_mse"] = mse_per_image(batch["target"], nearest_view(
                batch["context_cameras"], batch["query_camera"], batch["context_frames"]))
        else:  # no view to copy: the baseline is undefined
            values["nearest_view_mse"] = np.full(len(values["generation"]), np.nan)
        if self.mean_image is not None:
            values["mean_image_mse"] = mean_image_mse(batch["target"], self.mean_image)
        return values


# Image-space metrics averaged per row; mean_image_mse only when a mean image was given.
_PER_IMAGE = (*IMAGE_METRICS, *LATENT_METRICS, *BASELINE_METRICS, "mean_image_mse")


def mean_frame(batches):
    """The per-pixel mean [H, W, 3] of every frame (context and target) in `batches`."""
    total, count = None, 0
    for batch in batches:
        frames = np.concatenate([
            np.reshape(np.asarray(batch["context_frames"], np.float64),
                       (-1, *np.shape(batch["target"])[1:])),
            np.asarray(batch["target"], np.float64)])
        total = frames.sum(axis=0) if total is None else total + frames.sum(axis=0)
        count += len(frames)
    if not count:
        raise ValueError("mean_frame needs at least one frame.")
    return (total / count).astype(np.float32)


class ContextCurve:
    """Accumulates per-image metrics for each number of context views M over many batches."""

    def __init__(self, num_dims):
        self.num_dims = num_dims
        self._values = {}  # M → name → list of [B] arrays (or [B, L] for kl_per_layer)

    def add(self, num_context, values):
        """Adds the per-image `values` of one batch evaluated with `num_context` views."""
        row = self._values.setdefault(int(num_context), {})
        for name in (*NATS_METRICS, *_PER_IMAGE, "kl_per_layer"):
            if name in values:
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
        for name in _PER_IMAGE:
            if name not in values:
                continue
            finite = values[name][np.isfinite(values[name])]  # M = 0 has no nearest view
            row[name] = float(np.mean(finite)) if len(finite) else None
            errors[name] = _standard_error(finite)
        row["kl_per_layer_nats"] = [float(x) for x in np.mean(values["kl_per_layer"], axis=0)]
        row["standard_error"] = errors
        return row

    def rows(self):
        """One dict per M, in increasing M: `num_context`, `num_scenes`, `<name>_nats` and
        `<name>_bits_per_dim` for −ELBO, KL and NLL, the image metrics (`generation_mse`,
        `generation_psnr`, `reconstruction_mse`, `reconstruction_psnr`), the latent diagnostics
        (`sample_std`, `prior_posterior_mse`), the baselines (`nearest_view_mse`, None at M = 0;
        `mean_image_mse` when a mean image was given), `kl_per_layer_nats` [L] and
        `standard_error` (of each scalar's mean over scenes)."""
        rows = []
        for m in self.context_sizes:
            values = {name: np.concatenate(parts) for name, parts in self._values[m].items()}
            rows.append({"num_context": m,
                         **self._summarize(values, len(values["neg_elbo"]))})
        return rows

    def overall(self):
        """The metrics over every (scene, M) pair: the expectation with M uniform over the
        evaluated context sizes, as Algorithm S1 draws it in training."""
        names = set.intersection(*(set(self._values[m]) for m in self.context_sizes))
        values = {name: np.concatenate([part for m in self.context_sizes
                                        for part in self._values[m][name]])
                  for name in names}
        num_scenes = len(values["neg_elbo"]) // max(1, len(self.context_sizes))
        return self._summarize(values, num_scenes)


def _standard_error(values):
    values = np.asarray(values, np.float64)
    if len(values) < 2:
        return 0.0
    return float(np.std(values, ddof=1) / math.sqrt(len(values)))
