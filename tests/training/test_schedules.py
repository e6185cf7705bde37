import keras
import numpy as np
import tensorflow as tf

from gqn_tf.training import schedules


def test_table_s1_values_at_known_steps():
    lr = schedules.AnnealedLearningRate()
    assert np.isclose(float(lr(0)), 5e-4)
    assert np.isclose(float(lr(800_000)), 5e-5 + 4.5e-4 * 0.5)
    assert np.isclose(float(lr(1_600_000)), 5e-5) and np.isclose(float(lr(5_000_000)), 5e-5)
    assert np.isclose(float(schedules.pixel_std(0)), 2.0)
    assert np.isclose(float(schedules.pixel_std(100_000)), 1.35)
    assert np.isclose(float(schedules.pixel_std(300_000)), 0.7)


def test_schedules_move_inside_a_traced_function():
    """The frozen-annealing trap: σ and μ must change between calls of one traced function."""
    step = tf.Variable(0, dtype=tf.int64)
    lr = schedules.AnnealedLearningRate()

    @tf.function
    def read():
        return schedules.pixel_std(step), lr(step)

    sigma0, lr0 = read()
    step.assign(50_000)
    sigma1, lr1 = read()
    assert float(sigma1) < float(sigma0) and float(lr1) < float(lr0)


def test_optimizer_uses_table_s1_constants_and_round_trips():
    optimizer = schedules.make_optimizer()
    assert (optimizer.beta_1, optimizer.beta_2, optimizer.epsilon) == (0.9, 0.999, 1e-8)
    clone = keras.optimizers.Adam.from_config(optimizer.get_config())
    clone.iterations.assign(800_000)
    assert np.isclose(float(clone.learning_rate), 5e-5 + 4.5e-4 * 0.5)
