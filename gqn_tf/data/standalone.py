"""The original `gqn-datasets` files read without TensorFlow, for the JAX trainer (train_jax.py).

A GPU machine with JAX and no TensorFlow can still train on the published shards: this module
reads the TFRecord framing (8-byte length, its masked CRC-32C, the payload, the payload's CRC),
parses the `tf.train.Example` protobuf of a scene by its wire format (docs/design.md §1: `frames`,
S JPEG strings, and `cameras`, S × 5 floats), decodes the chosen JPEGs with Pillow and maps the
cameras with the one camera transform (cameras.py).

`SceneSampler` keeps an index of every record (shard, offset, length) and builds batch s from a
generator seeded by (seed, s): the scenes (distinct within a batch), the context size M when it
is random (Algorithm S1, the whole batch sharing it) and each scene's M + 1 distinct views, the
last drawn being the query. So a batch is a pure function of the seed and the step, and a
resumed run reads what an uninterrupted one would. This stream differs from the tf.data
pipeline's (which shuffles records per pass); the semantics per scene are the same.

Checked: each record's length against its CRC when indexing, so a truncated or corrupted shard
is named by file and record; a payload that is not a scene or a frame that does not decode is
named when read. Payload CRCs are not checked (pure Python would be slower than the decoding).
Frames decode with Pillow's libjpeg, which uses the accurate integer DCT: its pixels equal
`tf.io.decode_jpeg(..., dct_method="INTEGER_ACCURATE")` and differ by at most a few levels (of
255) from the fast DCT that `tf.io.decode_jpeg` and so the tf.data pipeline use by default.
"""

import io
import os
import struct

import numpy as np
from PIL import Image

from gqn_tf.data import cameras as cameras_lib
from gqn_tf.data import datasets, records, shards


class BadDataError(ValueError):
    """A shard or record that cannot be read; the message names the file and record."""


# --- CRC-32C (Castagnoli), as TFRecord headers use it --------------------------------------


def _crc32c_table():
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
        table.append(crc)
    return table


_CRC_TABLE = _crc32c_table()


def crc32c(data):
    """CRC-32C of `data` (bytes); for the 8-byte length headers only, being pure Python."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data):
    """TFRecord's masked CRC: rotated right by 15 bits plus a constant."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


# --- TFRecord framing ---------------------------------------------------------------------

# A record: length (8 bytes) and its masked CRC (4) before the payload, the payload's CRC after.
_HEADER, _FOOTER = 12, 4
_REDOWNLOAD = "Re-download that shard (python data/download.py)."


def index_records(path):
    """[(offset, length)] of the payloads of the TFRecord file `path`, checking each length
    header against its CRC and the file's size. Raises BadDataError naming the record."""
    size = os.path.getsize(path)
    found = []
    with open(path, "rb") as f:
        position = 0
        while position < size:
            where = f"record {len(found)} of shard {path}{records.COUNTING_NOTE}"
            header = f.read(_HEADER)
            if len(header) < _HEADER:
                raise BadDataError(f"{where}: the file ends inside a record header (truncated "
                                   f"shard). {_REDOWNLOAD}")
            length_bytes, (length_crc,) = header[:8], struct.unpack("<I", header[8:])
            if masked_crc32c(length_bytes) != length_crc:
                raise BadDataError(f"{where}: the record's length header fails its CRC "
                                   f"(corrupted shard). {_REDOWNLOAD}")
            (length,) = struct.unpack("<Q", length_bytes)
            if position + _HEADER + length + _FOOTER > size:
                raise BadDataError(f"{where}: the file ends inside the record (truncated "
                                   f"shard). {_REDOWNLOAD}")
            found.append((position + _HEADER, length))
            position += _HEADER + length + _FOOTER
            f.seek(position)
    return found


# --- tf.train.Example by its protobuf wire format ------------------------------------------


