"""Registers original `gqn-datasets` shards as a TFDS dataset, without re-encoding them.

    python -m gqn_tf.data.tfds_register --dataset shepard_metzler_7_parts \
        --data_dir ~/gqn-datasets [--tfds_dir ~/gqn-datasets/tfds] [--move] [--force]

For each split found under `<data_dir>/<dataset>/<split>/`, shard `<i>-of-<n>.tfrecord` gets a
relative symlink `<tfds_dir>/<dataset>/<version>/<dataset>-<split>.tfrecord-<i-1>-of-<n>` (TFDS
naming, 5 digits), and TFDS's folder-dataset writer adds `dataset_info.json` and `features.json`
with the record count of every shard, after which `tfds.load(dataset, data_dir=tfds_dir)` works.
A partial download registers the shards present, numbered 0..k-1 of k (with a warning).

Safe to re-run: links that are already right are left alone, the metadata is rewritten only when
it changes, and record counts are cached in `gqn_tf_sources.json` by file size and mtime. A link
that points elsewhere (or a leftover one) stops the run unless `--force` replaces (or removes) it;
a regular file in the way is never touched. The originals are only read, unless `--move`: then
each shard is renamed into the TFDS folder and a symlink to it is left in its original place (so
`--data_dir` keeps working), and `--restore_moved` renames them back, leaving TFDS links.
"""

import dataclasses
import filecmp
import json
import os
import shutil
import struct
import tempfile

from absl import logging

from gqn_tf import cli, files
from gqn_tf.data import datasets, records, shards

MANIFEST = "gqn_tf_sources.json"
_FILE_FORMAT = "tfrecord"
# A TFRecord: length (8 bytes, little endian), CRC of the length (4), data, CRC of the data (4).
_HEADER, _FOOTER = 12, 4

_DESCRIPTION = (
    "DeepMind's {name} scenes for Generative Query Networks (Eslami et al., Science 2018), read "
    "from the original gqn-datasets TFRecords: per scene {views} JPEG frames of {size}x{size} "
    "and {views} raw cameras (x, y, z, yaw, pitch) flattened into `cameras`.")
_HOMEPAGE = "https://github.com/deepmind/gqn-datasets"
_CITATION = """@article{eslami2018neural,
  title={Neural scene representation and rendering},
  author={Eslami, SM Ali and others},
  journal={Science}, volume={360}, number={6394}, pages={1204--1210}, year={2018}}"""


class TruncatedShardError(ValueError):
    """A shard ends inside a record (an interrupted copy); its records cannot all be counted."""


class RegistrationConflictError(FileExistsError):
    """A file or link in the TFDS folder is not the one this registration would put there."""


@dataclasses.dataclass
class Registration:
    """What `register` found and did. `actions` lists (what, TFDS path, source) per change."""

    version_dir: str
    split_sizes: dict
    shard_lengths: dict
    actions: list = dataclasses.field(default_factory=list)
    metadata_written: bool = False

    @property
    def changed(self):
        return bool(self.actions) or self.metadata_written


def count_records(path):
    """Counts the records of a TFRecord file by walking its length headers (no data is read).

    Raises TruncatedShardError, naming the file and how far it could be read, when the last
    record runs past the end of the file.
    """
    size = os.path.getsize(path)
    count, offset = 0, 0
    with open(path, "rb") as f:
        while offset < size:
            f.seek(offset)
            header = f.read(8)
            end = offset + _HEADER + (struct.unpack("<Q", header)[0] if len(header) == 8 else size)
            end += _FOOTER
            if end > size:
                raise TruncatedShardError(
                    f"{path} is truncated: record {count + 1} runs past the end of the file "
                    f"({count} whole records in {offset} of {size} bytes). Download it "
                    f"again (data/download.py resumes) or delete it to register the rest.")
            count, offset = count + 1, end
    return count


def _template(version_dir, name, split):
    import tensorflow_datasets as tfds

    return tfds.core.ShardedFileTemplate(
        data_dir=version_dir, dataset_name=name, split=split, filetype_suffix=_FILE_FORMAT)


