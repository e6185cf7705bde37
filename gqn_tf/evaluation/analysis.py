"""What the scene representation r knows: the paper's Fig. 3A (viewpoint invariance) and Fig. 4A
(scene algebra), measured on our data.

Invariance. For each of N scenes, G disjoint sets of V views each (a seeded permutation of the
scene's S views, cut into sets) give G representations r. If r describes the scene rather than
the views, the r of one view set lies nearest to the r of another view set of the same scene:
`nearest_neighbour_accuracy` is the fraction of (set, scene) pairs whose nearest neighbour among
the other sets' representations (Euclidean, after standardising each dimension) belongs to the
same scene. Chance is 1 / N. The same measure is taken of two baselines: the mean of the set's
images (what a representation without learning keeps), and r of an untrained model built with
the same seed. A t-SNE of the trained r shows the clusters; TensorBoard's projector gets the
embeddings too.

Algebra. Families of four synthetic Shepard–Metzler scenes share their cameras: two cube chains
A and B (shapes), each in two colour schemes X and Y. From V context views of each,
r(A, X) − r(A, Y) + r(B, Y) should describe (B, X): it is rendered at query views the context did
not see (the prior-mean render, z at its prior mean) and compared with the true (B, X) images.
Baselines: r(B, Y) rendered unchanged (the algebra should beat it: the colours must change), the
nearest of the three input scenes' true images at the query view (an oracle that copies the
best input), and r(B, X) from its own context views (the reference: what the model renders of
the answer itself).

Copy. Can the model draw a view it was shown? For each of N scenes, a seeded permutation of its
views gives a query view and M other views. The query is rendered (prior mean) from three
contexts: the M other views (`left_out`, the task the model trains on), M − 1 of them and the
query view itself (`among`: as many views, one of them the answer), and the query view alone
(`alone`). If `among` and `alone` are far better than `left_out`, the renderer draws well and
what lags is inferring an unseen view; if they are about as poor, the path from r to the image
is what limits the model. The MSEs are given beside that of the mean of the N scenes' frames.
"""

import dataclasses

import numpy as np

from gqn_tf.data import cameras as cameras_lib
from gqn_tf.data import datasets, standalone, synthetic
from gqn_tf.evaluation import metrics


@dataclasses.dataclass(frozen=True)
class InvarianceConfig:
    """num_scenes N (the first of the split), view_sets G of views_per_set V views each."""

    num_scenes: int = 20
    view_sets: int = 3
    views_per_set: int = 4
    seed: int = 0
    split: str = "test"


@dataclasses.dataclass(frozen=True)
class AlgebraConfig:
    """families of four scenes, context_views V per scene and queries per family."""

    families: int = 16
    context_views: int = 5
    queries: int = 4
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class CopyConfig:
    """num_scenes N (the first of the split), context_views M."""

    num_scenes: int = 20
    context_views: int = 5
    seed: int = 0
    split: str = "test"


COPY_CONTEXTS = ("left_out", "among", "alone")


def check_invariance(config, info):
    """Raises a ValueError naming what does not fit the dataset's S views per scene."""
    for name in ("num_scenes", "view_sets", "views_per_set"):
        if getattr(config, name) < 1:
            raise ValueError(f"{name} must be at least 1, got {getattr(config, name)}.")
    if config.view_sets < 2:
        raise ValueError(f"view_sets must be at least 2 (a set is matched against the others), "
                         f"got {config.view_sets}.")
    if config.view_sets * config.views_per_set > info.sequence_size:
        raise ValueError(
            f"{config.view_sets} view sets of {config.views_per_set} views need "
            f"{config.view_sets * config.views_per_set} views per scene, but {info.name} has "
            f"{info.sequence_size}: lower --view_sets or --views_per_set.")


def check_algebra(config, info):
    """Raises a ValueError naming what does not fit."""
    for name in ("families", "context_views", "queries"):
        if getattr(config, name) < 1:
            raise ValueError(f"{name} must be at least 1, got {getattr(config, name)}.")
    if config.context_views + config.queries > info.sequence_size:
        raise ValueError(
            f"{config.context_views} context views and {config.queries} queries need "
            f"{config.context_views + config.queries} cameras per scene, but {info.name} has "
            f"{info.sequence_size}: lower --context_views or --queries.")