def _varint(buffer, position):
    result = shift = 0
    while True:
        byte = buffer[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, position
        shift += 7


def _fields(buffer, start, end):
    """Yields (field number, wire type, value) of a message in buffer[start:end]; the value of
    a length-delimited field is its (start, end), of a fixed32 its start, of a varint the int."""
    position = start
    while position < end:
        key, position = _varint(buffer, position)
        number, wire = key >> 3, key & 7
        if wire == 2:
            length, position = _varint(buffer, position)
            yield number, wire, (position, position + length)
            position += length
        elif wire == 0:
            value, position = _varint(buffer, position)
            yield number, wire, value
        elif wire == 5:
            yield number, wire, position
            position += 4
        elif wire == 1:
            position += 8
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
    if position != end:
        raise ValueError("a protobuf field runs past its message")


def _feature(buffer, start, end):
    """One `tf.train.Feature`: a list of bytes (bytes_list) or a float32 array (float_list)."""
    for number, wire, value in _fields(buffer, start, end):
        if number == 1 and wire == 2:  # BytesList { repeated bytes value = 1; }
            return [bytes(buffer[a:b]) for n, w, (a, b) in _fields(buffer, *value)
                    if n == 1 and w == 2]
        if number == 2 and wire == 2:  # FloatList { repeated float value = 1 [packed]; }
            pieces = []
            for n, w, item in _fields(buffer, *value):
                if n == 1 and w == 2:
                    pieces.append(np.frombuffer(buffer[item[0]:item[1]], "<f4"))
                elif n == 1 and w == 5:
                    pieces.append(np.frombuffer(buffer[item:item + 4], "<f4"))
            return np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
    return None


def parse_example(payload):
    """{feature name: list of bytes or float32 array} of a serialized `tf.train.Example`
    (bytes_list and float_list features; others are left out)."""
    buffer = memoryview(payload)
    parsed = {}
    for number, wire, features in _fields(buffer, 0, len(buffer)):
        if number != 1 or wire != 2:  # Example { Features features = 1; }
            continue
        for n, w, entry in _fields(buffer, *features):  # map<string, Feature> feature = 1;
            if n != 1 or w != 2:
                continue
            key, value = None, None
            for en, ew, item in _fields(buffer, *entry):
                if en == 1 and ew == 2:
                    key = bytes(buffer[item[0]:item[1]]).decode("utf-8")
                elif en == 2 and ew == 2:
                    value = _feature(buffer, *item)
            if key is not None and value is not None:
                parsed[key] = value
    return parsed


def parse_scene(payload, sequence_size):
    """(S JPEG byte strings, raw cameras [S, 5] float32) of one scene record; ValueError when the
    record is not a scene of S views."""
    try:
        example = parse_example(payload)
    except (IndexError, ValueError) as error:
        raise ValueError(f"not a tf.train.Example ({error})") from None
    frames, cameras = example.get("frames"), example.get("cameras")
    raw_dim = cameras_lib.RAW_CAMERA_DIM
    if not isinstance(frames, list) or len(frames) != sequence_size:
        raise ValueError(f"not a scene of this dataset: expected {sequence_size} frames, found "
                         f"{len(frames) if isinstance(frames, list) else 'none'}")
    if not isinstance(cameras, np.ndarray) or cameras.size != sequence_size * raw_dim:
        raise ValueError(f"not a scene of this dataset: expected {sequence_size * raw_dim} "
                         f"camera values, found "
                         f"{cameras.size if isinstance(cameras, np.ndarray) else 'none'}")
    return frames, cameras.reshape(sequence_size, raw_dim)


def decode_frame(jpeg, frame_size=None):
    """A JPEG → uint8 [h, w, 3] with Pillow; resized bilinearly to frame_size² if given."""
    with Image.open(io.BytesIO(jpeg)) as image:
        image = image.convert("RGB")
        if frame_size is not None and image.size != (frame_size, frame_size):
            image = image.resize((frame_size, frame_size), Image.BILINEAR)
        return np.asarray(image, np.uint8)


# --- Batches ------------------------------------------------------------------------------


class SceneSampler:
    """Batches of one dataset split in the pipeline's layout (docs/design.md §4), as numpy
    arrays, a pure function of (seed, step); see the module docstring."""

    def __init__(self, data_dir, dataset, split="train", batch_size=36, context_size=None,
                 max_context_size=None, frame_size=None, seed=0, progress=None,
                 masked_context=False):
        self._settle(dataset, batch_size, context_size, max_context_size, frame_size, seed,
                     masked_context)
        self.files = shards.list_shards(data_dir, dataset, split)
        self.index = []  # (file number, offset, length) of every record
        for number, path in enumerate(self.files):
            self.index.extend((number, offset, length) for offset, length in index_records(path))
            if progress is not None:
                progress(number + 1, len(self.files), len(self.index))
        if not self.index:
            raise BadDataError(f"The {dataset} {split} shards hold no records "
                               f"({self.files[0]} ...).")

    def _settle(self, dataset, batch_size, context_size, max_context_size, frame_size, seed,
                masked_context):
        """Checks and keeps the batch settings (a ValueError names a context size that does
        not fit the dataset's S views)."""
        info = datasets.get_dataset_info(dataset)
        self.sequence_size = info.sequence_size
        self.frame_size = frame_size or info.frame_size
        self.batch_size, self.seed = int(batch_size), int(seed)
        # With a random M: always max_context_size views and a `context_mask` with M ones,
        # so that every batch has one shape (one compiled program).
        self.masked_context = bool(masked_context) and context_size is None
        largest = info.sequence_size - 1
        self.context_size = context_size
        self.max_context_size = largest if max_context_size is None else max_context_size
        for name, value in (("context_size", context_size),
                            ("max_context_size", self.max_context_size)):
            if value is not None and not 0 <= value <= largest:
                raise ValueError(f"--{name} {value}: {dataset} has {info.sequence_size} views "
                                 f"per scene, so use 0..{largest}.")

    @property
    def num_scenes(self):
        return len(self.index)

    def _read(self, scene):
        number, offset, length = self.index[scene]
        with open(self.files[number], "rb") as f:
            f.seek(offset)
            return f.read(length)

    def _where(self, scene):
        number, _, _ = self.index[scene]
        record = sum(1 for n, _, _ in self.index[:scene] if n == number)
        return f"record {record} of shard {self.files[number]}"

    def batch(self, step):
        """Batch number `step`: {context_frames [B, M, H, W, 3], context_cameras [B, M, 7],
        query_camera [B, 7], target [B, H, W, 3]}, float32, frames in [0, 1]; with
        `masked_context`, M is max_context_size and `context_mask` [B, M] has ones for the
        first m views, m drawn as without it."""
        rng = np.random.default_rng([self.seed, int(step)])
        m = (self.context_size if self.context_size is not None
             else int(rng.integers(0, self.max_context_size + 1)))
        scenes = rng.choice(self.num_scenes, self.batch_size,
                            replace=self.num_scenes < self.batch_size)
        views = self.max_context_size if self.masked_context else m
        batch = self._batch([(scene, rng.choice(self.sequence_size, views + 1, replace=False))
                             for scene in scenes])
        if self.masked_context:
            batch["context_mask"] = np.broadcast_to(
                (np.arange(views) < m).astype(np.float32), (self.batch_size, views)).copy()
        return batch

    def fixed_batches(self, num_scenes, context_size, batch_size):
        """The first `num_scenes` scenes in file order, `context_size` context views each, as
        batches of `batch_size` (the last may be short): the views of scene i are drawn from
        (seed, i), so the same arguments give the same batches (held-out evaluation)."""
        chosen = [(scene, np.random.default_rng([self.seed, scene]).choice(
            self.sequence_size, context_size + 1, replace=False)) for scene in range(num_scenes)]
        return [self._batch(chosen[start:start + batch_size])
                for start in range(0, num_scenes, batch_size)]

    def whole_scenes(self, num_scenes):
        """The first `num_scenes` scenes with all their views in stored order: frames
        [N, S, H, W, 3] float32 in [0, 1] and viewpoints [N, S, 7]."""
        batch = self._batch([(scene, np.arange(self.sequence_size))
                             for scene in range(num_scenes)])
        frames = np.concatenate([batch["context_frames"], batch["target"][:, None]], axis=1)
        viewpoints = np.concatenate([batch["context_cameras"], batch["query_camera"][:, None]],
                                    axis=1)
        return frames, viewpoints

    def _scene(self, scene):
        """(S JPEG byte strings, raw cameras [S, 5]) of scene `scene`."""
        try:
            return parse_scene(self._read(scene), self.sequence_size)
        except ValueError as error:
            raise BadDataError(f"{self._where(scene)}{records.COUNTING_NOTE}: {error}. "
                               f"{_REDOWNLOAD}") from None

    def _batch(self, chosen):
        """The batch of (scene, views) pairs, the last view of each the query."""
        frames, raw = [], []
        for scene, views in chosen:
            jpegs, scene_cameras = self._scene(scene)
            for view in views:
                try:
                    frames.append(decode_frame(jpegs[view], self.frame_size))
                except OSError as error:
                    raise BadDataError(
                        f"{self._where(scene)}: frame {view} does not decode as a JPEG "
                        f"({error}){records.COUNTING_NOTE}. {_REDOWNLOAD}") from None
            raw.append(scene_cameras[views])
        size, m = self.frame_size, len(chosen[0][1]) - 1
        frames = np.stack(frames).reshape(len(chosen), m + 1, size, size, 3)
        frames = frames.astype(np.float32) * np.float32(1.0 / 255.0)  # as the pipeline
        viewpoints = np.asarray(cameras_lib.transform_cameras(np.stack(raw)), np.float32)
        return {"context_frames": frames[:, :m], "context_cameras": viewpoints[:, :m],
                "query_camera": viewpoints[:, m], "target": frames[:, m]}


class SyntheticSceneSampler(SceneSampler):
    """A SceneSampler over synthetic scenes rendered in memory instead of read from shards:
    scenes 0..num_scenes-1 of `split` exactly as `data/synthesize.py --seed synthetic_seed`
    writes them (gqn_tf/data/synthetic.py), so a machine without the files (or without
    TensorFlow to write them) trains on the same data. Rendered once, in `workers` processes.
    """

    def __init__(self, dataset, split="train", num_scenes=1000, synthetic_seed=0,
                 batch_size=36, context_size=None, max_context_size=None, frame_size=None,
                 seed=0, workers=None, masked_context=False):
        from gqn_tf.data import synthetic

        synthetic.num_parts(dataset)  # a ValueError for a dataset it cannot make
        if num_scenes < 1:
            raise ValueError(f"num_scenes must be at least 1, got {num_scenes}.")
        self._settle(dataset, batch_size, context_size, max_context_size, frame_size, seed,
                     masked_context)
        workers = workers or os.cpu_count() or 1
        with synthetic.pool(workers) as pool:
            self.scenes = list(synthetic.rendered_scenes(dataset, synthetic_seed, split,
                                                         num_scenes, pool))
        self.files = [f"synthetic {dataset} {split} (seed {synthetic_seed})"]

    @property
    def num_scenes(self):
        return len(self.scenes)

    def _scene(self, scene):
        jpegs, cameras = self.scenes[scene]
        return jpegs, np.asarray(cameras, np.float32)

    def _where(self, scene):
        return f"synthetic scene {scene}"
