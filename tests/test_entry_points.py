"""Every command behaves alike: `--help` exits 0 without importing TensorFlow, a flag mistake is
one line `<script>: ...` with exit 2, and no TensorFlow start-up lines reach the terminal."""

import pathlib
import subprocess
import sys

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPTS = ["train.py", "train_jax.py", "evaluate.py", "render.py", "analyze.py", "view.py",
           "data/download.py",
           "data/synthesize.py", "export/client.py", "export/export_saved_model.py",
           "export/save_compact.py", "benchmarks/generate.py", "benchmarks/train_step.py",
           "benchmarks/input_pipeline.py", "benchmarks/plot_runs.py",
           "benchmarks/viewer_latency.py"]
MODULES = ["gqn_tf.data.tfds_register", "gqn_tf.data.check", "gqn_tf.training.launch"]
ENTRY_POINTS = [("script", name) for name in SCRIPTS] + [("module", name) for name in MODULES]
REQUIRED_ARGUMENTS = {"gqn_tf.data.check": ["--dataset", "shepard_metzler_7_parts"]}
# The C++ start-up lines TensorFlow writes before its logging is set up.
TF_NOISE = ("absl::InitializeLog", "cudart_stub", "cuda_platform", "cpu_feature_guard",
            "oneDNN custom operations")


def _probe(kind, name, *args):
    """Runs the entry point in a fresh interpreter; the last stdout line says whether
    TensorFlow was imported and the exit code."""
    run = (f"runpy.run_path({name!r}, run_name='__main__')" if kind == "script"
           else f"runpy.run_module({name!r}, run_name='__main__', alter_sys=True)")
    probe = ("import os, runpy, sys\n"
             f"sys.argv = [{name!r}, *{list(args)!r}]\n"
             # as `python SCRIPT` does: the script's folder first on the path
             + (f"sys.path.insert(0, os.path.dirname(os.path.abspath({name!r})))\n"
                if kind == "script" else "") +
             "code = 0\n"
             "try:\n"
             f"    {run}\n"
             "except SystemExit as exit_:\n"
             "    code = exit_.code\n"
             "print('tensorflow' in sys.modules, code)\n")
    return subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("kind,name", ENTRY_POINTS, ids=[name for _, name in ENTRY_POINTS])
def test_help_exits_0_without_importing_tensorflow(kind, name):
    result = _probe(kind, name, "--help")
    assert result.stdout.strip().splitlines()[-1:] == ["False 0"], result.stderr[-2000:]


@pytest.mark.parametrize("kind,name", ENTRY_POINTS, ids=[name for _, name in ENTRY_POINTS])
def test_an_unknown_flag_is_one_line_and_exit_2(kind, name):
    command = ([sys.executable, name] if kind == "script" else [sys.executable, "-m", name])
    needed = REQUIRED_ARGUMENTS.get(name, [])  # argparse names a missing one first
    result = subprocess.run([*command, *needed, "--no_such_flag=1"], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "no_such_flag" in lines[0] and "--help" in lines[0]
    assert lines[0].split(":")[0] in (pathlib.Path(name).name, f"python -m {name}")


def test_a_bad_flag_value_names_the_flag_and_the_choices():
    result = subprocess.run([sys.executable, "train.py", "--dataset", "shepard_metzler",
                             "--model_dir", "/tmp/unused"], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("train.py: flag --dataset=shepard_metzler: value should be one of")
    assert "shepard_metzler_7_parts" in line


def test_synthesize_prints_no_tensorflow_start_up_lines(tmp_path):
    result = subprocess.run(
        [sys.executable, "data/synthesize.py", "--dataset", "shepard_metzler_7_parts",
         "--out", str(tmp_path), "--train_scenes", "2", "--test_scenes", "1",
         "--scenes_per_shard", "2", "--workers", "1"], cwd=REPO_ROOT, capture_output=True,
        text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert not [line for line in result.stderr.splitlines()
                if any(noise in line for noise in TF_NOISE)], result.stderr
    assert sorted(p.name for p in (tmp_path / "shepard_metzler_7_parts" / "test").iterdir()) \
        == ["1-of-1.tfrecord"]
