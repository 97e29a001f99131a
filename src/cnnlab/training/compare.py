"""The lecture's comparison: raw pixels, hand-designed features, an MLP, a CNN and a vision
transformer on one dataset.

    rows = compare("fashion-mnist", out_dir="runs/compare")

trains five classifiers on the same training, validation and test images (the trainer's seeded
split) and writes OUT_DIR/comparison.md (a Markdown table) and OUT_DIR/comparison.png (test
accuracy and training time as bars):

    pixels-linear     softmax classifier on the pixels (cnnlab train --model linear)
    features-linear   softmax classifier on HOG + colour-histogram features
                      (cnnlab train --model linear --features hog,color)
    mlp               cnnlab train --model mlp
    cnn               cnnlab train --model cnn
    vit               cnnlab train --model vit (the longest by far: an hour and more on two
                      cores; --models without it for a quick comparison)

Each is an ordinary run of `cnnlab.training.train`, in OUT_DIR/<name> with its curves and confusion
matrix, so `cnnlab evaluate` and `cnnlab predict` work on every one of them.
"""

import dataclasses
from pathlib import Path

from cnnlab.analysis import plots
from cnnlab.files import atomic_write
from cnnlab.training.config import TrainConfig, dataset_name
from cnnlab.training.run import train
from cnnlab.training.rundir import holds_run
from cnnlab.training.trained import load_trained_model

# name -> (model, features) of `cnnlab train`
RUNS = {
    "pixels-linear": ("linear", None),
    "features-linear": ("linear", ["hog", "color"]),
    "mlp": ("mlp", None),
    "cnn": ("cnn", None),
    "vit": ("vit", None),
}
MODELS = tuple(RUNS)
# Published reference points, shown beside the table and as a line on the chart.
REFERENCES = {"fashion-mnist": (0.926, "HOG + SVM, published Fashion-MNIST benchmark")}


@dataclasses.dataclass
class ComparisonRow:
    """One model of the comparison.

    Attributes:
        model: one of MODELS.
        test_accuracy: on the dataset's test set, 0..1.
        val_accuracy: on the validation split after the last epoch.
        seconds: training time (feature extraction included for features-linear).
        params: learnable parameters.
        epochs: epochs trained.
        run_dir: the model's run directory.
    """

    model: str
    test_accuracy: float
    val_accuracy: float | None
    seconds: float
    params: int
    epochs: int
    run_dir: str | None = None

    def __getitem__(self, key):
        return getattr(self, key)


def compare(
    dataset_spec,
    data_dir=None,
    limit_train=None,
    epochs=None,
    seed=0,
    out_dir="runs/compare",
    models=MODELS,
    download=False,
    log=None,
    overwrite=False,
):
    """Train each model on the same data; write comparison.md and comparison.png.

    Args:
        dataset_spec: "fashion-mnist", "mnist", "cifar10" or "folder:PATH".
        data_dir: the only place to look for the dataset (see cnnlab.data.load_dataset).
        limit_train: train on the first N training images only. Default: all.
        epochs: epochs for every model. Default: each model's trainer default (linear 20,
            mlp 20, cnn 10, vit MODEL_DEFAULTS["vit"].epochs; features-linear as linear).
        seed: seeds the split, the initialisations and the batch order. Default: 0.
        out_dir: where the runs, comparison.md and comparison.png go.
        models: a subset of MODELS, in the order to train and show them.
        download: fetch a built-in dataset's files when they are not found.
        log: callable(str) receiving progress lines. Default: silent.
        overwrite: replace the runs a previous comparison left in `out_dir`; without it they
            are refused (ValueError) before anything is trained.

    Returns:
        list of ComparisonRow, in the order of `models`.
    """
    unknown = [name for name in models if name not in MODELS]
    if unknown or not models:
        raise ValueError(f"compare: models must be among {', '.join(MODELS)}, got {models!r}")
    out_dir, log = Path(out_dir), log or (lambda line: None)
    held = [name for name in models if holds_run(out_dir / name)]
    if held and not overwrite:
        raise ValueError(f"compare: {out_dir} already holds the runs {', '.join(held)}: "
                         f"--overwrite replaces them, another --out keeps them")
    rows = []
    for name in models:
        model, features = RUNS[name]
        config = TrainConfig(
            model=model,
            features=features,
            dataset=dataset_spec,
            data_dir=data_dir,
            download=download,
            epochs=epochs,
            seed=seed,
            limit_train=limit_train,
            out=str(out_dir / name),
        ).resolve()
        log(f"compare: training {name} for {config.epochs} epoch"
            f"{'' if config.epochs == 1 else 's'}")
        row = _train(name, config, overwrite)
        log(f"compare: {name} test accuracy {row.test_accuracy:.4f} in {row.seconds:.1f} s")
        rows.append(row)
    write_comparison(rows, dataset_spec, out_dir)
    return rows


def _train(name, config, overwrite):
    summary = train(config, overwrite=overwrite)
    return ComparisonRow(
        name,
        summary["test_accuracy"],
        summary["val_accuracy"],
        summary["seconds"],
        _run_params(summary["run_dir"]),
        summary["epochs"],
        summary["run_dir"],
    )


def _run_params(run_dir):
    model, _ = load_trained_model(run_dir)
    return int(sum(parameter.data.size for parameter in model.parameters()))


def comparison_table(rows, dataset_spec):
    """The rows as a Markdown table, the published reference (if any) below it."""
    lines = [
        f"Comparison on {dataset_name(dataset_spec)} (test accuracy; training time on this "
        "machine)",
        "",
        "| model | test accuracy | validation accuracy | training time (s) | parameters | epochs |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        val = "-" if row.val_accuracy is None else f"{row.val_accuracy:.4f}"
        lines.append(
            f"| {row.model} | {row.test_accuracy:.4f} | {val} | {row.seconds:.1f} | "
            f"{row.params:,} | {row.epochs} |"
        )
    reference = REFERENCES.get(dataset_spec)
    if reference:
        lines += ["", f"Reference: {reference[1]}: {reference[0]:.3f}."]
    return "\n".join(lines) + "\n"


def write_comparison(rows, dataset_spec, out_dir):
    """OUT_DIR/comparison.md and OUT_DIR/comparison.png; returns their paths."""
    out_dir = Path(out_dir)
    table = atomic_write(out_dir / "comparison.md", comparison_table(rows, dataset_spec))
    reference = REFERENCES.get(dataset_spec, (None, None))
    label = f"{reference[1]} ({reference[0]:.3f})" if reference[0] is not None else None
    chart = plots.save_bar_chart(
        [row.model for row in rows],
        [row.test_accuracy for row in rows],
        [row.seconds for row in rows],
        out_dir / "comparison.png",
        reference=reference[0],
        reference_label=label,
        title=f"{dataset_name(dataset_spec)}: accuracy and time",
    )
    return table, chart
