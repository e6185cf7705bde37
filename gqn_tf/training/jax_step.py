"""One update of Algorithm S1 on the JAX backend (KERAS_BACKEND=jax), compiled with `jax.jit`.

The TensorFlow training loop (loop.py, step.py) is the main path; this is the same update for a
machine with JAX and no TensorFlow (a lent GPU): the ELBO of gqn_tf.model, its gradient by
`jax.value_and_grad` over Keras' stateless variables, and Keras' Adam with Table S1's constants
and annealed learning rate, applied statelessly. σ_t and μ_t are computed from the optimizer's
step counter inside the compiled step and the latent noise of step s is seeded by (seed, s), as
in step.py (JAX's random stream differs from TensorFlow's).

The model's and optimizer's variables live as JAX arrays in `self.state` between steps;
`sync()` writes them back into the Keras variables (before `model.save_weights`). JAX compiles
one program per input shape, so per context size M and batch size.
"""

import jax
import jax.numpy as jnp
import keras

from gqn_tf.training import schedules

METRICS = ("loss", "kl", "nll")


class JaxTrainStep:
    """A jitted training step of `model` (a gqn_tf GQN built under the JAX backend)."""

    def __init__(self, model, schedule=schedules.ScheduleConfig(), seed=0):
        if keras.backend.backend() != "jax":
            raise RuntimeError(f"JaxTrainStep needs KERAS_BACKEND=jax; Keras runs on "
                               f"{keras.backend.backend()}.")
        self.model, self.schedule, self.seed = model, schedule, int(seed)
        self.optimizer = schedules.make_optimizer(schedule)
        self.optimizer.build(model.trainable_variables)
        self._iterations = next(i for i, v in enumerate(self.optimizer.variables)
                                if v is self.optimizer.iterations)
        self.state = (
            [v.value for v in model.trainable_variables],
            [v.value for v in model.non_trainable_variables],
            [v.value for v in self.optimizer.variables],
        )
        self._compiled = jax.jit(self._step, donate_argnums=(0,))

    @property
    def programs(self):
        """How many programs XLA has compiled for the step (one per input shape)."""
        return self._compiled._cache_size()

    @property
    def step(self):
        """The number of updates made (the optimizer's iterations)."""
        return int(self.state[2][self._iterations])

    def _loss(self, trainable, non_trainable, batch, sigma, seed):
        model = self.model
        mapping = [*zip(model.trainable_variables, trainable),
                   *zip(model.non_trainable_variables, non_trainable)]
        with keras.StatelessScope(state_mapping=mapping):
            terms = model.elbo_terms(batch, sigma, seed)
        sums = {name: jnp.sum(terms[name]) for name in METRICS}
        sums["kl_per_layer"] = jnp.sum(terms["kl_per_layer"], axis=0)
        return sums["loss"] / batch["target"].shape[0], sums

    def _step(self, state, batch):
        trainable, non_trainable, optimizer_variables = state
        step = optimizer_variables[self._iterations]
        sigma = schedules.pixel_std(step, self.schedule)
        learning_rate = schedules.learning_rate_of(step, self.schedule)
        seed = jnp.stack([jnp.int32(self.seed), step.astype(jnp.int32)])
        (_, sums), gradients = jax.value_and_grad(self._loss, has_aux=True)(
            trainable, non_trainable, batch, sigma, seed)
        trainable, optimizer_variables = self.optimizer.stateless_apply(
            optimizer_variables, gradients, trainable)
        size = batch["target"].shape[0]
        metrics = {name: sums[name] / size for name in (*METRICS, "kl_per_layer")}
        metrics.update(sigma=sigma, learning_rate=learning_rate)
        return (trainable, non_trainable, optimizer_variables), metrics

    def __call__(self, batch):
        """One update on `batch` (a dict of arrays, the model's input layout); returns the
        per-image means `loss`, `kl`, `nll`, `kl_per_layer` [L] and σ, μ of the step."""
        self.state, metrics = self._compiled(self.state, batch)
        return metrics

    def set_step(self, step):
        """Sets the optimizer's step counter (a run started from another's weights continues
        its schedules; Adam's moments stay at zero)."""
        state = list(self.state[2])
        state[self._iterations] = jnp.asarray(step, state[self._iterations].dtype)
        self.state = (self.state[0], self.state[1], state)

    def sync(self):
        """Writes the current weights and optimizer state into the Keras variables."""
        trainable, non_trainable, optimizer_variables = self.state
        for variables, values in ((self.model.trainable_variables, trainable),
                                  (self.model.non_trainable_variables, non_trainable),
                                  (self.optimizer.variables, optimizer_variables)):
            for variable, value in zip(variables, values):
                variable.assign(value)
