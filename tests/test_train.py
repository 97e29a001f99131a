"""The trainer, at library level: configuration, run files, resume bit-identity (after an
interruption at an epoch boundary and in the middle of one, on pixels and on features),
training on hand-designed features, the NaN guard, Ctrl-C, early stopping, and one real
(short) CNN training on Fashion-MNIST."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnlab.checkpoint import load_checkpoint
from cnnlab.data import ImageDataset
from cnnlab.errors import CheckpointError
from cnnlab.features import FeaturePipeline
from cnnlab.nn import functional as F
from cnnlab.tensor import Tensor, no_grad
from cnnlab.training import (
    TrainConfig,
    Trainer,
    TrainingDiverged,
    TrainingInterrupted,
    configure,
    load_trained_model,
    predict,
    train,
)
from cnnlab.training.config import MODEL_DEFAULTS, derived_seed
from cnnlab.training.inputs import hog_options
from cnnlab.training.rundir import read_train_state, start_run_dir


def synthetic_dataset(per_class=30, classes=3, size=8, channels=1, seed=0):
    """Noisy images where class k has a bright horizontal band at rows of its own: learnable
    in a few steps by any model."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), per_class)
    images = rng.integers(0, 80, (len(labels), channels, size, size))
    band = size // classes
    for k in range(classes):
        images[labels == k, :, k * band:(k + 1) * band] += 150
    return ImageDataset(images.astype(np.uint8), labels, [f"class{k}" for k in range(classes)])


def make_config(tmp_path, **options):
    options = {"model": "mlp", "epochs": 2, "batch_size": 16, "val_size": 20,
               "out": str(tmp_path / "run"), **options}
    return TrainConfig(**options).resolve()


def make_trainer(config, **options):
    data = synthetic_dataset(size=config.image_size[0] if config.image_size else 8)
    train_set, val_set = data, data.subset(np.arange(0, 90, 4))  # 6 steps of 16 per epoch
    return Trainer(config, train_set, val_set, **options)


def weights(run_dir, stem):
    arrays, _ = load_checkpoint(Path(run_dir) / stem)
    return arrays


def assert_same_arrays(first, second):
    assert first.keys() == second.keys()
    for key in first:
        assert first[key].dtype == second[key].dtype, key
        assert np.array_equal(first[key], second[key]), key


# ----- configuration ----------------------------------------------------------------------------
def test_every_model_has_defaults_that_resolve():
    for name in MODEL_DEFAULTS:
        config = TrainConfig(model=name).resolve()
        assert config.epochs >= 1 and config.lr > 0 and config.batch_size >= 1
        assert config.out == os.path.join("runs", f"{name}-fashion-mnist")
        assert config.val_size == 5000


def test_flags_override_the_model_defaults():
    config = TrainConfig(model="cnn", epochs=3, lr=0.2).resolve()
    assert (config.epochs, config.lr) == (3, 0.2)
    assert config.batch_size == MODEL_DEFAULTS["cnn"].batch_size


@pytest.mark.parametrize("options, message", [
    ({"epochs": 0}, "--epochs must be at least 1"),
    ({"lr": -1.0}, "--lr must be positive"),
    ({"batch_size": 2.5}, "--batch-size must be an integer"),
    ({"model": "resnet"}, "--model must be one of"),
    ({"optimizer": "lbfgs"}, "--optimizer must be one of"),
    ({"val_size": 1.5}, "--val-size as a fraction"),
    ({"dataset": "imagenet"}, "--dataset must be one of"),
    ({"limit_train": 0}, "--limit-train must be at least 1"),
    ({"seed": -3}, "--seed must be at least 0"),
    ({"warmup_epochs": -1}, "--warmup-epochs must be at least 0"),
    ({"label_smoothing": 1.5}, r"--label-smoothing must lie in 0..1, got 1.5"),
    ({"model": "cnn", "features": ["hog"]}, "--features applies to --model linear, svm, mlp, "
                                            "not cnn"),
    ({"model": "linear", "features": "hog,sift"},
     "unknown feature 'sift'; known features: pixels, hog, color, polar"),
    ({"model": "linear", "features": ["hog", "hog"]}, "names a feature twice"),
    ({"model": "mlp", "features": ["hog"], "augment": True}, "--augment applies to pixels"),
])  # fmt: skip
def test_bad_values_name_their_flag(options, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**options).resolve()


