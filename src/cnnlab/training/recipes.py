"""The pieces of a training run, made from its configuration: data, augmentation, optimiser,
learning-rate schedule.

Data: the validation set is a seeded random `val_size` images of the training set; then
`limit_train` keeps the first N of the remaining training images (for quick runs). The test set
is the dataset's own, used once at the end.
"""

import numpy as np

from cnnlab.data import (
    Compose,
    RandomCrop,
    RandomHorizontalFlip,
    RandomTranslate,
    load_dataset,
    train_val_split,
)
from cnnlab.optim import SGD, Adam, AdamW, RMSprop, lr_scheduler
from cnnlab.training.config import TrainConfig, derived_seed


def prepare_data(config: TrainConfig):
    """(train, val, test) ImageDatasets for a resolved config; see the module docstring."""
    image_size = tuple(config.image_size) if config.image_size else None
    full, test = load_dataset(config.dataset, data_dir=config.data_dir, download=config.download,
                              image_size=image_size, channels=config.channels)
    try:
        train, val = train_val_split(full, config.val_size, derived_seed(config.seed, "split"))
    except ValueError as error:
        raise ValueError(f"--val-size {config.val_size}: {error}") from error
    if config.limit_train is not None and config.limit_train < len(train):
        train = train.subset(np.arange(config.limit_train))
    return train, val, test


def augmentation(dataset: str, image_shape):
    """The training augmentation for a dataset: random shifts for digits (a flipped digit is
    another shape), flips and padded crops (2 pixels at 28, 4 at 32) for clothes and objects."""
    height = image_shape[1]
    if dataset == "mnist":
        return RandomTranslate(2)
    return Compose([RandomHorizontalFlip(), RandomCrop(padding=2 if height < 32 else height // 8)])


def make_optimizer(config: TrainConfig, parameters):
    """The optimiser named by `config.optimizer`; SGD uses Nesterov momentum when momentum > 0,
    Adam and AdamW ignore `momentum` (their betas are PyTorch's defaults)."""
    parameters = list(parameters)
    if config.optimizer == "sgd":
        return SGD(parameters, lr=config.lr, momentum=config.momentum, nesterov=config.momentum > 0,
                   weight_decay=config.weight_decay)
    if config.optimizer == "rmsprop":
        return RMSprop(parameters, lr=config.lr, momentum=config.momentum,
                       weight_decay=config.weight_decay)
    optimizer = Adam if config.optimizer == "adam" else AdamW
    return optimizer(parameters, lr=config.lr, weight_decay=config.weight_decay)


def make_scheduler(config: TrainConfig, optimizer, epochs=None):
    """The learning-rate schedule over `epochs` (default: config.epochs), stepped once per
    epoch: cosine to zero, a tenth every third of the epochs, linear down to 1%, or constant;
    after `config.warmup_epochs` W epochs (at most epochs - 1) of linear warm-up, lr / (W + 1),
    2 lr / (W + 1), ..., W lr / (W + 1), when the schedule takes over for the other epochs."""
    epochs = config.epochs if epochs is None else epochs
    warmup = min(config.warmup_epochs or 0, epochs - 1)
    if warmup == 0:
        return _main_schedule(config.schedule, optimizer, epochs)
    ramp = lr_scheduler.LinearLR(optimizer, start_factor=1 / (warmup + 1), total_iters=warmup)
    rest = _main_schedule(config.schedule, optimizer, epochs - warmup)
    return lr_scheduler.SequentialLR(optimizer, [ramp, rest], milestones=[warmup])


def _main_schedule(schedule: str, optimizer, epochs: int):
    if schedule == "cosine":
        return lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    if schedule == "step":
        return lr_scheduler.StepLR(optimizer, step_size=max(1, epochs // 3), gamma=0.1)
    end = 0.01 if schedule == "linear" else 1.0
    return lr_scheduler.LinearLR(optimizer, start_factor=1.0, end_factor=end, total_iters=epochs)


def restart_schedule(config: TrainConfig, optimizer, epochs: int, position: int = 0):
    """A new schedule of `config.schedule`'s kind over `epochs` epochs, started from the base
    learning rate and stepped `position` times: from here on the optimiser gets, bit for bit,
    the learning rates a run of `epochs` epochs has from its epoch `position` on.

    A run extended past its schedule's end gets one over the added epochs (position 0); a run
    resumed before its end with another --epochs, the whole run's, at the epoch reached."""
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"]
    scheduler = make_scheduler(config, optimizer, epochs)
    for _ in range(position):
        scheduler.step()
    return scheduler
