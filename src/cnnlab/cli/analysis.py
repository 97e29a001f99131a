"""`cnnlab summary`, `viz` and `compare`: parse the flags, call cnnlab.analysis and
cnnlab.training.compare."""

import argparse
import warnings
from pathlib import Path

from cnnlab.analysis import format_summary, summary
from cnnlab.analysis.model_pictures import (
    check_layer,
    copy_into,
    example_image,
    save_model_pictures,
    spatial_layers,
)
from cnnlab.cli import explain
from cnnlab.cli.common import add_command, add_debug, emit_json, stderr
from cnnlab.errors import DatasetError
from cnnlab.models import build_model
from cnnlab.training.compare import MODELS, compare, comparison_table
from cnnlab.training.trained import load_trained_model, write_plots

SUMMARY_EPILOG = """\
examples:
  cnnlab summary                                  the default CNN on 1 x 28 x 28 images
  cnnlab summary --model cnn-bn --input-shape 3,32,32
  cnnlab summary runs/cnn-fashion-mnist           a trained model, at its input size

rf is the receptive field (input pixels one output sees, padding included) and jump the input
pixels between neighbouring outputs: rf_out = rf_in + (K - 1) * jump_in, jump_out = jump_in * S.
After Flatten or Linear every output sees the whole input."""

VIZ_EPILOG = """\
writes, where they apply:
  templates.png              linear classifiers: each row of W as an image, one per class
  filters.png                the first convolution's filters, rescaled per filter
  activations_<layer>.png    every convolution's output maps for the image
  receptive_field.png        the image with the box one output of --layer sees
  curves.png, confusion.png  the run's loss/accuracy curves and confusion matrix

The image is --image FILE (resized and converted as for predict), else test image --index of
the run's dataset when it can be loaded.

examples:
  cnnlab viz runs/cnn-fashion-mnist
  cnnlab viz runs/cnn-fashion-mnist --image shoe.png --layer conv2 --out pictures/"""

COMPARE_EPILOG = """\
models: pixels-linear (softmax on pixels), features-linear (softmax on HOG + colour histogram
features), mlp, cnn and vit (a vision transformer), each trained with the trainer's defaults
for its model (or --epochs).

examples:
  cnnlab compare --dataset fashion-mnist          the full comparison (two hours, most the vit's)
  cnnlab compare --models pixels-linear,features-linear,mlp,cnn       without the vit: minutes
  cnnlab compare --limit-train 5000 --epochs 3 --out runs/quick"""


def _input_shape(text):
    """--input-shape: "1,28,28" or "3x32x32" (C, H, W)."""
    try:
        values = [int(part) for part in text.replace("x", ",").split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected C,H,W, got {text!r}") from None
    if len(values) != 3 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected three positive ints C,H,W, got {text!r}")
    return tuple(values)


def _models(text):
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in MODELS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"expected names among {', '.join(MODELS)}, got {text!r}"
        )
    return names


def add_commands(commands):
    """Add `summary`, `viz` and `compare` to the `cnnlab` subparsers; each sets `handler`."""
    for add in (_add_summary, _add_viz, _add_compare):
        add(commands)


def _add_summary(commands):
    parser = add_command(commands, "summary", "per-layer shapes, parameters, receptive fields",
                         "Per layer: output shape, parameters, kernel/stride/padding, receptive "
                         "field and jump, and warnings where flooring drops input rows or columns.",
                         SUMMARY_EPILOG)
    parser.add_argument("path", nargs="?", metavar="RUN_DIR_OR_CHECKPOINT",
                        help="a trained model (instead of --model)")
    parser.add_argument("--model", default="cnn", help="a model name of cnnlab.models "
                        "(linear, svm, mlp, cnn, cnn-bn; default: cnn)")
    parser.add_argument("--input-shape", type=_input_shape, default=(1, 28, 28),
                        metavar="C,H,W", help="input image shape (default: 1,28,28)")
    parser.add_argument("--num-classes", type=int, default=10, metavar="K",
                        help="classes (default: 10)")
    parser.add_argument("--json", action="store_true", help="one JSON object per layer")
    add_debug(parser)
    parser.set_defaults(handler=_summary)


