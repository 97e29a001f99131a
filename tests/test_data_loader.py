"""Splits, channel statistics, the loader (order, normalisation, determinism, exact resume)
and the batch augmentations, on small synthetic datasets with known answers."""

import json

import numpy as np
import pytest

from cnnlab.data import (
    Compose,
    DataLoader,
    ImageDataset,
    RandomCrop,
    RandomHorizontalFlip,
    RandomTranslate,
    channel_stats,
    train_val_split,
)


def make_dataset(n=50, shape=(2, 6, 5), seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
    return ImageDataset(images, np.arange(n) % 10, [f"c{k}" for k in range(10)])


def collect(loader, batches=None):
    out = []
    for index, (x, y) in enumerate(loader):
        out.append((x.copy(), y.copy()))
        if batches is not None and index + 1 == batches:
            break
    return out


def assert_same_batches(first, second):
    assert len(first) == len(second)
    for (x1, y1), (x2, y2) in zip(first, second, strict=True):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)


# ---------------------------------------------------------------- dataset, split, statistics


def test_dataset_validates_and_subsets():
    data = make_dataset(10)
    part = data.subset([3, 1])
    np.testing.assert_array_equal(part.images, data.images[[3, 1]])
    np.testing.assert_array_equal(part.labels, [3, 1])
    assert len(part) == 2 and part.classes == data.classes
    with pytest.raises(ValueError, match="uint8"):
        ImageDataset(data.images.astype(np.float32), data.labels, data.classes)
    with pytest.raises(ValueError, match="labels must lie in 0..9"):
        ImageDataset(data.images, data.labels + 5, data.classes)


@pytest.mark.parametrize("val_size, expected", [(10, 10), (0.25, 12)])
def test_train_val_split_is_seeded_disjoint_and_complete(val_size, expected):
    data = make_dataset(50)
    train, val = train_val_split(data, val_size, seed=3)
    assert len(val) == expected and len(train) == 50 - expected
    # images are told apart by their pixels: every original appears exactly once
    rows = np.concatenate([train.images, val.images]).reshape(50, -1)
    assert sorted(map(bytes, rows)) == sorted(map(bytes, data.images.reshape(50, -1)))
    _, val_again = train_val_split(data, val_size, seed=3)
    np.testing.assert_array_equal(val.images, val_again.images)
    _, val_other = train_val_split(data, val_size, seed=4)
    assert not np.array_equal(val.images, val_other.images)


@pytest.mark.parametrize("bad", [0, 50, 1.0, 0.0, -3, True, "10"])
def test_train_val_split_rejects_impossible_sizes(bad):
    with pytest.raises(ValueError, match="split"):
        train_val_split(make_dataset(50), bad, seed=0)


