"""One update of Algorithm S1 under a `tf.distribute` strategy."""

import tensorflow as tf

from gqn_tf.training import schedules

METRICS = ("loss", "kl", "nll")


class TrainStep:
    """A compiled training step: ELBO, gradients, Adam update, on every replica.

    Each replica sums its per-image losses and divides by the global batch size, and the
    optimizer sums gradients over replicas, so one device and N replicas make the same update
    (docs/design.md §5 "Loss scale under replicas"). σ_t is computed from `optimizer.iterations`
    inside the step, and the latent noise of step s is seeded by (seed, s), so a resumed run
    draws what an uninterrupted one would. With `jit_compile` the forward and backward pass of
    each replica is compiled by XLA; the optimizer update stays outside it.
    """

    def __init__(self, model, optimizer, global_batch_size, strategy=None,
                 schedule=schedules.ScheduleConfig(), seed=0, jit_compile=False):
        self.model, self.optimizer = model, optimizer
        self.strategy = strategy or tf.distribute.get_strategy()
        self.global_batch_size = int(global_batch_size)
        self.schedule, self.seed = schedule, int(seed)
        self._gradients = (
            tf.function(self._compute_gradients, jit_compile=True)
            if jit_compile else self._compute_gradients
        )
        self._step = tf.function(self._distributed_step)
        if not optimizer.built:
            with self.strategy.scope():
                optimizer.build(model.trainable_variables)

    def _compute_gradients(self, batch, sigma, seed, batch_offset):
        with tf.GradientTape() as tape:
            terms = self.model.elbo_terms(
                batch, sigma, seed, batch_offset=batch_offset,
                global_batch_size=self.global_batch_size,
            )
            sums = {name: tf.reduce_sum(terms[name]) for name in METRICS}
            sums["kl_per_layer"] = tf.reduce_sum(terms["kl_per_layer"], axis=0)  # [L]
            loss = sums["loss"] / self.global_batch_size
            if hasattr(self.optimizer, "scale_loss"):  # LossScaleOptimizer (mixed_float16)
                loss = self.optimizer.scale_loss(loss)
        return tape.gradient(loss, self.model.trainable_variables), sums

    def _replica_step(self, batch, sigma, seed):
        context = tf.distribute.get_replica_context()
        local_batch = tf.shape(batch["target"])[0]
        offset = tf.cast(context.replica_id_in_sync_group, tf.int32) * local_batch
        gradients, sums = self._gradients(batch, sigma, seed, offset)
        self.optimizer.apply_gradients(zip(gradients, self.model.trainable_variables))
        return sums

    def _distributed_step(self, batch):
        step = self.optimizer.iterations
        sigma = schedules.pixel_std(step, self.schedule)
        learning_rate = self.optimizer.learning_rate  # μ at this step, before the update
        seed = tf.stack([tf.constant(self.seed, tf.int64), tf.cast(step, tf.int64)])
        sums = self.strategy.run(self._replica_step, args=(batch, sigma, seed))
        metrics = {
            name: self.strategy.reduce(tf.distribute.ReduceOp.SUM, sums[name], axis=None)
            / self.global_batch_size
            for name in (*METRICS, "kl_per_layer")
        }
        metrics.update(sigma=sigma, learning_rate=tf.cast(learning_rate, tf.float32))
        return metrics

    def __call__(self, batch):
        """Runs one step on a (distributed) global batch; returns per-image means (`loss`,
        `kl`, `nll`, and `kl_per_layer` [L]) and σ, μ."""
        return self._step(batch)
