"""`cnnlab train`, `evaluate`, `predict` and `plot`: parse the flags, call cnnlab.training."""

import argparse
import sys

from cnnlab.checks import counted
from cnnlab.cli.common import add_command, add_output_options, emit_json, stderr
from cnnlab.training.config import (
    FEATURE_NAMES,
    FIELDS,
    MODEL_DEFAULTS,
    OPTIMIZERS,
    SCHEDULES,
    configure,
)
from cnnlab.training.run import train
from cnnlab.training.rundir import metrics_path
from cnnlab.training.trained import evaluate_run, predict, write_plots


def _count_or_fraction(text):
    """--val-size: an int count ("5000") or a fraction ("0.1")."""
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a count or a fraction, got {text!r}") from None


def _image_size(text):
    """--image-size: "28" or "28,32" / "28x32" (H, W)."""
    try:
        values = [int(part) for part in text.replace("x", ",").split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected H or H,W, got {text!r}") from None
    if len(values) not in (1, 2):
        raise argparse.ArgumentTypeError(f"expected H or H,W, got {text!r}")
    return values * 2 if len(values) == 1 else values


def _feature_names(text):
    """--features: comma-separated names, "hog,color" (checked by the library)."""
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected names such as hog,color, got {text!r}")
    return names


def _ks(text):
    """--top-k for evaluate: "5" or "1,3,5"."""
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected K or K,K,..., got {text!r}") from None


def _defaults_table():
    lines = ["per-model defaults (each overridable by its flag):",
             "  model    optimizer  lr      momentum  weight-decay  schedule  epochs  "
             "batch-size  warm-up  smoothing"]
    for name, row in MODEL_DEFAULTS.items():
        lines.append(f"  {name:<8} {row.optimizer:<10} {row.lr:<7g} {row.momentum:<9g} "
                     f"{row.weight_decay:<13g} {row.schedule:<9} {row.epochs:<7} "
                     f"{row.batch_size:<11} {row.warmup_epochs:<8} {row.label_smoothing:g}")
    return "\n".join(lines)


TRAIN_EPILOG = """\
{table}

The validation set is a seeded random --val-size images of the training set; --limit-train N
then keeps the first N of the remaining training images. Options may also come from a TOML file
(--config FILE, keys as the long flags, e.g. `lr = 0.01`, `batch-size = 64`); flags given on the
command line win. --resume continues RUN_DIR's run up to --epochs in total, with its options;
interrupted (Ctrl-C) and resumed, a run ends with the same weights as one left alone. Epochs
added after a run's schedule has ended get a fresh schedule of the same kind over them, from
the run's --lr; a run resumed before its end with another --epochs follows, from there, the
schedule of a run of that many epochs. The log says which. One process at a time trains in a
RUN_DIR (it holds an OS lock on RUN_DIR/.lock); another is refused, naming its PID.

--features trains linear, svm or mlp on hand-designed features of the images instead of
their pixels ({features}). They are computed once per image, concatenated and
standardised with the training images' statistics, which are saved with the model, so
evaluate and predict compute the same features for new images. HOG uses cells of 4 x 4
pixels (larger for images over 35 pixels) in blocks of 2 x 2 cells: 1296 numbers for a
28 x 28 image; color is a 10-bin hue (colour) or intensity (grey) histogram.

examples:
  cnnlab train                                     CNN on Fashion-MNIST -> runs/cnn-fashion-mnist
  cnnlab train --model mlp --epochs 5 --lr 0.02
  cnnlab train --model cnn-bn --augment --out runs/bn
  cnnlab train --model vit                         vision transformer: AdamW, warm-up, cosine
  cnnlab train --model linear --features hog,color   -> runs/linear-hog-color-fashion-mnist
  cnnlab train --dataset folder:photos --image-size 64 --channels 3
  cnnlab train --out runs/bn --resume --epochs 30"""


def _add_data_source(parser):
    parser.add_argument("--data-dir", metavar="DIR",
                        help="the only place to look for the dataset (DIR or DIR/<name>)")
    parser.add_argument("--download", action="store_const", const=True, default=None,
                        help="download a built-in dataset's official files if not found")


def _add_train(commands):
    parser = add_command(
        commands, "train", "train a model and write a run directory",
        "Train a classifier; write its weights, metrics, plots and resumable state\n"
        "to RUN_DIR; print the test accuracy.",
        TRAIN_EPILOG.format(table=_defaults_table(), features=", ".join(FEATURE_NAMES)))
    data = parser.add_argument_group("data")
    data.add_argument("--dataset", metavar="SPEC",
                      help="fashion-mnist (default), mnist, cifar10 or folder:PATH")
    _add_data_source(data)
    data.add_argument("--val-size", type=_count_or_fraction, metavar="N",
                      help="validation images taken from the training set, a count or a "
                           "fraction (default: 5000; folders: 0.1)")
    data.add_argument("--limit-train", type=int, metavar="N",
                      help="train on the first N training images only (quick runs)")
    data.add_argument("--image-size", type=_image_size, metavar="H[,W]",
                      help="folders: resize images to this size (default: the first image's)")
    data.add_argument("--channels", type=int, choices=(1, 3),
                      help="folders: 1 (grey) or 3 (RGB) (default: from the first image)")
    model = parser.add_argument_group("model and optimisation")
    model.add_argument("--model", choices=list(MODEL_DEFAULTS),
                       help="linear softmax, linear SVM, MLP, CNN (default), CNN with "
                            "batch normalisation or vision transformer")
    model.add_argument("--features", type=_feature_names, metavar="A,B",
                       help="train linear, svm or mlp on hand-designed features of the images "
                            f"instead of their pixels: {','.join(FEATURE_NAMES)} "
                            "(e.g. hog,color)")
    model.add_argument("--epochs", type=int, metavar="N", help="epochs in total")
    model.add_argument("--batch-size", type=int, metavar="B", help="images per step")
    model.add_argument("--optimizer", choices=OPTIMIZERS)
    model.add_argument("--lr", type=float, metavar="X", help="learning rate")
    model.add_argument("--momentum", type=float, metavar="X",
                       help="SGD (Nesterov) and RMSprop momentum")
    model.add_argument("--weight-decay", type=float, metavar="X", help="L2 weight decay")
    model.add_argument("--schedule", choices=SCHEDULES,
                       help="learning-rate schedule over the epochs")
    model.add_argument("--warmup-epochs", type=int, metavar="N",
                       help="epochs of linear learning-rate warm-up before the schedule "
                            "(from lr / (N + 1) up to lr; at most --epochs - 1 are used)")
    model.add_argument("--label-smoothing", type=float, metavar="X",
                       help="cross-entropy label smoothing in [0, 1], in training (PyTorch's)")
    model.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                       help="random flips and crops (shifts for mnist) of training images")
    model.add_argument("--patience", type=int, metavar="N",
                       help="stop early after N epochs without a better validation accuracy "
                            "(RUN_DIR/best keeps the best epoch's weights)")
    model.add_argument("--margin", type=float, metavar="X",
                       help="hinge-loss margin for --model svm (default: 1)")
    run = parser.add_argument_group("run")
    run.add_argument("--seed", type=int, metavar="S", help="seed of every random choice "
                                                             "(default: 0)")
    run.add_argument("--out", metavar="RUN_DIR",
                     help="run directory (default: runs/<model>-<dataset>)")
    run.add_argument("--resume", action="store_true",
                     help="continue the run in RUN_DIR up to --epochs in total")
    run.add_argument("--overwrite", action="store_true",
                     help="replace the run in RUN_DIR (without it, an --out that holds a run is "
                          "refused, and the default RUN_DIR becomes <model>-<dataset>-2, -3, ...)")
    run.add_argument("--config", metavar="FILE", help="TOML file of options")
    run.add_argument("--interrupt-after-steps", type=int, help=argparse.SUPPRESS)
    add_output_options(run, "print the result as one JSON object on stdout")
    parser.set_defaults(handler=_train)


