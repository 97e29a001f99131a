"""Which network respects the image's spatial structure? Translation equivariance of the shipped
CNN and of a vision transformer, measured on Fashion-MNIST test images.

    python examples/equivariance_vit_vs_cnn.py --vit runs/vit-fashion-mnist
    python examples/equivariance_vit_vs_cnn.py                 # an untrained vit (said so)

For shifts of 1 pixel and of one patch (4 pixels), to the right, it prints
`cnnlab.analysis.equivariance_error` of

- each network's first layer: the CNN's 3 x 3 convolution (jump 1) and the ViT's patch
  embedding (a 4 x 4 convolution of stride 4, jump 4);
- the CNN's features after its two poolings (jump 4, the ViT's patch grid);
- the whole network's class scores, where equivariance means invariance (the same scores
  for the shifted image), with the share of images whose predicted class stays the same.

A 1-pixel shift is not a whole number of outputs for a map of jump 4: there the error is
against the unshifted outputs (`nearest=True`), how far the map is from any equivariance.
The images are shifted as pixels (the background, 0, comes in), then normalised as each model
was trained. The numbers are the largest difference, relative to the largest output, so 0 is
exact equivariance and about 1 none.
"""

import argparse
import json

import numpy as np

import cnnlab
from cnnlab.analysis import equivariance_error, summary, translate
from cnnlab.data import load_dataset
from cnnlab.models import build_model
from cnnlab.training.inputs import PixelInputs
from cnnlab.training.trained import load_trained

SHIFTS = {"1 pixel": (0, 1), "1 patch (4 pixels)": (0, 4)}


def _on_pixels(fn, inputs):
    """fn of normalised inputs as a map of raw pixel values (N, C, H, W) float."""
    return lambda pixels: fn(cnnlab.Tensor(inputs.transform(np.asarray(pixels))))


def _same_prediction(model, inputs, pixels, shift):
    with cnnlab.no_grad():
        before = model(cnnlab.Tensor(inputs.transform(pixels))).data.argmax(axis=1)
        after = model(cnnlab.Tensor(inputs.transform(translate(pixels, shift)))).data.argmax(1)
    return float((before == after).mean())


def measure(cnn, cnn_inputs, vit, vit_inputs, pixels) -> dict:
    """{row name: {shift name: error}} for the maps described in the module docstring, plus
    the share of unchanged predictions. pixels: (N, 1, 28, 28) float, 0-255."""
    records = summary(cnn, (1, *pixels.shape[1:]))
    pooled = max(index for index, record in enumerate(records) if record.spatial)
    maps = {
        "cnn: first conv (3x3, jump 1)": (cnn[:1], cnn_inputs),
        "vit: patch embedding (4x4 stride 4, jump 4)": (vit[:1], vit_inputs),
        f"cnn: features after {records[pooled].name} (jump 4)": (cnn[: pooled + 1], cnn_inputs),
        "cnn: class scores": (cnn, cnn_inputs),
        "vit: class scores": (vit, vit_inputs),
    }
    results = {}
    for name, (fn, inputs) in maps.items():
        results[name] = {shift_name: equivariance_error(_on_pixels(fn, inputs), pixels, shift,
                                                        nearest=True)
                         for shift_name, shift in SHIFTS.items()}
    for name, (model, inputs) in (("cnn", maps["cnn: class scores"]),
                                  ("vit", maps["vit: class scores"])):
        results[f"{name}: same predicted class"] = {
            shift_name: _same_prediction(model, inputs, pixels, shift)
            for shift_name, shift in SHIFTS.items()}
    return results


def load_vit(path):
    """(model, inputs, description): the trained vit at `path` (RUN_DIR, or a checkpoint such
    as RUN_DIR/best), or without one an untrained default vit."""
    if path is not None:
        trained = load_trained(path)
        return trained.model, trained.inputs, f"trained ({path})"
    model = build_model("vit", generator=np.random.default_rng(0)).eval()
    inputs = PixelInputs((1, 28, 28), [0.2860], [0.3530])  # Fashion-MNIST's statistics
    return model, inputs, "untrained (seed 0): no trained vit given"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vit", metavar="RUN", help="a trained vit: RUN_DIR or RUN_DIR/best")
    parser.add_argument("--images", type=int, default=500, help="test images (default: 500)")
    parser.add_argument("--data-dir", help="where Fashion-MNIST is (default: cnnlab's lookup)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    cnn = load_trained("pretrained:cnn-fashion-mnist")
    vit, vit_inputs, described = load_vit(args.vit)
    test = load_dataset("fashion-mnist", data_dir=args.data_dir)[1]
    pixels = test.images[: args.images].astype(np.float64)
    results = measure(cnn.model, cnn.inputs, vit, vit_inputs, pixels)
    if args.json:
        print(json.dumps({"vit": described, "images": len(pixels), "results": results}))
        return
    print(f"cnn: pretrained:cnn-fashion-mnist; vit: {described}; {len(pixels)} test images")
    width = max(map(len, results))
    print(f"{'':<{width}}  " + "  ".join(f"{name:>18}" for name in SHIFTS))
    for name, row in results.items():
        print(f"{name:<{width}}  " + "  ".join(f"{value:>18.3f}" for value in row.values()))


if __name__ == "__main__":
    main()
