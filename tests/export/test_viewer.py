"""view.py in a real headless Chromium (Debian's chromium, driven through its chromedriver): the
page loads, toggling context views and dragging move the query, and the displayed images equal
the model's own render for that camera and seed, pixel for pixel; bad input and faults appear
as messages on the page; 8 concurrent clients for 30 s get no error; requests are bounded."""

import base64
import contextlib
import io
import json
import math
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from PIL import Image

from gqn_tf.data import datasets, shards
from gqn_tf.evaluation import render as render_lib
from gqn_tf.serving import viewer

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
DATASET = "shepard_metzler_7_parts"
INFO = datasets.get_dataset_info(DATASET)
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--window-size=1300,900")


# --- Fixtures: the browser, the viewer process, in-process viewers -----------------------------

@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver_path):
        message = ("the viewer's tests need Debian's chromium and its chromedriver "
                   "(apt-get install chromium chromium-driver)")
        if os.environ.get("GQN_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    profile = tmp_path_factory.mktemp("chromium-profile")
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.downloads = tmp_path_factory.mktemp("downloads")
    driver.execute_cdp_cmd("Browser.setDownloadBehavior",
                           {"behavior": "allow", "downloadPath": str(driver.downloads)})
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def keras_file(tmp_path_factory):
    from gqn_tf.model import GQN, get_preset

    path = tmp_path_factory.mktemp("viewer-model") / "tiny.keras"
    GQN(get_preset("tiny")).save(str(path))
    return path


@pytest.fixture(scope="module")
def served(keras_file, sample_dir):
    """view.py as a user starts it, on a free port: (its address, the same model in this
    process behind the same signature)."""
    process = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "view.py"), "--model", str(keras_file),
         "--data_dir", str(sample_dir), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert "http://127.0.0.1:" in line, line + process.stderr.read()
        url = line[line.index("http://"):].split()[0]
        renderer, _ = viewer.local_renderer(str(keras_file))
        yield url, renderer
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextlib.contextmanager
def in_process(page):
    """Serves a `viewer.Viewer` on a loopback port of its own; yields the page's address."""
    server = viewer.make_server(page, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- Reading the page -------------------------------------------------------------------------

def _state(driver):
    return driver.execute_script("return window.viewerState()")


def _rendered(driver, timeout=60):
    """Waits until the page shows the render of its current query; returns its state."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = _state(driver)
        rendered = state["rendered"]
        if (state["sceneLoaded"] and not state["busy"] and rendered
                and rendered["camera"] == state["camera"]
                and rendered["context"] == state["context"]):
            return state
        time.sleep(0.05)
    raise AssertionError(f"no render of the current query: {_state(driver)}; error "
                         f"{_error(driver)!r}")


def _error(driver, timeout=0.0, words=""):
    """The page's error message ('' when none), waiting up to `timeout` for one that holds
    `words`."""
    deadline = time.monotonic() + timeout
    while True:
        text = driver.execute_script(
            "const e = document.getElementById('error');"
            "return e.style.display === 'none' ? '' : e.textContent;")
        if (text and words in text) or time.monotonic() >= deadline:
            return text
        time.sleep(0.05)


_PIXELS = """
const img = arguments[0];
const canvas = document.createElement('canvas');
canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
const context = canvas.getContext('2d');
context.drawImage(img, 0, 0);
return [canvas.width, canvas.height,
        Array.from(context.getImageData(0, 0, canvas.width, canvas.height).data)];
"""


def _pixels(driver, element):
    """The image an <img> displays, as uint8 [H, W, 3], read back through a canvas."""
    width, height, rgba = driver.execute_script(_PIXELS, element)
    return np.asarray(rgba, np.uint8).reshape(height, width, 4)[..., :3]


def _scene(sample_dir, index, split="test"):
    """(frames, raw cameras) of a sample scene, read by render.py's loader."""
    return render_lib.load_scene(shards.list_shards(str(sample_dir), DATASET, split), INFO,
                                 index)


def _expected(renderer, sample_dir, state, samples=4, seed=0, split="test"):
    """The model's own render of the page's query: K samples and their mean, as the 8-bit
    pixels every PNG here holds."""
    frames, cameras = _scene(sample_dir, state["scene"], split)
    context = state["context"]
    images = renderer.render(frames[context], cameras[context],
                             np.asarray(state["camera"], np.float32), samples, seed)
    as_pixels = lambda image: np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)  # noqa: E731
    return [as_pixels(image) for image in images], as_pixels(images.mean(axis=0))


