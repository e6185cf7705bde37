"""Evaluates a trained GQN: ELBO terms, image errors and the Bayesian-surprise curve (Fig. 4B).

    python evaluate.py --dataset shepard_metzler_7_parts --data_dir data/sample \
        --model_dir /tmp/gqn_quick --output_dir /tmp/gqn_quick_eval

For the first --num_scenes scenes of --split it reports, for every number of context views
M = 0 .. --max_context (same scenes, same query view, context growing), −ELBO, KL and NLL per
image in nats and bits/dim and the MSE / PSNR of the generated (prior) and reconstructed
(posterior) mean images. Writes metrics.json, curves.png, grid_M<m>.png and TensorBoard events
(tags eval/...) into --output_dir. Deterministic for a given --seed and --batch_size.
"""

import os
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))  # run from a checkout

from absl import flags  # noqa: E402

from gqn_tf import cli  # noqa: E402
from gqn_tf.data import datasets  # noqa: E402

# --- Data ---------------------------------------------------------------------------------
_DATASET = flags.DEFINE_enum(
    "dataset", None, sorted(datasets.DATASETS), "Dataset to evaluate on.", required=True)
_DATA_DIR = flags.DEFINE_string(
    "data_dir", datasets.DEFAULT_DATA_DIR,
    "Root of the data: shards are read from <data_dir>/<dataset>/<split>/. Default: where "
    "data/download.py puts them ($GQN_DATA_DIR or ~/gqn-datasets); data/sample for the "
    "bundled sample.")
_SPLIT = flags.DEFINE_enum("split", "test", list(datasets.SPLITS), "Split to evaluate on.")
_NUM_SCENES = flags.DEFINE_integer(
    "num_scenes", None,
    "Scenes to evaluate: the first ones of the split in file order. Default: all scenes of "
    "the split, at most 1000. Asking for more than the split holds is an error that says how "
    "many it has.", lower_bound=1)

_FRAME_SIZE = flags.DEFINE_integer(
    "frame_size", None,
    "Resize the frames to NxN (bilinear). Default: the model's image size, which train.py "
    "recorded (frames of another size are then resized with a warning). Must equal the "
    "model's image size.", lower_bound=1)
_SKIP_BAD_RECORDS = flags.DEFINE_boolean(
    "skip_bad_records", False,
    "Skip damaged records, logging each once and counting them in metrics.json, instead of "
    "stopping at the first (every frame is then test-decoded).")

# --- Model --------------------------------------------------------------------------------
_MODEL_DIR = flags.DEFINE_string(
    "model_dir", None, "What to evaluate: a train.py run directory (its latest checkpoint), a "
    "checkpoint prefix in one (<model_dir>/checkpoints/ckpt-N) or a .keras file.",
    required=True)
_SIGMA = flags.DEFINE_float(
    "sigma", None, "Pixel std σ of the likelihood in the NLL. Default: the run's final σ "
    "(the last σ of its --sigma_schedule, else sigma_final in run_config.json; Table S1: 0.7).",
    lower_bound=0.0)

# --- What to compute ----------------------------------------------------------------------
_MAX_CONTEXT = flags.DEFINE_integer(
    "max_context", None, "Largest number of context views M; every M from 0 to it is "
    "evaluated (cost grows linearly with it). Default: the largest context size the model "
    "was trained with, where its run config records it (said in a warning), else S - 1 (14 "
    "for Shepard-Metzler, 9 for rooms).", lower_bound=0)
_SAMPLES = flags.DEFINE_integer(
    "samples", 4, "Prior samples per scene in the PNG grids.", lower_bound=0)
_GRID_SCENES = flags.DEFINE_integer(
    "grid_scenes", 4, "Scenes (rows) in each PNG grid.", lower_bound=0)
_GRID_CONTEXT = flags.DEFINE_list(
    "grid_context", None, "Context sizes M to draw a grid for, comma-separated, e.g. 0,1,3. "
    "Default: 1 and --max_context.")
_SEED = flags.DEFINE_integer(
    "seed", 0, "Seeds the choice of views and the latent noise; same seed, same numbers.")
_BATCH_SIZE = flags.DEFINE_integer(
    "batch_size", 8, "Scenes per forward pass; lower it if memory runs out. The latent noise "
    "depends on it, so keep it fixed to compare runs.", lower_bound=1)

_LATENT_SAMPLES = flags.DEFINE_integer(
    "latent_samples", 8, "Prior samples per scene for the 'spl std' column (sample_std): the "
    "pixel std over samples, 0 when the generator ignores its latents (< 2: not measured).",
    lower_bound=0)
_MEAN_SAMPLES = flags.DEFINE_integer(
    "mean_samples", 4, "Prior samples per scene averaged into the 'mean-K MSE' column "
    "(sample_mean_mse): the mean of samples averages out the latents' noise, at the price of "
    "blur.", lower_bound=1)
_MEAN_IMAGE_SCENES = flags.DEFINE_integer(
    "mean_image_scenes", 500, "Training scenes averaged into the mean image of the baseline "
    "'mean MSE' (mean_image_mse); 0 turns it off. Needs <data_dir>/<dataset>/train/.",
    lower_bound=0)

