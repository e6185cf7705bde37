"""Writing files so that a crash or Ctrl-C never leaves a half-written one.

Kept free of TensorFlow and Keras so that the data tools, the evaluation and the JAX trainer
can all use it.
"""

import json
import os


def write_atomically(path, write):
    """Calls write(temporary path) and renames the file to `path`, so that a crash never leaves
    a half-written one. The temporary name keeps the extension (Keras checks `.keras`); it is
    removed if `write` raises."""
    directory, name = os.path.split(path)
    temporary = os.path.join(directory, f".{name}.tmp{os.path.splitext(name)[1]}")
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return path


def write_json(path, value, **options):
    """Writes `value` as JSON (json.dump's `options`, e.g. indent) atomically."""
    def write(temporary):
        with open(temporary, "w") as f:
            json.dump(value, f, **options)

    return write_atomically(path, write)