def _plan(name, data_dir, version_dir):
    """{split: [(source, TFDS path)]} for the splits with shards; the k-th present shard of a
    split becomes TFDS shard k (k = i - 1 for a complete download)."""
    plan, missing = {}, []
    for split in datasets.SPLITS:
        try:
            sources = shards.list_shards(data_dir, name, split)
        except shards.DataNotFoundError as error:
            missing.append(error)
            continue
        total = records.parse_shard_name(sources[0])[1]
        if len(sources) < total:
            logging.warning(
                "%s %s: registering the %d of %d shards present as TFDS shards 0..%d of %d. "
                "Re-run with --force when the download is complete to register all of them.",
                name, split, len(sources), total, len(sources) - 1, len(sources))
        template = _template(version_dir, name, split)
        plan[split] = [
            (os.path.abspath(source),
             os.fspath(template.sharded_filepath(shard_index=k, num_shards=len(sources))))
            for k, source in enumerate(sources)]
    if not plan:
        raise missing[0]
    for error in missing:
        logging.warning("Not registering a split: %s", error)
    return plan


def _same_file(a, b):
    return os.path.exists(a) and os.path.exists(b) and os.path.samefile(a, b)


def _decide(source, target, move, force):
    """The action for one shard: None (already right), "link", "move", "relink" (replace a
    wrong link, with force) or "move_over_link" (turn a link into the moved file)."""
    if move and os.path.islink(source) and not _same_file(source, target):
        raise RegistrationConflictError(
            f"{source} is a symlink; --move only renames regular files. Register it without "
            f"--move.")
    if not os.path.lexists(target):
        return "move" if move else "link"
    if os.path.islink(target):
        if _same_file(target, source):
            return "move_over_link" if move and not os.path.islink(source) else None
        if force:
            return "relink"
        where = os.readlink(target)
        raise RegistrationConflictError(
            f"{target} is a link to {where}{'' if os.path.exists(target) else ' (broken)'}, "
            f"not to {source}. Re-run with --force to replace it.")
    if _same_file(target, source) or filecmp.cmp(target, source, shallow=False):
        return None  # the moved file itself, or an identical copy
    raise RegistrationConflictError(
        f"{target} is a file with other content than {source}; it is never overwritten. "
        f"Move it away if it is not needed.")


def _check_same_file_system(sources, version_dir):
    """--move renames, so every shard must be on the file system of the TFDS folder."""
    existing = version_dir
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    device = os.stat(existing).st_dev
    for source in sources:
        if os.stat(source).st_dev != device:
            raise OSError(
                f"--move renames files, but {source} is on another file system than "
                f"{version_dir}. Register without --move (links) or pick a --tfds_dir on the "
                f"same file system.")


def _stale(version_dir, name, planned, force):
    """TFDS shard files of `name` in `version_dir` that the plan does not hold: leftover links
    (removed with force) or files (never removed)."""
    if not os.path.isdir(version_dir):
        return []
    template = _template(version_dir, name, None)
    stale = []
    for entry in sorted(os.listdir(version_dir)):
        path = os.path.join(version_dir, entry)
        info = template.parse_filename_info(entry)
        if info is None or info.dataset_name != name or path in planned:
            continue
        if not os.path.islink(path):
            raise RegistrationConflictError(
                f"{path} is a file of an earlier registration that this one would not use "
                f"(the shards changed?). Move it back or away first.")
        if not force:
            raise RegistrationConflictError(
                f"{path} is a link of an earlier registration that this one would not use "
                f"(the shards changed?). Re-run with --force to remove it.")
        stale.append(path)
    return stale


def _read_manifest(version_dir):
    path = os.path.join(version_dir, MANIFEST)
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f).get("files", {})


def _write_if_changed(path, content):
    """Writes `content` (bytes) to `path` atomically unless it already holds it."""
    if os.path.exists(path):
        with open(path, "rb") as f:
            if f.read() == content:
                return False

    def write(temporary):
        with open(temporary, "wb") as f:
            f.write(content)

    files.write_atomically(path, write)
    return True


def _link(source, target, absolute):
    link = os.path.realpath(source) if absolute else os.path.relpath(
        os.path.realpath(source), os.path.realpath(os.path.dirname(target)))
    os.symlink(link, target)


