"""Looking inside models: shapes, parameters, receptive fields, equivariance, pictures.

    records = summary(model, (1, 28, 28))      # one LayerRecord per layer
    print(format_summary(records, (1, 28, 28)))
    equivariance_error(conv, x, (2, 2))        # 0.0 for a map that commutes with shifts

summary.py (shapes and receptive fields without running the model), equivariance.py (running a
model layer by layer; translation), pictures.py (what to draw, arrays in and arrays out),
plots.py (the only Matplotlib user: arrays in, one PNG out), model_pictures.py (the pictures
of a trained model, written to a folder). Importing the package loads no Matplotlib.
"""

from cnnlab.analysis.equivariance import equivariance_error, layer_outputs, translate
from cnnlab.analysis.summary import (
    LayerRecord,
    format_summary,
    layer_kind,
    layers,
    receptive_field_box,
    summary,
)

__all__ = [
    "LayerRecord",
    "equivariance_error",
    "format_summary",
    "layer_kind",
    "layer_outputs",
    "layers",
    "receptive_field_box",
    "summary",
    "translate",
]
