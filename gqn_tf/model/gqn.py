"""The Generative Query Network as a `keras.Model`: Algorithm S2 (ELBO) and S3 (generation)."""

import keras
from keras import ops

from gqn_tf.model import conv_lstm, distributions
from gqn_tf.model.config import GQNConfig
from gqn_tf.model.cores import GeneratorCore, InferenceCore
from gqn_tf.model.representation import SceneRepresentation, make_representation_network

CAMERA_DIM = 7
IMAGE_CHANNELS = 3


def _as_seed(seed):
    """An int or a pair → the int32 [2] seed of TensorFlow's stateless random ops."""
    if isinstance(seed, int):
        return ops.convert_to_tensor([seed, 0], dtype="int32")
    return ops.cast(seed, "int32")


@keras.saving.register_keras_serializable(package="gqn_tf")
class GQN(keras.Model):
    """Representation network f, generator C^g with canvas u, inference C^e, heads η_π, η_e, η_g.

    Inputs follow docs/design.md §4: `context_frames` [B, M, H, W, 3] in [0, 1], `context_cameras`
    [B, M, 7], `query_camera` [B, 7] and, for the ELBO, `target` [B, H, W, 3]. Calling the model
    renders the query view from the prior (Algorithm S3) with `inputs["seed"]` (default 0).

    The cores' gates from the step-invariant inputs (v^q, r, x^q↓) are computed once per pass,
    by the factorisation in gqn_tf/model/conv_lstm.py; `factorise_conditioning = False` (on the
    class or one model) convolves the concatenated inputs at every step instead, the plain
    definition that the factorised path equals within float rounding (tests, benchmarks).
    """

    factorise_conditioning = True

    def __init__(self, config=None, **kwargs):
        super().__init__(**kwargs)
        if config is None:
            config = GQNConfig()
        elif isinstance(config, dict):
            config = GQNConfig(**config)
        self.gqn_config = c = config
        self.representation = SceneRepresentation(
            make_representation_network(c), c.image_size, name="representation"
        )
        self.target_downsample = keras.layers.Conv2D(
            IMAGE_CHANNELS, 4, strides=4, name="target_downsample"
        )
        # One attribute per core: Keras' tracked lists are not children in a tf.train.Checkpoint.
        self._num_cores = 1 if c.shared_cores else c.num_layers
        for i in range(self._num_cores):
            setattr(self, f"generator_core_{i}", GeneratorCore(
                c.hidden_channels, c.canvas_channels, c.kernel_size, name=f"generator_core_{i}"))
            setattr(self, f"inference_core_{i}", InferenceCore(
                c.hidden_channels, c.canvas_channels, c.kernel_size, name=f"inference_core_{i}"))
        self.prior_head = distributions.LatentHead(c.z_channels, 5, name="prior_head")
        self.posterior_head = distributions.LatentHead(c.z_channels, 5, name="posterior_head")
        self.observation_head = keras.layers.Conv2D(IMAGE_CHANNELS, 1, name="observation_head")
        self.build()

    @property
    def generator_cores(self):
        """C^g for each step (one shared core when `shared_cores`)."""
        return [getattr(self, f"generator_core_{i}") for i in range(self._num_cores)]

    @property
    def inference_cores(self):
        """C^e for each step (one shared core when `shared_cores`)."""
        return [getattr(self, f"inference_core_{i}") for i in range(self._num_cores)]

    def build(self, input_shape=None):
        """Creates every weight from the config alone, so a model is usable (and restorable
        from a checkpoint) as soon as it is constructed."""
        c = self.gqn_config
        size, core = c.image_size, c.core_size
        self.representation.build((None, None, size, size, IMAGE_CHANNELS), (None, None, CAMERA_DIM))
        self.target_downsample.build((None, size, size, IMAGE_CHANNELS))
        for generator_core in self.generator_cores:
            generator_core.build((None, core, core, CAMERA_DIM + c.r_channels + c.z_channels))
        for inference_core in self.inference_cores:
            inference_core.build((None, core, core, IMAGE_CHANNELS + CAMERA_DIM + c.r_channels))
        self.prior_head.build((None, core, core, c.hidden_channels))
        self.posterior_head.build((None, core, core, c.hidden_channels))
        self.observation_head.build((None, size, size, c.canvas_channels))
        self.built = True

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable, "config": self.gqn_config.to_dict()}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def get_build_config(self):
        return None  # built in __init__

    # --- Pieces shared by Algorithms S2 and S3 ---------------------------------------------

    def represent(self, context_frames, context_cameras, context_mask=None):
        """The scene representation r = Σ_k f(x^k, v^k): [B, h, w, r_channels] (h = 1 for
        pool and pyramid, image_size / 4 for tower). context_mask [B, M] (0/1), if given,
        leaves out the views whose mask is 0: batches of M_max views with masks stand for any
        M <= M_max in one input shape."""
        frames = ops.cast(context_frames, self.compute_dtype)
        cameras = ops.cast(context_cameras, self.compute_dtype)
        return self.representation(frames, cameras, view_mask=context_mask)

    def _conditioning(self, context_frames, context_cameras, query_camera, context_mask=None):
        """The step-invariant conditioning [v^q, r] of a context (see `_conditioning_of`)."""
        return self._conditioning_of(
            self.represent(context_frames, context_cameras, context_mask), query_camera)

    def _conditioning_of(self, r, query_camera):
        """The step-invariant conditioning [v^q, r]: v^q [B, 7]; r [B, r_channels] when it is
        constant over the core grid (pool, pyramid), else [B, h, w, r_channels] (tower)."""
        if self.gqn_config.representation != "tower":
            r = r[:, 0, 0, :]
        return [ops.cast(query_camera, self.compute_dtype), r]

    def _on_grid(self, pieces):
        """`pieces` broadcast to the core grid and concatenated: [B, h, w, channels]."""
        size = self.gqn_config.core_size
        batch = ops.shape(pieces[0])[0]
        return ops.concatenate([
            ops.broadcast_to(p[:, None, None, :], (batch, size, size, p.shape[-1]))
            if len(p.shape) == 2 else p for p in pieces], axis=-1)

    def _conditioning_gates(self, kind, pieces):
        """For each step, the `conditioning` of its `kind` ("generator" or "inference") core
        from `pieces` (conv_lstm.conditioning_gates), each core's computed once."""
        c = self.gqn_config
        cores = self.generator_cores if kind == "generator" else self.inference_cores
        gates = [conv_lstm.conditioning_gates(core.cell, pieces, c.core_size, c.core_size)
                 for core in cores]
        return [gates[0 if c.shared_cores else step] for step in range(c.num_layers)]

    def _initial_states(self, batch):
        c = self.gqn_config
        hidden = ops.zeros((batch, c.core_size, c.core_size, c.hidden_channels), self.compute_dtype)
        canvas = ops.zeros((batch, c.image_size, c.image_size, c.canvas_channels), self.compute_dtype)
        return (hidden, hidden), (hidden, hidden), canvas

    def _core(self, kind, step):
        """The "generator" or "inference" core of step `step`."""
        return getattr(self, f"{kind}_core_{0 if self.gqn_config.shared_cores else step}")

    def _observe(self, canvas):
        """η_g: the mean image in [0, 1] from the final canvas u_L (float32)."""
        return ops.sigmoid(ops.cast(self.observation_head(canvas), "float32"))

    def _noise(self, seed, batch, batch_offset=0, global_batch_size=None, noise=None):
        c = self.gqn_config
        if noise is not None:
            return distributions.split_noise(noise, c.num_layers)
        shape = (batch, c.core_size, c.core_size, c.z_channels)
        return distributions.latent_noise(
            _as_seed(seed), c.num_layers, shape, batch_offset, global_batch_size
        )

    # --- Algorithm S2: the ELBO ------------------------------------------------------------

    def _posterior_pass(self, batch, seed, batch_offset=0, global_batch_size=None, noise=None):
        """Runs the L steps with latents from the posterior; returns (mean image, KL per layer)."""
        conditioning = self._conditioning(
            batch["context_frames"], batch["context_cameras"], batch["query_camera"],
            batch.get("context_mask"))
        target = ops.cast(batch["target"], self.compute_dtype)
        size = ops.shape(target)[0]
        invariant = [self.target_downsample(target), *conditioning]  # what C^e reads each step
        if self.factorise_conditioning:
            generator_gates = self._conditioning_gates("generator", conditioning)
            inference_gates = self._conditioning_gates("inference", invariant)
            inference_inputs = None
        else:
            generator_gates = inference_gates = [None] * self.gqn_config.num_layers
            conditioning = self._on_grid(conditioning)
            inference_inputs = self._on_grid(invariant)
        generator_state, inference_state, canvas = self._initial_states(size)
        noise = self._noise(seed, size, batch_offset, global_batch_size, noise)
        kls = []
        for step in range(self.gqn_config.num_layers):
            # π_l reads h^g before this step's generator update; q_l reads the inference state
            # just updated with x^q, h^g_l and u_l (docs/design.md §5).
            prior = distributions.normal(*self.prior_head(generator_state[1]))
            inference_state = self._core("inference", step)(
                inference_inputs, generator_state[1], canvas, inference_state,
                inference_gates[step]
            )
            posterior = distributions.normal(*self.posterior_head(inference_state[1]))
            z = ops.cast(distributions.sample(posterior, noise[step]), self.compute_dtype)
            # z_l feeds C^g (Fig. S2), which Algorithm S2 line 19 leaves out.
            generator_state, canvas = self._generator_step(
                step, conditioning, z, generator_state, canvas, generator_gates[step])
            kls.append(distributions.kl_divergence(posterior, prior))
        return self._observe(canvas), ops.stack(kls, axis=1)

    def _generator_step(self, step, conditioning, z, state, canvas, gates):
        """C^g of step `step` on z_l, with the conditioning's `gates`, or (gates None) on the
        concatenation of the broadcast conditioning and z_l."""
        inputs = z if gates is not None else ops.concatenate([conditioning, z], -1)
        return self._core("generator", step)(inputs, state, canvas, gates)

    def elbo_terms(self, batch, sigma, seed, batch_offset=0, global_batch_size=None,
                   noise=None):
        """The ELBO of a batch, per image in nats (Algorithm S2).

        sigma: the pixel standard deviation σ_t (a tensor, so an annealed value is never frozen
        into a traced step). seed: int or int32 [2]; the posterior samples are a pure function of
        it and of each scene's index in the global batch (see `distributions.latent_noise`).
        noise: instead of the seed's, this standard normal noise [L, B, h, w, z_channels] (e.g.
        to compare two backends, whose seeded streams differ).
        Returns a dict of [B] tensors `loss` (= −ELBO), `elbo`, `kl`, `nll`, with `kl_per_layer`
        [B, L] and the reconstruction `mean` [B, H, W, 3]. A `context_mask` [B, M] in the batch
        leaves out the context views whose mask is 0 (see `represent`).
        """
        mean, kl_per_layer = self._posterior_pass(batch, seed, batch_offset, global_batch_size,
                                                  noise)
        nll = distributions.gaussian_nll(batch["target"], mean, sigma)
        kl = ops.sum(kl_per_layer, axis=1)
        return {"loss": nll + kl, "elbo": -(nll + kl), "kl": kl, "nll": nll,
                "kl_per_layer": kl_per_layer, "mean": mean}

    def reconstruct(self, context_frames, context_cameras, query_camera, target, seed=0):
        """The mean image with latents drawn from the posterior q: [B, H, W, 3] in [0, 1]."""
        batch = {"context_frames": context_frames, "context_cameras": context_cameras,
                 "query_camera": query_camera, "target": target}
        return self._posterior_pass(batch, seed)[0]

    # --- Algorithm S3: generation ------------------------------------------------------------

    def generate(self, context_frames, context_cameras, query_camera, seed=0, noise=None,
                 context_mask=None):
        """Renders the query view with latents from the prior: [B, H, W, 3] in [0, 1].
        noise: optional [L, B, h, w, z_channels] standard normal noise used instead of the
        seed's. context_mask: as in `represent`."""
        return self.render(self.represent(context_frames, context_cameras, context_mask),
                           query_camera, seed, noise)

    def render(self, representation, query_camera, seed=0, noise=None):
        """`generate` from a scene representation r [B, h, w, r_channels] as `represent`
        gives it, rather than from context views: for representations made by other means
        than summing views (the scene algebra of the paper's Fig. 4A, r(A) − r(B) + r(C))."""
        conditioning = self._conditioning_of(representation, query_camera)
        size = ops.shape(conditioning[0])[0]
        if self.factorise_conditioning:
            gates = self._conditioning_gates("generator", conditioning)
        else:
            gates, conditioning = [None] * self.gqn_config.num_layers, self._on_grid(conditioning)
        generator_state, _, canvas = self._initial_states(size)
        noise = self._noise(seed, size, noise=noise)
        for step in range(self.gqn_config.num_layers):
            prior = distributions.normal(*self.prior_head(generator_state[1]))
            z = ops.cast(distributions.sample(prior, noise[step]), self.compute_dtype)
            generator_state, canvas = self._generator_step(
                step, conditioning, z, generator_state, canvas, gates[step])
        return self._observe(canvas)

    def call(self, inputs, training=None):
        return self.generate(
            inputs["context_frames"], inputs["context_cameras"], inputs["query_camera"],
            inputs.get("seed", 0),
        )