def _add_evaluate(commands):
    parser = commands.add_parser(
        "evaluate", help="loss and accuracy of a trained model",
        description="Loss and accuracy of a trained model on a test set, preprocessed as in "
                    "training.")
    parser.add_argument("path", metavar="RUN_DIR_OR_CHECKPOINT",
                        help="a run directory, or a checkpoint: RUN_DIR/best, or RUN_DIR/last "
                             "(the training state, as it stands)")
    parser.add_argument("--dataset", metavar="SPEC",
                        help="dataset to evaluate on (default: the one trained on)")
    _add_data_source(parser)
    parser.add_argument("--split", choices=("test", "val"), default="test",
                        help="the test set (default) or the run's validation split")
    parser.add_argument("--top-k", type=_ks, metavar="K[,K...]",
                        help="top-k accuracies to report (default: 1,3,5, up to the classes)")
    add_output_options(parser, "print one JSON object (accuracy, loss, per-class accuracy, "
                        "precision, recall and F1, top-k accuracy, confusion matrix)")
    parser.set_defaults(handler=_evaluate)


def _add_predict(commands):
    parser = commands.add_parser(
        "predict", help="classify image files",
        description="The most likely classes of image files (PNG, JPEG, ...; any size or "
                    "colour mode: they are converted as the training images were). A grey "
                    "model trained on light objects on a dark background (Fashion-MNIST) "
                    "warns about an image with a light border; --invert turns it over.")
    parser.add_argument("path", metavar="RUN_DIR_OR_CHECKPOINT",
                        help="a run directory, or a model checkpoint such as RUN_DIR/best")
    parser.add_argument("images", metavar="IMAGE", nargs="+", help="image files")
    parser.add_argument("--top-k", type=int, default=3, metavar="K",
                        help="classes to show per image (default: 3)")
    parser.add_argument("--invert", action="store_true",
                        help="invert the images (255 - pixel) first: a dark object drawn on "
                             "white becomes a light one on black, as in Fashion-MNIST")
    add_output_options(parser, "print one JSON object with the predictions")
    parser.set_defaults(handler=_predict)


