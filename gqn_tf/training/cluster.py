"""Training on several machines: the cluster named by TF_CONFIG, a bounded start, lost peers.

Under `tf.distribute.MultiWorkerMirroredStrategy` every worker process runs the same training
loop; the replicas of all workers make one synchronous update per step. How the loop uses it
(`loop.train`):

- Input: every worker reads the same global stream of batches (same files, seed, shuffle) and
  decodes only the rows of its own replicas (`pipeline.make_dataset(rows=...)`), so N workers
  see each scene as often as one process does and make the same update as one process fed the
  same global batch (the latent noise is seeded by the row's place in the global batch).
- Files: only the chief (task 0) writes checkpoints, `run_config.json`, TensorBoard events and
  the progress line. The others write their checkpoint copies to a temporary directory and
  delete them at once (saving may read variables collectively, so every worker takes part).
  Every worker resumes from the chief's latest checkpoint, so `--model_dir` must be on a
  filesystem that all machines share.
- Stopping: a Ctrl-C or SIGTERM on any worker stops all of them after the same step (the
  flag is summed across workers every step), and each saves as it does on one machine.
- Failure: a worker that cannot reach all its peers within `timeout` seconds of starting exits
  with a line naming the tasks it is missing (`make_strategy`); a peer lost during training
  makes the collective ops of a step fail, which `loop.train` reports as `PeerLostError`
  without saving (the state in memory may be part way through a step): rerunning every worker
  with the same command resumes from the last checkpoint.
"""

import dataclasses
import json
import os
import pathlib
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile

TF_CONFIG = "TF_CONFIG"
_JOBS = ("chief", "worker")  # in the order of their replica ids


class ClusterError(RuntimeError):
    """The cluster is badly described or did not come up; the message says which task."""


class PeerLostError(RuntimeError):
    """A worker lost contact with another during training; nothing was saved after it."""


@dataclasses.dataclass(frozen=True)
class Cluster:
    """The tasks of a multi-worker cluster in replica order (the chief first) and which of
    them this process is."""

    tasks: tuple  # ((job, index, "host:port"), ...)
    task_type: str
    task_index: int

    @property
    def num_workers(self):
        return len(self.tasks)

    @property
    def worker_index(self):
        """This task's place among the workers: its replicas follow those of earlier ones."""
        return [(job, index) for job, index, _ in self.tasks].index(
            (self.task_type, self.task_index))

    @property
    def is_chief(self):
        return self.worker_index == 0

    def name(self):
        return f"{self.task_type} {self.task_index}"

    def rows(self, batch_size):
        """(start, stop): the rows of the global batch that this worker's replicas train on."""
        share = batch_size // self.num_workers
        return self.worker_index * share, (self.worker_index + 1) * share


def from_environment(environ=None):
    """The `Cluster` that TF_CONFIG describes, or None when it is unset or names one task.

    Accepts the form TensorFlow documents: {"cluster": {"worker": ["host:port", ...]}, "task":
    {"type": "worker", "index": i}}, with an optional "chief" job (its task comes first).
    """
    environ = os.environ if environ is None else environ
    text = environ.get(TF_CONFIG, "").strip()
    if not text:
        return None
    try:
        value = json.loads(text)
        spec, task = value["cluster"], value.get("task", {})
        jobs = set(spec) - set(_JOBS)
        if jobs:
            raise ClusterError(
                f"{TF_CONFIG} names the job(s) {sorted(jobs)}; training uses only 'chief' and "
                f"'worker' (parameter servers and evaluators are not supported).")
        tasks = tuple((job, index, str(address)) for job in _JOBS
                      for index, address in enumerate(spec.get(job, [])))
        task_type, task_index = task["type"], int(task["index"])
    except ClusterError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise ClusterError(
            f"{TF_CONFIG} is not a valid cluster description ({type(error).__name__}: "
            f"{error}): expected {{\"cluster\": {{\"worker\": [\"host:port\", ...]}}, "
            f"\"task\": {{\"type\": \"worker\", \"index\": 0}}}}.") from None
    if (task_type, task_index) not in [(job, index) for job, index, _ in tasks]:
        raise ClusterError(
            f"{TF_CONFIG}'s task ({task_type} {task_index}) is not one of its cluster's tasks "
            f"({', '.join(f'{job} {index}' for job, index, _ in tasks)}).")
    if len(tasks) == 1:
        return None
    return Cluster(tasks=tasks, task_type=task_type, task_index=task_index)


def _reachable(address, timeout=1.0):
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def missing_tasks(cluster):
    """The other tasks whose address accepts no connection (not started, or unreachable)."""
    me = (cluster.task_type, cluster.task_index)
    return [(job, index, address) for job, index, address in cluster.tasks
            if (job, index) != me and not _reachable(address)]


