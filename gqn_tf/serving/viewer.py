"""The novel-view viewer (view.py): a local web page that queries a GQN as the paper's movie S1
does. Pick a scene, choose which of its views are the context (none at all included), move the
query camera, and see the mean of K prior samples, the samples and their per-pixel std.

Every image comes from the exported model's `generate_seeded` signature (docs/design.md §4):
in-process (`LocalRenderer`, the SavedModel or the model wrapped in the same
`GQNServingModule`) or from TF Serving (`ServerRenderer`, over REST or gRPC). A render request
is one batch of K copies of the scene with seed [seed, 0], as render.py draws its samples, so
the page shows exactly what the model renders for that camera and seed.

The HTTP side is the standard library's: `GET /` the page, `GET /api/info`, `GET /api/scene`,
`POST /api/render` and `POST /api/orbit` (a GIF). Errors answer `{"error": message}` with a
4xx/5xx status, and the page shows the message. Requests are bounded (`LIMITS`).
"""

import base64
import collections
import http.server
import io
import json
import math
import os
import pathlib
import threading
import time
import urllib.parse

import numpy as np

from gqn_tf.data import datasets, shards
from gqn_tf.evaluation import figures
from gqn_tf.evaluation import render as render_lib
from gqn_tf.serving import client as client_lib
from gqn_tf.serving.signatures import CONFIG_FILE, GENERATE_SEEDED

PAGE = pathlib.Path(__file__).with_name("viewer.html")
# Bounds on one request: K samples, frames of an orbit GIF, the size of a request body, and the
# largest camera coordinate (the datasets' cameras lie within a few units of the origin).
LIMITS = {"max_samples": 16, "max_orbit_frames": 72, "max_body_bytes": 64 * 1024,
          "max_coordinate": 1000.0, "max_seed": 2**31 - 1}
_CACHED_SCENES = 32


class ViewerError(Exception):
    """A request the viewer cannot serve; `status` is the HTTP status it answers with."""

    def __init__(self, message, status=400):
        super().__init__(message)
        self.status = status


# --- Renderers: the model behind its serving signature ---------------------------------------

def _seeded_inputs(frames, cameras, query, samples, seed):
    """generate_seeded's inputs (`client.gqn_inputs`) for K copies of one scene: frames
    [K, M, H, W, 3], cameras [K, M, 5], query [K, 5], seed [seed, 0]."""
    frames = np.asarray(frames, np.float32)
    cameras = np.asarray(cameras, np.float32).reshape(len(frames), 5)
    _, inputs = client_lib.gqn_inputs(
        np.broadcast_to(frames[None], (samples, *frames.shape)),
        np.broadcast_to(cameras[None], (samples, *cameras.shape)),
        np.broadcast_to(np.asarray(query, np.float32), (samples, 5)), seed=seed)
    return inputs


class LocalRenderer:
    """generate_seeded in this process: a SavedModel's signature, or any model file that
    checkpoints.load_model reads wrapped in `GQNServingModule`. Calls are serialised (the
    model already uses every core), which keeps each one's latency steady under load."""

    def __init__(self, signature, description, owner=None):
        # `owner` keeps alive what the signature is a method of (a tf.function holds its
        # instance weakly).
        self._signature, self.description, self._owner = signature, description, owner
        self._lock = threading.Lock()

    def render(self, frames, cameras, query, samples, seed):
        import tensorflow as tf

        inputs = _seeded_inputs(frames, cameras, query, samples, seed)
        try:
            with self._lock:
                return self._signature(**{k: tf.constant(v) for k, v in inputs.items()})[
                    "image"].numpy()
        except tf.errors.InvalidArgumentError as error:
            raise ViewerError(f"The model refused the request: {error.message}") from None


class ServerRenderer:
    """generate_seeded on TF Serving, through `client.connect` (http:// or grpc://)."""

    def __init__(self, server, model_name, version=None, timeout=30.0):
        self._client = client_lib.connect(server, model_name, version, timeout)
        self.description = f"TF Serving over {self._client.protocol} at {server} ({model_name})"

    def render(self, frames, cameras, query, samples, seed):
        inputs = _seeded_inputs(frames, cameras, query, samples, seed)
        try:
            return self._client.predict(GENERATE_SEEDED, inputs, "image")
        except ValueError as error:  # a request the protocol cannot carry (M = 0 over REST)
            raise ViewerError(str(error)) from None
        except client_lib.ServingError as error:
            raise ViewerError(str(error), status=502) from None


def model_image_size(model_path):
    """The frame size an exported SavedModel renders, from its assets.extra/gqn_config.json;
    None when `model_path` is not such an export."""
    config = os.path.join(model_path, CONFIG_FILE)
    if not os.path.isfile(config):
        return None
    with open(config) as f:
        return int(json.load(f)["model"]["image_size"])


