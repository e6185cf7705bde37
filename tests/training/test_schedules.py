import keras
import numpy as np
import pytest
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


def test_a_piecewise_sigma_schedule_goes_through_its_points_inside_a_traced_function():
    config = schedules.ScheduleConfig(sigma_schedule="0:2.0, 100:0.7, 300:0.7, 400:0.3")
    step = tf.Variable(0, dtype=tf.int64)
    read = tf.function(lambda: schedules.pixel_std(step, config))
    expected = {0: 2.0, 50: 1.35, 100: 0.7, 200: 0.7, 300: 0.7, 350: 0.5, 400: 0.3, 10_000: 0.3}
    for at, sigma in expected.items():
        step.assign(at)
        assert float(read()) == pytest.approx(sigma, abs=1e-6), at


def test_bad_sigma_schedules_name_the_bad_point():
    for text, message in (("0:2.0,100", "Bad schedule point '100'"),
                          ("0:2.0,100:0", "'100:0': the value must be positive"),
                          ("0:2.0,100:1,50:0.5", "'50:0.5': steps must increase"),
                          ("a:b", "STEP:VALUE pairs")):
        with pytest.raises(ValueError, match=message):
            schedules.ScheduleConfig(sigma_schedule=text)


def test_the_learning_rate_warms_up_linearly_then_follows_table_s1():
    config = schedules.ScheduleConfig(lr_initial=1e-3, lr_warmup_steps=100)
    assert float(schedules.learning_rate_of(0, config)) == pytest.approx(1e-5, rel=1e-4)
    assert float(schedules.learning_rate_of(49, config)) == pytest.approx(5e-4, rel=1e-4)
    assert float(schedules.learning_rate_of(99, config)) == pytest.approx(
        float(schedules.learning_rate_of(99, schedules.ScheduleConfig(lr_initial=1e-3))))
    optimizer = schedules.make_optimizer(config)
    clone = keras.optimizers.Adam.from_config(optimizer.get_config())
    clone.iterations.assign(9)
    assert float(clone.learning_rate) == pytest.approx(1e-4, rel=1e-4)
    with pytest.raises(ValueError, match="lr_warmup_steps"):
        schedules.ScheduleConfig(lr_warmup_steps=-1)


def test_a_piecewise_learning_rate_replaces_table_s1_and_survives_the_optimizer_config():
    config = schedules.ScheduleConfig(lr_schedule="0:5e-4, 100:5e-4, 101:2.5e-4, 301:5e-5")
    expected = {0: 5e-4, 100: 5e-4, 101: 2.5e-4, 201: 1.5e-4, 301: 5e-5, 10**6: 5e-5}
    step = tf.Variable(0, dtype=tf.int64)
    read = tf.function(lambda: schedules.learning_rate_of(step, config))
    clone = keras.optimizers.Adam.from_config(schedules.make_optimizer(config).get_config())
    for at, rate in expected.items():
        step.assign(at)
        clone.iterations.assign(at)
        assert float(read()) == pytest.approx(rate, rel=1e-5), at
        assert float(clone.learning_rate) == pytest.approx(rate, rel=1e-5), at
    # the warm-up scales whichever μ there is
    warm = schedules.ScheduleConfig(lr_schedule="0:1e-3,1000:1e-4", lr_warmup_steps=10)
    assert float(schedules.learning_rate_of(4, warm)) == pytest.approx(
        0.5 * (1e-3 - 9e-4 * 4 / 1000), rel=1e-5)


def test_a_bad_learning_rate_schedule_names_the_field_and_the_point():
    with pytest.raises(ValueError, match=r"^lr_schedule: Schedule point '10:0'"):
        schedules.ScheduleConfig(lr_schedule="0:1e-3,10:0")
    with pytest.raises(ValueError, match=r"^sigma_schedule: Bad schedule point 'x'"):
        schedules.ScheduleConfig(sigma_schedule="0:2.0,x")
