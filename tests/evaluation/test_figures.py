import numpy as np
from PIL import Image

from gqn_tf.evaluation import figures


def _images(*shape, value=0.5):
    return np.full(shape, value, np.float32)


def test_scene_grid_lays_out_context_target_samples_reconstruction():
    n, m, k, size = 2, 3, 4, 8
    grid = figures.scene_grid(_images(n, m, size, size, 3, value=0.1), _images(n, size, size, 3),
                              _images(n, k, size, size, 3, value=0.9), _images(n, size, size, 3))
    columns = m + 1 + 1 + 1 + k + 1 + 1  # blank tiles separate the groups
    gap = 2
    assert grid.shape == (n * (size + gap) - gap, columns * (size + gap) - gap, 3)
    assert grid[0, 0, 0] == np.float32(0.1)  # first context view
    assert grid[0, (m + 3) * (size + gap), 0] == np.float32(0.9)  # after blank, target, blank


def test_scene_grid_without_context_views():
    grid = figures.scene_grid(_images(1, 0, 8, 8, 3), _images(1, 8, 8, 3),
                              _images(1, 2, 8, 8, 3), _images(1, 8, 8, 3))
    assert grid.shape[0] == 8 and np.all(np.isfinite(grid))


def test_save_png_round_trips(tmp_path):
    image = np.random.default_rng(0).uniform(size=(10, 12, 3)).astype(np.float32)
    path = figures.save_png(tmp_path / "grid.png", image)
    decoded = np.asarray(Image.open(path))
    assert decoded.shape == (10, 12, 3) and decoded.dtype == np.uint8
    np.testing.assert_allclose(decoded / 255.0, image, atol=1 / 255)


def _row(m):
    return {"num_context": m, "kl_nats": 10.0 / (m + 1), "neg_elbo_bits_per_dim": 1.0,
            "nll_bits_per_dim": 0.9, "generation_mse": 0.1, "generation_psnr": 10.0,
            "reconstruction_mse": 0.05, "reconstruction_psnr": 13.0,
            "standard_error": {"kl_nats": 1.0, "generation_mse": 0.01}}


def test_plot_curves_writes_a_png(tmp_path):
    path = figures.plot_curves([_row(m) for m in range(4)], tmp_path / "curves.png",
                               title="test", nll_floor_bits_per_dim=0.81)
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] > 400


def test_column_labels_fit_their_tiles_and_never_overlap():
    from PIL import ImageFont

    font = ImageFont.load_default(size=11)
    assert figures.fit_label("view 3", 64, font) == "view 3"
    assert figures.fit_label("view 3", 24, font) == "v3"
    assert figures.fit_label("posterior", 32, font) == "post"
    assert figures.fit_label("query 7/12", 32, font) == "q7/12"
    for label in ("view 12", "prior 4", "target", "posterior", "something long"):
        for width in (16, 24, 32):
            assert font.getlength(figures.fit_label(label, width, font)) <= width