def local_renderer(model_path):
    """(LocalRenderer, image size) for an exported SavedModel version directory, a .keras or
    .npz file, a run directory or a checkpoint prefix."""
    import tensorflow as tf

    size = model_image_size(model_path)
    if size is not None:
        loaded = tf.saved_model.load(model_path)
        return LocalRenderer(loaded.signatures[GENERATE_SEEDED],
                             f"the SavedModel {model_path} in this process", owner=loaded), size
    from gqn_tf.training import checkpoints

    model, info = checkpoints.load_model(model_path)
    step = "" if info["step"] is None else f", step {info['step']}"
    return model_renderer(model, f"{info['source']}{step} in this process")


def model_renderer(model, description):
    """(LocalRenderer, image size) of a GQN in memory, behind the export's signature
    (`GQNServingModule`), traced once here so that the page's first render is not slow."""
    from gqn_tf.serving.signatures import GQNServingModule

    module = GQNServingModule(model)
    renderer = LocalRenderer(module.generate_seeded, description, owner=module)
    size = module.image_size
    renderer.render(np.zeros((1, size, size, 3)), np.zeros((1, 5)), np.zeros(5), 1, 0)
    return renderer, size


# --- Scenes ----------------------------------------------------------------------------------

class Scenes:
    """Scenes of a dataset's splits, read on demand from the shards (a few are cached),
    resized to `resize_to` when given."""

    def __init__(self, data_dir, dataset, resize_to=None):
        self.data_dir, self.info, self.resize_to = data_dir, datasets.get_dataset_info(dataset), \
            resize_to
        self.splits = {}
        for split in datasets.SPLITS:
            try:
                self.splits[split] = shards.list_shards(data_dir, dataset, split)
            except (FileNotFoundError, shards.ShardNamingError):
                pass
        if not self.splits:
            raise FileNotFoundError(
                f"No shards of {dataset} under {os.path.join(data_dir, dataset)}: pass the "
                f"--data_dir that holds <dataset>/train/ or <dataset>/test/ (data/sample for "
                f"the bundled sample).")
        self._cache = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, split, index):
        """(frames [S, H, W, 3] in [0, 1], raw cameras [S, 5]) of scene `index` of `split`."""
        if split not in self.splits:
            raise ViewerError(f"There is no {split!r} split of {self.info.name} in "
                              f"{self.data_dir}; it has {', '.join(self.splits)}.", 404)
        key = (split, index)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            try:
                scene = render_lib.load_scene(self.splits[split], self.info, index,
                                              self.resize_to)
            except IndexError as error:
                raise ViewerError(f"{split} {error}", 404) from None
            self._cache[key] = scene
            if len(self._cache) > _CACHED_SCENES:
                self._cache.popitem(last=False)
            return scene


# --- The viewer ------------------------------------------------------------------------------

def png_data_url(image):
    """An [H, W, 3] image in [0, 1] as a PNG data URL, quantised as every PNG here is."""
    buffer = io.BytesIO()
    figures.save_png(buffer, image)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _integer(request, name, low, high, default=None):
    value = request.get(name, default)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ViewerError(f"{name} must be an integer from {low} to {high}, got {value!r}.")
    return value


