"""`cnnlab explain` and viz's explaining flags (--top-patches, --features, --misclassified):
parse the flags, call cnnlab.training.explanations."""

from cnnlab.cli.common import add_command, add_debug, emit_json
from cnnlab.pretrained import PREFIX
from cnnlab.training.explanations import METHODS, explain_files, viz_explanations

EXPLAIN_EPILOG = """\
methods:
  saliency   |d score / d pixel|, the largest over the colour channels (Simonyan et al. 2014)
  gradcam    a layer's channels weighted by their mean gradient, summed, ReLU, resized to the
             image (Selvaraju et al. 2017); --layer as `cnnlab summary` names it (default: the
             last convolution's ReLU, relu2 in the default CNN)
  occlusion  the drop in the class's probability when a 4 x 4 patch (every 2 pixels) is set to
             the mean pixel (Zeiler & Fergus 2014); blue where hiding the patch helps

The score is the class's logit (saliency, Grad-CAM) or probability (occlusion) for --target
(a class name or index; default: each image's predicted class). Images are prepared as
`cnnlab predict` prepares them. Writes OUT/<image name>_<method>.png, one per image.

examples:
  cnnlab explain pretrained:cnn-fashion-mnist shoe.png
  cnnlab explain runs/cnn-fashion-mnist a.png b.png --method occlusion --out pictures/
  cnnlab explain runs/cnn-fashion-mnist shoe.png --target Sandal --layer conv2 --json"""

VIZ_EPILOG = """

what a channel looks for (only these pictures are drawn when one of these flags is given):
  top_patches_<layer>.png    --top-patches LAYER: one row per channel, its 9 most activating
                             test-set regions (each the receptive field), best first
  features_<layer>.png       --features LAYER: each channel's feature visualisation, the
                             image that most raises its mean activation (--seed S)
  misclassified.png          --misclassified: the test set's mistakes, by (true, predicted)
                             pair, with p(predicted) / p(true)

  cnnlab viz pretrained:cnn-fashion-mnist --top-patches conv2 --out pictures/
  cnnlab viz runs/cnn-fashion-mnist --features conv2 --misclassified"""


def add_commands(commands):
    """Add `explain` to the `cnnlab` subparsers."""
    parser = add_command(commands, "explain", "which pixels made a prediction",
                         "Explain a trained model's predictions for image files: one picture\n"
                         "per image, a saliency, Grad-CAM or occlusion map laid over the image,\n"
                         "the top classes in its title.", EXPLAIN_EPILOG)
    parser.add_argument("path", metavar="RUN", help="a run directory, a checkpoint such as "
                        "RUN_DIR/best, or pretrained:NAME")
    parser.add_argument("images", metavar="IMAGE", nargs="+", help="image files")
    parser.add_argument("--method", choices=METHODS, default="gradcam",
                        help="default: gradcam")
    parser.add_argument("--layer", metavar="NAME", help="Grad-CAM's layer (default: the last "
                        "convolution's ReLU)")
    parser.add_argument("--target", metavar="CLASS", help="the class to explain, a name or an "
                        "index (default: each image's predicted class)")
    parser.add_argument("--out", default=".", metavar="DIR",
                        help="where to write the pictures (default: .)")
    parser.add_argument("--json", action="store_true",
                        help="print the maps' shapes and the pictures' paths as JSON")
    add_debug(parser)
    parser.set_defaults(handler=_explain)


def _explain(args):
    result = explain_files(args.path, args.images, method=args.method, layer=args.layer,
                           target=args.target, out=args.out)
    if args.json:
        return emit_json(result)
    for item in result["explanations"]:
        print(f"{item['picture']}: {item['image']}, {args.method} for {item['target']['class']}")


def add_viz_options(parser):
    """viz's explaining flags (see VIZ_EPILOG)."""
    parser.epilog += VIZ_EPILOG
    parser.add_argument("--top-patches", metavar="LAYER",
                        help="draw each channel's top 9 test-set patches for this layer")
    parser.add_argument("--features", metavar="LAYER",
                        help="draw each channel's feature visualisation for this layer")
    parser.add_argument("--misclassified", action="store_true",
                        help="draw the misclassified test images by (true, predicted) pair")
    parser.add_argument("--seed", type=int, default=0, metavar="S",
                        help="--features' random start and jitter (default: 0)")


def viz(args) -> bool:
    """Draw viz's explaining pictures when one of their flags is given; False otherwise."""
    if args.top_patches is None and args.features is None and not args.misclassified:
        return False
    if args.out is None and str(args.run_dir).startswith(PREFIX):
        raise ValueError(f"{args.run_dir} is a model shipped with cnnlab: give --out DIR for "
                         "its pictures")
    paths = viz_explanations(args.run_dir, args.out or args.run_dir,
                             top_patches=args.top_patches, features=args.features,
                             misclassified=args.misclassified, data_dir=args.data_dir,
                             seed=args.seed)
    print("\n".join(str(path) for path in paths))
    return True
