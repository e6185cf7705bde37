"""train_jax.py run as a user runs it on a GPU machine without TensorFlow (a subprocess in which
`import tensorflow` fails), on the bundled sample's real shards; then its run directory is read
back here, on TensorFlow: the .keras model is exported to a SavedModel and served, and the
compact file continues under train.py --init_from."""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from gqn_tf.training import checkpoints

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
# Blocks TensorFlow, then runs train_jax.py as its __main__ with the arguments given.
_WITHOUT_TF = ("import runpy, sys; sys.modules['tensorflow'] = None; "
               "sys.modules['tensorflow_probability'] = None; "
               "sys.argv = ['train_jax.py', *sys.argv[1:]]; "
               "runpy.run_path('train_jax.py', run_name='__main__')")
RUN = ["--dataset", "shepard_metzler_7_parts", "--preset", "tiny", "--frame_size", "32",
       "--batch_size", "4", "--context_size", "2", "--seed", "5", "--lr_initial", "1e-3",
       "--sigma_steps", "10", "--log_every", "2", "--save_every", "3"]


def _env():
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    env["JAX_PLATFORMS"] = "cpu"
    return env


def _command(*args):
    return [sys.executable, "-c", _WITHOUT_TF, *RUN, *args]


def _train_jax(*args, timeout=240):
    return subprocess.run(_command(*args), cwd=REPO_ROOT, env=_env(), capture_output=True,
                          text=True, timeout=timeout)


def _state(model_dir):
    """The weights, optimizer state and step of a run's train_state.npz."""
    with np.load(model_dir / "train_state.npz") as saved:
        return {key: saved[key] for key in saved.files
                if key not in ("format", "compute_seconds")}


@pytest.fixture(scope="module")
def runs(sample_dir, tmp_path_factory):
    """One run of 6 steps straight, and one of 4 steps resumed to 6 with the same command."""
    root = tmp_path_factory.mktemp("jax_runs")
    straight, resumed = root / "straight", root / "resumed"
    data = ["--data_dir", str(sample_dir)]
    results = {"straight": _train_jax(*data, "--max_steps", "6", "--model_dir", str(straight)),
               "first": _train_jax(*data, "--max_steps", "4", "--model_dir", str(resumed)),
               "second": _train_jax(*data, "--max_steps", "6", "--model_dir", str(resumed))}
    for name, result in results.items():
        assert result.returncode == 0, (name, result.stderr[-3000:])
    return straight, resumed, results