def test_the_vit_has_a_transformer_recipe_and_the_others_none():
    config = TrainConfig(model="vit").resolve()
    assert (config.optimizer, config.lr, config.weight_decay, config.schedule) == (
        "adamw", 1e-3, 0.05, "cosine")
    assert (config.warmup_epochs, config.label_smoothing) == (2, 0.1)
    for name in ("linear", "svm", "mlp", "cnn", "cnn-bn"):
        config = TrainConfig(model=name).resolve()
        assert (config.warmup_epochs, config.label_smoothing) == (0, 0.0)


def test_label_smoothing_is_in_the_training_loss_only(tmp_path):
    """The epoch's train loss is the smoothed cross-entropy of the batches; validation's is
    the plain one (so the models' validation losses compare)."""
    trainer = make_trainer(make_config(tmp_path, label_smoothing=0.5))
    scores, labels = Tensor(np.array([[2.0, 0.0, -1.0]])), np.array([0])
    plain = float(F.cross_entropy(scores, labels).data)
    smoothed = float(F.cross_entropy(scores, labels, label_smoothing=0.5).data)
    assert float(trainer.loss(scores, labels).data) == smoothed != plain
    assert float(trainer.eval_loss(scores, labels).data) == plain


def test_features_resolve_to_a_list_and_their_own_run_dir():
    config = TrainConfig(model="svm", features="hog, color").resolve()
    assert config.features == ["hog", "color"]
    assert config.out == os.path.join("runs", "svm-hog-color-fashion-mnist")


