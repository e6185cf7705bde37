"""Copies DeepMind's `gqn-datasets` from the public bucket with `gsutil` (docs/design.md §1).

The shard names come from the dataset table, so copying "the first N shards" needs no bucket
listing, and shards already on disk are skipped: an interrupted copy resumes where it stopped.
A file under its final name is complete, because gsutil downloads to `<name>_.gstmp` and renames
it only after checking its hash.
"""

import dataclasses
import os
import shlex
import shutil
import subprocess

from absl import logging

from gqn_tf.data import datasets, records

INSTALL_HELP = (
    "gsutil was not found on PATH. It comes with the Google Cloud SDK: install it "
    "(https://cloud.google.com/sdk/docs/install, or `pip install gsutil` for gsutil alone), "
    "make sure `gsutil version` works in this shell, then re-run. The bucket is public: no "
    "account or credentials are needed."
)


class GsutilNotFoundError(FileNotFoundError):
    """Raised when a copy is requested but no `gsutil` executable is on PATH."""


@dataclasses.dataclass(frozen=True)
class CopyCommand:
    """One gsutil invocation: `argv`, with `urls` fed on stdin (`cp -I`), into `destination`."""

    argv: tuple
    urls: tuple
    destination: str

    def shell(self):
        """The command as a shell snippet a user can paste (a here-document holds the URLs)."""
        return "\n".join([f"{shlex.join(self.argv)} <<'EOF'", *self.urls, "EOF"])


def shard_urls(dataset, split, num_shards=None):
    """URLs of the first `num_shards` shards (all if None) of a split, from the dataset table."""
    total = datasets.get_dataset_info(dataset).num_shards(split)
    count = total if num_shards is None else min(num_shards, total)
    return [f"{datasets.BUCKET}/{dataset}/{split}/{records.shard_name(i, total)}"
            for i in range(1, count + 1)]


def plan(dataset, data_dir=datasets.DEFAULT_DATA_DIR, splits=datasets.SPLITS, num_shards=None,
         gsutil="gsutil"):
    """The gsutil commands that copy the missing shards: one per split that lacks any.

    `num_shards` limits each split to its first N shards (None: the whole dataset).
    """
    datasets.get_dataset_info(dataset)
    if num_shards is not None and num_shards < 1:
        raise ValueError(f"num_shards must be at least 1, got {num_shards}.")
    commands = []
    for split in splits:
        destination = records.split_dir(data_dir, dataset, split)
        urls = shard_urls(dataset, split, num_shards)
        missing = tuple(url for url in urls
                        if not os.path.isfile(os.path.join(destination, url.rsplit("/", 1)[1])))
        logging.info("%s/%s: %d of %d shards present, %d to copy.", dataset, split,
                     len(urls) - len(missing), len(urls), len(missing))
        if missing:
            # -m: parallel transfers; -n: never overwrite; -I: source URLs on stdin.
            argv = (gsutil, "-m", "cp", "-n", "-I", destination)
            commands.append(CopyCommand(argv, missing, destination))
    return commands


def find_gsutil():
    """The path of the `gsutil` executable, or a GsutilNotFoundError saying how to install it."""
    path = shutil.which("gsutil")
    if path is None:
        raise GsutilNotFoundError(INSTALL_HELP)
    return path


def download(dataset, data_dir=datasets.DEFAULT_DATA_DIR, splits=datasets.SPLITS,
             num_shards=None, dry_run=False):
    """Copies the missing shards of `dataset` into `<data_dir>/<dataset>/<split>/`.

    With `dry_run`, only returns the commands that would run (gsutil need not be installed).
    Returns the list of `CopyCommand`s planned.
    """
    gsutil = "gsutil" if dry_run else find_gsutil()
    commands = plan(dataset, data_dir, splits, num_shards, gsutil)
    if dry_run:
        return commands
    for command in commands:
        os.makedirs(command.destination, exist_ok=True)
        logging.info("Copying %d shards to %s.", len(command.urls), command.destination)
        subprocess.run(command.argv, input="\n".join(command.urls) + "\n", text=True, check=True)
    return commands
