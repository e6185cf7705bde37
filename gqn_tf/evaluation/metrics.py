"""Evaluation metrics: the ELBO terms and image errors of a GQN, per number of context views M.

Per image, as in docs/design.md §3: −ELBO, KL and NLL in nats and in bits per dimension, and, because
the NLL has a floor set by σ (docs/design.md §5), the mean squared error and PSNR of two mean images
against the target: the prior sample of `generate` (Algorithm S3, what the model predicts from
the context alone) and the reconstruction of the posterior pass (Algorithm S2). The KL between
posterior and prior as M grows is the "Bayesian surprise" of the paper's Fig. 4B.

Beside one prior sample, two renders that say what the prior path has learned: the mean of K
prior samples (sample noise averaged out, at the price of blur) and the prior-mean render (every
z_l at its prior mean, i.e. zero latent noise). Every image error is also given as a ratio to the
mean-training-image baseline (`<name>_ratio` in a row), the figure to compare across runs.

`Evaluator` runs on TensorFlow (evaluate.py, train.py), `JaxEvaluator` on Keras' JAX backend
(train_jax.py, without TensorFlow); both give the same per-image values, post-processed by
`image_values`. `ContextCurve` accumulates per-image values over scenes for each M; means are
over images, so a row is the same whatever the batch size, and PSNR is the mean of the
per-image PSNRs.
"""

import math

import numpy as np

from gqn_tf.model import distributions

# The per-image scalars of a row, in the order of the JSON and the progress line.
NATS_METRICS = ("neg_elbo", "kl", "nll")
# Renders compared with the target: one prior sample (Alg. S3), the mean of K prior samples,
# the prior-mean render, the posterior's reconstruction (Alg. S2).
RENDERS = ("generation", "sample_mean", "prior_mean", "reconstruction")
IMAGE_METRICS = tuple(f"{kind}_{what}" for kind in RENDERS for what in ("mse", "psnr"))
# Whether the latents matter: the pixel std over prior samples (0 when z is ignored), the MSE
# between the prior's and the posterior's mean images, and the nearest-context-view baseline.
LATENT_METRICS = ("sample_std", "prior_posterior_mse")
BASELINE_METRICS = ("nearest_view_mse", "nearest_view_psnr")
# The MSEs whose ratio to the mean-image baseline a row reports as `<name>_ratio`.
RATIO_METRICS = (*(f"{kind}_mse" for kind in RENDERS), "nearest_view_mse")
# Prior samples averaged into `sample_mean` by default.
MEAN_OF_SAMPLES = 4
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


def batch_seed(seed, batch_number):
    """The latent-noise seed of batch `batch_number` of an evaluation seeded by `seed`."""
    return np.array([seed, batch_number], np.int32)


def slice_context(batch, num_context):
    """The batch with only its first `num_context` context views (same query and target)."""
    return {**batch,
            "context_frames": batch["context_frames"][:, :num_context],
            "context_cameras": batch["context_cameras"][:, :num_context]}


class Evaluator:
    """The model's per-image metrics on a batch, compiled once for every batch size and M.

    For a batch (docs/design.md §4 format) it runs the posterior pass (ELBO terms, reconstruction)
    and the prior pass (generation) with the same seed, so that the latent noise is shared by
    both and by every M: along a curve only the context changes. Then max(samples, mean_of)
    more prior samples, each with its own seed split from the batch's: the first `samples` give
    `sample_std`, the first `mean_of` the `sample_mean` render; and the prior-mean render.
    `sigma` is a variable: `set_sigma` changes it without a new trace.
    """

    def __init__(self, model, sigma, samples=0, mean_image=None, mean_of=MEAN_OF_SAMPLES):
        import tensorflow as tf

        self.model = model
        self.sigma = tf.Variable(sigma, dtype=tf.float32, trainable=False)
        self.samples = int(samples)  # prior samples for `sample_std`
        self.mean_of = max(1, int(mean_of))  # prior samples averaged into `sample_mean`
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
        import tensorflow as tf

        batch = {"context_frames": context_frames, "context_cameras": context_cameras,
                 "query_camera": query_camera, "target": target}
        terms = self.model.elbo_terms(batch, self.sigma, seed)
        generated = self.model.generate(context_frames, context_cameras, query_camera, seed)
        c = self.model.gqn_config
        zero_noise = tf.zeros([c.num_layers, tf.shape(target)[0], c.core_size, c.core_size,
                               c.z_channels])
        outputs = {"neg_elbo": terms["loss"], "kl": terms["kl"], "nll": terms["nll"],
                   "kl_per_layer": terms["kl_per_layer"], "reconstruction": terms["mean"],
                   "generation": generated,
                   "prior_mean": self.model.generate(context_frames, context_cameras,
                                                     query_camera, noise=zero_noise)}
        count = max(self.samples, self.mean_of)
        seeds = tf.random.experimental.stateless_split(seed, num=count)
        samples = tf.stack(  # [B, K, H, W, 3]
            [self.model.generate(context_frames, context_cameras, query_camera,
                                 tf.cast(seeds[k], tf.int32)) for k in range(count)], axis=1)
        outputs["sample_mean"] = tf.reduce_mean(samples[:, :self.mean_of], axis=1)
        if self.samples > 1:
            outputs["samples"] = samples[:, :self.samples]
        return outputs

    def set_sigma(self, sigma):
        """Evaluates the likelihood at pixel std `sigma` from now on (e.g. a run's current σ)."""
        self.sigma.assign(sigma)

    def __call__(self, batch, seed):
        """Per-image values of `batch` as numpy: NATS_METRICS, IMAGE_METRICS, LATENT_METRICS
        and BASELINE_METRICS [B] (`mean_image_mse` too with a mean image), `kl_per_layer`
        [B, L], and the images of RENDERS [B, H, W, 3]."""
        import tensorflow as tf

        out = self._step(tf.cast(batch["context_frames"], tf.float32),
                         tf.cast(batch["context_cameras"], tf.float32),
                         tf.cast(batch["query_camera"], tf.float32),
                         tf.cast(batch["target"], tf.float32),
                         tf.cast(seed, tf.int32))
        return image_values(batch, {name: value.numpy() for name, value in out.items()},
                            self.mean_image)


