"""What the scene representation r knows: viewpoint invariance (the paper's Fig. 3A) and scene
algebra (Fig. 4A), with baselines, and whether the model can draw a view it was shown.

    python analyze.py --model pretrained/gqn_sm7_32.npz --data_dir data/sample \
        --output_dir /tmp/gqn_analysis [--analyses invariance,algebra,copy]

invariance: r of the first --num_scenes scenes of --split from --view_sets disjoint sets of
--views_per_set views each; the accuracy of recognising a scene by the nearest r of another view
set, for the model, an untrained model of the same config and seed, and the mean of the set's
images; a t-SNE plot (invariance_tsne.png) and TensorBoard projector files (projector/).
algebra: --families synthetic families of two cube chains A, B in two colour schemes X, Y;
r(A,X) − r(A,Y) + r(B,Y) from --context_views views each, rendered at --queries new views
(prior mean) against the true (B,X), beside r(B,Y) unchanged, the nearest input scene's true
image, and r(B,X) itself; a figure (algebra.png). copy: each of the first --num_scenes scenes'
query view rendered (prior mean) from --context_views other views, from as many views one of
which is the query view itself, and from the query view alone; a figure (copy.png). All write
metrics.json. See gqn_tf/evaluation/analysis.py for the definitions.
"""

import os
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))  # run from a checkout

from absl import flags  # noqa: E402

from gqn_tf import cli, files  # noqa: E402
from gqn_tf.data import datasets  # noqa: E402

ANALYSES = ("invariance", "algebra", "copy")

_MODEL = flags.DEFINE_string(
    "model", None, "The model: a compact .npz (pretrained/gqn_sm7_32.npz), a .keras file, a "
    "train.py run directory or a checkpoint prefix.", required=True)
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", None, "Where metrics.json, the figures and projector/ go.", required=True)
_DATASET = flags.DEFINE_enum(
    "dataset", "shepard_metzler_7_parts", sorted(datasets.DATASETS),
    "The dataset: the scenes of the invariance analysis; the algebra synthesizes scenes of it "
    "(shepard_metzler_5_parts or _7_parts).")
_DATA_DIR = flags.DEFINE_string(
    "data_dir", datasets.DEFAULT_DATA_DIR,
    "Root of the data for the invariance and copy analyses: <data_dir>/<dataset>/<split>/; "
    "data/sample for the bundled sample.")
_ANALYSES = flags.DEFINE_list(
    "analyses", list(ANALYSES), "Which analyses to run, comma separated: invariance, algebra, "
    "copy.")
_SPLIT = flags.DEFINE_enum("split", "test", list(datasets.SPLITS), "Split of the scenes.")
_NUM_SCENES = flags.DEFINE_integer(
    "num_scenes", 20, "Scenes of the invariance and copy analyses (the first of the split).",
    lower_bound=1)
_VIEW_SETS = flags.DEFINE_integer(
    "view_sets", 3, "Disjoint view sets per scene (each gives one r).", lower_bound=2)
_VIEWS_PER_SET = flags.DEFINE_integer(
    "views_per_set", 4, "Views in each set.", lower_bound=1)
_FAMILIES = flags.DEFINE_integer(
    "families", 16, "Scene families of the algebra (four scenes each).", lower_bound=1)
_CONTEXT_VIEWS = flags.DEFINE_integer(
    "context_views", 5, "Context views of each algebra scene, and M of the copy analysis.",
    lower_bound=1)
_QUERIES = flags.DEFINE_integer(
    "queries", 4, "New views each algebra result is rendered at.", lower_bound=1)
_SEED = flags.DEFINE_integer(
    "seed", 0, "Seeds the view sets, the synthetic families and the untrained model.")