def check_copy(config, info):
    """Raises a ValueError naming what does not fit."""
    for name in ("num_scenes", "context_views"):
        if getattr(config, name) < 1:
            raise ValueError(f"{name} must be at least 1, got {getattr(config, name)}.")
    if config.context_views + 1 > info.sequence_size:
        raise ValueError(
            f"{config.context_views} context views and the query need "
            f"{config.context_views + 1} views per scene, but {info.name} has "
            f"{info.sequence_size}: lower --context_views.")


def view_sets(num_views, sets, per_set, seed, scene):
    """The `sets` disjoint view index arrays of `per_set` views of scene `scene`, from a
    permutation seeded by (seed, scene)."""
    order = np.random.default_rng([seed, scene]).permutation(num_views)
    return [order[g * per_set:(g + 1) * per_set] for g in range(sets)]


def read_scenes(data_dir, dataset, split, num_scenes, frame_size):
    """The first `num_scenes` scenes of a split with all their views: frames [N, S, H, W, 3]
    float32 in [0, 1] (resized to `frame_size`), viewpoints [N, S, 7]. Read without
    TensorFlow (standalone.SceneSampler); a ValueError when the split holds fewer scenes."""
    sampler = standalone.SceneSampler(data_dir, dataset, split, frame_size=frame_size)
    if sampler.num_scenes < num_scenes:
        raise ValueError(f"num_scenes {num_scenes} is more than the {split} split of {dataset} "
                         f"holds ({sampler.num_scenes}): ask for at most {sampler.num_scenes}.")
    return sampler.whole_scenes(num_scenes)


def representations(model, frames, viewpoints, batch_size=16):
    """r of each context (frames [N, V, H, W, 3], viewpoints [N, V, 7]) → [N, h, w, C] numpy."""
    parts = [np.asarray(model.represent(frames[i:i + batch_size], viewpoints[i:i + batch_size]),
                        np.float32) for i in range(0, len(frames), batch_size)]
    return np.concatenate(parts)


def nearest_neighbour_accuracy(features):
    """features [G, N, D] (set g of scene n) → the fraction of (g, n) whose nearest row among
    the other sets' (Euclidean distance, each dimension standardised over all rows) is of
    scene n."""
    sets, scenes = features.shape[:2]
    rows = features.reshape(sets * scenes, -1).astype(np.float64)
    rows = (rows - rows.mean(0)) / (rows.std(0) + 1e-8)
    squared = np.sum(rows ** 2, axis=1)
    distances = squared[:, None] + squared[None, :] - 2 * rows @ rows.T
    set_of = np.repeat(np.arange(sets), scenes)
    scene_of = np.tile(np.arange(scenes), sets)
    distances[set_of[:, None] == set_of[None, :]] = np.inf  # only other view sets
    return float(np.mean(scene_of[np.argmin(distances, axis=1)] == scene_of))


def invariance(model, untrained, frames, viewpoints, config):
    """The invariance measures (module docstring) of `model` against the baselines, and the
    features [G, N, D] of each ("model", "untrained", "mean_image")."""
    info_views = frames.shape[1]
    chosen = [view_sets(info_views, config.view_sets, config.views_per_set, config.seed, n)
              for n in range(len(frames))]
    features = {"model": [], "untrained": [], "mean_image": []}
    for g in range(config.view_sets):
        index = np.stack([sets[g] for sets in chosen])  # [N, V]
        set_frames = np.take_along_axis(frames, index[:, :, None, None, None], axis=1)
        set_views = np.take_along_axis(viewpoints, index[:, :, None], axis=1)
        for name, net in (("model", model), ("untrained", untrained)):
            r = representations(net, set_frames, set_views)
            features[name].append(r.reshape(len(r), -1))
        features["mean_image"].append(set_frames.mean(axis=1).reshape(len(frames), -1))
    features = {name: np.stack(parts) for name, parts in features.items()}
    accuracy = {name: nearest_neighbour_accuracy(value) for name, value in features.items()}
    return {"nearest_neighbour_accuracy": accuracy, "chance": 1.0 / len(frames),
            "num_scenes": len(frames), "view_sets": config.view_sets,
            "views_per_set": config.views_per_set}, features


