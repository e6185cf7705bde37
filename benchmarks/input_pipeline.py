"""Measures the input pipeline against decoding the same JPEGs alone.

Prints scenes/s and frames/s of `make_dataset` at a fixed context size, the scenes/s of
`tf.io.decode_jpeg` alone on the same JPEGs, M + 1 per scene (held in memory, same batching and
AUTOTUNE parallelism), and their ratio. The decode-only figure is the faster of two plain decode
loops per batch (tf.map_fn, and the decode ops unrolled), so the baseline is as strong as plain
tf.data decoding gets. Decoding plus the float32 conversion that the pipeline must also do
(docs/design.md §4) is timed too and printed for comparison; it is not a baseline of the ratio.
All are timed in alternating rounds and the medians compared, so load
from other processes affects them alike; the process CPU time per scene (all threads) is
printed beside them, a figure that depends much less on that load. Each round opens a fresh
iterator and closes it after, so only the measured input is alive: idle iterators kept in one
process went on filling their buffers (RSS grew from 0.7 to 3.3 GB in 12 rounds) and slowed
whichever input was being timed. The last line is JSON:
`{"scenes_per_s", "decode_only_scenes_per_s", "ratio", "cpu_us_per_scene", ...}`.

    python benchmarks/input_pipeline.py --data_dir data/sample --batch_size 36 --context_size 5

Without shards under --data_dir it writes a small synthetic dataset (64x64 JPEGs) to a temporary
directory and measures that.
"""

import gc
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from absl import flags, logging  # noqa: E402

from gqn_tf import cli  # noqa: E402
from gqn_tf.data import datasets, records, shards  # noqa: E402

# TensorFlow and the pipeline (which imports it), imported by main so that --help is instant.
tf = pipeline = None

_DATA_DIR = flags.DEFINE_string("data_dir", "data/sample", "Root holding <dataset>/<split>/.")
_DATASET = flags.DEFINE_enum("dataset", "shepard_metzler_7_parts", sorted(datasets.DATASETS),
                             "Dataset name.")
