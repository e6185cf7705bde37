"""The viewer's render latency: what a page waits for after it moves the camera.

    python benchmarks/viewer_latency.py --model pretrained/gqn_sm7_32.npz \
        --data_dir data/sample --resize --context_size 3 --samples 4

Serves view.py's page on a loopback port in this process and sends --requests render requests
one after the other, as the page does while the camera is dragged: the first --context_size
views of a scene as context, K = --samples, a camera stepping around the orbit, the scene
changing every 10 requests. Prints p50 and p95 of the round trip (request to decoded JSON
answer with the PNGs) and of the model's own part; the last line is JSON. Target: p95 at most
150 ms for the bundled 32x32 model at M = 3, K = 4.
"""

import json
import math
import os
import platform
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from gqn_tf import cli  # noqa: E402
from gqn_tf.data import datasets  # noqa: E402

_MODEL = flags.DEFINE_string("model", "pretrained/gqn_sm7_32.npz", "The model (as view.py).")
_DATA_DIR = flags.DEFINE_string("data_dir", "data/sample", "Root of the scenes (as view.py).")
_DATASET = flags.DEFINE_enum("dataset", "shepard_metzler_7_parts", sorted(datasets.DATASETS),
                             "Dataset of the scenes.")
_RESIZE = flags.DEFINE_bool("resize", True, "Scale the frames to the model's size (as view.py).")
_CONTEXT_SIZE = flags.DEFINE_integer("context_size", 3, "Context views M.", lower_bound=0)
_SAMPLES = flags.DEFINE_integer("samples", 4, "Prior samples K.", lower_bound=1, upper_bound=16)
_REQUESTS = flags.DEFINE_integer("requests", 200, "Timed requests.", lower_bound=10)
_WARMUP = flags.DEFINE_integer("warmup", 5, "Untimed requests first.", lower_bound=0)


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv):
    del argv
    cli.import_tensorflow()
    import numpy as np

    from gqn_tf.serving import viewer

    try:
        renderer, size = viewer.local_renderer(_MODEL.value)
        scenes = viewer.Scenes(_DATA_DIR.value, _DATASET.value, size if _RESIZE.value else None)
    except FileNotFoundError as error:
        raise cli.DataError(str(error)) from None
    page = viewer.Viewer(renderer, scenes, size, _MODEL.value, samples=_SAMPLES.value)
    if _CONTEXT_SIZE.value >= scenes.info.sequence_size:
        raise cli.UserError(f"--context_size must be below {scenes.info.sequence_size}.")
    server = viewer.make_server(page, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/api/render"
    split = "test" if "test" in scenes.splits else next(iter(scenes.splits))

    def request(i):
        scene = page.scene({"split": split, "scene": (i // 10) % 10})
        camera = scene["camera"]
        yaw = camera[3] + 0.05 * i
        distance = math.dist(camera[:3], (0, 0, 0))
        pitch = camera[4]
        position = [-distance * math.cos(pitch) * math.cos(yaw),
                    -distance * math.cos(pitch) * math.sin(yaw), -distance * math.sin(pitch)]
        body = json.dumps({"split": split, "scene": scene["scene"],
                           "context": list(range(_CONTEXT_SIZE.value)),
                           "camera": position + [yaw, pitch], "samples": _SAMPLES.value,
                           "seed": i}).encode()
        start = time.perf_counter()
        post = urllib.request.Request(url, data=body, method="POST",
                                      headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(post, timeout=60) as response:
            answer = json.loads(response.read())
        return 1000 * (time.perf_counter() - start), answer["render_ms"]

    for i in range(_WARMUP.value):
        request(i)
    timings = np.array([request(i) for i in range(_REQUESTS.value)])
    server.shutdown()
    server.server_close()
    round_trip, model = timings[:, 0], timings[:, 1]
    result = {"model": _MODEL.value, "image_size": size, "context_size": _CONTEXT_SIZE.value,
              "samples": _SAMPLES.value, "requests": _REQUESTS.value,
              "round_trip_ms": {"p50": round(float(np.percentile(round_trip, 50)), 1),
                                "p95": round(float(np.percentile(round_trip, 95)), 1)},
              "model_ms": {"p50": round(float(np.percentile(model, 50)), 1),
                           "p95": round(float(np.percentile(model, 95)), 1)},
              "target_p95_ms": 150, "cpu": _cpu_model(), "cores": os.cpu_count()}
    result["meets_target"] = result["round_trip_ms"]["p95"] <= 150
    print(f"{result['requests']} renders of {result['model']} at M = {result['context_size']}, "
          f"K = {result['samples']} on {result['cpu']} ({result['cores']} cores): round trip "
          f"p50 {result['round_trip_ms']['p50']} ms, p95 {result['round_trip_ms']['p95']} ms "
          f"(the model: p50 {result['model_ms']['p50']} ms, p95 {result['model_ms']['p95']} "
          f"ms); target p95 <= 150 ms")
    print(json.dumps(result))


if __name__ == "__main__":
    cli.run(main)
