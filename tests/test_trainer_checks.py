"""The trainer's words and numbers: its log lines, interruption and divergence messages, the
epoch record's arithmetic and the metadata saved with a model (quick runs of the MLP)."""

import time

import numpy as np
import pytest

from cnnlab.checkpoint import load_checkpoint
from cnnlab.nn import functional as F
from cnnlab.tensor import Tensor
from cnnlab.training import TrainingInterrupted
from cnnlab.training.rundir import read_train_state, start_run_dir
from cnnlab.training.trainer import _epochs, format_epoch
from test_train import make_config, make_trainer, synthetic_dataset


def test_format_epoch_reads_the_record():
    record = {"epoch": 2, "train_loss": 0.123456, "train_accuracy": 0.5, "val_loss": 1.0,
              "val_accuracy": 0.25, "lr": 0.00123456, "images_per_second": 1234.6,
              "seconds": 2.25, "best": True}
    assert format_epoch(record, 5) == ("epoch 2/5  train loss 0.1235 acc 0.5000  val loss "
                                       "1.0000 acc 0.2500  lr 0.00123  1235 img/s  2.2s  *")
    assert format_epoch({**record, "best": False}, 5).endswith("img/s  2.2s")


def test_epoch_ranges_are_numbered_from_one():
    assert _epochs(2, 3) == "epoch 3"
    assert _epochs(2, 5) == "epochs 3-5"


def test_a_run_logs_its_epochs_and_the_record_adds_up(tmp_path):
    trainer = make_trainer(make_config(tmp_path))
    lines = []
    trainer.log = lines.append
    start_run_dir(trainer.run_dir)
    before = time.perf_counter()
    history = trainer.fit()
    elapsed = time.perf_counter() - before
    assert 0 < sum(record["seconds"] for record in history) <= elapsed  # each epoch's own time
    assert [line.split("  ")[0] for line in lines] == ["epoch 1/2", "epoch 2/2"]
    assert lines == [format_epoch(record, 2) for record in history]
    best_so_far = -1.0
    for record in history:  # 90 images a second over the training part of the epoch's time
        assert record["images_per_second"] * record["seconds"] >= 90 - 1e-6
        assert record["best"] == (record["val_accuracy"] > best_so_far)
        best_so_far = max(best_so_far, record["val_accuracy"])
    _, metadata = load_checkpoint(trainer.run_dir / "best")
    assert metadata["epoch"] == trainer.best["epoch"]
    assert metadata["classes"] == ["class0", "class1", "class2"]
    assert metadata["loss"] == "cross_entropy" and metadata["training"]["epochs"] == 2
    assert metadata["metrics"] == history[trainer.best["epoch"] - 1]


def test_interruptions_say_where_they_stopped(tmp_path):
    trainer = make_trainer(make_config(tmp_path, epochs=3), interrupt_after_steps=3)
    start_run_dir(trainer.run_dir)
    with pytest.raises(TrainingInterrupted,
                       match=r"^interrupted in epoch 1 after step 3 of 6; saved .*last$") as caught:
        trainer.fit()
    assert (caught.value.epoch, caught.value.step) == (1, 3)
    resumed = make_trainer(make_config(tmp_path, epochs=3), interrupt_after_steps=3)
    lines = []
    resumed.log = lines.append
    resumed.load_state(*read_train_state(trainer.run_dir))
    assert lines == [f"resuming {trainer.run_dir} after 0 epochs and 3 steps"]
    with pytest.raises(TrainingInterrupted, match=r"^interrupted after epoch 1; saved .*last$"):
        resumed.fit()
    assert resumed.epoch == 1 and len(resumed.history) == 1
    assert np.isfinite(resumed.history[0]["train_loss"])
    at_the_boundary = make_trainer(make_config(tmp_path, epochs=3))
    lines = []
    at_the_boundary.log = lines.append
    at_the_boundary.load_state(*read_train_state(trainer.run_dir))
    assert lines == [f"resuming {trainer.run_dir} after 1 epoch"]
    at_the_boundary.fit()
    for record in at_the_boundary.history:  # a count of the 90 training images
        correct = record["train_accuracy"] * 90
        assert abs(correct - round(correct)) < 1e-9


@pytest.mark.parametrize("model", ["linear", "svm"])
def test_the_train_metrics_are_the_epochs_counts_and_no_bar_by_default(tmp_path, capsys, model):
    """With a learning rate too small to move a prediction, the epoch's train accuracy and
    loss are those of the model evaluated on the training images; no progress bar unless
    asked for."""
    config = make_config(tmp_path, model=model, optimizer="sgd", lr=1e-12, momentum=0.0,
                         epochs=1)
    trainer = make_trainer(config)
    start_run_dir(trainer.run_dir)
    record = trainer.fit()[0]
    again = trainer.evaluate(synthetic_dataset())
    assert record["train_accuracy"] == again["accuracy"]
    assert record["train_loss"] == pytest.approx(again["loss"], rel=1e-5)
    assert capsys.readouterr().err == ""
    x, y = next(iter(trainer.inputs.loader(synthetic_dataset(), 90)))
    scores = trainer.model.eval()(Tensor(x))
    loss = (F.multiclass_hinge_loss(scores, y, margin=config.margin) if model == "svm"
            else F.cross_entropy(scores, y))
    assert record["train_loss"] == pytest.approx(float(loss.data), rel=1e-5)


def test_the_training_batches_are_shuffled(tmp_path):
    """The synthetic set is sorted by class: unshuffled, the first batch would be all class 0."""
    trainer = make_trainer(make_config(tmp_path))
    _, labels = next(iter(trainer.train_loader))
    assert len(set(labels.tolist())) > 1
    _, val_labels = next(iter(trainer.val_loader))
    assert np.array_equal(val_labels, np.sort(val_labels))  # validation keeps its order
