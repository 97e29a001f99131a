"""Resuming with another --epochs, proved by the learning rates each epoch used and by weights
that change: a run whose schedule has ended gets a fresh schedule for the added epochs; a run
resumed before its end follows the schedule of the new total; an extension interrupted and
resumed ends as one left alone (its scheduler's state restored, not the run's first one)."""

import math

import numpy as np
import pytest

from cnnlab.training import TrainingInterrupted, configure
from cnnlab.training.rundir import read_train_state
from test_train import assert_same_arrays, make_config, make_trainer, run_to_end, weights


def lrs(history):
    return [record["lr"] for record in history]


def resume(out, epochs, on_step=None):
    """A new trainer continuing the run in `out` up to `epochs`; returns (trainer, log lines,
    the model's weights after each epoch this trainer finished)."""
    config = configure({"out": str(out), "epochs": epochs}, resume=True)
    trainer = make_trainer(config, on_step=on_step)
    lines, after_epoch = [], []

    def log(line):
        lines.append(line)
        if line.startswith("epoch "):
            after_epoch.append({key: value.copy()
                                for key, value in trainer.model.state_dict().items()})

    trainer.log = log
    trainer.load_state(*read_train_state(out))
    trainer.fit()
    return trainer, lines, after_epoch


def stop_at(epoch, step):
    """An on_step callback acting as Ctrl-C after `step` of `epoch` (0-based)."""
    def interrupt(trainer, at_epoch, at_step):
        if (at_epoch, at_step) == (epoch, step):
            raise KeyboardInterrupt
    return interrupt


def assert_changed_every_epoch(snapshots):
    for before, after in zip(snapshots, snapshots[1:], strict=False):
        assert any(not np.array_equal(before[key], after[key]) for key in before)


@pytest.mark.parametrize("schedule", ["cosine", "step", "linear"])
def test_a_finished_run_extended_gets_a_fresh_schedule_for_the_added_epochs(tmp_path, schedule):
    """2 epochs, then --epochs 5: epochs 3-5 have the learning rates of a fresh 3-epoch run of
    the same kind (from the base lr 0.05, not the ended schedule's 0), and each changes the
    weights."""
    first = run_to_end(make_config(tmp_path, epochs=2, schedule=schedule))
    fresh = run_to_end(make_config(tmp_path / "fresh", epochs=3, schedule=schedule))
    extended, lines, after_epoch = resume(first.run_dir, 5)
    assert lrs(extended.history) == lrs(first.history) + lrs(fresh.history)
    assert extended.history[2]["lr"] == 0.05
    if schedule == "cosine":  # the formula, independently: 0.05 * (1 + cos(pi * t / 3)) / 2
        expected = [0.05 * (1 + math.cos(math.pi * t / 3)) / 2 for t in range(3)]
        assert np.allclose(lrs(extended.history[2:]), expected, rtol=1e-12, atol=0)
    before = {key[len("model."):]: value for key, value in
              weights(first.run_dir, "last").items() if key.startswith("model.")}
    assert len(after_epoch) == 3
    assert_changed_every_epoch([before, *after_epoch])
    said = [line for line in lines if "fresh" in line]
    assert said == [f"the run's {schedule} schedule ended with epoch 2; a fresh {schedule} "
                    f"schedule from lr 0.05 for the added epochs 3-5"]


def test_an_extension_interrupted_and_resumed_equals_one_left_alone(tmp_path):
    """1 epoch, extended to 4 and stopped at the end of epoch 2 (two left: the extension's
    scheduler state decides them), resumed: the weights and history of an extension left
    alone."""
    whole = run_to_end(make_config(tmp_path / "whole", epochs=1))
    whole, _, _ = resume(whole.run_dir, 4)
    cut = run_to_end(make_config(tmp_path / "cut", epochs=1))
    with pytest.raises(TrainingInterrupted):
        resume(cut.run_dir, 4, on_step=stop_at(1, 6))
    assert read_train_state(cut.run_dir)[1]["epoch"] == 2
    resumed, lines, _ = resume(cut.run_dir, 4)
    assert not any("schedule" in line for line in lines)  # the same plan: nothing to say
    assert_same_arrays(weights(whole.run_dir, "last"), weights(resumed.run_dir, "last"))
    assert lrs(resumed.history) == lrs(whole.history)
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in whole.history]


@pytest.mark.parametrize("total", [6, 3], ids=["stretched", "shortened"])
@pytest.mark.parametrize("where", [(0, 6), (1, 3)], ids=["epoch-boundary", "mid-epoch"])
def test_a_run_resumed_before_its_end_follows_the_schedule_of_the_new_total(tmp_path, total,
                                                                             where):
    """A 4-epoch run stopped at the end of epoch 1 or in epoch 2, resumed with --epochs 6 (or
    3): from where it resumed, the learning rates of a run started with that --epochs."""
    config = make_config(tmp_path, epochs=4)
    with pytest.raises(TrainingInterrupted):
        run_to_end(config, on_step=stop_at(*where))
    fresh = run_to_end(make_config(tmp_path / "fresh", epochs=total))
    resumed, lines, after_epoch = resume(config.out, total)
    assert len(resumed.history) == total
    assert lrs(resumed.history)[1:] == lrs(fresh.history)[1:]
    assert f"now ends with epoch {total}" in "\n".join(lines)
    assert_changed_every_epoch(after_epoch)


def test_an_extension_resumed_with_still_more_epochs_stretches_its_own_schedule(tmp_path):
    """1 epoch, extended to 4 and stopped after epoch 2, resumed with --epochs 6: epochs 2-6
    are one schedule, now of 5 epochs; epochs 3-6 get its learning rates from its epoch 2 on."""
    first = run_to_end(make_config(tmp_path, epochs=1))
    fresh = run_to_end(make_config(tmp_path / "fresh", epochs=5))
    with pytest.raises(TrainingInterrupted):
        resume(first.run_dir, 4, on_step=stop_at(1, 6))
    resumed, lines, after_epoch = resume(first.run_dir, 6)
    assert lrs(resumed.history)[1:] == lrs(fresh.history)
    assert "the cosine schedule of epochs 2-4 now ends with epoch 6" in "\n".join(lines)
    assert_changed_every_epoch(after_epoch)


@pytest.mark.parametrize("where", [(1, 3), (2, 3)], ids=["in-the-warm-up", "after-it"])
def test_a_vit_run_with_warm_up_interrupted_and_resumed_equals_one_left_alone(tmp_path, where):
    """The vit's recipe (AdamW, 2 warm-up epochs then cosine, label smoothing 0.1) on a tiny
    run of 4 epochs, stopped in epoch 2 (warm-up) or 3 (cosine) and resumed: the same weights,
    optimiser state and learning rates, bit for bit, as the run left alone."""
    options = {"model": "vit", "epochs": 4}
    whole = run_to_end(make_config(tmp_path / "whole", **options))
    base = whole.config.lr
    cosine = [base * (1 + math.cos(math.pi * t / 2)) / 2 for t in range(2)]
    assert np.allclose(lrs(whole.history), [base / 3, 2 * base / 3, *cosine], rtol=1e-12)
    assert (whole.config.warmup_epochs, whole.config.label_smoothing) == (2, 0.1)
    cut = make_config(tmp_path / "cut", **options)
    with pytest.raises(TrainingInterrupted):
        run_to_end(cut, on_step=stop_at(*where))
    resumed, _, _ = resume(cut.out, 4)
    assert_same_arrays(weights(whole.run_dir, "last"), weights(resumed.run_dir, "last"))
    assert lrs(resumed.history) == lrs(whole.history)
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in whole.history]