class Viewer:
    """What the page asks for, answered as JSON-ready dicts; ViewerError for a bad request."""

    def __init__(self, renderer, scenes, image_size, model_path, samples=4):
        self.renderer, self.scenes, self.image_size = renderer, scenes, image_size
        self.model_path, self.samples = model_path, samples
        self.path = render_lib.default_path(scenes.info.name)

    def info(self):
        return {"model": self.model_path, "renderer": self.renderer.description,
                "dataset": self.scenes.info.name, "data_dir": self.scenes.data_dir,
                "splits": list(self.scenes.splits), "views": self.scenes.info.sequence_size,
                "image_size": self.image_size, "path": self.path, "samples": self.samples,
                "resize": self.scenes.resize_to is not None, "limits": LIMITS}

    def _scene(self, request):
        split = request.get("split", next(iter(self.scenes.splits)))
        index = _integer(request, "scene", 0, 2**31 - 1)
        frames, cameras = self.scenes.get(split, index)
        if frames.shape[1] != self.image_size:
            raise ViewerError(
                f"The model renders {self.image_size}x{self.image_size} views but the "
                f"{self.scenes.info.name} scenes in {self.scenes.data_dir} are "
                f"{frames.shape[1]}x{frames.shape[2]}: restart view.py with --resize to scale "
                f"them to {self.image_size}x{self.image_size}, or point --data_dir at data of "
                f"that size.", 409)
        return split, index, frames, cameras

    def scene(self, request):
        """The scene's views (PNG data URLs) and raw cameras, and the camera to start from:
        the start of render.py's path for this dataset."""
        split, index, frames, cameras = self._scene(request)
        start = render_lib.make_path(self.path, cameras, 1)[0]
        return {"split": split, "scene": index, "views": [png_data_url(f) for f in frames],
                "cameras": cameras.tolist(), "camera": start.tolist()}

    def _query(self, request):
        """Validates a render request: (frames, context cameras, query camera, K, seed)."""
        _, _, frames, cameras = self._scene(request)
        context = request.get("context", [])
        views = len(frames)
        if (not isinstance(context, list)
                or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < views
                           for v in context)
                or len(set(context)) != len(context)):
            raise ViewerError(f"context must be a list of distinct view indices from 0 to "
                              f"{views - 1}, got {context!r}.")
        camera = request.get("camera")
        limit = LIMITS["max_coordinate"]
        if (not isinstance(camera, list) or len(camera) != 5
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                           and math.isfinite(v) and abs(v) <= limit for v in camera)):
            raise ViewerError(f"camera must be 5 finite numbers (x, y, z, yaw, pitch) within "
                              f"±{limit:g}, got {camera!r}.")
        samples = _integer(request, "samples", 1, LIMITS["max_samples"], self.samples)
        seed = _integer(request, "seed", 0, LIMITS["max_seed"], 0)
        return frames[context], cameras[context], np.asarray(camera, np.float32), samples, seed

    def render(self, request):
        """The mean, the K samples and the std heat map for one camera, as PNG data URLs."""
        frames, cameras, query, samples, seed = self._query(request)
        start = time.perf_counter()
        images = self.renderer.render(frames, cameras, query, samples, seed)
        render_ms = 1000.0 * (time.perf_counter() - start)
        rendered = render_lib.summarize(images[None])
        return {"mean": png_data_url(rendered["mean"][0]),
                "samples": [png_data_url(image) for image in images],
                "std": png_data_url(figures.heat_map(rendered["std"][0])),
                "std_mean": float(rendered["std"].mean()), "render_ms": render_ms,
                "camera": query.tolist(), "context": request.get("context", [])}

    def orbit_gif(self, request):
        """render.py's GIF of the path (orbit or pan) that starts at the request's camera."""
        frames, cameras, query, samples, seed = self._query(request)
        count = _integer(request, "frames", 2, LIMITS["max_orbit_frames"], 36)
        path = render_lib.make_path(self.path, query[None], count)
        images = np.stack([self.renderer.render(frames, cameras, camera, samples, seed)
                           for camera in path])
        buffer = io.BytesIO()
        render_lib.save_gif(buffer, render_lib.summarize(images), scale=4)
        return buffer.getvalue(), count


# --- HTTP ------------------------------------------------------------------------------------

class _Handler(http.server.BaseHTTPRequestHandler):
    server_version = "gqn-viewer"
    viewer = None  # set by make_server
    quiet = True

    def _send(self, status, body, content_type, headers=()):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status, value):
        self._send(status, json.dumps(value).encode("utf-8"), "application/json")

    def _answer(self, handler, *args):
        try:
            handler(*args)
        except ViewerError as error:
            self._json(error.status, {"error": str(error)})
        except Exception as error:  # noqa: BLE001 - shown on the page instead of a dropped socket
            self._json(500, {"error": f"The viewer failed: {type(error).__name__}: {error}"})

    def do_GET(self):  # noqa: N802 - the standard library's name
        url = urllib.parse.urlsplit(self.path)
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}
        if url.path in ("/", "/index.html"):
            self._send(200, PAGE.read_bytes(), "text/html; charset=utf-8")
        elif url.path == "/api/info":
            self._answer(lambda: self._json(200, self.viewer.info()))
        elif url.path == "/api/scene":
            self._answer(lambda: self._json(200, self.viewer.scene(query)))
        else:
            self._json(404, {"error": f"No page {url.path}: open / for the viewer."})

    def _body(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length > LIMITS["max_body_bytes"]:
            raise ViewerError(f"The request body has {length} bytes; the limit is "
                              f"{LIMITS['max_body_bytes']}.", 413)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            raise ViewerError("The request body is not JSON.") from None
        if not isinstance(body, dict):
            raise ViewerError("The request body must be a JSON object.")
        return body

    def do_POST(self):  # noqa: N802
        path = urllib.parse.urlsplit(self.path).path
        if path == "/api/render":
            self._answer(lambda: self._json(200, self.viewer.render(self._body())))
        elif path == "/api/orbit":
            self._answer(self._send_gif)
        else:
            self._json(404, {"error": f"No endpoint {path}."})

    def _send_gif(self):
        body = self._body()
        gif, count = self.viewer.orbit_gif(body)
        name = f"{self.viewer.path}_{body.get('split', 'test')}_{body.get('scene', 0)}.gif"
        self._send(200, gif, "image/gif", [
            ("Content-Disposition", f'attachment; filename="{name}"'),
            ("X-Frames", str(count))])

    def log_message(self, format, *args):  # noqa: A002 - the standard library's signature
        if not self.quiet:
            super().log_message(format, *args)


def make_server(viewer, host="127.0.0.1", port=8000, quiet=True):
    """A threading HTTP server of `viewer` (not yet serving): call `serve_forever()`."""
    handler = type("Handler", (_Handler,), {"viewer": viewer, "quiet": quiet})
    server = http.server.ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server