def test_config_file_under_the_flags(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('model = "linear"\nlr = 0.5\nbatch-size = 7\n')
    config = configure({"lr": 0.25, "epochs": None}, config_file=path)
    assert (config.model, config.lr, config.batch_size) == ("linear", 0.25, 7)
    path.write_text("[train]\nepochs = 4\n")
    assert configure({}, config_file=path).epochs == 4


@pytest.mark.parametrize("text, message", [
    ("colour = 3\n", "unknown option 'colour'"),
    ("lr = [\n", "not valid TOML"),
    ('epochs = "many"\n', "--epochs must be an integer"),
])  # fmt: skip
def test_bad_config_files(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        configure({}, config_file=path)


def test_derived_seeds_differ_by_purpose_and_repeat():
    seeds = {derived_seed(0, name) for name in ("split", "init", "loader")}
    assert len(seeds) == 3
    assert derived_seed(5, "init") == derived_seed(5, "init")


# ----- a run ------------------------------------------------------------------------------------
def test_fit_writes_metrics_and_checkpoints(tmp_path):
    config = make_config(tmp_path)
    trainer = make_trainer(config)
    lines = []
    trainer.log = lines.append
    start_run_dir(trainer.run_dir)
    history = trainer.fit()
    assert len(history) == 2 and len(lines) == 2 and lines[0].startswith("epoch 1/2")
    records = [json.loads(line) for line in (tmp_path / "run/metrics.jsonl").read_text().split(
        "\n") if line]
    assert records == json.loads(json.dumps(history))
    for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds",
                "images_per_second", "val_per_class_accuracy", "val_confusion_matrix"):
        assert key in records[-1]
    assert sum(map(sum, records[-1]["val_confusion_matrix"])) == 23
    assert set(records[-1]["val_per_class_accuracy"]) == {"class0", "class1", "class2"}
    assert records[-1]["val_accuracy"] > 0.6  # the bands are easy
    for stem in ("last", "best"):
        assert (tmp_path / "run" / f"{stem}.safetensors").exists()
        assert (tmp_path / "run" / f"{stem}.json").exists()


def run_to_end(config, **options):
    trainer = make_trainer(config, **options)
    start_run_dir(trainer.run_dir)
    trainer.fit()
    return trainer


def resume_to_end(config):
    trainer = make_trainer(config)
    trainer.load_state(*read_train_state(config.out))
    trainer.fit()
    return trainer


@pytest.mark.parametrize("options", [
    {"model": "mlp"},
    {"model": "cnn-bn", "augment": True},
    {"model": "svm", "features": ["hog", "color"]},
], ids=["mlp", "cnn-bn-augment", "svm-features"])  # fmt: skip
@pytest.mark.parametrize("stop_at", [(0, 3), (0, 6), (1, 6)],
                         ids=["mid-epoch", "two-epochs-left", "one-epoch-left"])
def test_interrupted_and_resumed_equals_uninterrupted(tmp_path, options, stop_at):
    """Ctrl-C (a KeyboardInterrupt from a callback) at (epoch, step), then a resume in a new
    trainer: same weights, optimiser state, feature statistics and history (bar timings) as a
    run left alone. With two epochs left, the schedule's restored state decides the last
    epoch's learning rate (the optimiser's saved one covers only the next)."""
    options = {**options, "epochs": 3}
    whole = run_to_end(make_config(tmp_path / "whole", **options))

    def interrupt(trainer, epoch, step):
        if (epoch, step) == stop_at:
            raise KeyboardInterrupt

    config = make_config(tmp_path / "cut", **options)
    with pytest.raises(TrainingInterrupted) as caught:
        run_to_end(config, on_step=interrupt)
    assert isinstance(caught.value, KeyboardInterrupt)
    finished = (tmp_path / "cut/run/metrics.jsonl").read_text().splitlines()
    assert len(finished) == stop_at[0] + (stop_at[1] == 6)  # step 6 ends an epoch
    resumed = resume_to_end(config)
    assert_same_arrays(weights(whole.run_dir, "last"), weights(resumed.run_dir, "last"))
    assert_same_arrays(weights(whole.run_dir, "best"), weights(resumed.run_dir, "best"))
    strip = [{k: v for k, v in r.items() if k not in ("seconds", "images_per_second")}
             for r in whole.history]
    assert strip == [{k: v for k, v in r.items() if k not in ("seconds", "images_per_second")}
                     for r in resumed.history]


def test_interrupt_on_the_last_step_of_an_epoch_stops_at_its_end(tmp_path):
    config = make_config(tmp_path)
    trainer = make_trainer(config, interrupt_after_steps=6)  # 90 images / 16 = 6 steps
    start_run_dir(trainer.run_dir)
    with pytest.raises(TrainingInterrupted) as caught:
        trainer.fit()
    assert (caught.value.epoch, caught.value.step) == (1, 0)
    assert len(trainer.history) == 1


def test_resume_with_more_epochs_continues(tmp_path):
    run_to_end(make_config(tmp_path, epochs=1))
    config = configure({"out": str(tmp_path / "run"), "epochs": 2}, resume=True)
    assert (config.model, config.batch_size, config.epochs) == ("mlp", 16, 2)
    assert len(resume_to_end(config).history) == 2


def test_resume_refuses_other_options(tmp_path):
    run_to_end(make_config(tmp_path, epochs=1))
    with pytest.raises(CheckpointError, match="--lr 0.5 \\(the run has 0.05\\)"):
        configure({"out": str(tmp_path / "run"), "lr": 0.5}, resume=True)
    with pytest.raises(CheckpointError, match="no such run directory"):
        configure({"out": str(tmp_path / "nothing")}, resume=True)


def test_resume_refuses_other_data(tmp_path):
    config = make_config(tmp_path, epochs=1)
    run_to_end(config)
    other = synthetic_dataset(seed=1)
    trainer = Trainer(config, other, other)
    with pytest.raises(CheckpointError, match="training images differ"):
        trainer.load_state(*read_train_state(config.out))


# ----- features -------------------------------------------------------------------------------
def test_features_are_fitted_on_the_training_split_and_predict_repeats_them(tmp_path):
    """The run's feature statistics are those of a pipeline fitted on the training images
    alone; predict on a PNG gives the probabilities of the in-memory model on the image."""
    config = make_config(tmp_path, model="linear", features=["hog", "color"], epochs=3,
                         lr=0.01)
    trainer = run_to_end(config)
    train_set = synthetic_dataset()
    alone = FeaturePipeline(("hog", "color"), **hog_options(8, 8)).fit(train_set.images)
    assert_same_arrays(trainer.inputs.pipeline.state_dict(), alone.state_dict())
    assert trainer.model.config["input_size"] == [1, alone.mean.size]
    assert trainer.history[-1]["val_accuracy"] > 0.9
    trainer.save_model(trainer.run_dir / "model")
    image = train_set.images[40]
    png = tmp_path / "image.png"
    Image.fromarray(image[0]).save(png)
    predicted = predict(trainer.run_dir, [png])[0]["predictions"]
    with no_grad():
        expected = F.softmax(trainer.model(Tensor(alone.transform(image[None]))), dim=1).data[0]
    assert [item["probability"] for item in predicted] == sorted(expected.tolist(), reverse=True)
    model, metadata = load_trained_model(trainer.run_dir / "last")
    assert metadata["preprocessing"]["features"]["names"] == ["hog", "color"]


def test_resume_refuses_other_features(tmp_path):
    run_to_end(make_config(tmp_path, model="linear", features=["hog"], epochs=1))
    with pytest.raises(CheckpointError, match="--features"):
        configure({"out": str(tmp_path / "run"), "features": ["color"]}, resume=True)


def test_resume_takes_options_in_any_form_a_fresh_run_takes(tmp_path):
    # A config file's features = "hog,color" and image_size = 28 are the saved lists.
    run_to_end(make_config(tmp_path, model="linear", features=["hog", "color"], epochs=1))
    out = str(tmp_path / "run")
    for features in ("hog,color", " hog , color", ["hog", "color"]):
        config = configure({"out": out, "features": features, "epochs": 2}, resume=True)
        assert config.features == ["hog", "color"] and config.epochs == 2
    with pytest.raises(CheckpointError, match="--features color,hog"):
        configure({"out": out, "features": "color,hog"}, resume=True)


def test_nan_loss_stops_with_epoch_and_step_and_keeps_the_last_good_checkpoint(tmp_path):
    config = make_config(tmp_path, model="mlp", optimizer="sgd", lr=1e10, epochs=3)
    trainer = make_trainer(config)
    start_run_dir(trainer.run_dir)
    trainer.save_state()
    before = weights(trainer.run_dir, "last")
    with pytest.raises(TrainingDiverged, match=r"epoch \d+, step \d+ of 6.*--lr"):
        trainer.fit()
    after, metadata = load_checkpoint(trainer.run_dir / "last")
    assert all(np.isfinite(value).all() for value in after.values())
    if metadata["epoch"] == 0:
        assert_same_arrays(before, after)


def test_early_stopping(tmp_path):
    config = make_config(tmp_path, epochs=20, patience=1, lr=1e-6, momentum=0.0)
    trainer = run_to_end(config)
    assert trainer.stopped_early and len(trainer.history) < 20
    assert trainer.epoch - trainer.best["epoch"] == 1


# ----- a real run -------------------------------------------------------------------------------
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def test_cnn_on_5000_fashion_mnist_images_beats_75_percent(tmp_path):
    """About 10 s on two free cores (160 steps of 32 images, then 1,000 + 10,000 to test).

    Needs Debian's dataset-fashion-mnist, which scripts/setup.sh installs; never skipped.
    """
    config = TrainConfig(model="cnn", epochs=1, limit_train=5000, val_size=1000,
                                  batch_size=32, data_dir=str(FASHION_MNIST),
                                  out=str(tmp_path / "run")).resolve()
    summary = train(config)
    assert summary["test_accuracy"] > 0.75, summary
    assert (tmp_path / "run/model.safetensors").exists()
    assert {p.name for p in (tmp_path / "run").glob("*.png")} == {"curves.png", "confusion.png"}


def test_a_second_ctrl_c_stops_at_once_without_saving(tmp_path):
    """A KeyboardInterrupt in the middle of a step (as a second Ctrl-C raises) leaves the last
    whole checkpoint on disk and says so."""
    trainer = make_trainer(make_config(tmp_path))
    start_run_dir(trainer.run_dir)
    trainer.save_state()
    loss, calls = trainer.loss, []

    def interrupted_loss(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return loss(*args, **kwargs)

    trainer.loss = interrupted_loss
    with pytest.raises(TrainingInterrupted, match="without saving.*after epoch 0"):
        trainer.fit()
    _, state = load_checkpoint(trainer.run_dir / "last")
    assert state["epoch"] == 0 and state["loader"]["position"] == 0
