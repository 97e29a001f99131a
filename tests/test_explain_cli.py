"""`cnnlab explain`, viz's explaining flags and evaluate's metrics, end to end on a small CNN
trained on a generated folder of PNGs, each checked against the library: the map in each
picture is cnnlab.explain's on the image prepared as `predict` prepares it, the top patches
are top_patches', the mistakes are cnnlab.metrics', and evaluate's precision, recall, F1 and
top-k accuracy are cnnlab.metrics' on the same predictions. Every bad option ends in one line,
exit status 2, with nothing written."""

import json

import numpy as np
import pytest
from PIL import Image

import cnnlab
from cnnlab import metrics
from cnnlab.analysis import plots, summary
from cnnlab.cli import main
from cnnlab.data import load_dataset, load_image
from cnnlab.explain import crop_patches, grad_cam, occlusion, saliency, top_patches
from cnnlab.nn import functional as F
from cnnlab.training.trained import load_trained
from test_cli import CLASSES, assert_one_line_error, draw, run_cli
from test_train_viz import assert_png_with_content

SPATIAL = "conv1, relu1, maxpool1, conv2, relu2, maxpool2"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """root/train/<class>/ (16 grey 12 x 12 images each) and root/test/<class>/ (6 each, two
    of them drawn as the next class's shape: mistakes the model will make)."""
    root = tmp_path_factory.mktemp("shapes")
    rng = np.random.default_rng(0)
    for label, kind in enumerate(CLASSES):
        for split, count in (("train", 16), ("test", 6)):
            (root / split / kind).mkdir(parents=True)
            for index in range(count):
                shape = CLASSES[(label + 1) % 3] if split == "test" and index < 2 else kind
                draw(shape, rng).save(root / split / kind / f"{index:02d}.png")
    return root


@pytest.fixture(scope="module")
def run(folder, tmp_path_factory):
    """A finished run of the default CNN (2 epochs) on the folder."""
    run_dir = tmp_path_factory.mktemp("runs") / "cnn"
    assert main(["train", "--dataset", f"folder:{folder}", "--model", "cnn", "--epochs", "2",
                 "--batch-size", "8", "--lr", "0.02", "--quiet", "--out", str(run_dir)]) == 0
    return run_dir


@pytest.fixture
def figures(monkeypatch):
    """Every Matplotlib figure plots writes, kept (and still written)."""
    kept, save = [], plots._save

    def keep(figure, path):
        kept.append(figure)
        return save(figure, path)

    monkeypatch.setattr(plots, "_save", keep)
    return kept


def _inputs(run_dir, files):
    """The files as the model's input, computed here: pixels resized and made grey by
    load_image, then (pixel / 255 - mean) / std with the run's statistics, in float32 in
    that order (as the training loader computes it)."""
    model, metadata, _ = load_trained(run_dir)
    prep = metadata["preprocessing"]
    pixels = np.stack([load_image(file, size=prep["input_size"], channels=1) for file in files])
    mean, std = np.float32(prep["mean"][0]), np.float32(prep["std"][0])
    return model, (pixels.astype(np.float32) / np.float32(255) - mean) / std, metadata["classes"]


@pytest.fixture(scope="module")
def images(folder, tmp_path_factory):
    """A test image of the folder and a 30 x 30 RGB drawing (resized and made grey)."""
    rgb = tmp_path_factory.mktemp("images") / "big cross.png"
    draw("cross", np.random.default_rng(5), size=30).convert("RGB").save(rgb)
    return [folder / "test" / "circle" / "05.png", rgb]


@pytest.mark.parametrize(("method", "extra"), [("saliency", []), ("gradcam", []),
                                               ("gradcam", ["--layer", "conv1"]),
                                               ("occlusion", [])])
def test_each_picture_holds_the_library_map_of_the_prepared_image(run, images, method, extra,
                                                                  tmp_path, capsys, figures):
    out = tmp_path / "pictures"
    status, stdout, err = run_cli(["explain", run, *images, "--method", method, *extra,
                                   "--out", out, "--json"], capsys)
    assert status == 0, err
    result = json.loads(stdout)
    model, x, classes = _inputs(run, images)
    expected = {"saliency": lambda: saliency(model, x),
                "gradcam": lambda: grad_cam(model, x, extra[1] if extra else "relu2"),
                "occlusion": lambda: occlusion(model, x, patch=4, stride=2)}[method]()
    with cnnlab.no_grad():
        probabilities = F.softmax(model(cnnlab.Tensor(x)), dim=1).data
    assert result["method"] == method
    assert result["layer"] == ((extra[1] if extra else "relu2") if method == "gradcam" else None)
    assert len(figures) == 2
    for item, figure, image, heat, row in zip(result["explanations"], figures, images, expected,
                                              probabilities, strict=True):
        assert item["image"] == str(image)
        assert item["picture"] == str(out / f"{image.stem}_{method}.png")
        assert_png_with_content(item["picture"])
        assert item["map_shape"] == list(heat.shape) == ([5, 5] if method == "occlusion"
                                                          else [12, 12])
        shown = figure.axes[1].get_images()[-1].get_array()
        np.testing.assert_array_equal(shown, heat.astype(np.float64))
        best = int(row.argmax())
        assert item["target"] == {"class": classes[best], "index": best}
        assert [p["index"] for p in item["predictions"]] == list(np.argsort(-row)[:3])
        np.testing.assert_allclose([p["probability"] for p in item["predictions"]],
                                   np.sort(row)[::-1][:3], rtol=1e-6)
        title = figure.get_suptitle()
        assert title.startswith(f"{image.name}: {classes[best]} {row[best]:.3f}, "), title
    assert sorted(path.name for path in out.iterdir()) == sorted(
        f"{image.stem}_{method}.png" for image in images)


