"""Figures of an evaluation: scene grids and the per-M curves (Fig. 4B's Bayesian surprise).

Grids reuse the tiling of the training summaries (`summaries.tile`), so TensorBoard and the PNGs
look alike. Plots use matplotlib's Agg backend: no display is needed.
"""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from gqn_tf.training import summaries  # noqa: E402


def scene_grid(context_frames, target, samples, reconstruction):
    """A grid with a row per scene: context views | target | prior samples | reconstruction.

    context_frames [N, M, H, W, 3] (M may be 0), target [N, H, W, 3], samples [N, K, H, W, 3],
    reconstruction [N, H, W, 3], all in [0, 1]. Groups are separated by a white tile.
    Returns [H', W', 3] float32 in [0, 1].
    """
    context_frames, target, samples, reconstruction = (
        np.asarray(x, np.float32) for x in (context_frames, target, samples, reconstruction))
    blank = np.ones_like(target[0])
    rows = [[*context_frames[i], blank, target[i], blank, *samples[i], blank, reconstruction[i]]
            for i in range(len(target))]
    return summaries.tile(rows)[0]


def save_png(path, image):
    """Writes an [H, W, 3] float image in [0, 1] as an 8-bit PNG."""
    pixels = np.round(np.clip(np.asarray(image, np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)
    Image.fromarray(pixels).save(path, format="PNG")
    return path


def plot_curves(rows, path, title=None, nll_floor_bits_per_dim=None):
    """Plots the per-M rows of `metrics.ContextCurve.rows()` into a PNG with four panels:
    the KL (Bayesian surprise, Fig. 4B), −ELBO / NLL in bits per dim, MSE and PSNR of the
    generated and reconstructed mean images. Error bars are standard errors over scenes."""
    m = [row["num_context"] for row in rows]

    def series(name):
        return (np.array([row[name] for row in rows]),
                np.array([row["standard_error"].get(name, 0.0) for row in rows]))

    figure, axes = plt.subplots(2, 2, figsize=(10, 7.5), constrained_layout=True)
    kl, kl_error = series("kl_nats")
    axes[0, 0].errorbar(m, kl, yerr=kl_error, marker="o", capsize=3)
    axes[0, 0].set(title="KL[posterior ‖ prior] (Bayesian surprise)", ylabel="nats per image")

    for name, label in (("neg_elbo", "−ELBO"), ("nll", "NLL")):
        axes[0, 1].plot(m, [row[f"{name}_bits_per_dim"] for row in rows], marker="o",
                        label=label)
    if nll_floor_bits_per_dim is not None:
        axes[0, 1].axhline(nll_floor_bits_per_dim, color="grey", linestyle="--",
                           label="NLL floor (σ)")
    axes[0, 1].set(title="−ELBO and NLL", ylabel="bits per dim")
    axes[0, 1].legend()

    for column, (metric, unit) in enumerate((("mse", "MSE"), ("psnr", "PSNR (dB)"))):
        axis = axes[1, column]
        for kind, label in (("generation", "generated (prior)"),
                            ("reconstruction", "reconstruction (posterior)")):
            values, errors = series(f"{kind}_{metric}")
            axis.errorbar(m, values, yerr=errors, marker="o", capsize=3, label=label)
        axis.set(title=f"{unit} of the mean image vs the target", ylabel=unit)
        axis.legend()

    for axis in axes.flat:
        axis.set_xlabel("context views M")
        axis.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
    if title:
        figure.suptitle(title)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
