import json
import pathlib
import subprocess
import sys

from PIL import Image

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
DATASET = "shepard_metzler_7_parts"


def _evaluate(*args, timeout=120):
    return subprocess.run([sys.executable, str(REPO_ROOT / "evaluate.py"), *args],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)


def test_evaluate_writes_metrics_figures_and_prints_the_table(tiny_trained_run, sample_dir,
                                                              tmp_path):
    output_dir = tmp_path / "eval"
    result = _evaluate("--dataset", DATASET, "--data_dir", str(sample_dir),
                       "--model_dir", str(tiny_trained_run), "--output_dir", str(output_dir),
                       "--num_scenes", "3", "--max_context", "2", "--samples", "2",
                       "--sigma", "1.0", "--grid_context", "0,2")
    assert result.returncode == 0, result.stderr
    metrics = json.loads((output_dir / "metrics.json").read_text())
    assert [row["num_context"] for row in metrics["per_context"]] == [0, 1, 2]
    assert metrics["sigma"] == 1.0 and metrics["sigma_source"] == "flag"
    for name in ("curves.png", "grid_M00.png", "grid_M02.png"):
        with Image.open(output_dir / name) as image:
            image.load()
    assert "-ELBO nats" in result.stdout and "\n all " in result.stdout
    assert "3/3" in result.stderr  # the progress bar reached the last scene
    assert list(output_dir.glob("events.out.tfevents.*"))


def test_more_scenes_than_the_split_holds_exits_with_the_count(tiny_trained_run, sample_dir,
                                                               tmp_path):
    result = _evaluate("--dataset", DATASET, "--data_dir", str(sample_dir),
                       "--model_dir", str(tiny_trained_run), "--output_dir", str(tmp_path),
                       "--num_scenes", "1000")
    assert result.returncode != 0
    assert "num_scenes 1000 is more than the test split" in result.stderr
    assert "has 80 scenes" in result.stderr
    assert not (tmp_path / "metrics.json").exists()


def test_the_bundled_model_on_64x64_frames_warns_of_the_resize_and_stays_in_its_context_range(
        sample_dir, tmp_path):
    """The bundled model was trained on 32x32 frames with M from 0..5: evaluating it on the
    sample's 64x64 frames says that it resizes them, and evaluates M = 0..5, saying why."""
    result = _evaluate("--dataset", DATASET, "--data_dir", str(sample_dir),
                       "--model_dir", str(REPO_ROOT / "pretrained" / "gqn_sm7_32.npz"),
                       "--output_dir", str(tmp_path), "--num_scenes", "2", "--batch_size", "2",
                       "--latent_samples", "0", "--samples", "1", "--grid_scenes", "1",
                       "--noprogress", timeout=300)
    assert result.returncode == 0, result.stderr
    assert "frames are 64x64 and the model takes 32x32: resizing them" in result.stderr
    assert "Evaluating M = 0..5, the context sizes the model was trained with" in result.stderr
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["max_context"] == 5 and metrics["image_size"] == 32
    assert [row["num_context"] for row in metrics["per_context"]] == list(range(6))
    again = _evaluate("--dataset", DATASET, "--data_dir", str(sample_dir),
                      "--model_dir", str(REPO_ROOT / "pretrained" / "gqn_sm7_32.npz"),
                      "--output_dir", str(tmp_path / "more"), "--num_scenes", "2",
                      "--batch_size", "2", "--latent_samples", "0", "--samples", "1",
                      "--grid_scenes", "0", "--max_context", "7", "--frame_size", "32",
                      "--noprogress", timeout=300)
    assert again.returncode == 0, again.stderr
    assert "resizing them" not in again.stderr and "Evaluating M = 0..5" not in again.stderr
    assert json.loads((tmp_path / "more" / "metrics.json").read_text())["max_context"] == 7