def _assert_shows_the_models_render(driver, renderer, sample_dir):
    state = _rendered(driver)
    samples, mean = _expected(renderer, sample_dir, state)
    shown = driver.find_elements("css selector", "#sample-row img")
    assert len(shown) == len(samples)
    for element, image in zip(shown, samples):
        np.testing.assert_array_equal(_pixels(driver, element), image)
    np.testing.assert_array_equal(_pixels(driver, driver.find_element("id", "mean")), mean)
    return state


def _orbit_distance(camera):
    return math.dist(camera[:3], (0, 0, 0))


def _on_orbit(camera):
    """The position an orbit camera with this yaw, pitch and distance has."""
    d, yaw, pitch = _orbit_distance(camera), camera[3], camera[4]
    return [-d * math.cos(pitch) * math.cos(yaw), -d * math.cos(pitch) * math.sin(yaw),
            -d * math.sin(pitch)]


# --- The page in the browser ------------------------------------------------------------------

def test_page_shows_the_models_own_render_and_follows_clicks_drags_and_typing(
        browser, served, sample_dir):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.actions.wheel_input import ScrollOrigin
    from selenium.webdriver.common.keys import Keys

    url, renderer = served
    browser.get(url)
    state = _assert_shows_the_models_render(browser, renderer, sample_dir)
    assert (state["split"], state["scene"], state["context"]) == ("test", 0, [0, 1, 2])
    views = browser.find_elements("css selector", "#views figure")
    assert len(views) == INFO.sequence_size
    assert "M = 3 context views" in browser.find_element("id", "context-size").text
    first_camera = state["camera"]
    start = render_lib.make_path("orbit", _scene(sample_dir, 0)[1], 1)[0]
    np.testing.assert_allclose(first_camera, start, rtol=1e-5, atol=1e-5)

    views[5].click()  # add view 6, remove view 1
    views[0].click()
    state = _assert_shows_the_models_render(browser, renderer, sample_dir)
    assert state["context"] == [1, 2, 5]
    assert "in-context" in views[5].get_attribute("class")
    assert "in-context" not in views[0].get_attribute("class")

    mean = browser.find_element("id", "mean")
    ActionChains(browser).drag_and_drop_by_offset(mean, 40, -20).perform()
    state = _assert_shows_the_models_render(browser, renderer, sample_dir)
    camera = state["camera"]
    assert math.isclose(camera[3], first_camera[3] - 0.4, abs_tol=1e-6)  # 0.01 rad per pixel
    assert math.isclose(camera[4], first_camera[4] - 0.2, abs_tol=1e-6)
    assert math.isclose(_orbit_distance(camera), _orbit_distance(first_camera), rel_tol=1e-6)
    np.testing.assert_allclose(camera[:3], _on_orbit(camera), atol=1e-6)
    shown = [float(browser.find_element("id", f"cam-{name}").get_attribute("value"))
             for name in ("x", "y", "z", "yaw", "pitch")]
    np.testing.assert_allclose(shown, camera, atol=1e-3)

    ActionChains(browser).scroll_from_origin(ScrollOrigin.from_element(mean), 0, 100).perform()
    state = _assert_shows_the_models_render(browser, renderer, sample_dir)
    assert math.isclose(_orbit_distance(state["camera"]),
                        _orbit_distance(camera) * math.exp(0.1), rel_tol=1e-6)

    field = browser.find_element("id", "cam-x")
    field.clear()
    field.send_keys("1.5", Keys.ENTER)
    state = _assert_shows_the_models_render(browser, renderer, sample_dir)
    assert state["camera"][0] == 1.5

    for index in state["context"]:  # M = 0: the prior alone
        views[index].click()
    state = _assert_shows_the_models_render(browser, renderer, sample_dir)
    assert state["context"] == []
    assert "the prior alone" in browser.find_element("id", "context-size").text
    assert _error(browser) == ""


