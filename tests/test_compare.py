"""compare and the lab commands (summary, viz, compare) on a tiny generated colour dataset:
one epoch of each model, the table and chart written, every picture of a trained run produced."""

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnlab.cli import main
from cnnlab.cli.analysis import add_commands
from cnnlab.data import load_dataset, load_image
from cnnlab.training.compare import MODELS, ComparisonRow, compare, comparison_table
from cnnlab.training.trained import evaluate_run, load_trained_model
from test_cli import expected_evaluation
from test_pictures import assert_pictures_of, assert_png, grid_pixels, record_grids, rescaled

CLASSES = ("red-top", "blue-bottom")


def write_dataset(root, per_class, seed):
    """root/<class>/*.png: 16 x 16 RGB noise with a red square at the top or a blue one at the
    bottom."""
    rng = np.random.default_rng(seed)
    for label, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for index in range(per_class):
            image = rng.integers(0, 80, size=(16, 16, 3), dtype=np.uint8)
            top = rng.integers(0, 4) + (0 if label == 0 else 8)
            left = rng.integers(0, 9)
            image[top : top + 5, left : left + 6, 2 * label] = 255
            Image.fromarray(image).save(root / name / f"{index:03d}.png")


@pytest.fixture(scope="module")
def comparison(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    write_dataset(root / "data" / "train", per_class=40, seed=0)
    write_dataset(root / "data" / "test", per_class=10, seed=1)
    spec = f"folder:{root / 'data'}"
    rows = compare(spec, epochs=1, out_dir=root / "out", seed=0)
    return root, spec, rows


def parse(argv):
    parser = argparse.ArgumentParser(prog="cnnlab")
    add_commands(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def run(argv):
    args = parse(argv)
    args.handler(args)


def test_compare_refuses_to_replace_a_previous_comparison_unless_asked(comparison):
    root, spec, _ = comparison
    out, models = root / "again", ("pixels-linear",)
    compare(spec, epochs=1, out_dir=out, models=models)
    before = (out / "pixels-linear" / "model.safetensors").read_bytes()
    with pytest.raises(ValueError, match="already holds the runs pixels-linear.*--overwrite"):
        compare(spec, epochs=1, out_dir=out, models=models)
    assert (out / "pixels-linear" / "model.safetensors").read_bytes() == before
    compare(spec, epochs=1, out_dir=out, models=models, seed=1, overwrite=True)
    assert (out / "pixels-linear" / "model.safetensors").read_bytes() != before


# Parameters counted by hand from each architecture, for 3 x 16 x 16 images and 2 classes.
HOG_DIMS = (16 // 4 - 1) ** 2 * 2 * 2 * 9  # cells of 4 x 4 pixels, 3 x 3 blocks of 2 x 2 cells
PARAMS = {
    "pixels-linear": 3 * 16 * 16 * 2 + 2,  # Linear(768, 2)
    "features-linear": (HOG_DIMS + 10) * 2 + 2,  # Linear(324 HOG + 10 hue bins, 2)
    "mlp": (768 * 512 + 512) + (512 * 256 + 256) + (256 * 2 + 2),
    "cnn": (32 * 3 * 9 + 32) + (64 * 32 * 9 + 64)  # conv 3 -> 32 -> 64, 3 x 3
    + (64 * 4 * 4 * 128 + 128) + (128 * 2 + 2),  # two 2 x 2 poolings: 16 -> 4; Linear 128
    "vit": (64 * 3 * 4 * 4 + 64) + (64 + 17 * 64)  # patches of 4 x 4; class token, positions
    + 6 * ((3 * 64 * 64 + 3 * 64) + (64 * 64 + 64)  # 6 encoder layers: attention,
           + (64 * 128 + 128) + (128 * 64 + 64) + 2 * 2 * 64)  # MLP 128, 2 LayerNorms
    + 2 * 64 + (64 * 2 + 2),  # final LayerNorm, head
}


def test_compare_trains_every_model_and_writes_table_and_chart(comparison):
    """Each row: the parameters counted by hand, the test accuracy computed in the test from
    the saved model's softmax (pixel models) or evaluate's (features), the last epoch's
    validation accuracy; the table and chart show the rows."""
    root, spec, rows = comparison
    assert [row.model for row in rows] == list(MODELS)
    test_set = load_dataset(spec)[1]
    for row in rows:
        assert row.params == PARAMS[row.model] and row.epochs == 1, row
        if row.model == "features-linear":
            assert row.test_accuracy == evaluate_run(row.run_dir)["accuracy"]
        else:
            assert row.test_accuracy == expected_evaluation(row.run_dir, test_set)["accuracy"]
        last = json.loads((Path(row.run_dir) / "metrics.jsonl").read_text().splitlines()[-1])
        assert row.val_accuracy == last["val_accuracy"]
    table = (root / "out" / "comparison.md").read_text()
    assert table == comparison_table(rows, spec)
    for row in rows:
        assert (f"| {row.model} | {row.test_accuracy:.4f} | {row.val_accuracy:.4f} | "
                f"{row.seconds:.1f} | {row.params:,} | 1 |") in table.splitlines()
    assert_png(root / "out" / "comparison.png", (1000, 400))
    features = json.loads((root / "out" / "features-linear" / "model.json").read_text())
    assert features["preprocessing"]["features"]["names"] == ["hog", "color"]
    assert features["preprocessing"]["features"]["dims"] == {"hog": HOG_DIMS, "color": 10}


def test_the_table_cites_the_published_result_for_fashion_mnist():
    rows = [ComparisonRow("cnn", 0.91234, 0.9, 61.0, 1234567, 8, "runs/cnn")]
    table = comparison_table(rows, "fashion-mnist")
    assert "| cnn | 0.9123 | 0.9000 | 61.0 | 1,234,567 | 8 |" in table
    assert "0.926" in table and "HOG + SVM" in table
    assert "0.926" not in comparison_table(rows, "mnist")


def test_summary_command_prints_the_table(capsys):
    run(["summary", "--model", "cnn", "--input-shape", "1,28,28"])
    out = capsys.readouterr().out
    assert "conv1" in out and "maxpool2" in out
    # conv 1 -> 32 and 32 -> 64 (3 x 3), Linear(64 * 7 * 7, 128), Linear(128, 10)
    total = (32 * 9 + 32) + (64 * 32 * 9 + 64) + (64 * 7 * 7 * 128 + 128) + (128 * 10 + 10)
    assert out.rstrip().endswith(f"total parameters: {total:,}")
    run(["summary", "--model", "linear", "--input-shape", "3,32,32", "--json"])
    records = json.loads(capsys.readouterr().out)
    assert records[-1]["output_shape"] == [10] and records[-1]["params"] == 3 * 32 * 32 * 10 + 10


def test_summary_of_a_trained_run_uses_its_input_shape(comparison, capsys):
    root, _, _ = comparison
    run(["summary", str(root / "out" / "cnn"), "--json"])
    records = json.loads(capsys.readouterr().out)
    assert records[0]["output_shape"][1:] == [16, 16] and records[-1]["output_shape"] == [2]


def pngs(folder):
    return {path.name: path for path in folder.glob("*.png")}


def test_viz_writes_every_picture_of_a_cnn_run(comparison, tmp_path, capsys, monkeypatch):
    """Each PNG of the size its grid or figure gives it, not blank; the filters and activation
    maps drawn are the trained model's weights and its layers' outputs for the image."""
    root, _, _ = comparison
    image = root / "data" / "test" / "red-top" / "000.png"
    run_dir = root / "out" / "cnn"
    drawn = record_grids(monkeypatch)
    run(["viz", str(run_dir), "--image", str(image), "--out", str(tmp_path)])
    sizes = {"filters.png": grid_pixels(32), "activations_conv1.png": grid_pixels(32),
             "activations_conv2.png": grid_pixels(64), "receptive_field.png": (500, 500),
             "curves.png": (1000, 400), "confusion.png": (600, 500)}
    written = pngs(tmp_path)
    assert set(written) == set(sizes)
    for name, path in written.items():
        assert_png(path, sizes[name])
    assert capsys.readouterr().out.splitlines() == [str(tmp_path / name) for name in sizes]
    model, metadata = load_trained_model(run_dir)
    pixels = load_image(image, size=(16, 16), channels=3)
    assert_pictures_of(model, pixels, metadata["preprocessing"], drawn)


def test_viz_of_a_linear_run_draws_templates_and_finds_its_own_test_image(comparison, tmp_path,
                                                                           monkeypatch):
    """The templates drawn are the rows of W as colour images, each rescaled on its own."""
    root, _, _ = comparison
    drawn = record_grids(monkeypatch)
    run(["viz", str(root / "out" / "pixels-linear"), "--out", str(tmp_path)])
    assert set(pngs(tmp_path)) == {"templates.png", "curves.png", "confusion.png"}
    assert_png(tmp_path / "templates.png", grid_pixels(2, columns=5))
    model, _ = load_trained_model(root / "out" / "pixels-linear")
    weight = model[1].weight.data.astype(np.float64).reshape(2, 3, 16, 16)
    expected = np.moveaxis(rescaled(weight, (1, 2, 3)), 1, -1)
    assert np.allclose(drawn["templates.png"], expected, atol=1e-6)


def test_viz_and_summary_of_a_features_run(comparison, tmp_path, capsys):
    """A model on features sees no image as it is: only the run's curves and confusion."""
    root, _, _ = comparison
    run(["viz", str(root / "out" / "features-linear"), "--out", str(tmp_path)])
    assert set(pngs(tmp_path)) == {"curves.png", "confusion.png"}
    capsys.readouterr()
    run(["summary", str(root / "out" / "features-linear"), "--json"])
    records = json.loads(capsys.readouterr().out)
    assert records[-1]["output_shape"] == [2]


def test_viz_receptive_field_of_a_named_layer(comparison, tmp_path):
    root, _, _ = comparison
    run(["viz", str(root / "out" / "cnn"), "--layer", "conv1", "--out", str(tmp_path)])
    assert "receptive_field.png" in pngs(tmp_path)


def files_in(folder):
    return {path.name: path.stat().st_mtime_ns for path in folder.iterdir()}


@pytest.mark.parametrize("model, argv, fragments", [
    ("cnn", ["--layer", "conv9"],
     ["--layer must be one of conv1, relu1, maxpool1, conv2, relu2, maxpool2", "'conv9'"]),
    ("pixels-linear", ["--layer", "conv1"], ["--layer", "no spatial layer", "'conv1'"]),
    ("features-linear", ["--layer", "conv1"], ["--layer and --image apply to models on pixels"]),
    ("cnn", ["--index", "99"], ["--index must lie in 0..19, got 99"]),
    ("cnn/best.json", [], ["best.json: viz draws a run: give its RUN_DIR"]),
])
def test_viz_checks_every_option_before_writing_anything(comparison, capsys, model, argv,
                                                         fragments):
    """A bad option: one line naming what is valid, exit 2, and no file written or replaced in
    the run directory (the default output folder)."""
    root, _, _ = comparison
    path = root / "out" / model
    run_dir = path if path.is_dir() else path.parent
    before = files_in(run_dir)
    status = main(["viz", str(path), *argv])
    err = capsys.readouterr().err
    assert status == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err
    assert all(fragment in lines[0] for fragment in fragments), lines[0]
    assert "receptive_field_overlay" not in err
    assert files_in(run_dir) == before