def main(argv):
    if len(argv) > 1:
        raise cli.UserError(f"Unexpected arguments: {' '.join(argv[1:])}")
    unknown = sorted(set(_ANALYSES.value) - set(ANALYSES))
    if unknown or not _ANALYSES.value:
        raise cli.UserError(f"--analyses {','.join(_ANALYSES.value)}: choose from "
                            f"{', '.join(ANALYSES)}.")
    cli.import_tensorflow()
    import keras
    from PIL import Image

    from gqn_tf.data import shards
    from gqn_tf.evaluation import analysis
    from gqn_tf.model import GQN
    from gqn_tf.training import checkpoints

    info = datasets.get_dataset_info(_DATASET.value)
    invariance = analysis.InvarianceConfig(
        num_scenes=_NUM_SCENES.value, view_sets=_VIEW_SETS.value,
        views_per_set=_VIEWS_PER_SET.value, seed=_SEED.value, split=_SPLIT.value)
    algebra = analysis.AlgebraConfig(
        families=_FAMILIES.value, context_views=_CONTEXT_VIEWS.value, queries=_QUERIES.value,
        seed=_SEED.value)
    copy = analysis.CopyConfig(num_scenes=_NUM_SCENES.value, context_views=_CONTEXT_VIEWS.value,
                               seed=_SEED.value, split=_SPLIT.value)
    try:
        if "invariance" in _ANALYSES.value:
            analysis.check_invariance(invariance, info)
        if "algebra" in _ANALYSES.value:
            analysis.check_algebra(algebra, info)
            from gqn_tf.data import synthetic

            synthetic.num_parts(_DATASET.value)
        if "copy" in _ANALYSES.value:
            analysis.check_copy(copy, info)
        model, source = checkpoints.load_model(os.path.expanduser(_MODEL.value))
    except FileNotFoundError as error:
        raise cli.DataError(str(error)) from None
    except ValueError as error:
        raise cli.UserError(str(error)) from None

    output_dir = os.path.expanduser(_OUTPUT_DIR.value)
    os.makedirs(output_dir, exist_ok=True)
    result = {"model": {"path": _MODEL.value, "step": source["step"],
                        "config": model.gqn_config.to_dict()},
              "dataset": _DATASET.value, "seed": _SEED.value, "files": {}}
    if {"invariance", "copy"} & set(_ANALYSES.value):
        try:
            frames, viewpoints = analysis.read_scenes(
                os.path.expanduser(_DATA_DIR.value), _DATASET.value, _SPLIT.value,
                _NUM_SCENES.value, model.gqn_config.image_size)
        except (shards.DataNotFoundError, shards.ShardNamingError) as error:
            raise cli.DataError(str(error)) from None
        except ValueError as error:
            raise cli.UserError(str(error)) from None
    if "invariance" in _ANALYSES.value:
        keras.utils.set_random_seed(_SEED.value)
        untrained = GQN(model.gqn_config)
        measures, features = analysis.invariance(model, untrained, frames, viewpoints,
                                                 invariance)
        result["invariance"] = measures
        accuracy = measures["nearest_neighbour_accuracy"]
        analysis.plot_tsne(
            features["model"], os.path.join(output_dir, "invariance_tsne.png"),
            f"t-SNE of r: {invariance.num_scenes} scenes (colours) x {invariance.view_sets} "
            f"view sets (markers)\nnearest-neighbour accuracy {accuracy['model']:.2f} "
            f"(untrained {accuracy['untrained']:.2f}, mean image "
            f"{accuracy['mean_image']:.2f}, chance {measures['chance']:.2f})", _SEED.value)
        analysis.write_projector(os.path.join(output_dir, "projector"), features["model"],
                                 "representation")
        result["files"].update(tsne="invariance_tsne.png", projector="projector")
        print(f"invariance: a scene recognised by the nearest r of another view set: model "
              f"{accuracy['model']:.3f}, untrained {accuracy['untrained']:.3f}, mean image "
              f"{accuracy['mean_image']:.3f}, chance {measures['chance']:.3f} "
              f"({invariance.num_scenes} scenes, {invariance.view_sets} sets of "
              f"{invariance.views_per_set} views).")
    if "algebra" in _ANALYSES.value:
        measures, shown = analysis.algebra(model, _DATASET.value, algebra)
        result["algebra"] = measures
        Image.fromarray(analysis.algebra_grid(shown)).save(
            os.path.join(output_dir, "algebra.png"))
        result["files"]["algebra"] = "algebra.png"
        mse = measures["mse"]
        print(f"algebra: MSE against the true (B,X) at new views: r(A,X) - r(A,Y) + r(B,Y) "
              f"{mse['algebra']:.5f}; r(B,Y) unchanged {mse['unchanged']:.5f}; nearest input "
              f"{mse['nearest_input']:.5f}; r(B,X) itself {mse['own']:.5f} "
              f"({algebra.families} families).")
    if "copy" in _ANALYSES.value:
        measures, shown = analysis.copy(model, frames, viewpoints, copy)
        result["copy"] = measures
        Image.fromarray(analysis.copy_grid(shown, copy.context_views)).save(
            os.path.join(output_dir, "copy.png"))
        result["files"]["copy"] = "copy.png"
        ratio, m = measures["ratio_to_mean_image"], copy.context_views
        print(f"copy: the query view's MSE over the mean image's, rendered from {m} other views "
              f"{ratio['left_out']:.3f}; from {m - 1} others and the query view itself "
              f"{ratio['among']:.3f}; from the query view alone {ratio['alone']:.3f} "
              f"({copy.num_scenes} scenes).")
    path = files.write_json(os.path.join(output_dir, "metrics.json"), result, indent=2)
    print(f"Wrote {path} and the figures in {output_dir}.")


if __name__ == "__main__":
    cli.run(main)
