"""Running and recording training, and using a finished run.

    config = configure({"model": "mlp", "lr": 0.02})      # or TrainConfig(...).resolve()
    summary = train(config)                              # a whole run, in config.out
    result = evaluate_run(summary["run_dir"], split="test")
    ranked = predict(summary["run_dir"], ["shoe.png"], top_k=3)

config.py (TrainConfig, the per-model defaults, TOML files, resume), rundir.py (the one owner
of a run directory's file names), inputs.py (how images become a model's input), recipes.py
(data, augmentation, optimiser, schedule), evaluation.py (loss and accuracy), trainer.py (the
Trainer), run.py (`train`: a whole run), trained.py (loading, evaluating, predicting with and
plotting a finished run), compare.py (pixels, features, MLP and CNN side by side; its
`compare` is not re-exported here, where it would hide the module of the same name).
"""

from cnnlab.training.config import TrainConfig, configure
from cnnlab.training.run import train
from cnnlab.training.trained import (
    evaluate_run,
    load_trained,
    load_trained_model,
    predict,
    write_plots,
)
from cnnlab.training.trainer import Trainer, TrainingDiverged, TrainingInterrupted

__all__ = [
    "TrainConfig",
    "Trainer",
    "TrainingDiverged",
    "TrainingInterrupted",
    "configure",
    "evaluate_run",
    "load_trained",
    "load_trained_model",
    "predict",
    "train",
    "write_plots",
]
