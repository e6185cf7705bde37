"""Starts N training workers on this machine as one multi-worker cluster.

    python -m gqn_tf.training.launch --num_workers 2 -- --dataset shepard_metzler_7_parts \\
        --data_dir data/sample --preset tiny --batch_size 8 --model_dir /tmp/gqn_two

Each worker is `python train.py <flags after -->` with a TF_CONFIG of its own on 127.0.0.1
(free ports chosen here). Their output is passed through, each line prefixed with the worker's
number. SIGINT and SIGTERM are forwarded to every worker (they stop after the same step and
save). When a worker fails the others are stopped and the launcher exits with the first
failure's code (128 + signal for a worker killed by a signal); 0 when all finish.

It is a way to try multi-worker training, or to use several processes where one would not
use the machine (e.g. one per NUMA node); on several machines run train.py on each with its
own TF_CONFIG (README, "Several machines").
"""

import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

from gqn_tf import cli
from gqn_tf.training import cluster

TRAIN_SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "train.py"
_GRACE_SECONDS = 30  # after the first failure, before the other workers are killed


def _relay(stream, prefix, out):
    for line in iter(stream.readline, b""):
        out.write(prefix + line.decode("utf-8", "replace"))
        out.flush()
    stream.close()


def _exit_code(returncode):
    return 128 - returncode if returncode < 0 else returncode


def launch(num_workers, train_args, script=TRAIN_SCRIPT, out=None):
    """Runs the workers until all have finished or one has failed; returns the exit code."""
    out = out or sys.stdout
    ports = cluster.free_ports(num_workers)
    workers = []
    for index in range(num_workers):
        env = dict(os.environ, **{cluster.TF_CONFIG: cluster.loopback_tf_config(ports, index)})
        process = subprocess.Popen([sys.executable, str(script), *train_args], env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        relay = threading.Thread(target=_relay, args=(process.stdout, f"[worker {index}] ", out),
                                 daemon=True)
        relay.start()
        workers.append((process, relay))

    def forward(signum, frame):
        for process, _ in workers:
            if process.poll() is None:
                process.send_signal(signum)

    previous = {signum: signal.signal(signum, forward)
                for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        first_failure, failed_at = None, None
        while any(process.poll() is None for process, _ in workers):
            for index, (process, _) in enumerate(workers):
                code = process.poll()
                if code and first_failure is None:
                    first_failure, failed_at = _exit_code(code), time.monotonic()
                    out.write(f"launch: worker {index} exited with {first_failure}; stopping "
                              f"the others.\n")
                    forward(signal.SIGTERM, None)
            if failed_at is not None and time.monotonic() - failed_at > _GRACE_SECONDS:
                for process, _ in workers:
                    if process.poll() is None:
                        process.kill()
            time.sleep(0.2)
        for process, relay in workers:
            relay.join(timeout=5)
        if first_failure is None:
            first_failure = next((_exit_code(p.returncode) for p, _ in workers if p.returncode), 0)
        return first_failure
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for process, _ in workers:
            if process.poll() is None:
                process.kill()


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if "--" in argv:
        split = argv.index("--")
        own, train_args = argv[:split], argv[split + 1:]
    else:
        own, train_args = argv, []
    parser = cli.ArgumentParser(
        prog="python -m gqn_tf.training.launch",
        description="Run N train.py workers on this machine as one multi-worker cluster; "
                    "train.py's flags follow '--'.")
    parser.add_argument("--num_workers", type=int, default=2,
                        help="Worker processes to start (each gets this machine's devices).")
    args = parser.parse_args(own)
    if args.num_workers < 1:
        parser.error(f"--num_workers must be at least 1, got {args.num_workers}")
    if not TRAIN_SCRIPT.exists():
        parser.error(f"{TRAIN_SCRIPT} not found: the launcher runs the checkout's train.py")
    return launch(args.num_workers, train_args)


if __name__ == "__main__":
    sys.exit(main())