def test_gif_button_saves_the_orbit_from_the_current_camera(browser, served, sample_dir):
    url, _ = served
    browser.get(url)
    _rendered(browser)
    browser.find_element("id", "save-gif").click()
    deadline = time.monotonic() + 120
    while "Saved" not in browser.find_element("id", "gif-status").text:
        assert time.monotonic() < deadline and not _error(browser), _error(browser)
        time.sleep(0.1)
    assert "36 frames" in browser.find_element("id", "gif-status").text
    path = browser.downloads / "orbit_test_0.gif"
    while not path.exists() or path.stat().st_size == 0:
        assert time.monotonic() < deadline, list(browser.downloads.iterdir())
        time.sleep(0.1)
    time.sleep(0.5)  # the download is renamed into place once complete
    with Image.open(path) as gif:
        assert gif.n_frames == 36
        # render.py's frame: mean | 4 samples | std, each 64 px at scale 4 with labels
        assert gif.size[0] >= 6 * 64 * 4


def test_unknown_scene_and_another_frame_size_are_messages_on_the_page(
        browser, served, sample_dir):
    url, _ = served
    browser.get(url)
    _rendered(browser)
    browser.execute_script("const s = document.getElementById('scene'); s.value = 999;"
                           "s.dispatchEvent(new Event('change'));")
    words = "test scene 999 does not exist: the shards hold 80 scenes"
    assert words in _error(browser, 30, words)

    renderer, size = viewer.local_renderer(str(REPO_ROOT / "pretrained" / "gqn_sm7_32.npz"))
    page = viewer.Viewer(renderer, viewer.Scenes(str(sample_dir), DATASET), size, "bundled")
    with in_process(page) as address:
        browser.get(address)
        message = _error(browser, 30)
    assert "The model renders 32x32 views but the shepard_metzler_7_parts scenes" in message
    assert "are 64x64: restart view.py with --resize" in message


def test_faults_of_a_serving_backend_are_messages_on_the_page(browser, server, sample_dir):
    address, _ = server
    scenes = viewer.Scenes(str(sample_dir), DATASET)
    down = viewer.ServerRenderer(f"http://127.0.0.1:{_free_port()}", "gqn", timeout=5)
    with in_process(viewer.Viewer(down, scenes, 64, "export/1")) as page:
        browser.get(page)
        assert "Cannot reach http://127.0.0.1:" in _error(browser, 30)

    wrong = viewer.ServerRenderer(address, "other")
    with in_process(viewer.Viewer(wrong, scenes, 64, "export/1")) as page:
        browser.get(page)
        assert "HTTP 404: Servable not found for request: Latest(other)" in _error(browser, 30)

    rest = viewer.ServerRenderer(address, "gqn")
    with in_process(viewer.Viewer(rest, scenes, 64, "export/1")) as page:
        browser.get(page)
        _rendered(browser)
        for index in (0, 1, 2):
            browser.find_elements("css selector", "#views figure")[index].click()
        words = "M = 0 (no context views) cannot be sent over REST"
        assert words in _error(browser, 30, words)
    # the page's own server gone: the next click says so
    browser.find_elements("css selector", "#views figure")[3].click()
    words = "The viewer's server does not answer"
    assert words in _error(browser, 30, words)


def test_grpc_backend_renders_the_same_images_as_the_model_with_an_empty_context(
        browser, exported, grpc_server, sample_dir):
    address, requests = grpc_server
    renderer, _ = viewer.model_renderer(exported["model"], "the model in the test")
    backend = viewer.ServerRenderer(address, "gqn")
    assert "gRPC" in backend.description
    page = viewer.Viewer(backend, viewer.Scenes(str(sample_dir), DATASET), 64, "export/1")
    with in_process(page) as url:
        browser.get(url)
        _assert_shows_the_models_render(browser, renderer, sample_dir)
        for index in (0, 1, 2):
            browser.find_elements("css selector", "#views figure")[index].click()
        state = _assert_shows_the_models_render(browser, renderer, sample_dir)
    assert state["context"] == [] and requests[-1].inputs["context_frames"].tensor_shape.dim[
        1].size == 0


