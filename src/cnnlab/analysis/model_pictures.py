"""The pictures of a trained model, as PNG files in a folder, for `cnnlab viz RUN_DIR`.

    image = example_image(metadata)                  # (C, H, W) uint8: a test image
    paths = save_model_pictures(model, metadata, "pictures/", image=image)

What to draw comes from `pictures` (arrays in, arrays out); `plots` draws each one.
"""

from pathlib import Path

from cnnlab.analysis import plots
from cnnlab.analysis.pictures import (
    activation_maps,
    display_image,
    filter_images,
    first_conv_weight,
    linear_template_weight,
    model_input,
    receptive_field_overlay,
    template_images,
)
from cnnlab.analysis.summary import summary
from cnnlab.checks import check_choice, check_number
from cnnlab.data import load_dataset, load_image
from cnnlab.files import atomic_write


def example_image(metadata, image_path=None, index=0, data_dir=None):
    """The image to show the model: an image file, or test image `index` of the run's dataset.

    Args:
        metadata: a trained model's metadata (preprocessing, dataset, training).
        image_path: any image file Pillow reads, resized and converted as for prediction.
        index: which test image when no file is given. Default: 0.
        data_dir: where the dataset is. Default: the run's own --data-dir.

    Returns:
        (C, H, W) uint8 of the model's input size.

    Raises:
        DatasetError when the file or the dataset cannot be read.
    """
    prep = metadata["preprocessing"]
    size, channels = tuple(prep["input_size"]), prep["channels"]
    if image_path is not None:
        return load_image(image_path, size=size, channels=channels)
    spec = metadata["dataset"]
    folder = spec.startswith("folder:")
    data_dir = data_dir if data_dir is not None else metadata.get("training", {}).get("data_dir")
    _, test = load_dataset(
        spec,
        data_dir=data_dir,
        image_size=size if folder else None,
        channels=channels if folder else None,
    )
    check_number("--index", index, integer=True, minimum=0, maximum=len(test) - 1)
    return test.images[index]


def spatial_layers(model, metadata) -> list[str]:
    """The names (as in `summary`) of a trained model's layers whose outputs still have
    positions in the image: the layers a receptive field can be drawn for."""
    prep = metadata["preprocessing"]
    records = summary(model, (prep["channels"], *prep["input_size"]))
    return [record.name for record in records if record.spatial]


def check_layer(layer, spatial_layers) -> None:
    """--layer, when given, must name one of `spatial_layers` (names as in `summary`).

    Raises:
        ValueError naming --layer, the valid names and the one given.
    """
    if layer is None:
        return
    if not spatial_layers:
        raise ValueError(f"--layer: the model has no spatial layer (its first layer flattens "
                         f"the image), got {layer!r}")
    check_choice("--layer", layer, spatial_layers)


def save_model_pictures(model, metadata, out_dir, image=None, layer=None):
    """Every picture of a trained model that applies to it, as PNG files in out_dir.

    templates.png       a linear classifier's rows of W as images, one per class
    filters.png         the first convolution's filters, each rescaled on its own
    activations_<layer>.png   each convolution's output maps for `image`, one per channel
    receptive_field.png       `image` with the box one output of `layer` sees

    Args:
        model: a trained Module; metadata: its metadata (classes, preprocessing).
        out_dir: the folder to write to.
        image: (C, H, W) uint8 input image (see `example_image`); Default: no activation maps
            and no receptive field.
        layer: the layer for the receptive field, a name from `summary`. Default: the last
            spatial layer.

    Returns:
        list of the written paths.

    Raises:
        ValueError for a `layer` that is not a spatial layer, before any file is written.
    """
    out_dir = Path(out_dir)
    prep, classes = metadata["preprocessing"], metadata["classes"]
    image_shape = (prep["channels"], *prep["input_size"])
    spatial = spatial_layers(model, metadata)
    check_layer(layer, spatial)  # before anything is written
    paths = []
    weight = linear_template_weight(model, image_shape)
    if weight is not None:
        paths.append(
            plots.save_image_grid(
                template_images(weight, image_shape),
                out_dir / "templates.png",
                titles=classes,
                columns=5,
                title="linear classifier templates (rows of W, rescaled per class)",
            )
        )
    weight = first_conv_weight(model)
    if weight is not None:
        columns = None if weight.shape[1] in (1, 3) else weight.shape[1]
        paths.append(
            plots.save_image_grid(
                filter_images(weight),
                out_dir / "filters.png",
                columns=columns,
                title=f"first convolution: {weight.shape[0]} filters of {weight.shape[2]} x "
                f"{weight.shape[3]}, rescaled per filter",
            )
        )
    if image is None:
        return paths
    for name, maps in activation_maps(model, model_input(image, prep["mean"], prep["std"])):
        paths.append(
            plots.save_image_grid(
                maps,
                out_dir / f"activations_{name}.png",
                cmap="viridis",
                title=f"{name}: {len(maps)} activation maps of {maps.shape[1]} x {maps.shape[2]}",
            )
        )
    if spatial:
        record, box = receptive_field_overlay(model, image_shape, layer)
        height, width = record.receptive_field
        paths.append(
            plots.save_receptive_field(
                display_image(image),
                box,
                out_dir / "receptive_field.png",
                title=f"{record.name}: receptive field {height} x {width}, jump "
                f"{record.jump[0]} x {record.jump[1]}",
            )
        )
    return paths


def copy_into(paths, out_dir):
    """Copy files into out_dir (unless they are there already), atomically; returns the paths
    in out_dir."""
    out_dir = Path(out_dir)
    copies = []
    for path in map(Path, paths):
        target = out_dir / path.name
        if not target.exists() or not target.samefile(path):
            atomic_write(target, path.read_bytes())
        copies.append(target)
    return copies