class JaxEvaluator:
    """`Evaluator` on Keras' JAX backend, for a model whose current weights live outside its
    variables: `weights()` returns (trainable, non-trainable) arrays, as `JaxTrainStep.state`
    holds them. One `jax.jit` program per batch shape. Sample k of a batch seeded by (s, b)
    is seeded by (s + k + 1, b); JAX's noise differs from TensorFlow's, so the figures are
    those of another draw of the latents than evaluate.py's.
    """

    def __init__(self, model, sigma, weights, samples=0, mean_image=None,
                 mean_of=MEAN_OF_SAMPLES):
        import jax

        self.model, self.sigma, self.weights = model, float(sigma), weights
        self.samples, self.mean_of = int(samples), max(1, int(mean_of))
        self.mean_image = mean_image
        self._step = jax.jit(self._evaluate)

    def set_sigma(self, sigma):
        self.sigma = float(sigma)

    def _evaluate(self, trainable, non_trainable, batch, sigma, seed):
        import jax.numpy as jnp
        import keras

        model, c = self.model, self.model.gqn_config
        mapping = [*zip(model.trainable_variables, trainable),
                   *zip(model.non_trainable_variables, non_trainable)]
        inputs = (batch["context_frames"], batch["context_cameras"], batch["query_camera"])
        with keras.StatelessScope(state_mapping=mapping):
            terms = model.elbo_terms(batch, sigma, seed)
            zero_noise = jnp.zeros((c.num_layers, batch["target"].shape[0], c.core_size,
                                    c.core_size, c.z_channels))
            outputs = {"neg_elbo": terms["loss"], "kl": terms["kl"], "nll": terms["nll"],
                       "kl_per_layer": terms["kl_per_layer"], "reconstruction": terms["mean"],
                       "generation": model.generate(*inputs, seed),
                       "prior_mean": model.generate(*inputs, noise=zero_noise)}
            samples = jnp.stack(
                [model.generate(*inputs, seed + jnp.array([k + 1, 0], jnp.int32))
                 for k in range(max(self.samples, self.mean_of))], axis=1)
        outputs["sample_mean"] = jnp.mean(samples[:, :self.mean_of], axis=1)
        if self.samples > 1:
            outputs["samples"] = samples[:, :self.samples]
        return outputs

    def __call__(self, batch, seed):
        """As `Evaluator.__call__`."""
        trainable, non_trainable = self.weights()
        arrays = {name: np.asarray(value, np.float32) for name, value in batch.items()}
        out = self._step(trainable, non_trainable, arrays, np.float32(self.sigma),
                         np.asarray(seed, np.int32))
        return image_values(batch, {name: np.asarray(value) for name, value in out.items()},
                            self.mean_image)


def image_values(batch, values, mean_image=None):
    """Adds to a batch's model outputs `values` (numpy: the ELBO terms and RENDERS, optionally
    `samples` [B, K, H, W, 3]) the image metrics: each render's MSE and PSNR against the target,
    `prior_posterior_mse`, `sample_std`, the nearest-view baseline and, with a mean image, the
    mean-image baseline. Returns `values`."""
    for kind in RENDERS:
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
    values["nearest_view_psnr"] = psnr(values["nearest_view_mse"])
    if mean_image is not None:
        values["mean_image_mse"] = mean_image_mse(batch["target"], mean_image)
        values["mean_image_psnr"] = psnr(values["mean_image_mse"])
    return values


# Image-space metrics averaged per row; mean_image_* only when a mean image was given.
_PER_IMAGE = (*IMAGE_METRICS, *LATENT_METRICS, *BASELINE_METRICS, "mean_image_mse",
              "mean_image_psnr")


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
        baseline = row.get("mean_image_mse")
        if baseline:
            for name in RATIO_METRICS:  # None where the MSE is (M = 0 has no nearest view)
                row[f"{name}_ratio"] = (row[name] / baseline if row.get(name) is not None
                                        else None)
        row["kl_per_layer_nats"] = [float(x) for x in np.mean(values["kl_per_layer"], axis=0)]
        row["standard_error"] = errors
        return row

    def rows(self):
        """One dict per M, in increasing M: `num_context`, `num_scenes`, `<name>_nats` and
        `<name>_bits_per_dim` for −ELBO, KL and NLL, the image metrics (`<render>_mse` and
        `<render>_psnr` of each of RENDERS), the latent diagnostics (`sample_std`,
        `prior_posterior_mse`), the baselines (`nearest_view_mse` and `_psnr`, None at M = 0;
        `mean_image_mse` and `_psnr` when a mean image was given), with a mean image the
        `<name>_ratio` of each of RATIO_METRICS to `mean_image_mse`, `kl_per_layer_nats` [L]
        and `standard_error` (of each scalar's mean over scenes)."""
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