def _add_viz(commands):
    parser = add_command(commands, "viz", "pictures of a trained model",
                         "Write PNG pictures of a trained model: templates, filters, activation "
                         "maps, a receptive field, training curves and confusion matrix.",
                         VIZ_EPILOG)
    parser.add_argument("run_dir", metavar="RUN_DIR")
    parser.add_argument("--image", metavar="FILE", help="the image for activations and the "
                        "receptive field (default: a test image of the run's dataset)")
    parser.add_argument("--index", type=int, default=0, metavar="N",
                        help="which test image, without --image (default: 0)")
    parser.add_argument("--data-dir", metavar="DIR",
                        help="where the dataset is (default: the run's)")
    parser.add_argument("--layer", metavar="NAME", help="layer of the receptive field, "
                        "as cnnlab summary names it (default: the last spatial one)")
    parser.add_argument("--out", metavar="DIR", help="where to write (default: RUN_DIR)")
    explain.add_viz_options(parser)  # --top-patches, --features, --misclassified, --seed
    add_debug(parser)
    parser.set_defaults(handler=_viz)


def _add_compare(commands):
    parser = add_command(commands, "compare",
                         "pixels vs features vs MLP vs CNN vs ViT on one dataset",
                         "Train pixels-linear, features-linear, mlp, cnn and vit on the same "
                         "data; "
                         "write OUT/comparison.md (table) and OUT/comparison.png (bar chart).",
                         COMPARE_EPILOG)
    parser.add_argument("--dataset", default="fashion-mnist", metavar="SPEC",
                        help="fashion-mnist (default), mnist, cifar10 or folder:PATH")
    parser.add_argument("--data-dir", metavar="DIR", help="the only place to look for the data")
    parser.add_argument("--download", action="store_true",
                        help="download a built-in dataset's official files if not found")
    parser.add_argument("--limit-train", type=int, metavar="N",
                        help="train on the first N training images only")
    parser.add_argument("--epochs", type=int, metavar="N",
                        help="epochs for every model (default: each model's own)")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="default: 0")
    parser.add_argument("--models", type=_models, default=MODELS, metavar="A,B",
                        help=f"a subset of {','.join(MODELS)}")
    parser.add_argument("--out", default="runs/compare", metavar="DIR",
                        help="output folder (default: runs/compare)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the runs a previous comparison left in --out")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress lines")
    add_debug(parser)
    parser.set_defaults(handler=_compare)


def _summary(args):
    input_shape = args.input_shape
    if args.path is not None:
        model, _ = load_trained_model(args.path)
        input_shape = (model.config["in_channels"], *model.config["input_size"])
    else:
        model = build_model(args.model, in_channels=input_shape[0], num_classes=args.num_classes,
                            input_size=input_shape[1:])
    records = summary(model, input_shape)
    if args.json:
        emit_json([record.as_dict() for record in records])
    else:
        print(format_summary(records, input_shape))


def _viz(args):
    if Path(args.run_dir).exists() and not Path(args.run_dir).is_dir():
        raise ValueError(f"{args.run_dir}: viz draws a run: give its RUN_DIR, not a file")
    if explain.viz(args):
        return
    model, metadata = load_trained_model(args.run_dir)
    out = args.out or args.run_dir
    if "features" in metadata["preprocessing"]:  # no image goes into the model as it is
        if args.layer is not None or args.image is not None:
            raise ValueError(f"{args.run_dir}: the model sees features, not the image: "
                             "--layer and --image apply to models on pixels")
        paths = copy_into(write_plots(args.run_dir), out)
        print("\n".join(str(path) for path in paths))
        return
    check_layer(args.layer, spatial_layers(model, metadata))  # before anything is written
    try:
        image = example_image(metadata, args.image, args.index, args.data_dir)
    except DatasetError as error:
        if args.image is not None:
            raise
        warnings.warn(f"no activation maps or receptive field: {error} (pass --image FILE)",
                      stacklevel=1)
        image = None
    paths = save_model_pictures(model, metadata, out, image=image, layer=args.layer)
    paths += copy_into(write_plots(args.run_dir), out)
    print("\n".join(str(path) for path in paths))


def _compare(args):
    rows = compare(
        args.dataset, data_dir=args.data_dir, limit_train=args.limit_train, epochs=args.epochs,
        seed=args.seed, out_dir=args.out, models=args.models, download=args.download,
        log=None if args.quiet else stderr, overwrite=args.overwrite,
    )
    print(comparison_table(rows, args.dataset))
    print(f"written: {args.out}/comparison.md, {args.out}/comparison.png")