def _write_metadata(info, version, version_dir, plan, counts):
    """Writes dataset_info.json and features.json with TFDS's folder-dataset writer into a
    staging folder (which also reads the first example back through TFDS), and copies the
    files that changed. Returns True when one did."""
    import tensorflow_datasets as tfds

    from gqn_tf.data import tfds as gqn_tfds

    staging_root = tempfile.mkdtemp(prefix="gqn_tf_tfds_")
    try:
        staging = os.path.join(staging_root, version)
        os.makedirs(staging)
        split_infos = []
        for split, pairs in plan.items():
            for source, target in pairs:
                os.symlink(os.path.realpath(source),
                           os.path.join(staging, os.path.basename(target)))
            split_infos.append(tfds.core.SplitInfo(
                name=split, shard_lengths=[counts[target] for _, target in pairs],
                num_bytes=sum(os.path.getsize(source) for source, _ in pairs),
                filename_template=_template(staging, info.name, split)))
        tfds.folder_dataset.write_metadata(
            data_dir=staging, features=gqn_tfds.features(info), split_infos=split_infos,
            version=version, check_data=True,
            description=_DESCRIPTION.format(name=info.name, views=info.sequence_size,
                                            size=info.frame_size),
            homepage=_HOMEPAGE, citation=_CITATION)
        changed = False
        for entry in sorted(os.listdir(staging)):
            path = os.path.join(staging, entry)
            if not os.path.islink(path) and os.path.isfile(path):
                with open(path, "rb") as f:
                    changed |= _write_if_changed(os.path.join(version_dir, entry), f.read())
        return changed
    finally:
        shutil.rmtree(staging_root)


def register(name, data_dir, tfds_dir=None, *, version=datasets.TFDS_VERSION, move=False,
             force=False, absolute_links=False):
    """Makes `<data_dir>/<name>/{train,test}` loadable with `tfds.load(name, data_dir=tfds_dir)`.

    `tfds_dir` defaults to `<data_dir>/tfds`. Everything is checked (conflicts, truncated shards)
    before anything is changed. Returns a `Registration`; a second run with the same inputs
    changes nothing (`.changed` is False).
    """
    info = datasets.get_dataset_info(name)
    data_dir = os.path.expanduser(str(data_dir))
    tfds_dir = os.path.expanduser(str(tfds_dir or os.path.join(data_dir, "tfds")))
    version_dir = os.path.abspath(os.path.join(tfds_dir, name, version))
    plan = _plan(name, data_dir, version_dir)
    pairs = [pair for split_pairs in plan.values() for pair in split_pairs]
    decisions = [_decide(source, target, move, force) for source, target in pairs]
    stale = _stale(version_dir, name, {target for _, target in pairs}, force)
    if move:
        _check_same_file_system([source for source, _ in pairs], version_dir)

    cache = _read_manifest(version_dir)
    manifest, counts = {}, {}
    for source, target in pairs:
        stat = os.stat(source)
        entry = cache.get(os.path.basename(target), {})
        if (entry.get("source"), entry.get("bytes"), entry.get("mtime_ns")) == (
                source, stat.st_size, stat.st_mtime_ns):
            counts[target] = entry["records"]
        else:
            counts[target] = count_records(source)
        manifest[os.path.basename(target)] = {
            "source": source, "records": counts[target], "bytes": stat.st_size,
            "mtime_ns": stat.st_mtime_ns}

    os.makedirs(version_dir, exist_ok=True)
    result = Registration(
        version_dir=version_dir,
        split_sizes={split: sum(counts[t] for _, t in p) for split, p in plan.items()},
        shard_lengths={split: [counts[t] for _, t in p] for split, p in plan.items()})
    for path in stale:
        os.remove(path)
        result.actions.append(("removed", path, None))
    for (source, target), action in zip(pairs, decisions):
        if action == "relink":
            os.remove(target)
        if action in ("link", "relink"):
            _link(source, target, absolute_links)
        elif action in ("move", "move_over_link"):
            # os.replace is a rename: it fails across file systems instead of copying.
            os.replace(source, target)
            _link(target, source, absolute_links)
        if action is not None:
            result.actions.append((action, target, source))
    for source, target in pairs:
        manifest[os.path.basename(target)]["moved"] = (
            not os.path.islink(target) and os.path.islink(source))

    result.metadata_written = _write_metadata(info, version, version_dir, plan, counts)
    content = json.dumps({"dataset": name, "files": manifest}, indent=1, sort_keys=True)
    _write_if_changed(os.path.join(version_dir, MANIFEST), content.encode() + b"\n")
    return result


