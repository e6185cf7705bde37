"""Table S1: the optimiser constants and the annealing of the learning rate μ and pixel std σ.

Both schedules are computed from the step counter as tensors, inside the compiled step, so they
keep moving after tracing (docs/design.md §5 "Frozen annealing"). Beyond Table S1, σ may follow
a piecewise-linear schedule through given (step, σ) points (e.g. anneal to 0.7, hold, then lower
to 0.3); μ may likewise follow (step, μ) points (e.g. halve it once the held-out error flattens),
and may rise linearly from 0 over a warm-up.
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
    # Not in Table S1 (empty / 0: Table S1's schedules). sigma_schedule: "step:σ,step:σ,..."
    # points of a piecewise-linear σ that replaces the σ_i → σ_f anneal (see `parse_points`).
    # lr_schedule: the same for μ, replacing the μ_i → μ_f anneal.
    # lr_warmup_steps: μ is scaled by min(1, (step + 1) / lr_warmup_steps).
    sigma_schedule: str = ""
    lr_schedule: str = ""
    lr_warmup_steps: float = 0.0

    def __post_init__(self):
        for name in ("sigma_schedule", "lr_schedule"):
            try:
                parse_points(getattr(self, name))
            except ValueError as error:
                raise ValueError(f"{name}: {error}") from None
        if self.lr_warmup_steps < 0:
            raise ValueError(f"lr_warmup_steps must be >= 0, got {self.lr_warmup_steps}.")


def parse_points(text):
    """"0:2.0,2000:0.7,8000:0.7,10000:0.3" → ((0, 2.0), (2000, 0.7), ...), or () for "".

    Steps must increase and values be positive; before the first step the value is the first
    point's, after the last the last point's. Raises a ValueError naming the bad point."""
    if not text.strip():
        return ()
    points = []
    for part in text.split(","):
        try:
            step, value = (float(x) for x in part.split(":"))
        except ValueError:
            raise ValueError(f"Bad schedule point {part.strip()!r} in {text!r}: write "
                             f"STEP:VALUE pairs separated by commas, e.g. "
                             f"0:2.0,2000:0.7,8000:0.3.") from None
        if value <= 0:
            raise ValueError(f"Schedule point {part.strip()!r}: the value must be positive.")
        if points and step <= points[-1][0]:
            raise ValueError(f"Schedule point {part.strip()!r}: steps must increase "
                             f"(the one before is {points[-1][0]:g}).")
        points.append((step, value))
    return tuple(points)


def piecewise_linear(step, points):
    """The piecewise-linear function through `points` ((step, value) pairs, steps increasing)
    at `step`, as a float32 tensor: a sum of clipped ramps, so it traces to plain ops."""
    step = ops.cast(step, "float32")
    value = ops.cast(points[0][1], "float32") + 0.0 * step
    for (start, low), (stop, high) in zip(points, points[1:]):
        value = value + (high - low) * ops.clip((step - start) / (stop - start), 0.0, 1.0)
    return value


def linear_anneal(step, initial, final, steps):
    """max(final + (initial − final)(1 − step / steps), final) as a float32 tensor."""
    step = ops.cast(step, "float32")
    return ops.maximum(final + (initial - final) * (1.0 - step / steps), final)


def points_or_anneal(step, points, initial, final, steps):
    """The piecewise-linear value through `points` when there are any, else Table S1's
    `linear_anneal` from `initial` to `final` over `steps` (σ and μ are both scheduled so)."""
    if points:
        return piecewise_linear(step, points)
    return linear_anneal(step, initial, final, steps)


@keras.saving.register_keras_serializable(package="gqn_tf")
class AnnealedLearningRate(keras.optimizers.schedules.LearningRateSchedule):
    """μ_s of Table S1 (or of `schedule`'s STEP:μ points), read by the optimizer from
    `optimizer.iterations` at every step."""

    def __init__(self, initial=5e-4, final=5e-5, steps=1.6e6, warmup_steps=0.0, schedule=""):
        self.initial, self.final, self.steps = initial, final, steps
        self.warmup_steps, self.schedule = warmup_steps, schedule
        self._points = parse_points(schedule)

    def __call__(self, step):
        return learning_rate(step, self.initial, self.final, self.steps, self.warmup_steps,
                             self._points)

    def get_config(self):
        return {"initial": self.initial, "final": self.final, "steps": self.steps,
                "warmup_steps": self.warmup_steps, "schedule": self.schedule}


def learning_rate(step, initial, final, steps, warmup_steps=0.0, points=()):
    """μ_s of Table S1, or the piecewise-linear μ through `points` when there are any; scaled
    by min(1, (step + 1) / warmup_steps) during a warm-up (so the first update already moves)."""
    rate = points_or_anneal(step, points, initial, final, steps)
    if warmup_steps:
        rate = rate * ops.minimum((ops.cast(step, "float32") + 1.0) / warmup_steps, 1.0)
    return rate


def learning_rate_of(step, config=ScheduleConfig()):
    """μ at `step` under `config` (a tensor in, a tensor out)."""
    return learning_rate(step, config.lr_initial, config.lr_final, config.lr_steps,
                         config.lr_warmup_steps, parse_points(config.lr_schedule))


def pixel_std(step, config=ScheduleConfig()):
    """σ_s at `step` (a tensor in, a tensor out): Table S1's anneal, or the piecewise-linear
    `config.sigma_schedule` when it is set."""
    return points_or_anneal(step, parse_points(config.sigma_schedule), config.sigma_initial,
                            config.sigma_final, config.sigma_steps)


def make_optimizer(config=ScheduleConfig()):
    """Adam with Table S1's β1, β2, ε and the annealed (or scheduled) learning rate."""
    return keras.optimizers.Adam(
        learning_rate=AnnealedLearningRate(config.lr_initial, config.lr_final, config.lr_steps,
                                           config.lr_warmup_steps, config.lr_schedule),
        beta_1=config.beta_1,
        beta_2=config.beta_2,
        epsilon=config.epsilon,
    )