def test_channel_stats_match_a_direct_float64_computation_across_chunks():
    data = make_dataset(37, shape=(3, 4, 4), seed=1)
    mean, std = channel_stats(data, chunk_size=5)
    pixels = data.images.astype(np.float64) / 255.0
    np.testing.assert_allclose(mean, pixels.mean(axis=(0, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(std, pixels.std(axis=(0, 2, 3)), rtol=1e-6)
    assert mean.dtype == std.dtype == np.float32 and mean.shape == (3,)


def test_channel_stats_floor_a_constant_channels_std_at_min_std():
    """Channel 0 is constant (std 0, floored), channel 1 half 0 and half 255 (std 0.5, kept)."""
    images = np.full((4, 2, 2, 2), 51, np.uint8)
    images[:, 1] = [[0, 255], [255, 0]]
    data = ImageDataset(images, np.zeros(4), ["a"])
    mean, std = channel_stats(data)
    np.testing.assert_allclose(mean, [0.2, 0.5], rtol=1e-7)
    np.testing.assert_array_equal(std, np.float32([1e-3, 0.5]))
    np.testing.assert_array_equal(channel_stats(data, min_std=0.25)[1], np.float32([0.25, 0.5]))


# ---------------------------------------------------------------- loader


def test_loader_without_shuffle_gives_the_dataset_in_order_scaled_to_unit_range():
    data = make_dataset(23)
    loader = DataLoader(data, batch_size=5)
    batches = collect(loader)
    assert len(loader) == 5 and [len(y) for _, y in batches] == [5, 5, 5, 5, 3]
    x = np.concatenate([x for x, _ in batches])
    assert x.dtype == np.float32 and x.shape == (23, 2, 6, 5)
    np.testing.assert_array_equal(x, data.images.astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(np.concatenate([y for _, y in batches]), data.labels)
    assert batches[0][1].dtype == np.int64


def test_loader_normalises_per_channel_exactly_as_torchvision():
    import torch  # the test oracle, imported only here
    data = make_dataset(8)
    mean, std = [0.4914, 0.4822], [0.247, 0.2435]
    x, _ = next(iter(DataLoader(data, 8, mean=mean, std=std)))
    # torchvision's ToTensor (div by 255) then Normalize (sub mean, div std), in float32
    reference = torch.from_numpy(data.images).float().div(255)
    mean_t, std_t = torch.tensor(mean)[:, None, None], torch.tensor(std)[:, None, None]
    reference = reference.sub(mean_t).div(std_t)
    np.testing.assert_array_equal(x, reference.numpy())
    with pytest.raises(ValueError, match="shape"):
        DataLoader(data, 8, mean=[0.5], std=[0.2])


def seeded_batches(data, batch_size, seed, epoch, count=None):
    """The documented order: epoch e is data[default_rng([seed, e, 0]).permutation(N)], cut
    into batches (the first `count` of them), scaled to [0, 1]."""
    order = np.random.default_rng([seed, epoch, 0]).permutation(len(data))
    starts = range(0, len(data), batch_size)
    return [(data.images[order[start:start + batch_size]].astype(np.float32) / np.float32(255),
             data.labels[order[start:start + batch_size]]) for start in starts][:count]


def test_drop_last():
    data = make_dataset(23)
    loader = DataLoader(data, batch_size=5, drop_last=True, shuffle=True, seed=0)
    assert len(loader) == 4
    assert_same_batches(collect(loader), seeded_batches(data, 5, seed=0, epoch=0, count=4))


def test_shuffle_is_the_seeded_permutation_of_each_epoch():
    data = make_dataset(30)
    first = DataLoader(data, 7, shuffle=True, seed=11)
    epoch0, epoch1 = collect(first), collect(first)
    assert_same_batches(epoch0, seeded_batches(data, 7, seed=11, epoch=0))
    assert_same_batches(epoch1, seeded_batches(data, 7, seed=11, epoch=1))
    assert not np.array_equal(epoch0[0][0], epoch1[0][0])
    other = collect(DataLoader(data, 7, shuffle=True, seed=12))
    assert_same_batches(other, seeded_batches(data, 7, seed=12, epoch=0))
    assert not np.array_equal(other[0][0], epoch0[0][0])
    from_rng = DataLoader(data, 7, shuffle=True, rng=np.random.default_rng(5))
    seed = int(np.random.default_rng(5).integers(0, 2**63))  # the seed is drawn from rng
    assert from_rng.seed == seed
    assert_same_batches(collect(from_rng), seeded_batches(data, 7, seed=seed, epoch=0))


AUGMENT = Compose([RandomCrop(padding=2), RandomHorizontalFlip(), RandomTranslate(1)])


@pytest.mark.parametrize("stop_after", [3, 5, 8])  # mid-epoch, at the epoch's end, next epoch
def test_resume_from_a_saved_state_repeats_the_uninterrupted_run(stop_after):
    data = make_dataset(23)
    settings = dict(batch_size=5, shuffle=True, seed=7, augment=AUGMENT)
    uninterrupted = DataLoader(data, **settings)
    reference = collect(uninterrupted) + collect(uninterrupted) + collect(uninterrupted)

    interrupted = DataLoader(data, **settings)
    seen = collect(interrupted, batches=min(stop_after, 5))
    if stop_after > 5:
        seen += collect(interrupted, batches=stop_after - 5)
    state = json.loads(json.dumps(interrupted.state_dict()))

    resumed = DataLoader(data, **{**settings, "seed": 999})  # the saved seed wins
    resumed.load_state_dict(state)
    rest = []
    while len(seen) + len(rest) < len(reference):
        rest += collect(resumed)
    assert_same_batches(seen + rest, reference)


def test_resume_with_a_seed_drawn_from_entropy():
    data = make_dataset(12)
    first = DataLoader(data, 4, shuffle=True)
    collect(first, batches=1)
    second = DataLoader(data, 4, shuffle=True)
    second.load_state_dict(first.state_dict())
    assert_same_batches(collect(second), collect(first))


def test_an_interrupted_loop_continues_its_epoch_unless_rewound():
    data = make_dataset(20)
    loader = DataLoader(data, 5, shuffle=True, seed=2)
    whole_epoch = collect(DataLoader(data, 5, shuffle=True, seed=2))
    first_two = collect(loader, batches=2)
    assert_same_batches(first_two + collect(loader), whole_epoch)
    collect(loader, batches=1)  # epoch 1, left after one batch
    loader.set_epoch(0)
    assert_same_batches(collect(loader), whole_epoch)


def test_load_state_dict_refuses_a_different_configuration():
    state = DataLoader(make_dataset(20), 5, shuffle=True, seed=0).state_dict()
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader(make_dataset(20), 4, shuffle=True, seed=0).load_state_dict(state)
    with pytest.raises(ValueError, match="num_samples"):
        DataLoader(make_dataset(21), 5, shuffle=True, seed=0).load_state_dict(state)


def test_augmentation_of_batch_b_uses_its_own_seeded_generator():
    """Batch b of epoch e is augment(images, default_rng([seed, e, 1, b])), then scaled; the
    labels stay."""
    data = make_dataset(40)
    loader = DataLoader(data, 8, seed=1, augment=AUGMENT)
    for epoch in (0, 1):
        for index, (x, y) in enumerate(collect(loader)):
            images = data.images[index * 8:(index + 1) * 8]
            expected = AUGMENT(images, np.random.default_rng([1, epoch, 1, index]))
            np.testing.assert_array_equal(x, expected.astype(np.float32) / np.float32(255))
            np.testing.assert_array_equal(y, data.labels[index * 8:(index + 1) * 8])
            assert not np.array_equal(expected, images)


# ---------------------------------------------------------------- augmentations


def shifted(image, dy, dx):
    """Naive reference: image (C, H, W) moved by (dy, dx), zero fill."""
    out = np.zeros_like(image)
    height, width = image.shape[1:]
    for i in range(height):
        for j in range(width):
            if 0 <= i - dy < height and 0 <= j - dx < width:
                out[:, i, j] = image[:, i - dy, j - dx]
    return out


def test_random_translate_shifts_each_image_within_range_and_varies():
    batch = make_dataset(64, shape=(2, 7, 6)).images
    out = RandomTranslate(2)(batch, np.random.default_rng(0))
    shifts = set()
    for image, result in zip(batch, out, strict=True):
        matches = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                   if np.array_equal(shifted(image, dy, dx), result)]
        assert matches, "each output must be its input shifted by at most 2 pixels"
        shifts.add(matches[0])
    assert len(shifts) > 5


def test_random_crop_cuts_windows_of_the_padded_image():
    batch = make_dataset(32, shape=(1, 6, 6)).images
    crop = RandomCrop(size=(4, 5), padding=1)
    out = crop(batch, np.random.default_rng(0))
    assert out.shape == (32, 1, 4, 5)
    padded = np.pad(batch, ((0, 0), (0, 0), (1, 1), (1, 1)))
    corners = set()
    for image, result in zip(padded, out, strict=True):
        found = [(top, left) for top in range(5) for left in range(4)
                 if np.array_equal(image[:, top : top + 4, left : left + 5], result)]
        assert found
        corners.add(found[0])
    assert len(corners) > 5
    with pytest.raises(ValueError, match="larger than the padded image"):
        RandomCrop(size=9)(batch, np.random.default_rng(0))


@pytest.mark.parametrize("p", [0.0, 0.5, 1.0])
def test_horizontal_flip(p):
    batch = make_dataset(200, shape=(3, 4, 5)).images
    out = RandomHorizontalFlip(p)(batch, np.random.default_rng(0))
    flipped = np.all(out == batch[..., ::-1], axis=(1, 2, 3))
    kept = np.all(out == batch, axis=(1, 2, 3))
    assert np.all(flipped | kept)
    assert flipped.mean() == pytest.approx(p, abs=0.1)


def test_augmentations_are_a_function_of_the_generator_and_work_on_floats():
    batch = make_dataset(16).images.astype(np.float32)
    first = AUGMENT(batch, np.random.default_rng(3))
    np.testing.assert_array_equal(first, AUGMENT(batch, np.random.default_rng(3)))
    assert first.dtype == np.float32 and first.shape == batch.shape