def restore_moved(name, tfds_dir, *, version=datasets.TFDS_VERSION, absolute_links=False):
    """Undoes `--move`: renames each moved shard back to its original place (replacing the link
    left there) and links it from the TFDS folder instead. Returns the restored original paths."""
    datasets.get_dataset_info(name)
    version_dir = os.path.abspath(os.path.join(os.path.expanduser(str(tfds_dir)), name, version))
    manifest = _read_manifest(version_dir)
    if not manifest:
        raise FileNotFoundError(f"No {MANIFEST} in {version_dir}: nothing was registered there.")
    restored = []
    for basename, entry in sorted(manifest.items()):
        target, source = os.path.join(version_dir, basename), entry["source"]
        if os.path.islink(target) or not os.path.isfile(target):
            continue  # linked, not moved (or already restored)
        if os.path.lexists(source) and not (os.path.islink(source) and _same_file(source, target)):
            raise RegistrationConflictError(
                f"Cannot move {target} back: {source} exists and is not a link to it.")
        os.replace(target, source)
        _link(source, target, absolute_links)
        entry["moved"] = False
        restored.append(source)
    content = json.dumps({"dataset": name, "files": manifest}, indent=1, sort_keys=True)
    _write_if_changed(os.path.join(version_dir, MANIFEST), content.encode() + b"\n")
    return restored


def _define_flags():
    from absl import flags

    flags.DEFINE_enum("dataset", None, sorted(datasets.DATASETS), "Dataset to register.")
    flags.DEFINE_string("data_dir", datasets.DEFAULT_DATA_DIR,
                        "Root of the original files: <data_dir>/<dataset>/{train,test}/.")
    flags.DEFINE_string("tfds_dir", None,
                        "TFDS data_dir to register into (default <data_dir>/tfds); then "
                        "tfds.load(dataset, data_dir=tfds_dir).")
    flags.DEFINE_string("version", datasets.TFDS_VERSION, "TFDS version folder to write.")
    flags.DEFINE_bool("move", False,
                      "Rename the shards into the TFDS folder instead of linking them, leaving "
                      "a symlink in each original place. Same file system only.")
    flags.DEFINE_bool("restore_moved", False,
                      "Undo --move: rename the shards back and link them from TFDS instead.")
    flags.DEFINE_bool("force", False,
                      "Replace links that point elsewhere and remove leftover links of an "
                      "earlier registration (regular files are never touched).")
    flags.DEFINE_bool("absolute_links", False, "Write absolute instead of relative symlinks.")
    flags.mark_flag_as_required("dataset")
    return flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise cli.UserError(f"Unexpected arguments: {' '.join(argv[1:])}")
    cli.import_tensorflow()  # TFDS imports it: without its start-up lines
    flags = FLAGS
    try:
        _register_from_flags(flags)
    except (shards.DataNotFoundError, shards.ShardNamingError, TruncatedShardError,
            RegistrationConflictError, OSError) as error:
        raise cli.DataError(str(error)) from None


def _register_from_flags(flags):
    """Registers (or with --restore_moved, unmoves) the dataset the flags name; prints what
    was done."""
    tfds_dir = flags.tfds_dir or os.path.join(os.path.expanduser(flags.data_dir), "tfds")
    if flags.restore_moved:
        restored = restore_moved(flags.dataset, tfds_dir, version=flags.version,
                                 absolute_links=flags.absolute_links)
        print(f"Moved {len(restored)} shards back under {flags.data_dir}; TFDS links them.")
        return
    result = register(flags.dataset, flags.data_dir, tfds_dir, version=flags.version,
                      move=flags.move, force=flags.force, absolute_links=flags.absolute_links)
    for action, target, source in result.actions:
        logging.info("%s %s%s", action, target, f" <- {source}" if source else "")
    sizes = ", ".join(f"{split} {n} scenes in {len(result.shard_lengths[split])} shards"
                      for split, n in result.split_sizes.items())
    state = "updated" if result.changed else "already up to date"
    print(f"{flags.dataset} in {result.version_dir}: {sizes}; {state} "
          f"({len(result.actions)} file changes). Load it with "
          f"tfds.load({flags.dataset!r}, data_dir={tfds_dir!r}).")


if __name__ == "__main__":
    FLAGS = _define_flags()
    cli.run(main)