def test_screenshot_of_the_bundled_model(browser, tmp_path, monkeypatch):
    """The README's picture: the bundled model on the bundled sample, taken by this browser,
    with the paths a user types. GQN_VIEWER_SCREENSHOT=docs/images/viewer.png keeps a copy."""
    monkeypatch.chdir(REPO_ROOT)
    renderer, size = viewer.local_renderer("pretrained/gqn_sm7_32.npz")
    page = viewer.Viewer(renderer, viewer.Scenes("data/sample", DATASET, resize_to=size),
                         size, "pretrained/gqn_sm7_32.npz")
    with in_process(page) as url:
        browser.get(url)
        _rendered(browser)
        path = tmp_path / "viewer.png"
        browser.save_screenshot(str(path))
    with Image.open(path) as shot:
        assert shot.size == (1300, browser.execute_script("return window.innerHeight"))
    assert "by pretrained/gqn_sm7_32.npz, step" in browser.find_element("id", "about").text
    if os.environ.get("GQN_VIEWER_SCREENSHOT"):
        shutil.copyfile(path, os.environ["GQN_VIEWER_SCREENSHOT"])


# --- The HTTP API: concurrency and bounds ---------------------------------------------------

def _post(url, body, raw=None):
    data = raw if raw is not None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_eight_concurrent_clients_for_30_seconds_get_no_error(served):
    url, _ = served
    stop = time.monotonic() + 30
    counts, failures = [0] * 8, []

    def client(k):
        rng = np.random.default_rng(k)
        while time.monotonic() < stop:
            context = sorted(rng.choice(INFO.sequence_size, rng.integers(0, 6), replace=False))
            yaw, pitch = rng.uniform(-math.pi, math.pi), rng.uniform(-0.5, 0.5)
            camera = _on_orbit([5, 0, 0, yaw, pitch]) + [yaw, pitch]
            status, body = _post(url + "api/render", {
                "split": "test", "scene": int(rng.integers(0, 20)), "samples": 4,
                "context": [int(v) for v in context], "camera": camera, "seed": k})
            if status != 200 or "mean" not in json.loads(body):
                failures.append((status, body[:300]))
            counts[k] += 1

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert min(counts) >= 3, counts


@pytest.mark.parametrize("body,status,words", [
    ({"scene": 0, "context": [0], "camera": [1, 2, 3, 0, 0], "samples": 17}, 400,
     "samples must be an integer from 1 to 16"),
    ({"scene": 0, "context": [15], "camera": [1, 2, 3, 0, 0]}, 400,
     "context must be a list of distinct view indices from 0 to 14"),
    ({"scene": 0, "context": [1, 1], "camera": [1, 2, 3, 0, 0]}, 400, "distinct"),
    ({"scene": 0, "context": [], "camera": [1, 2, 3, 0]}, 400, "camera must be 5 finite"),
    ({"scene": 0, "context": [], "camera": [1, 2, 3, 0, float("nan")]}, 400, "5 finite"),
    ({"scene": 0, "context": [], "camera": [1e6, 2, 3, 0, 0]}, 400, "within ±1000"),
    ({"scene": -1, "context": [], "camera": [1, 2, 3, 0, 0]}, 400, "scene must be an integer"),
    ({"split": "validation", "scene": 0, "camera": [1, 2, 3, 0, 0]}, 404,
     "There is no 'validation' split"),
    ({"scene": 0, "context": [], "camera": [1, 2, 3, 0, 0], "seed": "x"}, 400, "seed must"),
])
def test_bad_render_requests_are_refused_naming_the_field(served, body, status, words):
    url, _ = served
    answer = _post(url + "api/render", body)
    assert answer[0] == status and words in json.loads(answer[1])["error"], answer


