"""The `cnnlab` command: it parses arguments and calls the library; no logic.

train.py: train, evaluate, predict, plot (cnnlab.training); analysis.py: summary, viz
(cnnlab.analysis) and compare; explain.py: explain and viz's explaining flags (cnnlab.explain);
export.py: export (cnnlab.interop); lab.py: lab (cnnlab.lab); common.py: the parser, the output
flags, one-line errors and the exit status.
"""

import argparse
import sys

from cnnlab import __version__
from cnnlab.cli import analysis, explain, export, lab, train
from cnnlab.cli.common import Parser, run

DESCRIPTION = """\
cnnlab: image classification with convolutional networks, on NumPy.

  cnnlab train                      train the default CNN on Fashion-MNIST, report test accuracy
  cnnlab evaluate RUN_DIR --json    loss and accuracy of a trained model on a test set
  cnnlab predict RUN_DIR a.png      the most likely classes of image files
  cnnlab plot RUN_DIR               (re)draw a run's loss/accuracy curves and confusion matrix
  cnnlab summary                    per-layer shapes, parameters and receptive fields
  cnnlab viz RUN_DIR                pictures of a trained model: templates, filters, activations
  cnnlab explain RUN_DIR a.png      which pixels made a prediction: saliency, Grad-CAM, occlusion
  cnnlab compare                    pixels, hand-made features, MLP and CNN side by side
  cnnlab export RUN_DIR --format X  the model for ONNX runtimes (onnx) or PyTorch (torch)
  cnnlab lab [RUNS_DIR]             watch runs train and look inside them, in a browser

Run `cnnlab COMMAND --help` for a command's options."""


def build_parser():
    parser = Parser(prog="cnnlab", description=DESCRIPTION,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"cnnlab {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    train.add_commands(commands)  # train, evaluate, predict, plot
    analysis.add_commands(commands)  # summary, viz, compare
    explain.add_commands(commands)  # explain
    export.add_commands(commands)  # export
    lab.add_commands(commands)  # lab
    return parser


def main(argv=None):
    """Run the command line; returns the exit status (the console script exits with it)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    return run(build_parser(), argv)


__all__ = ["build_parser", "main"]
