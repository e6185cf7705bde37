import keras
import numpy as np
import tensorflow as tf

from gqn_tf.model import GQN, get_preset
from gqn_tf.training import schedules
from gqn_tf.training.step import TrainStep


def _train(devices, batch, steps=2, seed=4):
    strategy = tf.distribute.MirroredStrategy(devices)
    with strategy.scope():
        keras.utils.set_random_seed(1)
        model = GQN(get_preset("tiny"))
        step = TrainStep(model, schedules.make_optimizer(), 4, strategy, seed=seed)
    inputs = iter(strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensors(batch).repeat()))
    metrics = [step(next(inputs)) for _ in range(steps)]
    return metrics, model, step


def test_two_replicas_make_the_same_update_as_one_device(make_batch):
    batch = make_batch(batch_size=4, context_size=2)
    one, one_model, _ = _train(["/cpu:0"], batch)
    two, two_model, _ = _train(["/cpu:0", "/cpu:1"], batch)
    for a, b in zip(one, two):
        np.testing.assert_allclose(float(a["loss"]), float(b["loss"]), rtol=1e-5)
    for a, b in zip(one_model.weights, two_model.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)


def test_sigma_and_learning_rate_anneal_step_by_step(make_batch):
    metrics, _, step = _train(["/cpu:0"], make_batch(batch_size=4, context_size=1), steps=3)
    sigmas = [float(m["sigma"]) for m in metrics]
    rates = [float(m["learning_rate"]) for m in metrics]
    assert sigmas[0] == 2.0 and sigmas[0] > sigmas[1] > sigmas[2]
    assert rates[0] > rates[1] > rates[2]
    assert int(step.optimizer.iterations.numpy()) == 3


def test_the_update_follows_a_piecewise_learning_rate(make_batch):
    """The μ the step reports is the one the optimizer applies: Adam's first update moves each
    weight by about μ, so a step at 1e-3 moves the weights about 10x more than one at 1e-4."""
    schedule = schedules.ScheduleConfig(lr_schedule="0:1e-3,1:1e-3,2:1e-4")
    strategy = tf.distribute.get_strategy()
    keras.utils.set_random_seed(1)
    model = GQN(get_preset("tiny"))
    step = TrainStep(model, schedules.make_optimizer(schedule), 4, strategy, schedule=schedule)
    batch = make_batch(batch_size=4, context_size=1)
    moves, rates = [], []
    for _ in range(3):
        before = [w.numpy() for w in model.trainable_weights]
        rates.append(float(step(batch)["learning_rate"]))
        moves.append(max(float(np.max(np.abs(w.numpy() - b)))
                         for w, b in zip(model.trainable_weights, before)))
    np.testing.assert_allclose(rates, [1e-3, 1e-3, 1e-4], rtol=1e-5)
    # Adam's steps are bounded by about μ per weight (its bias-corrected ratio is at most ~1)
    assert 0.5e-3 < moves[0] <= 1.01e-3 and moves[1] <= 1.01e-3
    assert moves[2] <= 1.01e-4