def make_strategy(cluster, timeout):
    """A MultiWorkerMirroredStrategy for `cluster`; the process ends with one line naming the
    missing tasks when the cluster is not complete within `timeout` seconds.

    TensorFlow's constructor waits for the cluster forever, holding the interpreter lock and
    ignoring SIGTERM, so no thread or signal handler of this process can stop it: a watchdog
    process (`python -m gqn_tf.training.cluster`) does, with SIGKILL (exit status 137), after
    writing the message. It leaves when the constructor has returned.
    """
    import tensorflow as tf

    script = os.path.basename(sys.argv[0]) or "gqn-tf"
    watchdog = subprocess.Popen(
        [sys.executable, "-m", __name__, str(os.getpid()), str(timeout), script,
         json.dumps(dataclasses.asdict(cluster))], stdin=subprocess.PIPE)
    try:
        return tf.distribute.MultiWorkerMirroredStrategy()
    except Exception as error:
        raise ClusterError(f"{cluster.name()} could not join the cluster: "
                           f"{_first_line(error)}") from None
    finally:
        watchdog.stdin.close()  # EOF: the watchdog exits
        watchdog.wait()


def timeout_message(cluster, timeout):
    """What a worker says when its cluster did not come up within `timeout` seconds."""
    missing = missing_tasks(cluster)
    who = (", ".join(f"{job} {index} at {address}" for job, index, address in missing)
           or "a task that listens but has not joined (another program on its port?)")
    return (f"{cluster.name()} timed out after {timeout:g} s waiting for the cluster: no "
            f"answer from {who}. Start every task of {TF_CONFIG} (the same command, each with "
            f"its own task index), or raise --worker_timeout.")


def _watch(pid, timeout, script, cluster):
    """Waits `timeout` seconds for EOF on stdin; then reports and kills process `pid`."""
    ready, _, _ = select.select([sys.stdin], [], [], timeout)
    if ready:
        return
    sys.stderr.write(f"{script}: {timeout_message(cluster, timeout)}\n")
    sys.stderr.flush()
    os.kill(pid, signal.SIGKILL)


def _first_line(error):
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


# Words (lower case) of the line that says why a collective op failed, in TensorFlow's long
# message.
_REASONS = ("aborted", "connection reset", "socket closed", "failed to connect", "unavailable",
            "heartbeat")
_TASK_IN_MESSAGE = re.compile(r"/job:(chief|worker)/replica:\d+/task:(\d+)")


def describe_lost_peer(error, cluster, step, last_checkpoint):
    """A PeerLostError for the OpError `error` that a step raised under `cluster`."""
    others = [f"{job} {index}" for job, index in _TASK_IN_MESSAGE.findall(str(error))
              if (job, int(index)) != (cluster.task_type, cluster.task_index)]
    peer = f" ({', '.join(dict.fromkeys(others))})" if others else ""
    reasons = [line.strip() for line in str(error).splitlines()
               if any(word in line.lower() for word in _REASONS)]
    return PeerLostError(
        f"{cluster.name()} lost contact with another worker{peer} during step {step + 1}: "
        f"{reasons[0] if reasons else _first_line(error)}. Nothing was saved after "
        f"{last_checkpoint or 'the start (no checkpoint yet)'}; rerun every worker with the "
        f"same command to resume from it.")


def agreed_stop(strategy):
    """A function of this worker's stop flag that is True on every worker when any one of
    them asks to stop, so that all leave the loop after the same step."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([], tf.bool)])
    def any_worker(flag):
        votes = strategy.run(lambda value: tf.cast(value, tf.int32), args=(flag,))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, votes, axis=None) > 0

    return lambda flag: bool(any_worker(tf.constant(bool(flag))))


_SCRATCH_PREFIX = "gqn_worker_checkpoint_"


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def scratch_dir():
    """The directory where a worker other than the chief writes (and then deletes) its copy of
    each checkpoint: one per process, in the temporary directory ($TMPDIR). Copies left by
    workers that were killed while saving (their process is gone) are removed here first."""
    root = pathlib.Path(tempfile.gettempdir())
    for stale in root.glob(_SCRATCH_PREFIX + "*"):
        pid = stale.name[len(_SCRATCH_PREFIX):]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    return str(root / f"{_SCRATCH_PREFIX}{os.getpid()}")


def free_ports(count, host="127.0.0.1"):
    """`count` TCP ports on `host` that were free a moment ago (for a loopback cluster)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def loopback_tf_config(ports, index):
    """The TF_CONFIG text of worker `index` in a cluster of workers on 127.0.0.1:ports."""
    return json.dumps({"cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
                       "task": {"type": "worker", "index": index}})


if __name__ == "__main__":  # the watchdog of make_strategy
    _pid, _timeout, _script, _fields = sys.argv[1:5]
    _fields = json.loads(_fields)
    _watch(int(_pid), float(_timeout), _script,
           Cluster(tasks=tuple(tuple(task) for task in _fields["tasks"]),
                   task_type=_fields["task_type"], task_index=_fields["task_index"]))
