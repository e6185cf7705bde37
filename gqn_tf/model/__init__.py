"""The GQN model: representation networks, ConvLSTM cores, latent distributions."""

from gqn_tf.model.config import PRESETS, GQNConfig, get_preset
from gqn_tf.model.gqn import GQN
