"""Table S1: the optimiser constants and the annealing of the learning rate μ and pixel std σ.

Both schedules are computed from the step counter as tensors, inside the compiled step, so they
keep moving after tracing (docs/design.md §5 "Frozen annealing").
"""

import dataclasses

import keras
from keras import ops


@dataclasses.dataclass(frozen=True)
class ScheduleConfig:
    """The constants of Table S1 (docs/design.md §3)."""

    lr_initial: float = 5e-4  # μ_i
    lr_final: float = 5e-5  # μ_f
    lr_steps: float = 1.6e6  # n for μ
    sigma_initial: float = 2.0  # σ_i
    sigma_final: float = 0.7  # σ_f
    sigma_steps: float = 2e5  # n for σ
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-8


def linear_anneal(step, initial, final, steps):
    """max(final + (initial − final)(1 − step / steps), final) as a float32 tensor."""
    step = ops.cast(step, "float32")
    return ops.maximum(final + (initial - final) * (1.0 - step / steps), final)


@keras.saving.register_keras_serializable(package="gqn_tf")
class AnnealedLearningRate(keras.optimizers.schedules.LearningRateSchedule):
    """μ_s of Table S1, read by the optimizer from `optimizer.iterations` at every step."""

    def __init__(self, initial=5e-4, final=5e-5, steps=1.6e6):
        self.initial, self.final, self.steps = initial, final, steps

    def __call__(self, step):
        return linear_anneal(step, self.initial, self.final, self.steps)

    def get_config(self):
        return {"initial": self.initial, "final": self.final, "steps": self.steps}


def pixel_std(step, config=ScheduleConfig()):
    """σ_s of Table S1 at `step` (a tensor in, a tensor out)."""
    return linear_anneal(step, config.sigma_initial, config.sigma_final, config.sigma_steps)


def make_optimizer(config=ScheduleConfig()):
    """Adam with Table S1's β1, β2, ε and the annealed learning rate."""
    return keras.optimizers.Adam(
        learning_rate=AnnealedLearningRate(config.lr_initial, config.lr_final, config.lr_steps),
        beta_1=config.beta_1,
        beta_2=config.beta_2,
        epsilon=config.epsilon,
    )
