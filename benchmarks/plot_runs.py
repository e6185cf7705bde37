"""Plots the held-out curves of several training runs against their training CPU time.

    python benchmarks/plot_runs.py --run a=runs/study/a --run b=runs/study/b \
        --out docs/images/study.png [--split test] [--from_step N] [--title "..."]

Each run must have been trained with `train.py --eval_every N`, which writes
`<model_dir>/eval/metrics.jsonl`. The x axis is the run's process CPU time less the time its
held-out evaluations took (what `--max_cpu_seconds` counts), so runs of different speed compare
at equal compute. Panels: the MSE of one prior sample, of the mean of prior samples and of the
prior-mean render, each as a ratio to the mean-training-image baseline, and the KL. Prints each
run's last point and its best ratios, then one JSON line. --from_step zooms in on runs branched
from one checkpoint: only the points from that step on, on axes fitted to them.
"""

import json
import os
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # run from a checkout

from absl import flags  # noqa: E402

from gqn_tf import cli  # noqa: E402

_RUN = flags.DEFINE_multi_string(
    "run", [], "NAME=MODEL_DIR of a run trained with --eval_every; repeatable.")
_OUT = flags.DEFINE_string("out", None, "The PNG to write.", required=True)
_SPLIT = flags.DEFINE_enum("split", "test", ["test", "train"], "Which scenes to plot.")
_FROM_STEP = flags.DEFINE_integer(
    "from_step", 0, "Plot only the points at this step or later (runs branched from one "
    "checkpoint: the step they share), on axes fitted to those points.", lower_bound=0)
_TITLE = flags.DEFINE_string("title", None, "Figure title.")

PANELS = (("generation_mse_ratio", "one prior sample / mean image"),
          ("sample_mean_mse_ratio", "mean of prior samples / mean image"),
          ("prior_mean_mse_ratio", "prior-mean render / mean image"),
          ("kl_nats", "KL (nats per image)"))


def _runs(values):
    runs = []
    for value in values:
        name, sep, model_dir = value.partition("=")
        if not sep or not name or not model_dir:
            raise cli.UserError(f"--run {value!r}: expected NAME=MODEL_DIR, e.g. a=runs/a.")
        runs.append((name, os.path.expanduser(model_dir)))
    if not runs:
        raise cli.UserError("Give at least one --run NAME=MODEL_DIR.")
    return runs


def curve(model_dir, split, from_step=0):
    """The run's held-out lines of `split` from `from_step` on, each with `train_cpu_minutes`
    added."""
    from gqn_tf.evaluation import held_out

    path = os.path.join(model_dir, held_out.EVAL_DIR, held_out.METRICS_FILE)
    if not os.path.exists(path):
        raise cli.DataError(f"{path} does not exist: train the run with --eval_every N.")
    lines = [e for e in held_out.read_metrics(model_dir)
             if e["split"] == split and e["step"] >= from_step]
    if not lines:
        raise cli.DataError(f"{path} has no {split} points at step {from_step} or later.")
    for entry in lines:
        entry["train_cpu_minutes"] = (entry["cpu_seconds"] - entry["eval_cpu_seconds"]) / 60
    return lines


def main(argv):
    if len(argv) > 1:
        raise cli.UserError(f"Unexpected arguments: {' '.join(argv[1:])}")
    cli.import_tensorflow()  # Keras, which the metrics import, would import it noisily
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = _runs(_RUN.value)
    zoom = _FROM_STEP.value > 0
    curves = {name: curve(model_dir, _SPLIT.value, _FROM_STEP.value) for name, model_dir in runs}
    figure, axes = plt.subplots(2, 2, figsize=(11, 8), constrained_layout=True)
    for axis, (key, label) in zip(axes.flat, PANELS):
        later = []  # the values after each run's first point (an untrained model's), for the
        for name, lines in curves.items():  # y range; zoomed in, all of them
            points = [(e["train_cpu_minutes"], e[key]) for e in lines
                      if e.get(key) is not None]
            axis.plot(*zip(*points), marker=".", label=name)
            later += [value for _, value in points[0 if zoom else 1:]]
        if zoom and later:
            margin = 0.1 * (max(later) - min(later)) + 1e-3
            axis.set_ylim(min(later) - margin, max(later) + margin)
        elif key.endswith("_ratio"):
            axis.axhline(1.0, color="grey", linestyle="--", linewidth=1)
            axis.set_ylim(min([0.8, *later]) - 0.05, 1.3)
        elif later:
            axis.set_ylim(0, 1.2 * max(later) + 1)
        axis.set(title=label, xlabel="training CPU minutes")
        axis.grid(alpha=0.3)
        axis.legend(fontsize="small")
    if _TITLE.value:
        figure.suptitle(_TITLE.value)
    figure.savefig(_OUT.value, dpi=90)
    plt.close(figure)

    summary = {}
    print(f"{'run':<12} {'step':>7} {'CPU min':>8} {'sample':>7} {'mean':>7} {'pmean':>7} "
          f"{'KL':>7}  best sample / mean / pmean")
    for name, lines in curves.items():
        last = lines[-1]
        best = {key: min(e[key] for e in lines) for key, _ in PANELS[:3]}
        print(f"{name:<12} {last['step']:>7} {last['train_cpu_minutes']:8.1f} "
              f"{last['generation_mse_ratio']:7.3f} {last['sample_mean_mse_ratio']:7.3f} "
              f"{last['prior_mean_mse_ratio']:7.3f} {last['kl_nats']:7.2f}  "
              f"{best['generation_mse_ratio']:.3f} / {best['sample_mean_mse_ratio']:.3f} / "
              f"{best['prior_mean_mse_ratio']:.3f}")
        summary[name] = {"step": last["step"], "train_cpu_minutes": last["train_cpu_minutes"],
                         **{key: last[key] for key, _ in PANELS}, "best": best}
    print(f"Wrote {_OUT.value}.")
    print(json.dumps({"split": _SPLIT.value, "runs": summary}))


if __name__ == "__main__":
    cli.run(main)
