"""Serving a trained GQN: the SavedModel's signatures and export (`signatures`), clients of
TensorFlow Serving over REST (`rest`) and gRPC (`grpc_client`), and the browser viewer
(`viewer`). docs/design.md §4 describes the contract they share.

The names of `signatures` are available here too, so `from gqn_tf import serving` then
`serving.export_saved_model(...)` reads as before the package was split. They are imported on
first use: `signatures` imports TensorFlow, which `client` and `rest` do not need.
"""

__all__ = ["CONFIG_FILE", "GENERATE_JPEG", "GENERATE_SEEDED", "REPRESENT", "SERVING_DEFAULT",
           "SIGNATURES", "GQNServingModule", "existing_versions", "export_saved_model",
           "next_version", "saved_model_op_types"]


def __getattr__(name):
    if name in __all__:
        from gqn_tf.serving import signatures

        return getattr(signatures, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
