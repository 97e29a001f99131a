"""`cnnlab export`: parse the flags, call cnnlab.interop."""

from cnnlab.cli.common import UsageError, add_command, add_debug, emit_json
from cnnlab.interop import DEFAULT_OPSET, MissingDependencyError, export_onnx, export_torch

EXPORT_EPILOG = f"""\
writes (unless --out FILE says where):
  --format onnx    RUN_DIR/export/model.onnx: input "images" (N, C, H, W) float32, pixel / 255
                   in [0, 1] (the run's normalisation is inside the graph), output "logits"
                   (N, classes), class names in its metadata; opset {DEFAULT_OPSET} unless --opset.
                   A run on hand-made features is refused: cnnlab computes them, not the graph.
  --format torch   RUN_DIR/export/model.safetensors: the state dict under PyTorch's keys, for
                   load_state_dict(..., strict=True); beside it model.py, the lines that
                   rebuild the torch.nn module and load it, and for a features run
                   model.features.safetensors (the features' mean and std).

RUN is what `cnnlab predict` takes: RUN_DIR, a checkpoint such as RUN_DIR/best (written as
RUN_DIR/export/best.onnx), or pretrained:NAME, whose folder is inside the installed package:
it is written to ./cnnlab-export/NAME.onnx (or .safetensors). Options are checked before
anything is read or written; each file is written atomically, so a failed export leaves none.
--format onnx needs the onnx package (pip install 'cnnlab[export]'); writing for PyTorch
needs no PyTorch.

examples:
  cnnlab export runs/cnn-fashion-mnist --format onnx
  cnnlab export runs/cnn-fashion-mnist/best --format torch --out cnn/best.safetensors
  cnnlab export pretrained:cnn-fashion-mnist --format onnx --opset 13 --json"""


def add_commands(commands):
    """Add `export` to the `cnnlab` subparsers; it sets `handler`."""
    parser = add_command(commands, "export", "write a trained model for ONNX or PyTorch",
                         "Write a trained model as an ONNX file (for onnxruntime and other ONNX\n"
                         "runtimes) or as PyTorch weights with the lines that rebuild the module.",
                         EXPORT_EPILOG)
    parser.add_argument("run", metavar="RUN", help="RUN_DIR, a checkpoint (RUN_DIR/best) or "
                        "pretrained:NAME")
    parser.add_argument("--format", required=True, choices=("onnx", "torch"),
                        help="onnx: one .onnx file; torch: weights and the module's lines")
    parser.add_argument("--out", metavar="FILE", help="the .onnx or .safetensors file to "
                        "write (default: RUN_DIR/export/model.onnx or .safetensors)")
    parser.add_argument("--opset", type=int, metavar="N",
                        help=f"ONNX operator set, --format onnx only (default: {DEFAULT_OPSET})")
    parser.add_argument("--json", action="store_true",
                        help="print {run, format, files, opset} as JSON")
    add_debug(parser)
    parser.set_defaults(handler=_export)


def _export(args):
    if args.opset is not None and args.format != "onnx":
        raise UsageError(f"--opset applies to --format onnx, not --format {args.format}")
    opset = DEFAULT_OPSET if args.opset is None else args.opset
    try:
        if args.format == "onnx":
            files = [export_onnx(args.run, args.out, opset=opset)]
        else:
            files = export_torch(args.run, args.out)
    except MissingDependencyError as error:  # an ImportError, which cli.common calls internal
        raise ValueError(str(error)) from error
    if args.json:
        emit_json({"run": args.run, "format": args.format, "files": [str(f) for f in files],
                   "opset": opset if args.format == "onnx" else None})
    else:
        print("\n".join(str(file) for file in files))
