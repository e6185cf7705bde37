"""Multi-worker training with real worker processes on 127.0.0.1 (gqn_tf/training/cluster.py,
launch.py and the multi-worker parts of loop.py)."""

import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest
import tensorflow as tf

from gqn_tf.model import get_preset
from gqn_tf.training import checkpoints, cluster, loop

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
RUN = ["--dataset", "shepard_metzler_7_parts", "--preset", "tiny", "--batch_size", "4",
       "--max_context_size", "3", "--seed", "7", "--log_every", "1", "--image_every", "0"]


def _env(tf_config=None, tmp=None):
    """The workers' environment; `tmp`, their own temporary directory (for their scratch
    checkpoint copies), so that a test sees only its own workers' files."""
    env = {k: v for k, v in os.environ.items() if k != cluster.TF_CONFIG}
    if tf_config is not None:
        env[cluster.TF_CONFIG] = tf_config
    if tmp is not None:
        pathlib.Path(tmp).mkdir(exist_ok=True)
        env["TMPDIR"] = str(tmp)
    return env


def _launch(*args, tmp=None, timeout=240):
    return subprocess.run(
        [sys.executable, "-m", "gqn_tf.training.launch", "--num_workers", "2", "--", *args],
        cwd=REPO_ROOT, env=_env(tmp=tmp), capture_output=True, text=True, timeout=timeout)


def _worker(ports, index, *args, log, tmp=None):
    return subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "train.py"), *args], cwd=REPO_ROOT,
        env=_env(cluster.loopback_tf_config(ports, index), tmp), stdout=log,
        stderr=subprocess.STDOUT)


def _scratch_dirs(tmp):
    return sorted(p.name for p in pathlib.Path(tmp).glob("gqn_worker_checkpoint_*"))


def test_tf_config_gives_the_tasks_in_replica_order_and_each_worker_its_rows():
    text = json.dumps({"cluster": {"chief": ["a:1"], "worker": ["b:2", "c:3"]},
                       "task": {"type": "worker", "index": 1}})
    found = cluster.from_environment({cluster.TF_CONFIG: text})
    assert found.tasks == (("chief", 0, "a:1"), ("worker", 0, "b:2"), ("worker", 1, "c:3"))
    assert found.worker_index == 2 and not found.is_chief
    assert found.rows(12) == (8, 12)
    one = json.dumps({"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 0}})
    assert cluster.from_environment({cluster.TF_CONFIG: one}) is None
    assert cluster.from_environment({}) is None


@pytest.mark.parametrize("text, words", [
    ("{not json", "not a valid cluster description"),
    ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 5}}',
     "task (worker 5) is not one of its cluster's tasks"),
    ('{"cluster": {"worker": ["a:1"], "ps": ["b:2"]}, "task": {"type": "worker", "index": 0}}',
     "parameter servers"),
])
def test_a_bad_tf_config_is_named(text, words):
    with pytest.raises(cluster.ClusterError, match=re.escape(words)):
        cluster.from_environment({cluster.TF_CONFIG: text})


def test_two_workers_make_the_same_update_as_one_process_and_only_the_chief_writes(
        sample_dir, tmp_path):
    result = _launch(*RUN, "--data_dir", str(sample_dir), "--max_steps", "4",
                     "--checkpoint_every", "2", "--model_dir", str(tmp_path / "two"),
                     "--eval_every", "2", "--eval_scenes", "4", tmp=tmp_path / "tmp")
    assert result.returncode == 0, result.stdout[-3000:]
    losses = [float(x) for x in re.findall(r"\[worker 0\].*step \d+/4  -ELBO (\S+)", result.stdout)]
    assert len(losses) == 4
    assert not re.search(r"\[worker 1\].*step \d+/4", result.stdout)  # one progress line
    # Only the chief evaluates held-out scenes and says how the run ended.
    assert len(re.findall(r"\[worker 0\].*Held-out at step", result.stdout)) == 3
    assert not re.search(r"\[worker 1\].*(Held-out|Reached step)", result.stdout)
    assert re.search(r"\[worker 0\].*Reached step 4", result.stdout)

    config = loop.TrainConfig(
        dataset="shepard_metzler_7_parts", data_dir=str(sample_dir),
        model_dir=str(tmp_path / "one"), max_steps=4, batch_size=4, max_context_size=3, seed=7,
        log_every=1, image_every=0, checkpoint_every=2, strategy="mirrored")
    one = loop.train(get_preset("tiny"), config, strategy=tf.distribute.MirroredStrategy(["/cpu:0"]))
    assert losses[-1] == pytest.approx(one.metrics["loss"], rel=1e-4)

    trained, _ = checkpoints.load_model(str(tmp_path / "two"))
    alone, _ = checkpoints.load_model(str(tmp_path / "one"))
    for a, b in zip(trained.weights, alone.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=3e-5)
    # The chief's files only: two checkpoints, one events file, one run_config.json.
    files = sorted(p.relative_to(tmp_path / "two").as_posix()
                   for p in (tmp_path / "two").rglob("*") if p.is_file())
    assert [f for f in files if f.startswith("checkpoints/")] == [
        "checkpoints/checkpoint", "checkpoints/ckpt-2.data-00000-of-00001",
        "checkpoints/ckpt-2.index", "checkpoints/ckpt-4.data-00000-of-00001",
        "checkpoints/ckpt-4.index"]
    assert len([f for f in files if f.startswith("train/events.out.tfevents")]) == 1
    assert len([f for f in files if f.startswith("eval/test/events.out.tfevents")]) == 1
    assert len([f for f in files if f.startswith("eval/train/events.out.tfevents")]) == 1
    assert "run_config.json" in files and "eval/metrics.jsonl" in files and len(files) == 10
    # Worker 1's own checkpoint copies were deleted after each save.
    assert _scratch_dirs(tmp_path / "tmp") == []