def _add_plot(commands):
    parser = commands.add_parser(
        "plot", help="draw a run's curves and confusion matrix",
        description="Write RUN_DIR/curves.png and RUN_DIR/confusion.png from the run's files.")
    parser.add_argument("run_dir", metavar="RUN_DIR")
    add_output_options(parser, "print the written paths as JSON")
    parser.set_defaults(handler=_plot)


def add_commands(commands):
    """Add `train`, `evaluate`, `predict` and `plot` to the `cnnlab` subparsers."""
    for add in (_add_train, _add_evaluate, _add_predict, _add_plot):
        add(commands)


# ----- the commands: call the library, print the result -------------------------------------
def _train(args):
    if args.resume and args.overwrite:
        raise ValueError("--resume continues the run in RUN_DIR, --overwrite replaces it: "
                         "give one of them")
    options = {name: getattr(args, name, None) for name in FIELDS}
    config = configure(options, config_file=args.config, resume=args.resume)
    summary = train(
        config, resume=args.resume, progress=not args.quiet and sys.stderr.isatty(),
        log=None if args.quiet else stderr, interrupt_after_steps=args.interrupt_after_steps,
        overwrite=args.overwrite)
    if args.json:
        return emit_json(summary)
    epochs = summary["epochs"]
    print(f"test accuracy {summary['test_accuracy']:.4f} (loss {summary['test_loss']:.4f}) "
          f"after {counted(epochs, 'epoch')}; best validation accuracy "
          f"{summary['best_val_accuracy']:.4f} at epoch {summary['best_epoch']}")
    print(f"run:     {summary['run_dir']}\nmodel:   {summary['model']}\n"
          f"metrics: {metrics_path(summary['run_dir'])}\nplots:   {', '.join(summary['plots'])}")


def _evaluate(args):
    result = evaluate_run(args.path, dataset=args.dataset, data_dir=args.data_dir,
                          download=bool(args.download), split=args.split,
                          progress=not args.quiet and sys.stderr.isatty(), top_k=args.top_k)
    if args.json:
        return emit_json(result)
    print(f"accuracy {result['accuracy']:.4f}  loss {result['loss']:.4f}  on {result['count']} "
          f"{args.split} images of {result['dataset']}")
    print("  ".join(f"top-{k} {value:.4f}" for k, value in result["top_k_accuracy"].items()))
    rows = {**result["per_class"], "macro average": result["macro"]}
    width = max(len(name) for name in rows)
    print(f"  {'class':<{width}}  precision  recall  f1      images  (recall: the accuracy)")
    for name, row in rows.items():
        print(f"  {name:<{width}}  {row['precision']:<9.4f}  {row['recall']:.4f}  "
              f"{row['f1']:.4f}  {row.get('support', '')}")


def _predict(args):
    results = predict(args.path, args.images, top_k=args.top_k, invert=args.invert)
    if args.json:
        return emit_json({"predictions": results})
    for result in results:
        ranked = ", ".join(f"{item['class']} {item['probability']:.3f}"
                           for item in result["predictions"])
        print(f"{result['image']}: {ranked}")


def _plot(args):
    paths = [str(path) for path in write_plots(args.run_dir)]
    if args.json:
        return emit_json({"plots": paths})
    print("\n".join(paths))