_SPLIT = flags.DEFINE_enum("split", "train", datasets.SPLITS, "Split to read.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 36, "Scenes per batch.")
_CONTEXT_SIZE = flags.DEFINE_integer("context_size", 5, "Context views M per scene.")
_SECONDS = flags.DEFINE_float("seconds", 4.0, "Seconds per timed round.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Alternating rounds of each measurement.")

_DECODE_FLOAT = "decode + float (unrolled)"


def write_synthetic(root, info, num_shards=4, scenes_per_shard=100, seed=0):
    """Writes smooth random 64x64 scenes in the original format under `root`; returns root."""
    rng = np.random.default_rng(seed)
    directory = records.split_dir(root, info.name, "train")
    os.makedirs(directory, exist_ok=True)
    size = info.frame_size
    yy, xx = np.mgrid[0:size, 0:size] / size
    for shard in range(1, num_shards + 1):
        path = os.path.join(directory, records.shard_name(shard, num_shards))
        with tf.io.TFRecordWriter(path) as writer:
            for _ in range(scenes_per_shard):
                frames = []
                for _ in range(info.sequence_size):
                    c = rng.uniform(size=(3, 4))
                    image = np.stack([c[k, 0] * xx + c[k, 1] * yy
                                      + 0.3 * np.sin(10 * c[k, 2] * xx + 7 * c[k, 3] * yy)
                                      for k in range(3)], -1)
                    image = (image - image.min()) / (np.ptp(image) + 1e-6) * 255
                    frames.append(tf.io.encode_jpeg(image.astype(np.uint8)).numpy())
                cams = rng.normal(size=(info.sequence_size, 5))
                writer.write(records.serialize_scene(frames, cams))
    return root


def decode_only(files, info, batch_size, num_frames, loop, to_float=False, max_scenes=1000):
    """Decoding alone: batches of `num_frames` JPEGs per scene from the same files, in memory.

    `loop` is "map_fn" (a while loop over the JPEGs of a batch) or "unrolled" (one decode op
    per JPEG in the graph, which saves the per-iteration cost of the loop). `to_float` adds the
    pipeline's conversion to float32 in [0, 1] (docs/design.md §4), for comparison only.
    """
    rng = np.random.default_rng(0)
    jpegs = []
    spec = records.feature_spec(info.sequence_size)
    for record in tf.data.TFRecordDataset(files).take(max_scenes):
        frames = tf.io.parse_single_example(record, spec)["frames"].numpy()
        jpegs.append(frames[rng.choice(info.sequence_size, num_frames, replace=False)])
    count = batch_size * num_frames
    decode_one = lambda jpeg: tf.io.decode_jpeg(jpeg, channels=3)  # noqa: E731
    if loop == "map_fn":
        decode = lambda batch: tf.map_fn(  # noqa: E731
            decode_one, tf.reshape(batch, [count]), fn_output_signature=tf.uint8)
    else:
        decode = lambda batch: tf.stack(  # noqa: E731
            [decode_one(jpeg) for jpeg in tf.unstack(tf.reshape(batch, [count]), num=count)])
    if to_float:
        decode_uint8 = decode
        decode = lambda batch: pipeline._to_unit_float(decode_uint8(batch))  # noqa: E731
    ds = tf.data.Dataset.from_tensor_slices(np.array(jpegs, dtype=object)).repeat()
    return ds.batch(batch_size, drop_remainder=True).map(
        decode, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def measure(dataset, batch_size, seconds, warmup_batches=20):
    """(scenes/s, process CPU µs per scene) over `seconds` of a fresh iterator of `dataset`,
    after `warmup_batches` (shuffle buffer, autotuning); the iterator is closed on return."""
    iterator = iter(dataset)
    for _ in range(warmup_batches):
        next(iterator)
    start, cpu_start, batches = time.perf_counter(), time.process_time(), 0
    while time.perf_counter() - start < seconds:
        next(iterator)
        batches += 1
    scenes = batches * batch_size
    rate = scenes / (time.perf_counter() - start)
    cpu = (time.process_time() - cpu_start) / scenes * 1e6
    del iterator  # stops its background threads and frees its buffers before the next input
    gc.collect()
    return rate, cpu


def main(argv):
    del argv
    global tf, pipeline
    tf = cli.import_tensorflow()
    from gqn_tf.data import pipeline

    info = datasets.get_dataset_info(_DATASET.value)
    root = _DATA_DIR.value
    try:
        files = shards.list_shards(root, info.name, _SPLIT.value)
    except shards.DataNotFoundError:
        if _SPLIT.value != "train":
            raise
        root = write_synthetic(tempfile.mkdtemp(prefix="gqn_bench_"), info)
        logging.info("No data under %s: measuring synthetic scenes in %s.", _DATA_DIR.value, root)
        files = shards.list_shards(root, info.name, _SPLIT.value)
    batch_size, context = _BATCH_SIZE.value, _CONTEXT_SIZE.value
    frames = context + 1
    inputs = {
        "pipeline": pipeline.make_dataset(info.name, root, _SPLIT.value, batch_size=batch_size,
                                          context_size=context, seed=0, repeat=True),
        **{f"decode only ({loop})": decode_only(files, info, batch_size, frames, loop)
           for loop in ("map_fn", "unrolled")},
        # Not a baseline of the ratio: shows what the required float32 output costs alone.
        _DECODE_FLOAT: decode_only(files, info, batch_size, frames, "unrolled", to_float=True),
    }
    rates = {name: [] for name in inputs}
    cpus = {name: [] for name in inputs}
    load_before = os.getloadavg()
    for _ in range(_ROUNDS.value):
        for name, dataset in inputs.items():
            rate, cpu = measure(dataset, batch_size, _SECONDS.value)
            rates[name].append(rate)
            cpus[name].append(cpu)
    load_after = os.getloadavg()
    rate = {name: statistics.median(values) for name, values in rates.items()}
    cpu = {name: statistics.median(values) for name, values in cpus.items()}
    for name in inputs:
        print(f"{name + ':':27s} {rate[name]:8.0f} scenes/s  {rate[name] * frames:8.0f} frames/s"
              f"  {cpu[name]:6.1f} CPU µs/scene  "
              f"(rounds: {', '.join(f'{r:.0f}' for r in rates[name])} scenes/s)")
    baselines = [name for name in inputs if name not in ("pipeline", _DECODE_FLOAT)]
    best = max(baselines, key=rate.get)
    best_cpu = min(baselines, key=cpu.get)
    scenes, decode = rate["pipeline"], rate[best]
    ratio, float_ratio = scenes / decode, scenes / rate[_DECODE_FLOAT]
    cpu_ratio = cpu[best_cpu] / cpu["pipeline"]
    print(f"ratio:       {ratio:.2f} against {best}; CPU-time ratio {cpu_ratio:.2f} "
          f"(M={context}, B={batch_size}, {os.cpu_count()} CPUs, 1-min load average "
          f"{load_before[0]:.1f} before, {load_after[0]:.1f} after)")
    print(f"for comparison: {float_ratio:.2f} against {_DECODE_FLOAT}")
    print(json.dumps({"scenes_per_s": round(scenes, 1),
                      "decode_only_scenes_per_s": round(decode, 1),
                      "ratio": round(ratio, 3),
                      "decode_only_loop": best,
                      "cpu_us_per_scene": round(cpu["pipeline"], 1),
                      "decode_only_cpu_us_per_scene": round(cpu[best_cpu], 1),
                      "cpu_ratio": round(cpu_ratio, 3),
                      "frames_per_s": round(scenes * frames, 1),
                      "decode_float_scenes_per_s": round(rate[_DECODE_FLOAT], 1),
                      "ratio_to_decode_float": round(float_ratio, 3),
                      "load_average": [round(load_before[0], 2), round(load_after[0], 2)],
                      "context_size": context, "batch_size": batch_size}))


if __name__ == "__main__":
    cli.run(main)
