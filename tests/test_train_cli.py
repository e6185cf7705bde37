import os
import pathlib
import re
import signal
import subprocess
import sys

from gqn_tf.training import checkpoints

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]

TINY_RUN = ["--dataset", "shepard_metzler_7_parts", "--preset", "tiny", "--batch_size", "4",
            "--max_context_size", "3", "--log_every", "1", "--image_every", "0"]


def _command(*args):
    return [sys.executable, str(REPO_ROOT / "train.py"), *args]


def _train(*args, timeout=120):
    return subprocess.run(_command(*args), cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=timeout)


def test_unknown_dataset_exits_with_the_known_names(tmp_path):
    result = _train("--dataset", "nope", "--model_dir", str(tmp_path))
    assert result.returncode != 0
    assert "--dataset" in result.stderr and "shepard_metzler_7_parts" in result.stderr


def test_context_size_not_below_views_per_scene_is_rejected(sample_dir, tmp_path):
    result = _train(*TINY_RUN, "--data_dir", str(sample_dir), "--model_dir", str(tmp_path),
                    "--context_size", "15")
    assert result.returncode != 0
    assert "context_size 15 must be smaller than the 15 views per scene" in result.stderr


def test_unknown_model_override_is_rejected(sample_dir, tmp_path):
    result = _train(*TINY_RUN, "--data_dir", str(sample_dir), "--model_dir", str(tmp_path),
                    "--model", "num_layer=3")
    assert result.returncode != 0
    assert "NAME one of" in result.stderr and "num_layers" in result.stderr


def test_missing_data_says_how_to_download_or_use_the_sample(tmp_path):
    result = _train(*TINY_RUN, "--data_dir", str(tmp_path / "nothing"),
                    "--model_dir", str(tmp_path / "run"))
    assert result.returncode != 0
    assert "python data/download.py --dataset shepard_metzler_7_parts" in result.stderr
    assert "--data_dir data/sample" in result.stderr


def test_sigint_saves_a_checkpoint_and_the_next_run_resumes_from_it(sample_dir, tmp_path):
    model_dir = str(tmp_path / "run")
    args = [*TINY_RUN, "--data_dir", str(sample_dir), "--model_dir", model_dir,
            "--checkpoint_every", "1000", "--max_steps", "100000"]
    process = subprocess.Popen(_command(*args), cwd=REPO_ROOT, stderr=subprocess.PIPE,
                               stdout=subprocess.DEVNULL, text=True)
    try:
        lines = []
        for line in process.stderr:
            lines.append(line)
            if re.search(r"step 3/100000 .*steps/s .*ETA", line):
                process.send_signal(signal.SIGINT)
                break
        lines.extend(process.stderr)
        process.wait(timeout=60)
    finally:
        process.kill()
    output = "".join(lines)
    assert process.returncode == 128 + signal.SIGINT, output
    stopped = re.search(r"Stopped by SIGINT at step (\d+)", output)
    assert stopped, output
    step = int(stopped.group(1))
    assert checkpoints.latest_checkpoint(model_dir).endswith(f"ckpt-{step}")
    assert os.path.exists(os.path.join(model_dir, "run_config.json"))

    args[args.index("--max_steps") + 1] = str(step + 1)
    resumed = _train(*args)
    assert resumed.returncode == 0, resumed.stderr
    assert f"at step {step}." in resumed.stderr and f"Reached step {step + 1}" in resumed.stderr
    assert checkpoints.latest_checkpoint(model_dir).endswith(f"ckpt-{step + 1}")