def test_a_worker_without_its_peer_exits_naming_it(sample_dir, tmp_path):
    ports = cluster.free_ports(2)
    started = time.monotonic()
    process = subprocess.run(
        [sys.executable, str(REPO_ROOT / "train.py"), *RUN, "--data_dir", str(sample_dir),
         "--model_dir", str(tmp_path), "--worker_timeout", "3"], cwd=REPO_ROOT,
        env=_env(cluster.loopback_tf_config(ports, 0)), capture_output=True, text=True,
        timeout=120)
    assert process.returncode != 0
    assert time.monotonic() - started < 60
    assert (f"worker 0 timed out after 3 s waiting for the cluster: no answer from worker 1 at "
            f"127.0.0.1:{ports[1]}") in process.stderr
    assert "Traceback" not in process.stderr


def test_a_lost_peer_stops_the_other_worker_and_a_rerun_resumes(sample_dir, tmp_path):
    model_dir = tmp_path / "run"
    args = [*RUN, "--data_dir", str(sample_dir), "--model_dir", str(model_dir),
            "--checkpoint_every", "3", "--max_steps", "100000"]
    ports = cluster.free_ports(2)
    logs = [open(tmp_path / f"worker{i}.log", "w+") for i in range(2)]
    workers = [_worker(ports, i, *args, log=logs[i], tmp=tmp_path / "tmp") for i in range(2)]
    try:
        deadline = time.monotonic() + 120
        while checkpoints.latest_checkpoint(str(model_dir)) is None:
            assert time.monotonic() < deadline and workers[0].poll() is None, \
                (tmp_path / "worker0.log").read_text()[-3000:]
            time.sleep(0.5)
        os.kill(workers[1].pid, signal.SIGKILL)
        code = workers[0].wait(timeout=90)
    finally:
        for process in workers:
            if process.poll() is None:
                process.kill()
        for log in logs:
            log.close()
    chief_log = (tmp_path / "worker0.log").read_text()
    assert code not in (0, None)
    assert "worker 0 lost contact with another worker (worker 1)" in chief_log, chief_log[-3000:]
    assert "rerun every worker with the same command" in chief_log

    saved = int(checkpoints.latest_checkpoint(str(model_dir)).rsplit("-", 1)[1])
    result = _launch(*args[:-1], str(saved + 1), tmp=tmp_path / "tmp")
    assert result.returncode == 0, result.stdout[-3000:]
    # A copy the killed worker may have left mid-save is gone too.
    assert _scratch_dirs(tmp_path / "tmp") == []
    assert f"Resumed from {model_dir}/checkpoints/ckpt-{saved} at step {saved}" in result.stdout
    assert f"Reached step {saved + 1}" in result.stdout


def test_scratch_dirs_of_gone_workers_are_removed_and_others_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    for pid in (int(gone.stdout), os.getppid()):
        (tmp_path / f"gqn_worker_checkpoint_{pid}" / "checkpoints").mkdir(parents=True)
    (tmp_path / "gqn_worker_checkpoint_notes").mkdir()
    mine = cluster.scratch_dir()
    assert mine == str(tmp_path / f"gqn_worker_checkpoint_{os.getpid()}")
    assert not os.path.exists(mine)  # made by the first save only
    assert _scratch_dirs(tmp_path) == sorted(
        [f"gqn_worker_checkpoint_{os.getppid()}", "gqn_worker_checkpoint_notes"])


def _train_cli(*args, tf_config=None):
    return subprocess.run([sys.executable, str(REPO_ROOT / "train.py"), *args], cwd=REPO_ROOT,
                          env=_env(tf_config), capture_output=True, text=True, timeout=120)


def test_multi_worker_strategy_without_tf_config_is_one_line(sample_dir, tmp_path):
    result = _train_cli(*RUN, "--data_dir", str(sample_dir), "--model_dir", str(tmp_path),
                        "--strategy", "multi_worker")
    assert result.returncode == 2
    assert "strategy multi_worker needs TF_CONFIG naming two or more tasks" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_cpu_budget_under_several_workers_is_refused_before_they_start(sample_dir, tmp_path):
    config = ('{"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, '
              '"task": {"type": "worker", "index": 0}}')
    result = _train_cli(*RUN, "--data_dir", str(sample_dir), "--model_dir", str(tmp_path),
                        "--max_cpu_seconds", "60", tf_config=config)
    assert result.returncode == 2
    assert "max_cpu_seconds counts the CPU time of one process" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_bad_tf_config_stops_train_py_with_one_line(sample_dir, tmp_path):
    result = _train_cli(*RUN, "--data_dir", str(sample_dir), "--model_dir", str(tmp_path),
                        tf_config='{"cluster": {"worker": ["a:1"]}, "task": {"type": "ps"}}')
    assert result.returncode == 1
    assert "train.py: TF_CONFIG is not a valid cluster description (KeyError" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "checkpoints").exists()


def test_the_launcher_refuses_zero_workers():
    result = subprocess.run(
        [sys.executable, "-m", "gqn_tf.training.launch", "--num_workers", "0", "--", "--help"],
        cwd=REPO_ROOT, env=_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "--num_workers must be at least 1, got 0" in result.stderr
