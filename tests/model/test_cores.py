import numpy as np

from gqn_tf.model.cores import GeneratorCore, InferenceCore


def test_generator_core_updates_the_canvas_at_four_times_the_resolution():
    core = GeneratorCore(hidden_channels=4, canvas_channels=5, kernel_size=3)
    core.build((None, 4, 4, 6))
    state = (np.zeros((2, 4, 4, 4), np.float32),) * 2
    canvas = np.ones((2, 16, 16, 5), np.float32)
    (c, h), new_canvas = core(np.ones((2, 4, 4, 6), np.float32), state, canvas)
    assert c.shape == h.shape == (2, 4, 4, 4) and new_canvas.shape == (2, 16, 16, 5)
    # u_{l+1} − u_l is exactly the transposed convolution of the new h^g.
    np.testing.assert_allclose(new_canvas - canvas, core.canvas_update(h), atol=1e-6)


def test_inference_core_reads_the_downsampled_canvas():
    core = InferenceCore(hidden_channels=4, canvas_channels=5, kernel_size=3)
    core.build((None, 4, 4, 6))
    state = (np.zeros((2, 4, 4, 4), np.float32),) * 2
    inputs, h_g = np.ones((2, 4, 4, 6), np.float32), np.zeros((2, 4, 4, 4), np.float32)
    canvas = np.random.default_rng(0).normal(size=(2, 16, 16, 5)).astype(np.float32)
    c1, h1 = core(inputs, h_g, canvas, state)
    c2, h2 = core(inputs, h_g, 2 * canvas, state)
    assert h1.shape == (2, 4, 4, 4)
    assert not np.allclose(h1, h2)


def test_config_round_trip():
    for cls in (GeneratorCore, InferenceCore):
        core = cls(hidden_channels=7, canvas_channels=9, kernel_size=3)
        clone = cls.from_config(core.get_config())
        assert (clone.hidden_channels, clone.canvas_channels, clone.kernel_size) == (7, 9, 3)