# --- Output -------------------------------------------------------------------------------
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", None, "Where metrics.json, curves.png, grid_M<m>.png and the TensorBoard "
    "events go (created if needed; tensorboard --logdir OUTPUT_DIR). Use one directory per "
    "evaluated checkpoint.", required=True)
_PROGRESS = flags.DEFINE_boolean("progress", True, "Show a progress bar over scenes.")


def _grid_context_sizes(values):
    if values is None:
        return None
    try:
        return [int(value) for value in values]
    except ValueError:
        raise cli.UserError(
            f"--grid_context {','.join(values)}: expected integers, e.g. 0,1,3.") from None


def _print_table(result):
    """The per-M table on stdout, one row per M, then the overall row."""
    k = result["mean_samples"]
    header = (f"{'M':>4} {'-ELBO nats':>11} {'bits/dim':>8} {'KL nats':>9} {'NLL nats':>10} "
              f"{'gen MSE':>8} {'gen PSNR':>8} {f'mean-{k} MSE':>11} {'pmean MSE':>9} "
              f"{'rec MSE':>8} {'rec PSNR':>8} {'spl std':>8} {'near MSE':>8} {'mean MSE':>8}"
              f" {'gen/mean':>8} {f'mean-{k}/mean':>12} {'pmean/mean':>10}")
    print(header)

    def number(value, width=8, digits=5):
        return f"{value:{width}.{digits}f}" if value is not None else f"{'-':>{width}}"

    rows = [(str(row["num_context"]), row) for row in result["per_context"]]
    for label, row in rows + [("all", result["overall"])]:
        print(f"{label:>4} {row['neg_elbo_nats']:11.1f} {row['neg_elbo_bits_per_dim']:8.4f} "
              f"{row['kl_nats']:9.2f} {row['nll_nats']:10.1f} {row['generation_mse']:8.5f} "
              f"{row['generation_psnr']:8.2f} {row['sample_mean_mse']:11.5f} "
              f"{row['prior_mean_mse']:9.5f} {row['reconstruction_mse']:8.5f} "
              f"{row['reconstruction_psnr']:8.2f} {number(row.get('sample_std'))} "
              f"{number(row.get('nearest_view_mse'))} {number(row.get('mean_image_mse'))} "
              f"{number(row.get('generation_mse_ratio'), 8, 3)} "
              f"{number(row.get('sample_mean_mse_ratio'), 12, 3)} "
              f"{number(row.get('prior_mean_mse_ratio'), 10, 3)}")
    print(f"gen: one sample from the prior (Alg. S3); mean-{k}: the mean of {k} prior samples; "
          "pmean: every z at its prior mean; rec: reconstructed from the posterior; spl std: "
          "pixel std over prior samples; near: the context view nearest the query; mean: the "
          "mean training image; x/mean: an MSE as a ratio to the mean image's. PSNR of every "
          "render and baseline is in metrics.json.")
    floor = result["nll_floor"]
    print(f"σ = {result['sigma']:g} ({result['sigma_source']}); NLL floor {floor['nats']:.1f} "
          f"nats = {floor['bits_per_dim']:.4f} bits/dim; {result['num_scenes']} scenes, "
          f"checkpoint {result['model']['source']} (step {result['model']['step']}).")
    if result["bad_records_skipped"]:
        print(f"{result['bad_records_skipped']} bad records skipped (--skip_bad_records).")


def main(argv):
    if len(argv) > 1:
        raise cli.UserError(f"Unexpected arguments: {' '.join(argv[1:])}")
    # Imported here so that --help and flag errors do not wait for TensorFlow.
    cli.import_tensorflow()
    from gqn_tf.data import shards
    from gqn_tf.evaluation import loop

    config = loop.EvalConfig(
        dataset=_DATASET.value, data_dir=os.path.expanduser(_DATA_DIR.value),
        model_path=os.path.expanduser(_MODEL_DIR.value),
        output_dir=os.path.expanduser(_OUTPUT_DIR.value), split=_SPLIT.value,
        num_scenes=_NUM_SCENES.value, max_context=_MAX_CONTEXT.value, samples=_SAMPLES.value,
        sigma=_SIGMA.value, seed=_SEED.value, batch_size=_BATCH_SIZE.value,
        grid_scenes=_GRID_SCENES.value, grid_context_sizes=_grid_context_sizes(_GRID_CONTEXT.value),
        progress=_PROGRESS.value, frame_size=_FRAME_SIZE.value,
        skip_bad_records=_SKIP_BAD_RECORDS.value, latent_samples=_LATENT_SAMPLES.value,
        mean_image_scenes=_MEAN_IMAGE_SCENES.value, mean_samples=_MEAN_SAMPLES.value)
    try:
        result = loop.evaluate(config)
    except (loop.NotEnoughScenesError, shards.DataNotFoundError, shards.ShardNamingError,
            FileNotFoundError) as error:
        raise cli.DataError(str(error)) from None
    except ValueError as error:
        raise cli.UserError(str(error)) from None
    _print_table(result)
    print(f"Wrote {os.path.join(config.output_dir, loop.METRICS_FILE)}, "
          f"{loop.CURVES_FILE} and {len(result['files']['grids'])} grid(s) in "
          f"{config.output_dir}.")


if __name__ == "__main__":
    cli.run(main)
