"""Figures of an evaluation: scene grids and the per-M curves (Fig. 4B's Bayesian surprise).

Grids reuse the tiling of the training summaries (`summaries.tile`), so TensorBoard and the PNGs
look alike. Plots are drawn on `matplotlib.figure.Figure` objects, which need no display and
leave pyplot's backend alone (a notebook that imports this module keeps its inline plots).
"""

import matplotlib
import matplotlib.ticker
import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from gqn_tf.training import summaries  # noqa: E402


def scene_grid_labels(num_context, num_samples):
    """Column labels of `scene_grid`: the views, the target, the samples, the reconstruction."""
    return ([f"view {m + 1}" for m in range(num_context)] + ["", "target", ""]
            + [f"prior {k + 1}" for k in range(num_samples)] + ["", "posterior"])


def _scene_rows(context_frames, target, samples, reconstruction):
    context_frames, target, samples, reconstruction = (
        np.asarray(x, np.float32) for x in (context_frames, target, samples, reconstruction))
    blank = np.ones_like(target[0])
    return [[*context_frames[i], blank, target[i], blank, *samples[i], blank, reconstruction[i]]
            for i in range(len(target))]


def labelled_scene_grid(context_frames, target, samples, reconstruction, scale=1):
    """`scene_grid` with its columns labelled and a label per scene: uint8 [H', W', 3]."""
    rows = _scene_rows(context_frames, target, samples, reconstruction)
    return labelled_grid(rows, row_labels=[f"scene {i + 1}" for i in range(len(rows))],
                         column_labels=scene_grid_labels(np.shape(context_frames)[1],
                                                         np.shape(samples)[1]), scale=scale)


def scene_grid(context_frames, target, samples, reconstruction):
    """A grid with a row per scene: context views | target | prior samples | reconstruction.

    context_frames [N, M, H, W, 3] (M may be 0), target [N, H, W, 3], samples [N, K, H, W, 3],
    reconstruction [N, H, W, 3], all in [0, 1]. Groups are separated by a white tile.
    Returns [H', W', 3] float32 in [0, 1].
    """
    return summaries.tile(_scene_rows(context_frames, target, samples, reconstruction))[0]


# Pixel std shown at full brightness in heat maps (an image in [0, 1] has std at most 0.5).
HEAT_MAP_MAX = 0.25
LABEL_HEIGHT, LABEL_WIDTH, _FONT_SIZE = 16, 64, 11  # label margins (pixels)


def heat_map(values, vmax=HEAT_MAP_MAX):
    """[H, W] values in [0, vmax] → [H, W, 3] colours in [0, 1] (matplotlib's inferno)."""
    scaled = np.clip(np.asarray(values, np.float64) / vmax, 0.0, 1.0)
    return matplotlib.colormaps["inferno"](scaled)[..., :3].astype(np.float32)


def _font():
    from PIL import ImageFont

    return ImageFont.load_default(size=_FONT_SIZE)


def labelled_grid(rows, row_labels=None, column_labels=None, scale=1):
    """Tiles rows of [H, W, 3] images (in [0, 1]) like `summaries.tile`, each tile enlarged
    `scale` times, with a label left of every row and above every column. → uint8 [H', W', 3].
    """
    from PIL import ImageDraw

    rows = [[np.repeat(np.repeat(np.asarray(image, np.float32), scale, 0), scale, 1)
             for image in row] for row in rows]
    grid = np.round(summaries.tile(rows)[0] * 255).astype(np.uint8)
    top = LABEL_HEIGHT if column_labels else 0
    left = LABEL_WIDTH if row_labels else 0
    canvas = Image.new("RGB", (grid.shape[1] + left, grid.shape[0] + top), "white")
    canvas.paste(Image.fromarray(grid), (left, top))
    draw, font = ImageDraw.Draw(canvas), _font()
    tile_h = rows[0][0].shape[0] if rows and rows[0] else 0
    tile_w = next((row[0].shape[1] for row in rows if row), 0)
    for c, label in enumerate(column_labels or []):
        text = fit_label(str(label), tile_w, font)
        x = left + c * (tile_w + 2) + max(0, (tile_w - font.getlength(text)) // 2)
        draw.text((x, 2), text, fill="black", font=font)
    for r, label in enumerate(row_labels or []):
        draw.text((2, top + r * (tile_h + 2) + tile_h // 2 - _FONT_SIZE // 2), str(label),
                  fill="black", font=font)
    return np.asarray(canvas)


# Shorter forms of column labels for tiles too narrow for the long ones.
_SHORT_LABELS = {"view": "v", "prior": "p", "target": "tgt", "posterior": "post", "query": "q",
                 "mean": "avg", "sample": "s"}


def fit_label(label, width, font):
    """`label` if it fits `width` pixels in `font`, else its short form ("view 3" → "v3",
    "posterior" → "post"), cut to fit if even that is too wide; labels never overlap."""
    if font.getlength(label) <= width:
        return label
    words = label.split()
    short = "".join([_SHORT_LABELS.get(words[0], words[0]), *words[1:]])
    while short and font.getlength(short) > width:
        short = short[:-1]
    return short


def stack_vertically(images, gap=4):
    """Stacks uint8 [H, W, 3] images top to bottom on white, left-aligned."""
    width = max(image.shape[1] for image in images)
    height = sum(image.shape[0] for image in images) + gap * (len(images) - 1)
    out = np.full((height, width, 3), 255, np.uint8)
    y = 0
    for image in images:
        out[y:y + image.shape[0], :image.shape[1]] = image
        y += image.shape[0] + gap
    return out


def save_png(path, image):
    """Writes an [H, W, 3] float image in [0, 1] as an 8-bit PNG to a file name or a binary
    file object."""
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

    figure = Figure(figsize=(10, 7.5), constrained_layout=True)
    axes = figure.subplots(2, 2)
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
        for kind, label in (("generation", "one prior sample"),
                            ("sample_mean", "mean of prior samples"),
                            ("prior_mean", "prior-mean render"),
                            ("reconstruction", "reconstruction (posterior)")):
            if rows and f"{kind}_{metric}" in rows[0]:
                values, errors = series(f"{kind}_{metric}")
                axis.errorbar(m, values, yerr=errors, marker="o", capsize=3, label=label)
        baseline = rows[0].get(f"mean_image_{metric}") if rows else None
        if baseline is not None:
            axis.axhline(baseline, color="grey", linestyle="--", label="mean training image")
        axis.set(title=f"{unit} of the renders vs the target", ylabel=unit)
        axis.legend(fontsize="small")

    for axis in axes.flat:
        axis.set_xlabel("context views M")
        axis.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
    if title:
        figure.suptitle(title)
    figure.savefig(path, dpi=100)
    return path