def test_a_target_by_name_or_index_explains_that_class(run, images, tmp_path, capsys, figures):
    model, x, classes = _inputs(run, images)
    expected = grad_cam(model, x, "relu2", target=2)
    for target in ("stripes", "2"):
        status, stdout, err = run_cli(["explain", run, *images, "--target", target, "--out",
                                       tmp_path, "--json"], capsys)
        assert status == 0, err
        result = json.loads(stdout)
        assert [item["target"]["class"] for item in result["explanations"]] == ["stripes"] * 2
        for figure, heat in zip(figures[-2:], expected, strict=True):
            np.testing.assert_array_equal(figure.axes[1].get_images()[-1].get_array(), heat)
    status, stdout, _ = run_cli(["explain", run, images[0], "--out", tmp_path], capsys)
    assert status == 0 and stdout.startswith(f"{tmp_path / '05_gradcam.png'}: {images[0]}, ")


@pytest.fixture(scope="module")
def features_run(folder, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "features"
    assert main(["train", "--dataset", f"folder:{folder}", "--model", "linear", "--features",
                 "hog", "--epochs", "1", "--quiet", "--out", str(run_dir)]) == 0
    return run_dir


def test_bad_explain_options_exit_2_with_nothing_written(run, features_run, images, tmp_path,
                                                         capsys):
    out = tmp_path / "never"
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    again = tmp_path / "again"
    again.mkdir()
    Image.open(images[0]).save(again / "05.png")
    cases = [
        (["--method", "lime"], ["--method", "'lime'", "'saliency', 'gradcam', 'occlusion'"]),
        (["--layer", "conv9"], ["no spatial layer 'conv9'", SPATIAL]),
        (["--layer", "linear1"], ["no spatial layer 'linear1'", SPATIAL]),
        (["--method", "saliency", "--layer", "conv1"], ["--method saliency takes none"]),
        (["--target", "square"], ["--target", "square", "circle, cross, stripes"]),
        (["--target", "3"], ["an index in 0..2", "circle, cross, stripes"]),
        (["--target", "-1"], ["an index in 0..2"]),
    ]
    for flags, fragments in cases:
        assert_one_line_error(*run_cli(["explain", run, *images, *flags, "--out", out],
                                       capsys)[::2], *fragments)
    for files, fragments in [([tmp_path / "missing.png"], ["missing.png"]),
                             ([images[0], text], ["notes.png"]),
                             ([images[0], again / "05.png"], ["05_gradcam.png"])]:
        assert_one_line_error(*run_cli(["explain", run, *files, "--out", out], capsys)[::2],
                              *fragments)
    assert not out.exists()
    assert_one_line_error(*run_cli(["explain", run, *images, "--out", a_file], capsys)[::2],
                          "not a folder")
    assert_one_line_error(*run_cli(["explain", run, *images, "--out", a_file / "sub"],
                                   capsys)[::2], "not a writable folder")
    assert_one_line_error(*run_cli(["explain", features_run, *images, "--out", out],
                                   capsys)[::2], "hand-made features (hog)")
    assert not out.exists()


# ----- viz: top patches, feature visualisation, mistakes --------------------------------------
def _test_set(folder):
    return load_dataset(f"folder:{folder}", image_size=(12, 12), channels=1)[1]


def test_viz_draws_the_library_top_patches_features_and_mistakes(run, folder, tmp_path, capsys,
                                                                 figures):
    status, stdout, err = run_cli(["viz", run, "--top-patches", "relu2", "--features", "conv1",
                                   "--misclassified", "--out", tmp_path], capsys)
    assert status == 0, err
    names = ["top_patches_relu2.png", "misclassified.png", "features_conv1.png"]
    assert stdout.split() == [str(tmp_path / name) for name in names]
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(names)
    for name in names:
        assert_png_with_content(tmp_path / name)
    model, metadata, inputs = load_trained(run)
    test = _test_set(folder)
    x = inputs.transform(test.images)
    record = next(r for r in summary(model, (1, 12, 12)) if r.name == "relu2")
    expected = np.stack([crop_patches(test.images / 255, top_patches(model, x, "relu2", c),
                                      record.receptive_field, fill=0.5)[:, 0]
                         for c in range(16)])  # the first block: channels 0..15
    shown = figures[0].axes[0].get_images()[0].get_array()
    np.testing.assert_array_equal(shown, plots.mosaic(expected))
    with cnnlab.no_grad():
        probabilities = F.softmax(model(cnnlab.Tensor(x)), dim=1).data
    groups = metrics.misclassified(probabilities, test.labels, per_pair=8, pairs=10)
    assert len(groups) >= 3  # the test images drawn as another class's shape, at least
    rows = figures[1].axes
    columns = len(rows) // len(groups)
    for row, group in enumerate(groups):
        first = rows[row * columns]
        assert first.get_ylabel() == (f"{metadata['classes'][group.true]}\nas "
                                      f"{metadata['classes'][group.predicted]}\n({group.count})")
        assert first.get_title() == (f"{group.predicted_probability[0]:.2f} / "
                                     f"{group.true_probability[0]:.2f}")
        np.testing.assert_array_equal(first.get_images()[0].get_array(),
                                      test.images[group.indices[0], 0] / 255)
    assert len(figures[2].axes) == 32  # one cell per channel of conv1


def test_bad_viz_options_exit_2_with_nothing_written(run, features_run, tmp_path, capsys):
    out = tmp_path / "never"
    for flags, fragments in [
        (["--top-patches", "linear1"], ["--top-patches: no spatial layer 'linear1'", SPATIAL]),
        (["--features", "conv7", "--misclassified"], ["--features: no layer 'conv7'",
                                                      "linear1"]),
        (["--misclassified", "--top-patches", "relu9"], ["relu9"]),
        (["--features", "flatten1"], ["--features: no layer 'flatten1'",
                                      f"{SPATIAL}, linear1, relu3, dropout1, linear2"]),
    ]:
        assert_one_line_error(*run_cli(["viz", run, *flags, "--out", out], capsys)[::2],
                              *fragments)
    assert_one_line_error(*run_cli(["viz", features_run, "--misclassified", "--out", out],
                                   capsys)[::2], "hand-made features")
    assert_one_line_error(*run_cli(["viz", "pretrained:cnn-fashion-mnist", "--misclassified"],
                                   capsys)[::2], "give --out DIR")
    assert not out.exists()


# ----- evaluate: precision, recall, F1, top-k -------------------------------------------------
def test_evaluate_reports_the_metrics_of_cnnlab_metrics(run, folder, capsys):
    status, stdout, err = run_cli(["evaluate", run, "--json", "--top-k", "1,2"], capsys)
    assert status == 0, err
    result = json.loads(stdout)
    model, _, inputs = load_trained(run)
    test = _test_set(folder)
    with cnnlab.no_grad():
        scores = model(cnnlab.Tensor(inputs.transform(test.images))).data
    confusion = metrics.confusion_matrix(test.labels, scores.argmax(axis=1), len(CLASSES))
    assert result["confusion_matrix"] == confusion.tolist()
    expected = metrics.precision_recall_f1(confusion)
    for k, name in enumerate(CLASSES):
        assert result["per_class"][name] == {
            "precision": expected.precision[k], "recall": expected.recall[k],
            "f1": expected.f1[k], "support": expected.support[k]}
    assert result["macro"]["f1"] == pytest.approx(expected.f1.mean(), abs=1e-15)
    assert result["top_k_accuracy"] == {
        str(k): metrics.top_k_accuracy(scores, test.labels, k) for k in (1, 2)}
    assert result["top_k_accuracy"]["1"] == result["accuracy"]
    status, stdout, err = run_cli(["evaluate", run], capsys)
    assert status == 0, err
    lines = stdout.splitlines()
    assert lines[1] == "  ".join(f"top-{k} {metrics.top_k_accuracy(scores, test.labels, k):.4f}"
                                 for k in (1, 3))  # 1, 3 and 5, up to the 3 classes
    assert lines[3].split()[:4] == ["circle", f"{expected.precision[0]:.4f}",
                                    f"{expected.recall[0]:.4f}", f"{expected.f1[0]:.4f}"]
    for flags, fragment in [(["--top-k", "4"], "--top-k must lie in 1..3, got 4"),
                            (["--top-k", "0"], "--top-k must lie in 1..3, got 0"),
                            (["--top-k", "two"], "expected K or K,K,...")]:
        assert_one_line_error(*run_cli(["evaluate", run, *flags], capsys)[::2], fragment)