def test_a_run_without_tensorflow_writes_its_files_and_learns(runs):
    straight, _, results = runs
    assert {p.name for p in straight.iterdir()} == {
        "model.keras", "model.npz", "train_state.npz", "run_config.json", "metrics.jsonl"}
    lines = [json.loads(line) for line in (straight / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [2, 4, 6]
    assert lines[-1]["loss"] < lines[0]["loss"]
    assert lines[0]["sigma"] > lines[-1]["sigma"]  # σ anneals inside the compiled step
    assert len(lines[0]["kl_per_layer"]) == 2  # the tiny preset's L
    run_config = json.loads((straight / "run_config.json").read_text())
    assert run_config["backend"] == "jax" and run_config["model"]["image_size"] == 32
    assert "step 6/6" in results["straight"].stdout
    assert "Traceback" not in results["straight"].stderr
    assert "Unable to initialize backend" not in results["straight"].stderr


def test_held_out_curves_without_tensorflow_leave_training_unchanged(runs, sample_dir,
                                                                     tmp_path):
    straight, _, _ = runs
    result = _train_jax("--data_dir", str(sample_dir), "--max_steps", "6", "--model_dir",
                        str(tmp_path), "--eval_every", "3", "--eval_scenes", "5",
                        "--eval_batch_size", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Held-out at step 6 (M = 2" in result.stdout
    lines = [json.loads(line) for line in
             (tmp_path / "eval" / "metrics.jsonl").read_text().splitlines()]
    assert [(e["step"], e["split"]) for e in lines] == [
        (step, split) for step in (0, 3, 6) for split in ("test", "train")]
    for entry in lines:
        assert entry["num_scenes"] == 5 and entry["context_size"] == 2
        for name in ("neg_elbo_nats", "kl_nats", "generation_mse", "sample_mean_mse",
                     "prior_mean_mse", "mean_image_mse", "generation_mse_ratio",
                     "prior_mean_psnr", "cpu_seconds", "wall_seconds"):
            assert np.isfinite(entry[name]), name
        assert entry["generation_mse_ratio"] == pytest.approx(
            entry["generation_mse"] / entry["mean_image_mse"])
    tests = [e for e in lines if e["split"] == "test"]
    assert len({e["mean_image_mse"] for e in tests}) == 1  # the same scenes every time
    assert tests[0]["cpu_seconds"] < tests[1]["cpu_seconds"] < tests[2]["cpu_seconds"]
    with np.load(tmp_path / "train_state.npz") as saved:
        assert saved["compute_seconds"][2] > 0  # evaluation CPU, counted apart
    expected, found = _state(straight), _state(tmp_path)
    for key in expected:
        np.testing.assert_array_equal(found[key], expected[key], err_msg=key)


def test_masked_context_compiles_once_and_init_from_continues_a_compact_model(
        runs, sample_dir, tmp_path):
    """--masked_context: every random M in one program; --init_from: a new JAX run starts
    from a compact model's weights at its step, and counts on from its compute seconds."""
    straight, _, _ = runs
    at = RUN.index("--context_size")
    random_m = [*RUN[:at], *RUN[at + 2:]]  # M drawn per batch from 0..--max_context_size

    def train(*args):
        return subprocess.run([sys.executable, "-c", _WITHOUT_TF, *random_m, *args],
                              cwd=REPO_ROOT, env=_env(), capture_output=True, text=True,
                              timeout=240)

    args = ["--data_dir", str(sample_dir), "--max_context_size", "3", "--masked_context"]
    drawn = {int(np.random.default_rng([5, step]).integers(0, 4)) for step in range(6)}
    assert len(drawn) > 1  # the sampler's M of steps 0-5 at seed 5 (as SceneSampler draws)
    masked = train(*args, "--max_steps", "6", "--model_dir", str(tmp_path / "masked"))
    assert masked.returncode == 0, masked.stderr[-3000:]
    assert "XLA compiled 1 training program(s)" in masked.stdout
    started = train(*args, "--max_steps", "8", "--model_dir", str(tmp_path / "started"),
                    "--init_from", str(straight / "model.npz"))
    assert started.returncode == 0, started.stderr[-3000:]
    assert "Starting from the weights of" in started.stdout and "at step 6" in started.stdout
    lines = [json.loads(line) for line in
             (tmp_path / "started" / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [8]  # steps 7 and 8: it went on from step 6
    with np.load(straight / "train_state.npz") as first, \
            np.load(tmp_path / "started" / "train_state.npz") as second:
        assert second["compute_seconds"][0] > first["compute_seconds"][0]
    wide = train(*args, "--max_steps", "7", "--model_dir", str(tmp_path / "wide"),
                 "--init_from", str(straight / "model.npz"), "--model", "hidden_channels=12")
    assert wide.returncode == 0, wide.stderr[-3000:]
    assert "at step 6, grown (hidden_channels 8 -> 12" in wide.stdout
    bad = train(*args, "--max_steps", "8", "--model_dir", str(tmp_path / "bad"),
                "--init_from", str(straight))
    assert bad.returncode == 2
    assert "give a compact .npz or a .keras file" in bad.stderr


def test_a_resumed_run_ends_where_an_uninterrupted_one_does(runs):
    straight, resumed, results = runs
    assert "Resumed from" in results["second"].stdout and "at step 4" in results["second"].stdout
    expected, found = _state(straight), _state(resumed)
    assert expected.keys() == found.keys()
    for key in expected:
        np.testing.assert_array_equal(found[key], expected[key], err_msg=key)


def test_tensorflow_exports_and_serves_the_jax_model(runs, tmp_path, make_batch):
    straight, _, _ = runs
    model, info = checkpoints.load_model(str(straight / "model.keras"))
    compact, compact_info = checkpoints.load_model(str(straight / "model.npz"))
    assert compact_info["step"] == 6
    for a, b in zip(model.weights, compact.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=2e-3, rtol=2e-3)  # float16
    export = subprocess.run(
        [sys.executable, "export/export_saved_model.py", "--model_dir",
         str(straight / "model.keras"), "--export_dir", str(tmp_path / "export")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert export.returncode == 0, export.stderr[-3000:]
    served = tf.saved_model.load(str(tmp_path / "export" / "1"))
    rng = np.random.default_rng(0)
    frames = rng.uniform(size=(2, 2, 32, 32, 3)).astype(np.float32)
    cameras = rng.normal(size=(2, 2, 5)).astype(np.float32)
    query = rng.normal(size=(2, 5)).astype(np.float32)
    out = served.signatures["generate_seeded"](
        context_frames=tf.constant(frames), context_cameras=tf.constant(cameras),
        query_camera=tf.constant(query), seed=tf.constant([3, 0], tf.int32))
    image = next(iter(out.values())).numpy()
    assert image.shape == (2, 32, 32, 3) and np.all((image >= 0) & (image <= 1))


def test_train_py_continues_from_the_jax_model_at_its_step(runs, sample_dir, tmp_path):
    straight, _, _ = runs
    result = subprocess.run(
        [sys.executable, "train.py", "--dataset", "shepard_metzler_7_parts", "--data_dir",
         str(sample_dir), "--preset", "tiny", "--frame_size", "32", "--batch_size", "4",
         "--max_steps", "8", "--log_every", "1", "--image_every", "0", "--model_dir",
         str(tmp_path / "tf_run"), "--init_from", str(straight / "model.npz")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "step 7/8" in result.stderr and "step 6/8" not in result.stderr


def test_a_saved_run_refuses_another_model_but_a_failed_start_does_not(runs, sample_dir,
                                                                       tmp_path):
    saved = tmp_path / "saved"
    shutil.copytree(runs[0], saved)
    other = ["--model", "num_layers=3", "--data_dir", str(sample_dir), "--max_steps", "1",
             "--model_dir", str(saved)]
    refused = _train_jax(*other)
    assert refused.returncode == 2
    assert "holds a run of another model config" in refused.stderr
    assert "Traceback" not in refused.stderr
    (saved / "train_state.npz").unlink()  # as after a start that failed before its first save
    started = _train_jax(*other)
    assert started.returncode == 0, started.stderr[-3000:]
    assert json.loads((saved / "run_config.json").read_text())["model"]["num_layers"] == 3


def test_sigterm_saves_and_the_same_command_resumes(sample_dir, tmp_path):
    model_dir = tmp_path / "run"
    args = ["--data_dir", str(sample_dir), "--max_steps", "100000", "--log_every", "1",
            "--save_every", "100000", "--model_dir", str(model_dir)]
    log = open(tmp_path / "log.txt", "w")
    process = subprocess.Popen(_command(*args), cwd=REPO_ROOT, env=_env(), stdout=log,
                               stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 180
        while "step 3/" not in (tmp_path / "log.txt").read_text():
            assert process.poll() is None and time.monotonic() < deadline, \
                (tmp_path / "log.txt").read_text()[-2000:]
            time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=120) == 128 + signal.SIGTERM
    finally:
        if process.poll() is None:
            process.kill()
        log.close()
    text = (tmp_path / "log.txt").read_text()
    assert "(SIGTERM); saved in" in text and "Traceback" not in text
    step = int(text.split("Stopped at step ")[1].split()[0])
    assert step >= 3
    with np.load(model_dir / "model.npz") as saved:
        assert json.loads(str(saved["header"]))["metadata"]["step"] == step
    again = _train_jax(*args[:2], "--max_steps", str(step + 1), "--model_dir", str(model_dir))
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"at step {step}" in again.stdout and f"step {step + 1}/{step + 1}" in again.stdout


def test_bad_input_is_one_line(sample_dir, tmp_path):
    damaged = tmp_path / "data" / "shepard_metzler_7_parts" / "train"
    damaged.mkdir(parents=True)
    for path in sorted((sample_dir / "shepard_metzler_7_parts" / "train").iterdir()):
        data = path.read_bytes()
        (damaged / path.name).write_bytes(data[:-50] if path.name.startswith("3-") else data)
    result = _train_jax("--data_dir", str(tmp_path / "data"), "--max_steps", "2",
                        "--model_dir", str(tmp_path / "run"))
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.startswith("train_jax.py:")]
    assert len(lines) == 1 and "3-of-4.tfrecord" in lines[0] and "truncated" in lines[0]
    assert "Traceback" not in result.stderr
    wrong = subprocess.run(
        [sys.executable, "train_jax.py", *RUN, "--data_dir", str(sample_dir), "--model_dir",
         str(tmp_path / "run2")], cwd=REPO_ROOT, env={**_env(), "KERAS_BACKEND": "tensorflow"},
        capture_output=True, text=True, timeout=120)
    assert wrong.returncode == 2 and "runs on the JAX backend" in wrong.stderr
    (tmp_path / "tf_run" / "checkpoints").mkdir(parents=True)
    mixed = _train_jax("--data_dir", str(sample_dir), "--max_steps", "2", "--model_dir",
                       str(tmp_path / "tf_run"))
    assert mixed.returncode == 2 and "holds a train.py (TensorFlow) run" in mixed.stderr


def test_a_nan_loss_and_bad_settings_are_one_line(sample_dir, tmp_path):
    def one_line(result, code, words):
        assert result.returncode == code, result.stderr[-3000:]
        lines = [line for line in result.stderr.splitlines() if line.startswith("train_jax.py:")]
        assert len(lines) == 1 and words in lines[0], result.stderr[-3000:]
        assert "Traceback" not in result.stderr

    data = ["--data_dir", str(sample_dir), "--max_steps", "6"]
    nan = _train_jax(*data, "--lr_initial", "1e30", "--lr_final", "1e30", "--log_every", "3",
                     "--save_every", "3", "--model_dir", str(tmp_path / "nan"))
    one_line(nan, 1, "The loss became NaN or Inf between steps 1 and 3; nothing of this run "
                     "was saved. Lower --lr_initial")
    assert not (tmp_path / "nan" / "train_state.npz").exists()
    sizes = _train_jax(*data, "--model", "image_size=64", "--model_dir", str(tmp_path / "size"))
    one_line(sizes, 2, "built for 64x64 frames but the input gives 32x32; set --frame_size 64")
    (tmp_path / "state").mkdir()
    np.savez(tmp_path / "state" / "train_state.npz", weights=np.zeros(3))
    state = _train_jax(*data, "--model_dir", str(tmp_path / "state"))
    one_line(state, 2, "train_state.npz' is not a train_jax.py state file")
