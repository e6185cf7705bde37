"""gqn-tf: the Generative Query Network (Eslami et al., Science 2018) in Keras 3 / TensorFlow."""

__version__ = "0.1.0"
