"""Serving a trained GQN: the SavedModel's signatures and export (`signatures`), clients of
TensorFlow Serving over REST (`rest`) and gRPC (`grpc_client`), and the browser viewer
(`viewer`). docs/design.md §4 describes the contract they share.

The names of `signatures` are re-exported here, so `from gqn_tf import serving` then
`serving.export_saved_model(...)` reads as before the package was split.
"""

from gqn_tf.serving.signatures import (
    CONFIG_FILE,
    GENERATE_JPEG,
    GENERATE_SEEDED,
    REPRESENT,
    SERVING_DEFAULT,
    SIGNATURES,
    GQNServingModule,
    existing_versions,
    export_saved_model,
    next_version,
    saved_model_op_types,
)

__all__ = ["CONFIG_FILE", "GENERATE_JPEG", "GENERATE_SEEDED", "REPRESENT", "SERVING_DEFAULT",
           "SIGNATURES", "GQNServingModule", "existing_versions", "export_saved_model",
           "next_version", "saved_model_op_types"]
