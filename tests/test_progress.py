"""A run's live progress (cnnlab.training.progress): points within epochs that agree with the
epochs' records, the first layer after each epoch, the same points for an interrupted and
resumed run as for one left alone, and a fresh run that clears them. Also the pieces the lab
uses to predict: rank_classes as `predict`, predict_classes as `evaluate`'s confusion
matrix, and load_image from a file object."""

import io

import numpy as np
import pytest

from cnnlab.analysis.pictures import first_conv_weight
from cnnlab.data import load_image
from cnnlab.training import TrainingInterrupted, load_trained, predict
from cnnlab.training.progress import ProgressRecorder, read_first_layer
from cnnlab.training.rundir import (
    first_layer_path,
    progress_path,
    read_progress,
    read_train_state,
    start_run_dir,
    write_progress,
)
from cnnlab.training.trained import predict_classes, rank_classes
from lab_helpers import png_bytes
from test_train import make_config, make_trainer, synthetic_dataset

OPTIONS = {"model": "cnn", "image_size": None, "epochs": 2}  # 8 x 8 images, 6 steps per epoch


def run(config, recorder=None, **options):
    trainer = make_trainer(config, on_step=recorder or ProgressRecorder(min_seconds=0),
                           **options)
    start_run_dir(trainer.run_dir)
    trainer.fit()
    return trainer


def positions(points):
    return [(point["epoch"], point["step"]) for point in points]


def test_points_within_epochs_agree_with_the_epochs_records(tmp_path):
    trainer = run(make_config(tmp_path, **OPTIONS))
    points = read_progress(trainer.run_dir)
    assert positions(points) == [(epoch, step) for epoch in (1, 2) for step in range(1, 7)]
    for record in trainer.history:
        last = next(point for point in points if point["epoch"] == record["epoch"]
                    and point["step"] == point["steps"])
        assert last["train_loss"] == record["train_loss"]
        assert last["train_accuracy"] == record["train_accuracy"]
    assert {"seconds", "images_per_second", "time", "pid", "host"} <= set(points[0])


def test_a_few_points_per_epoch(tmp_path):
    trainer = run(make_config(tmp_path, **OPTIONS), ProgressRecorder(points_per_epoch=2,
                                                                      min_seconds=0))
    assert positions(read_progress(trainer.run_dir)) == [(1, 3), (1, 6), (2, 3), (2, 6)]


def test_the_first_layer_after_each_epoch(tmp_path):
    trainer = run(make_config(tmp_path, **OPTIONS))
    kind, epochs, weights = read_first_layer(trainer.run_dir)
    assert kind == "filters" and epochs == [1, 2]
    assert np.array_equal(weights[-1], first_conv_weight(trainer.model))
    assert not np.array_equal(weights[0], weights[1])
    linear = run(make_config(tmp_path / "linear", model="linear", epochs=1))
    kind, epochs, weights = read_first_layer(linear.run_dir)
    assert kind == "templates" and weights[0].shape == (3, 64)  # 3 classes, 8 x 8 pixels
    mlp = run(make_config(tmp_path / "mlp", model="mlp", epochs=1))
    assert read_first_layer(mlp.run_dir) == (None, [], [])


def test_an_interrupted_and_resumed_run_has_the_points_of_one_left_alone(tmp_path):
    whole = run(make_config(tmp_path / "whole", **OPTIONS))
    config = make_config(tmp_path / "cut", **OPTIONS)
    with pytest.raises(TrainingInterrupted):
        run(config, interrupt_after_steps=3)
    # a point written after the saved state (a process killed before it could save): dropped
    points = read_progress(config.out)
    write_progress(config.out, points + [{**points[-1], "step": 5}])
    resumed = make_trainer(config, on_step=ProgressRecorder(min_seconds=0))
    resumed.load_state(*read_train_state(config.out))
    resumed.fit()
    expected, got = read_progress(whole.run_dir), read_progress(config.out)
    assert positions(got) == positions(expected)
    assert [point["train_loss"] for point in got] == [point["train_loss"] for point in expected]
    assert read_first_layer(config.out)[1] == [1, 2]
    for first, second in zip(read_first_layer(config.out)[2], read_first_layer(whole.run_dir)[2],
                             strict=True):
        assert np.array_equal(first, second)


def test_a_fresh_run_clears_the_previous_runs_progress(tmp_path):
    config = make_config(tmp_path, **OPTIONS)
    run(config)
    assert progress_path(config.out).exists()
    start_run_dir(config.out)
    assert not progress_path(config.out).exists()
    assert read_first_layer(config.out) == (None, [], [])
    assert not any(first_layer_path(config.out).parent.glob("first_layer*"))


# ----- predicting as the lab does -------------------------------------------------------------
def test_rank_classes_and_predict_classes_are_predict_and_evaluate(tmp_path):
    trainer = run(make_config(tmp_path, model="mlp", epochs=2))
    trainer.save_model(tmp_path / "model")
    trained = load_trained(tmp_path / "model")
    data = synthetic_dataset(per_class=10, seed=1)
    files = []
    for index in (0, 15, 29):
        files.append(tmp_path / f"{index}.png")
        files[-1].write_bytes(png_bytes(data.images[index, 0]))
    ranked = rank_classes(trained, data.images[[0, 15, 29]])
    assert ranked == [result["predictions"] for result in predict(tmp_path / "model", files,
                                                                  top_k=3)]
    guesses = predict_classes(trained, data)
    confusion = np.zeros((3, 3), dtype=np.int64)
    np.add.at(confusion, (data.labels, guesses), 1)
    assert confusion.tolist() == trainer.evaluate(data)["confusion_matrix"]
    assert [ranks[0]["index"] for ranks in ranked] == guesses[[0, 15, 29]].tolist()


def test_load_image_reads_a_file_object_as_it_reads_the_file(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    path = tmp_path / "photo.png"
    path.write_bytes(png_bytes(pixels))
    for size, channels in ((None, None), ((28, 28), 1), ((8, 12), 3)):
        assert np.array_equal(load_image(io.BytesIO(path.read_bytes()), size, channels),
                              load_image(path, size, channels))
