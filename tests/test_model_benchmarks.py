"""The training-step and generation benchmarks run end to end on a tiny model and report one
figure per configuration and variant. What they print is checked, never how fast anything is."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def _run(script, *flags):
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / script), "--preset", "tiny", *flags],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    return result


def test_train_step_benchmark_times_both_variants_of_each_configuration():
    result = _run("train_step.py", "--representation", "tower,pool", "--mixed_precision",
                  "float32,mixed_bfloat16", "--steps", "2", "--batch_size", "2",
                  "--context_size", "2", "--image_size", "16")
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["image_size"] == 16
    found = {(r["representation"], r["policy"], r["variant"]) for r in figures["results"]}
    assert found == {(rep, policy, variant) for rep in ("tower", "pool")
                     for policy in ("float32", "mixed_bfloat16")
                     for variant in ("plain", "factorised")}
    for run in figures["results"]:
        assert run["step_s"] > 0 and run["images_per_s"] > 0, run
    by_key = {(r["representation"], r["policy"], r["variant"]): r["step_s"]
              for r in figures["results"]}
    assert figures["ratios"]["pool/float32"] == pytest.approx(
        by_key["pool", "float32", "factorised"] / by_key["pool", "float32", "plain"], abs=2e-3)
    assert figures["ratios"]["pool_over_tower/mixed_bfloat16"] == pytest.approx(
        by_key["pool", "mixed_bfloat16", "factorised"]
        / by_key["tower", "mixed_bfloat16", "factorised"], abs=2e-3)


def test_generate_benchmark_reports_ms_per_image_for_each_batch_size():
    result = _run("generate.py", "--representation", "pyramid", "--batch_sizes", "1,3",
                  "--rounds", "2", "--context_size", "2")
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(figures["results"]) == 4
    for run in figures["results"]:
        assert run["ms_per_image"] == pytest.approx(run["ms_per_call"] / run["batch_size"],
                                                    abs=0.02)
    assert set(figures["ratios"]) == {"pyramid/float32/B1", "pyramid/float32/B3"}


def test_benchmarks_name_an_unknown_representation():
    result = _run("generate.py", "--representation", "voxels", "--rounds", "1")
    assert result.returncode != 0
    assert "--representation 'voxels'" in result.stderr
    assert "Traceback" not in result.stderr
    odd = _run("train_step.py", "--image_size", "30", "--steps", "1")
    assert odd.returncode != 0
    assert "--image_size 30: use a multiple of 4" in odd.stderr
    assert "Traceback" not in odd.stderr


def test_a_backend_keras_does_not_run_on_is_named():
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / "train_step.py"), "--preset", "tiny",
         "--backend", "tensorflow"], cwd=REPO_ROOT, env={**os.environ, "KERAS_BACKEND": "jax"},
        capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert ("--backend tensorflow but Keras runs on jax; set KERAS_BACKEND=tensorflow"
            in result.stderr)
    assert "Traceback" not in result.stderr


def test_the_gpu_script_times_the_jax_step_and_ends_with_json(tmp_path):
    """benchmarks/gpu/run.sh as run on a GPU machine, here on CPU JAX with a tiny model (its
    own flags overridden) and no wheels to install (Keras is already here)."""
    env = {**os.environ, "GQN_WHEELS": str(tmp_path), "PYTHON": sys.executable,
           "JAX_PLATFORMS": "cpu"}
    result = subprocess.run(
        ["bash", str(REPO_ROOT / "benchmarks" / "gpu" / "run.sh"), "--preset", "tiny",
         "--batch_size", "2", "--context_size", "2", "--steps", "2",
         "--mixed_precision", "float32"], cwd=tmp_path, env=env, capture_output=True,
        text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["backend"] == "jax" and figures["device"].startswith("cpu")
    assert "oneDNN" not in result.stderr  # TensorFlow, imported by Keras' seeding, kept quiet
    assert figures["batch_size"] == 2 and figures["preset"] == "tiny"
    (run,) = figures["results"]
    assert (run["representation"], run["policy"], run["variant"]) == (
        "pool", "float32", "factorised")
    # step_s is rounded to 1e-4 s, images_per_s computed before rounding.
    assert run["step_s"] > 0 and 2 / run["images_per_s"] == pytest.approx(run["step_s"],
                                                                          abs=6e-5)


def test_the_gpu_training_script_continues_the_bundled_model_in_one_program(tmp_path):
    """benchmarks/gpu/train.sh as one GPU call runs it, here on CPU JAX without TensorFlow-made
    files: scenes rendered in memory, the bundled model continued at its step, every context
    size in one compiled program, and the files to bring back in the output folder (its own
    scene counts and steps overridden to stay short)."""
    from gqn_tf.training import checkpoints, schedules

    step = checkpoints.load_model(str(REPO_ROOT / "pretrained" / "gqn_sm7_32.npz"))[1]["step"]
    env = {**os.environ, "GQN_WHEELS": str(tmp_path), "PYTHON": sys.executable,
           "JAX_PLATFORMS": "cpu"}
    out = tmp_path / "out"
    result = subprocess.run(
        ["bash", str(REPO_ROOT / "benchmarks" / "gpu" / "train.sh"), str(out),
         "--synthetic_scenes", "40", "--synthetic_test_scenes", "8", "--eval_scenes", "8",
         "--eval_every", "2", "--max_steps", str(step + 4), "--log_every", "2",
         "--save_every", "2"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Starting from the weights of pretrained/gqn_sm7_32.npz at step {step}" \
        in result.stdout
    assert "XLA compiled 1 training program(s)" in result.stdout
    assert {"model.npz", "model.keras", "metrics.jsonl", "train_state.npz"} <= {
        p.name for p in out.iterdir()}
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    # a line every 2 steps (at even steps) and one at the last step
    logged = [line["step"] for line in lines]
    assert logged == sorted({s for s in range(step + 1, step + 5) if s % 2 == 0} | {step + 4})
    recipe = schedules.parse_points("0:2.0,2000:0.7,69000:0.7,71000:0.3")  # train.sh's default
    assert lines[-1]["sigma"] == pytest.approx(
        float(schedules.piecewise_linear(step + 4, recipe)))
    rates = schedules.parse_points(
        "0:5e-4,49500:5e-4,49501:2.5e-4,56100:2.5e-4,56101:1.25e-4,106043:1.25e-4,106044:6.25e-5")
    assert lines[-1]["learning_rate"] == pytest.approx(
        float(schedules.piecewise_linear(step + 3, rates)), rel=1e-5)
    held = [json.loads(line) for line in (out / "eval" / "metrics.jsonl").read_text().splitlines()]
    evaluated = [e["step"] for e in held if e["split"] == "test"]
    assert evaluated == sorted({step, step + 4} | {s for s in range(step, step + 5) if s % 2 == 0})

    # benchmarks/plot_runs.py draws these held-out curves; --from_step keeps the later points
    def plot(*args):
        return subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / "plot_runs.py"),
                               "--run", f"g={out}", "--out", str(tmp_path / "g.png"), *args],
                              cwd=tmp_path, capture_output=True, text=True, timeout=120)

    zoomed = plot("--from_step", str(step + 2))
    assert zoomed.returncode == 0, zoomed.stderr[-3000:]
    assert (tmp_path / "g.png").read_bytes().startswith(b"\x89PNG")
    summary = json.loads(zoomed.stdout.strip().splitlines()[-1])["runs"]["g"]
    later = [e for e in held if e["split"] == "test" and e["step"] >= step + 2]
    assert summary["step"] == step + 4
    assert summary["best"]["prior_mean_mse_ratio"] == min(e["prior_mean_mse_ratio"]
                                                          for e in later)
    beyond = plot("--from_step", str(step + 5))
    assert beyond.returncode == 1 and f"no test points at step {step + 5} or later" in beyond.stderr


def test_plot_runs_names_a_run_without_held_out_curves_and_a_bad_run_flag(tmp_path):
    def plot(*args):
        return subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / "plot_runs.py"),
                               *args, "--out", str(tmp_path / "p.png")], cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)

    missing = plot("--run", f"a={tmp_path}")
    assert missing.returncode == 1
    assert "metrics.jsonl does not exist: train the run with --eval_every N" in missing.stderr
    bad = plot("--run", "runs/a")
    assert bad.returncode == 2 and "expected NAME=MODEL_DIR" in bad.stderr