def test_oversized_and_malformed_bodies_and_unknown_paths(served):
    url, _ = served
    status, body = _post(url + "api/render", None, raw=b"{" + b" " * (65 * 1024) + b"}")
    assert status == 413 and "limit is 65536" in json.loads(body)["error"]
    status, body = _post(url + "api/render", None, raw=b"not json")
    assert status == 400 and "not JSON" in json.loads(body)["error"]
    status, body = _post(url + "api/orbit", {"scene": 0, "context": [], "frames": 500,
                                             "camera": [1, 2, 3, 0, 0]})
    assert status == 400 and "frames must be an integer from 2 to 72" in json.loads(body)["error"]
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(url + "etc/passwd", timeout=30)
    assert error.value.code == 404
    info = json.loads(urllib.request.urlopen(url + "api/info", timeout=30).read())
    assert info["limits"]["max_samples"] == 16 and info["path"] == "orbit"


def test_scene_endpoint_gives_views_cameras_and_the_start_of_renders_path(served, sample_dir):
    url, _ = served
    scene = json.loads(urllib.request.urlopen(url + "api/scene?split=train&scene=3",
                                              timeout=30).read())
    frames, cameras = _scene(sample_dir, 3, "train")
    assert len(scene["views"]) == INFO.sequence_size
    first = Image.open(io.BytesIO(base64.b64decode(scene["views"][0].split(",", 1)[1])))
    np.testing.assert_array_equal(np.asarray(first),
                                  np.round(frames[0] * 255).astype(np.uint8))
    np.testing.assert_allclose(scene["cameras"], cameras)
    np.testing.assert_allclose(scene["camera"], render_lib.orbit_cameras(cameras, 1)[0],
                               rtol=1e-6)


def test_server_binds_loopback_by_default(served):
    url, _ = served
    assert url.startswith("http://127.0.0.1:")
    server = viewer.make_server(None, port=0)
    try:
        assert server.server_address[0] == "127.0.0.1"
    finally:
        server.server_close()


def test_command_line_mistakes_are_one_line(keras_file, exported, sample_dir):
    cases = [
        (["--model", str(exported["path"]), "--server", "localhost:8500"], 2,
         "view.py: --server: server 'localhost:8500' has no protocol"),
        (["--model", str(keras_file), "--server", "http://127.0.0.1:1"], 2,
         f"view.py: --model '{keras_file}' is not an exported SavedModel"),
        (["--model", str(keras_file), "--data_dir", str(sample_dir.parent / "nowhere")], 1,
         "No shards of shepard_metzler_7_parts under"),
    ]
    with socket.socket() as busy:  # a port something already listens on
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cases.append((["--model", str(keras_file), "--data_dir", str(sample_dir), "--port",
                       str(port)], 2, f"Cannot listen on 127.0.0.1:{port}"))
        for args, code, words in cases:
            args = args if "--port" in args else [*args, "--port", "0"]
            result = subprocess.run([sys.executable, str(REPO_ROOT / "view.py"), *args],
                                    capture_output=True, text=True, timeout=120)
            lines = [line for line in result.stderr.splitlines() if line.startswith("view.py:")]
            assert result.returncode == code and len(lines) == 1 and words in lines[0], \
                result.stderr
    assert "pass another --port (0 picks a free one)" in lines[0]


def test_an_exported_savedmodel_renders_in_process_like_the_model(exported, sample_dir):
    saved, size = viewer.local_renderer(str(exported["path"]))
    direct, _ = viewer.model_renderer(exported["model"], "the model in the test")
    assert size == 64 and "SavedModel" in saved.description
    frames, cameras = _scene(sample_dir, 2)
    for context in ([], [4, 7]):
        np.testing.assert_array_equal(
            saved.render(frames[context], cameras[context], cameras[0], 3, 11),
            direct.render(frames[context], cameras[context], cameras[0], 3, 11))


def test_latency_benchmark_prints_percentiles_and_one_json_line():
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / "viewer_latency.py"), "--requests",
         "10", "--warmup", "1"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    last = json.loads(result.stdout.strip().splitlines()[-1])
    assert (last["context_size"], last["samples"], last["requests"]) == (3, 4, 10)
    assert 0 < last["model_ms"]["p50"] <= last["round_trip_ms"]["p50"]
    assert last["round_trip_ms"]["p50"] <= last["round_trip_ms"]["p95"]
    assert "p95" in result.stdout.splitlines()[-2]
