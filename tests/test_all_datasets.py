"""Every one of the seven gqn-datasets trains, evaluates and exports, on format-correct synthetic
shards with its own frame size and views per scene, the model's image size following the frames
(84 for mazes, 128 for rooms_free_camera_with_object_rotations)."""

import json

import numpy as np
import pytest
import tensorflow as tf

from gqn_tf import serving
from gqn_tf.data import datasets, pipeline, synthetic
from gqn_tf.evaluation import loop as eval_loop
from gqn_tf.model import GQN, get_preset
from gqn_tf.training import checkpoints, loop


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("all_datasets")
    for name in datasets.DATASETS:
        synthetic.synthesize(str(root), name, train_scenes=2, test_scenes=2, scenes_per_shard=1)
    return root


@pytest.mark.parametrize("name", sorted(datasets.DATASETS))
def test_synthetic_shards_have_the_dataset_format(data_root, name):
    info = datasets.get_dataset_info(name)
    batch = next(iter(pipeline.make_dataset(name, data_root, "test", batch_size=2,
                                            context_size=2, seed=0)))
    assert batch["target"].shape == (2, info.frame_size, info.frame_size, 3)
    raw = next(iter(tf.data.TFRecordDataset(
        str(data_root / name / "test" / "1-of-2.tfrecord"))))
    example = tf.train.Example.FromString(raw.numpy())
    assert len(example.features.feature["frames"].bytes_list.value) == info.sequence_size


@pytest.mark.parametrize("name", sorted(datasets.DATASETS))
def test_every_dataset_trains_evaluates_and_exports(data_root, tmp_path, name):
    info = datasets.get_dataset_info(name)
    model_config = get_preset("tiny", image_size=info.frame_size)
    config = loop.TrainConfig(
        dataset=name, data_dir=str(data_root), model_dir=str(tmp_path / "run"), max_steps=2,
        batch_size=2, max_context_size=2, log_every=1, image_every=0, checkpoint_every=2,
        shuffle_buffer_size=4)
    result = loop.train(model_config, config,
                        strategy=tf.distribute.MirroredStrategy(["/cpu:0"]))
    assert result.step == 2 and np.isfinite(result.metrics["loss"])

    evaluation = eval_loop.evaluate(eval_loop.EvalConfig(
        dataset=name, data_dir=str(data_root), model_path=str(tmp_path / "run"),
        output_dir=str(tmp_path / "eval"), num_scenes=2, max_context=1, samples=1,
        grid_scenes=1, progress=False, latent_samples=2, mean_image_scenes=2))
    assert evaluation["image_size"] == info.frame_size
    assert all(np.isfinite(row["generation_mse"]) for row in evaluation["per_context"])

    model, _ = checkpoints.load_model(str(tmp_path / "run"))
    path = serving.export_saved_model(model, str(tmp_path / "export"))
    loaded = tf.saved_model.load(path)
    image = loaded.signatures["generate_seeded"](
        context_frames=tf.zeros([1, 1, info.frame_size, info.frame_size, 3]),
        context_cameras=tf.zeros([1, 1, 5]), query_camera=tf.zeros([1, 5]),
        seed=tf.constant([1, 2]))["image"]
    assert image.shape == (1, info.frame_size, info.frame_size, 3)


@pytest.mark.parametrize("size", [84, 128])
@pytest.mark.parametrize("representation", ["tower", "pool", "pyramid"])
def test_dataset_frame_sizes_work_with_every_representation(size, representation, make_batch):
    model = GQN(get_preset("tiny", image_size=size, representation=representation))
    batch = make_batch(batch_size=1, context_size=2, image_size=size)
    terms = model.elbo_terms(batch, sigma=0.7, seed=0)
    assert terms["mean"].shape == (1, size, size, 3)
    assert np.isfinite(float(terms["loss"][0]))


def test_a_model_of_another_size_than_the_frames_is_refused_before_any_step(data_root, tmp_path):
    config = loop.TrainConfig(dataset="mazes", data_dir=str(data_root),
                              model_dir=str(tmp_path / "run"), max_steps=1, batch_size=1)
    with pytest.raises(ValueError, match=r"built for 64x64 images but the frames of mazes are "
                                         r"84x84: pass --frame_size 64"):
        loop.train(get_preset("tiny"), config, strategy=tf.distribute.MirroredStrategy(["/cpu:0"]))
    assert not (tmp_path / "run" / checkpoints.CHECKPOINT_DIR).exists()


def test_frame_size_resizes_and_is_recorded(data_root, tmp_path):
    config = loop.TrainConfig(dataset="mazes", data_dir=str(data_root),
                              model_dir=str(tmp_path / "run"), max_steps=1, batch_size=1,
                              frame_size=32, image_every=0, max_context_size=1)
    loop.train(get_preset("tiny", image_size=32), config,
               strategy=tf.distribute.MirroredStrategy(["/cpu:0"]))
    with open(tmp_path / "run" / checkpoints.RUN_CONFIG) as f:
        recorded = json.load(f)
    assert recorded["train"]["frame_size"] == 32 and recorded["model"]["image_size"] == 32
