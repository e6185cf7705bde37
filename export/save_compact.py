"""Saves a trained GQN as one compact file (config + float16 weights) to ship or share.

    python export/save_compact.py --model_dir /work/runs/sm7_32 --out pretrained/gqn_sm7_32.npz

The file is about half a `.keras` file. render.py, evaluate.py and export_saved_model.py take
it as their model; it loads back in float32 with the weights rounded to float16, and it keeps
the run's run_config.json (so evaluate.py finds the run's final σ) and its step.

    python export/save_compact.py --model_dir runs/sD --average 8 --out model.npz

averages each weight over the run's 8 latest checkpoints instead (a run trained with
--keep_checkpoints 8 or more); the file records the steps averaged.
"""

import os
import pathlib
import subprocess
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # run from a checkout

from absl import flags  # noqa: E402

from gqn_tf import cli  # noqa: E402

_MODEL_DIR = flags.DEFINE_string(
    "model_dir", None, "The model: a train.py run directory (its latest checkpoint), a "
    "checkpoint prefix or a .keras file.", required=True)
_OUT = flags.DEFINE_string("out", None, "The .npz file to write.", required=True)
_AVERAGE = flags.DEFINE_integer(
    "average", 1, "Average each weight over this many of the latest checkpoints of the run "
    "directory --model_dir (train with --keep_checkpoints at least this); 1: the latest "
    "checkpoint alone.", lower_bound=1)


def _commit():
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True, cwd=os.path.dirname(__file__)).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def main(argv):
    del argv
    if not _OUT.value.endswith(".npz"):
        raise cli.UserError(f"--out {_OUT.value!r}: give a .npz file name.")
    cli.import_tensorflow()
    from gqn_tf.evaluation import loop
    from gqn_tf.training import checkpoints

    try:
        if _AVERAGE.value > 1:
            model, info = checkpoints.load_averaged_model(_MODEL_DIR.value, _AVERAGE.value)
        else:
            model, info = checkpoints.load_model(_MODEL_DIR.value)
    except FileNotFoundError as error:
        raise cli.DataError(str(error)) from None
    except ValueError as error:
        raise cli.UserError(f"--model_dir {_MODEL_DIR.value} --average {_AVERAGE.value}: "
                            f"{error}") from None
    metadata = {"source": info["source"], "step": info["step"], "commit": _commit(),
                "run_config": loop.run_config_of(_MODEL_DIR.value),
                "compute_seconds": info["compute_seconds"]}
    if "averaged_steps" in info:
        metadata["averaged_steps"] = info["averaged_steps"]
    os.makedirs(os.path.dirname(os.path.abspath(_OUT.value)), exist_ok=True)
    checkpoints.save_compact(model, _OUT.value, metadata)
    averaged = (f", the mean of the checkpoints of steps {info['averaged_steps']}"
                if "averaged_steps" in info else "")
    print(f"Saved {info['source']} (step {info['step']}{averaged}) to {_OUT.value} "
          f"({os.path.getsize(_OUT.value) / 2**20:.1f} MiB).")


if __name__ == "__main__":
    cli.run(main)
