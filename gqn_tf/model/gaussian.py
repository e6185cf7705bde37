"""Diagonal Gaussian densities in `keras.ops`, for backends without TensorFlow Probability.

On the TensorFlow backend the model uses TFP's `Normal` (distributions.py); these are the same
formulas written out, so that the prior, posterior and pixel likelihood can run on JAX too
(TFP's JAX substrate does not import with current JAX). Tests check them against TFP.

    log N(x; μ, s)       = −½ ((x − μ)/s)² − log s − ½ log 2π
    KL(N(μq, sq) ‖ N(μp, sp)) = log(sp/sq) + (sq² + (μq − μp)²) / (2 sp²) − ½
"""

import math

from keras import ops

_HALF_LOG_TWO_PI = 0.5 * math.log(2.0 * math.pi)


def log_prob(x, loc, scale):
    """Element-wise log density of N(loc, scale²) at x."""
    z = (x - loc) / scale
    return -0.5 * ops.square(z) - ops.log(scale) - _HALF_LOG_TWO_PI


def kl_divergence(loc_q, scale_q, loc_p, scale_p):
    """Element-wise KL(N(loc_q, scale_q²) ‖ N(loc_p, scale_p²))."""
    ratio = ops.square(scale_q / scale_p)
    return 0.5 * (ratio + ops.square((loc_q - loc_p) / scale_p) - 1.0 - ops.log(ratio))
