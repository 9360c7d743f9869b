"""The training data stream: a deterministic, resumable, rank-sharded batch order.

Epoch ``e`` visits the samples in the order of a permutation seeded by ``(seed, e)``; global batch
``b`` of that epoch takes the next ``batch_size * world_size`` indices and rank ``r`` keeps its
own ``batch_size`` of them (the remainder that fills no global batch is dropped). Every index is
handed to the dataset together with its epoch, so ``dataset.set_epoch`` is called in whichever
process loads the sample and augmentation depends only on ``(seed, epoch, idx)``. A resumed run
starts at ``(epoch, batch)`` without loading the batches it skips.

A sample that cannot be read or transformed ends the stream with a one-line
:class:`~gcseg.errors.DataError` in the main process, and so does a loader that produces
nothing for ``timeout`` seconds (see :mod:`gcseg.data.guard`).
"""
from typing import Any, Dict, Iterator, List, Sequence, Tuple

import numpy as np
import paddle

from gcseg.data.guard import (DEFAULT_LOADER_TIMEOUT, WaitedBatches, failure_item, failure_of,
                              load_sample)
from gcseg.errors import DataError

Position = Tuple[int, int]  # (epoch, batch within the epoch)


def epoch_permutation(length: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(length)


class EpochBatchSampler:
    """The batches of one epoch for one rank, from ``start_batch`` on: lists of ``(epoch, idx)``."""

    def __init__(self, length: int, batch_size: int, seed: int, epoch: int, rank: int = 0,
                 world_size: int = 1, start_batch: int = 0) -> None:
        self.length, self.batch_size, self.seed, self.epoch = length, batch_size, seed, epoch
        self.rank, self.world_size, self.start_batch = rank, world_size, start_batch

    @property
    def batches_per_epoch(self) -> int:
        return self.length // (self.batch_size * self.world_size)

    def __len__(self) -> int:
        return max(self.batches_per_epoch - self.start_batch, 0)

    def __iter__(self) -> Iterator[List[Tuple[int, int]]]:
        order = epoch_permutation(self.length, self.seed, self.epoch)
        for batch in range(self.start_batch, self.batches_per_epoch):
            first = (batch * self.world_size + self.rank) * self.batch_size
            yield [(self.epoch, int(idx)) for idx in order[first:first + self.batch_size]]


class EpochIndexedDataset(paddle.io.Dataset):
    """``dataset[(epoch, idx)]``: sets the epoch in the loading process, then reads ``idx``
    (a failure item if that fails, see :func:`~gcseg.data.guard.load_sample`)."""

    def __init__(self, dataset: Any) -> None:
        super().__init__()
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: Tuple[int, int]) -> Dict[str, Any]:
        epoch, idx = key
        self.dataset.set_epoch(epoch)
        return load_sample(self.dataset, idx)


def collate_train(items: Sequence[Dict[str, Any]]) -> Any:
    """Stack images ``[N, 3, H, W]`` and labels ``[N, H, W]``; train crops share one size.
    A batch holding a failure item, or samples of different sizes, becomes a failure item."""
    for item in items:
        if failure_of(item) is not None:
            return item
    shapes = {(item["img"].shape, np.shape(item["label"])) for item in items}
    if len(shapes) > 1:
        sizes = ", ".join(f"{item.get('img_path', '?')} {item['img'].shape[-1]}x"
                          f"{item['img'].shape[-2]}" for item in items)
        return failure_item(f"one training batch holds samples of different sizes ({sizes}); "
                            "the train transforms must give every sample one size (e.g. "
                            "RandomPaddingCrop)")
    images = np.stack([item["img"] for item in items]).astype(np.float32)
    labels = np.stack([item["label"] for item in items]).astype(np.int64)
    return images, labels


class TrainLoader:
    """Endless iterator over training batches ``(images, labels)`` that knows its position.

    ``position`` is the ``(epoch, batch)`` of the next batch to hand out; saving it with a
    checkpoint and passing it back as ``start`` continues the exact same stream.
    """

    def __init__(self, dataset: Any, batch_size: int, seed: int, *, num_workers: int = 0,
                 rank: int = 0, world_size: int = 1, start: Position = (0, 0),
                 timeout: float = DEFAULT_LOADER_TIMEOUT) -> None:
        self.dataset, self.timeout = EpochIndexedDataset(dataset), timeout
        self.batch_size, self.seed, self.num_workers = batch_size, seed, num_workers
        self.rank, self.world_size = rank, world_size
        global_batch = batch_size * world_size
        if len(dataset) < global_batch:
            raise DataError(f"{getattr(dataset, 'dataset_root', 'train_dataset')}: "
                            f"{len(dataset)} training samples, fewer than one batch of "
                            f"{batch_size} x {world_size} process(es)")
        self.batches_per_epoch = len(dataset) // global_batch
        epoch, batch = start
        self.position: Position = (epoch + batch // self.batches_per_epoch,
                                   batch % self.batches_per_epoch)

    def _epoch_loader(self, epoch: int, start_batch: int) -> paddle.io.DataLoader:
        sampler = EpochBatchSampler(len(self.dataset), self.batch_size, self.seed, epoch,
                                    self.rank, self.world_size, start_batch)
        return paddle.io.DataLoader(self.dataset, batch_sampler=sampler,
                                    num_workers=self.num_workers, collate_fn=collate_train)

    def __iter__(self) -> Iterator[Tuple[paddle.Tensor, paddle.Tensor]]:
        while True:
            epoch, start_batch = self.position
            # closed however the epoch ends: training may stop mid-epoch, its workers with it
            with WaitedBatches(self._epoch_loader(epoch, start_batch), self.timeout,
                               "training data loader") as batches:
                for batch, (images, labels) in enumerate(batches, start_batch + 1):
                    self.position = ((epoch + 1, 0) if batch == self.batches_per_epoch
                                     else (epoch, batch))
                    yield images, labels