def scene_family(rng, parts, num_cameras, render_size, image_size):
    """Four scenes sharing `num_cameras` cameras: chains A, B in colour schemes X, Y. Returns
    frames {"AX", "AY", "BY", "BX": [S, size, size, 3] float32 in [0, 1]} (rendered at the
    dataset's frame size, JPEG-coded and resized as the readers do) and raw cameras [S, 5]."""
    chains = []
    for _ in range(2):
        cells = synthetic.random_walk(rng, parts)
        chains.append(cells - (cells.min(0) + cells.max(0)) / 2)
    schemes = [synthetic.random_colours(rng, parts) for _ in range(2)]
    cameras = synthetic.random_cameras(rng, num_cameras)
    frames = {}
    for name, (chain, scheme) in {"AX": (0, 0), "AY": (0, 1), "BY": (1, 1),
                                  "BX": (1, 0)}.items():
        views = synthetic.render_views(chains[chain], schemes[scheme], cameras, render_size)
        frames[name] = np.stack([
            standalone.decode_frame(synthetic.encode_jpeg(view), image_size)
            for view in views]).astype(np.float32) / 255.0
    return frames, cameras


def prior_mean_render(model, r, query_viewpoints, batch_size=16):
    """The render of r at the query viewpoints with every z_l at its prior mean."""
    c = model.gqn_config
    parts = []
    for i in range(0, len(r), batch_size):
        size = len(r[i:i + batch_size])
        noise = np.zeros((c.num_layers, size, c.core_size, c.core_size, c.z_channels),
                         np.float32)
        parts.append(np.asarray(model.render(r[i:i + batch_size],
                                             query_viewpoints[i:i + batch_size], noise=noise),
                                np.float32))
    return np.concatenate(parts)


def copy(model, frames, viewpoints, config):
    """The copy measures (module docstring) of frames [N, S, H, W, 3] and viewpoints
    [N, S, 7], and the images of the first scenes for a figure."""
    n, m = len(frames), config.context_views
    order = np.stack([view_sets(frames.shape[1], 1, m + 1, config.seed, scene)[0]
                      for scene in range(n)])  # [N, M + 1]: the query, then the others
    query, others = order[:, 0], order[:, 1:]
    contexts = {"left_out": others,
                "among": np.concatenate([others[:, :m - 1], query[:, None]], axis=1),
                "alone": query[:, None]}
    scenes = np.arange(n)
    target, query_viewpoints = frames[scenes, query], viewpoints[scenes, query]
    renders = {}
    for name, index in contexts.items():
        r = representations(model, np.take_along_axis(frames, index[:, :, None, None, None], 1),
                            np.take_along_axis(viewpoints, index[:, :, None], 1))
        renders[name] = prior_mean_render(model, r, query_viewpoints)
    mse = {name: float(np.mean(metrics.mse_per_image(target, image)))
           for name, image in renders.items()}
    mean_frame = np.broadcast_to(frames.mean(axis=(0, 1)), target.shape)
    mse["mean_image"] = float(np.mean(metrics.mse_per_image(target, mean_frame)))
    ratio = {name: mse[name] / mse["mean_image"] for name in COPY_CONTEXTS}
    shown = [{"target": target[i], **{name: renders[name][i] for name in COPY_CONTEXTS}}
             for i in range(min(4, n))]
    return {"mse": mse, "ratio_to_mean_image": ratio, "num_scenes": n, "context_views": m,
            "render": "prior mean"}, shown


def algebra(model, dataset, config):
    """The scene-algebra measures (module docstring), per-family MSEs, and the images of the
    first families for a figure."""
    info = datasets.get_dataset_info(dataset)
    parts = synthetic.num_parts(dataset)
    size = model.gqn_config.image_size
    v, q = config.context_views, config.queries
    errors = {name: [] for name in ("algebra", "unchanged", "nearest_input", "own")}
    shown = []
    for family in range(config.families):
        rng = np.random.default_rng([config.seed, 4, family])  # 4: apart from the splits' ids
        frames, cameras = scene_family(rng, parts, v + q, info.frame_size, size)
        viewpoints = np.asarray(cameras_lib.transform_cameras(cameras), np.float32)
        r = {name: representations(model, frames[name][None, :v], viewpoints[None, :v])
             for name in frames}
        queries = viewpoints[v:]  # [Q, 7]
        target = frames["BX"][v:]

        def rendered(representation):
            return prior_mean_render(model, np.repeat(representation, q, axis=0), queries)

        renders = {"algebra": rendered(r["AX"] - r["AY"] + r["BY"]),
                   "unchanged": rendered(r["BY"]), "own": rendered(r["BX"])}
        for name, image in renders.items():
            errors[name].append(metrics.mse_per_image(target, image))
        inputs = np.stack([metrics.mse_per_image(target, frames[name][v:])
                           for name in ("AX", "AY", "BY")])
        errors["nearest_input"].append(inputs.min(axis=0))
        if len(shown) < 4:
            shown.append({"inputs": [frames[name][v] for name in ("AX", "AY", "BY")],
                          "algebra": renders["algebra"][0], "target": target[0],
                          "unchanged": renders["unchanged"][0], "own": renders["own"][0]})
    mse = {name: float(np.mean(np.concatenate(parts))) for name, parts in errors.items()}
    return {"mse": mse, "families": config.families, "context_views": v, "queries": q,
            "render": "prior mean"}, shown


