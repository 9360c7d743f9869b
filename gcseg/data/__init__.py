"""Data: transforms, datasets, palettes and the built-in quickstart dataset.

Importing this package registers every transform and dataset; it does not import Paddle.
"""
from gcseg.data import mmseg_transforms, transforms  # noqa: F401  (register the transforms)
from gcseg.data.datasets import ADE20K, Cityscapes, Dataset, PascalVOC, SegDataset
from gcseg.data.palettes import blend, colorize
from gcseg.data.quickstart import make_quickstart_dataset
from gcseg.data.transforms import Compose

__all__ = ["ADE20K", "Cityscapes", "Compose", "Dataset", "PascalVOC", "SegDataset", "blend",
           "colorize", "make_quickstart_dataset"]