def plot_tsne(features, path, title, seed=0):
    """A t-SNE of features [G, N, D] into a PNG: a colour per scene, a marker per view set, so
    an invariant representation shows N tight clusters of G points."""
    import matplotlib
    from matplotlib.figure import Figure
    from sklearn.manifold import TSNE

    sets, scenes = features.shape[:2]
    rows = features.reshape(sets * scenes, -1)
    rows = (rows - rows.mean(0)) / (rows.std(0) + 1e-8)
    points = TSNE(n_components=2, perplexity=max(2.0, min(30.0, (len(rows) - 1) / 3)),
                  init="pca", random_state=seed).fit_transform(rows)
    colours = matplotlib.colormaps["tab20"](np.arange(scenes) % 20)
    figure = Figure(figsize=(7, 6), constrained_layout=True)
    axis = figure.subplots()
    for g, marker in zip(range(sets), "os^vDP*Xph"):
        part = points[g * scenes:(g + 1) * scenes]
        axis.scatter(part[:, 0], part[:, 1], c=colours, marker=marker, s=36,
                     edgecolors="black", linewidths=0.4, label=f"view set {g + 1}")
    axis.set(xticks=[], yticks=[])
    axis.set_title(title, fontsize=9)
    axis.legend(fontsize="small")
    figure.savefig(path, dpi=100)
    return path


def algebra_grid(shown, scale=2):
    """The figure of the first families: uint8 [H, W, 3], a row per family."""
    from gqn_tf.evaluation import figures

    rows = [[*family["inputs"], family["algebra"], family["target"], family["unchanged"],
             family["own"]] for family in shown]
    return figures.labelled_grid(
        rows, row_labels=[f"family {i + 1}" for i in range(len(rows))],
        column_labels=["A,X", "A,Y", "B,Y", "A,X-A,Y+B,Y", "B,X true", "B,Y", "B,X"],
        scale=scale)


def copy_grid(shown, context_views, scale=2):
    """The figure of the copy analysis' first scenes: uint8 [H, W, 3], a row per scene."""
    from gqn_tf.evaluation import figures

    rows = [[scene["target"], *(scene[name] for name in COPY_CONTEXTS)] for scene in shown]
    return figures.labelled_grid(
        rows, row_labels=[f"scene {i + 1}" for i in range(len(rows))],
        column_labels=["query view", f"{context_views} others",
                       f"{context_views - 1} others + it", "it alone"],
        scale=scale)


def write_projector(logdir, features, names):
    """TensorBoard projector files for features [G, N, D]: the embedding as a checkpointed
    variable, metadata.tsv (scene, view set) and projector_config.pbtxt."""
    import os

    import tensorflow as tf
    from tensorboard.plugins import projector

    os.makedirs(logdir, exist_ok=True)
    sets, scenes = features.shape[:2]
    with open(os.path.join(logdir, "metadata.tsv"), "w") as f:
        f.write("scene\tview_set\n")
        for g in range(sets):
            for n in range(scenes):
                f.write(f"{n}\t{g}\n")
    embedding = tf.Variable(features.reshape(sets * scenes, -1), name=names)
    tf.train.Checkpoint(embedding=embedding).save(os.path.join(logdir, "embedding.ckpt"))
    config = projector.ProjectorConfig()
    entry = config.embeddings.add()
    entry.tensor_name = "embedding/.ATTRIBUTES/VARIABLE_VALUE"
    entry.metadata_path = "metadata.tsv"
    projector.visualize_embeddings(logdir, config)
    return logdir
