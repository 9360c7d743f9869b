"""Datasets: PaddleSeg-style file lists, Cityscapes, PASCAL VOC 2012 (+ SBD aug), ADE20K.

``dataset[i]`` follows the "Dataset item" contract of docs/ARCHITECTURE.md. Every dataset
checks at construction that its root and every listed file exist, and checks each label's
values when the sample is read (reading all labels up front would cost minutes on Cityscapes).
"""
import contextlib
import contextvars
import os
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from gcseg.data import palettes
from gcseg.data.images import read_image, read_label
from gcseg.data.transforms import Compose, check_same_size
from gcseg.errors import ConfigError, DataError
from gcseg.registry import DATASETS

FileList = List[Tuple[str, Optional[str]]]
MAX_LISTED = 3


def _missing_message(what: str, missing: Sequence[str], total: int) -> str:
    shown = ", ".join(missing[:MAX_LISTED])
    more = f" and {len(missing) - MAX_LISTED} more" if len(missing) > MAX_LISTED else ""
    return f"{len(missing)} of {total} {what} missing: {shown}{more}"


_FILE_CHECKS_DEFERRED = contextvars.ContextVar("gcseg_file_checks_deferred", default=False)


@contextlib.contextmanager
def deferred_file_checks() -> Iterator[None]:
    """Build datasets without the file-existence check, for a caller that checks every entry
    itself and reports all problems at once (gcseg.data.check)."""
    token = _FILE_CHECKS_DEFERRED.set(True)
    try:
        yield
    finally:
        _FILE_CHECKS_DEFERRED.reset(token)


def check_files_exist(file_list: FileList, source: str) -> None:
    """DataError naming the first few missing images/labels of ``file_list`` and their count."""
    if _FILE_CHECKS_DEFERRED.get():
        return
    paths = [p for pair in file_list for p in pair if p is not None]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise DataError(f"{source}: {_missing_message('files', missing, len(paths))}")


def require_dir(path: Path, hint: str) -> None:
    if not path.is_dir():
        raise DataError(f"{path}: directory not found ({hint})")


def sample_seed(seed: int, epoch: int, idx: int) -> int:
    """One 32-bit numpy seed from (seed, epoch, idx), well mixed by SeedSequence."""
    return int(np.random.SeedSequence([seed, epoch, idx]).generate_state(1)[0])


class SegDataset:
    """Common reading, checking and seeding; subclasses fill ``file_list``.

    Training modes transform image and label together; val/test modes transform the image only
    and return the label at its original resolution (as PaddleSeg does).
    """

    NUM_CLASSES: Optional[int] = None
    CLASS_NAMES: Optional[Sequence[str]] = None  # None: class_0, class_1, ...
    PALETTE: Optional[np.ndarray] = None  # None: the generic (VOC) colour map
    IGNORE_INDEX = 255
    MODES: Tuple[str, ...] = ("train", "val", "test")

    def __init__(self, transforms: Sequence[Callable], dataset_root: str, mode: str,
                 num_classes: int, ignore_index: int = 255) -> None:
        name = type(self).__name__
        if not isinstance(mode, str) or mode.lower() not in self.MODES:
            raise ConfigError(f"{name}.mode: expected one of {', '.join(self.MODES)}, "
                              f"got {mode!r}")
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ConfigError(f"{name}.num_classes: expected a positive int, got {num_classes!r}")
        if not isinstance(transforms, (list, tuple)):
            raise ConfigError(f"{name}.transforms: expected a list of transforms, "
                              f"got {transforms!r}")
        if dataset_root is None or not Path(dataset_root).is_dir():
            raise DataError(f"{dataset_root}: {name} dataset_root is not a directory")
        self.dataset_root = str(dataset_root)
        self.transforms = Compose(transforms)
        self.mode = mode.lower()
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.file_list: FileList = []
        self.class_names = list(self.CLASS_NAMES or palettes.generic_class_names(num_classes))
        self.palette = self.palette_for(num_classes)
        self.seed = 0
        self.epoch = 0

    @classmethod
    def palette_for(cls, num_classes: int) -> np.ndarray:
        """The class colours, ``uint8 [num_classes, 3]``, known without any dataset file (for
        predicting images of a dataset that is not on disk)."""
        if cls.PALETTE is not None:
            return cls.PALETTE.copy()
        return palettes.generic_palette(num_classes)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.file_list)

    def load_label(self, path: str) -> np.ndarray:
        """The label file as class indices (ADE20K overrides this to shift its classes)."""
        return read_label(path)

    def check_label(self, label: np.ndarray, path: str) -> np.ndarray:
        """Reject values that are neither a class nor ``ignore_index``; return a compact copy."""
        values = np.unique(label)
        bad = values[((values >= self.num_classes) & (values != self.ignore_index)) | (values < 0)]
        if bad.size:
            raise DataError(f"{path}: label values {bad[:10].tolist()} are neither class ids "
                            f"0..{self.num_classes - 1} nor ignore_index {self.ignore_index}")
        dtype = np.uint8 if max(self.num_classes - 1, self.ignore_index) <= 255 else np.int32
        return label.astype(dtype)

    def __getitem__(self, idx: int) -> Dict[str, Any]:
        img_path, label_path = self.file_list[idx]
        image = read_image(img_path, self.transforms.to_rgb)
        data: Dict[str, Any] = {"img": image, "trans_info": [], "img_path": img_path,
                                "label_path": label_path or ""}
        label = None
        if label_path:
            label = self.check_label(self.load_label(label_path), label_path)
            check_same_size(image, label, img_path, label_path)
        if self.mode not in ("val", "test"):  # train, trainval, trainaug
            np.random.seed(sample_seed(self.seed, self.epoch, idx))
            data["label"] = label
            return self.transforms(data)
        data = self.transforms(data)
        if label is not None:
            data["label"] = label.astype(np.int64)
        return data


def _read_file_list(list_path: Path, root: Path, separator: str, need_labels: bool) -> FileList:
    if not isinstance(separator, str) or not separator:
        raise ConfigError(f"Dataset.separator: expected a non-empty string, got {separator!r}")
    try:
        lines = list_path.read_text(encoding="utf-8").split("\n")
    except UnicodeDecodeError as error:
        raise DataError(f"{list_path}: not a UTF-8 text file ({error})") from None
    entries: FileList = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        items = line.strip().split(separator)
        if len(items) == 2:
            entries.append((str(root / items[0]), str(root / items[1])))
        elif len(items) == 1 and not need_labels:
            entries.append((str(root / items[0]), None))
        else:
            expected = "'image{0}label'".format(separator) if need_labels else "'image'"
            raise DataError(f"{list_path}:{number}: expected {expected}, got {line.strip()!r}")
    if not entries:
        raise DataError(f"{list_path}: the file list is empty")
    return entries


@DATASETS.register
class Dataset(SegDataset):
    """A custom dataset from file lists of ``image<separator>label`` lines, relative to
    ``dataset_root`` (test lists may omit labels). A list path that does not exist as given is
    also looked up under ``dataset_root``."""

    def __init__(self, dataset_root: str, transforms: Sequence[Callable], num_classes: int,
                 mode: str = "train", train_path: Optional[str] = None,
                 val_path: Optional[str] = None, test_path: Optional[str] = None,
                 separator: str = " ", ignore_index: int = 255) -> None:
        super().__init__(transforms, dataset_root, mode, num_classes, ignore_index)
        list_path = {"train": train_path, "val": val_path, "test": test_path}[self.mode]
        key = f"{self.mode}_path"
        if list_path is None:
            raise ConfigError(f"Dataset.{key}: required when mode is '{self.mode}'")
        path = Path(list_path)
        if not path.is_file() and (Path(dataset_root) / path).is_file():
            path = Path(dataset_root) / path
        if not path.is_file():
            raise DataError(f"{list_path}: Dataset.{key} file not found")
        self.file_list = _read_file_list(path, Path(dataset_root), separator,
                                         need_labels=self.mode != "test")
        check_files_exist(self.file_list, str(path))


@DATASETS.register
class Cityscapes(SegDataset):
    """Cityscapes: ``leftImg8bit/<mode>/<city>/*_leftImg8bit.png`` with labels
    ``gtFine/<mode>/<city>/*_gtFine_labelTrainIds.png`` (made by scripts/prepare_cityscapes.py).
    Each label is found from its image's name, so a missing label is reported, not skipped."""

    NUM_CLASSES = 19
    CLASS_NAMES = palettes.CITYSCAPES_CLASSES
    PALETTE = palettes.cityscapes_palette()

    def __init__(self, transforms: Sequence[Callable], dataset_root: str,
                 mode: str = "train") -> None:
        super().__init__(transforms, dataset_root, mode, self.NUM_CLASSES, self.IGNORE_INDEX)
        root = Path(dataset_root)
        image_dir = root / "leftImg8bit" / self.mode
        require_dir(image_dir, "expected the Cityscapes layout leftImg8bit/<mode>/<city>/")
        images = sorted(image_dir.glob("*/*_leftImg8bit.png"))
        if not images:
            raise DataError(f"{image_dir}: no <city>/*_leftImg8bit.png images")
        self.file_list = [(str(p), str(self._label_path(root, p))) for p in images]
        check_files_exist(self.file_list, f"{root} (run scripts/prepare_cityscapes.py to make "
                                          "*_gtFine_labelTrainIds.png)")

    def _label_path(self, root: Path, image: Path) -> Path:
        stem = image.name[:-len("_leftImg8bit.png")]
        return root / "gtFine" / self.mode / image.parent.name / f"{stem}_gtFine_labelTrainIds.png"


@DATASETS.register
class PascalVOC(SegDataset):
    """PASCAL VOC 2012 under ``dataset_root/VOC2012``. Modes train, val, trainval read
    ``ImageSets/Segmentation/<mode>.txt`` with ``SegmentationClass`` labels; trainaug is train.txt
    (SegmentationClass) followed by aug.txt (``SegmentationClassAug``, SBD masks made by
    scripts/prepare_voc.py), as PaddleSeg builds it."""

    NUM_CLASSES = 21
    CLASS_NAMES = palettes.VOC_CLASSES
    PALETTE = palettes.voc_palette()
    MODES = ("train", "val", "trainval", "trainaug")

    def __init__(self, transforms: Sequence[Callable], dataset_root: str,
                 mode: str = "train") -> None:
        super().__init__(transforms, dataset_root, mode, self.NUM_CLASSES, self.IGNORE_INDEX)
        voc = Path(dataset_root) / "VOC2012"
        require_dir(voc, "expected dataset_root to be VOCdevkit, holding VOC2012/")
        sets = voc / "ImageSets" / "Segmentation"
        if self.mode == "trainaug":
            self.file_list = (self._entries(sets / "train.txt", voc, "SegmentationClass")
                              + self._entries(sets / "aug.txt", voc, "SegmentationClassAug"))
        else:
            self.file_list = self._entries(sets / f"{self.mode}.txt", voc, "SegmentationClass")
        check_files_exist(self.file_list, str(voc))

    @staticmethod
    def _entries(list_path: Path, voc: Path, label_dir: str) -> FileList:
        if not list_path.is_file():
            hint = " (run scripts/prepare_voc.py for trainaug)" if "aug" in list_path.name else ""
            raise DataError(f"{list_path}: image set list not found{hint}")
        names = [line.strip() for line in list_path.read_text().splitlines() if line.strip()]
        return [(str(voc / "JPEGImages" / f"{name}.jpg"), str(voc / label_dir / f"{name}.png"))
                for name in names]


@DATASETS.register
class ADE20K(SegDataset):
    """ADE20K SceneParsing (``ADEChallengeData2016``): ``images/training|validation/*.jpg`` with
    ``annotations/...*.png``. Label 0 (unlabelled) becomes 255, classes 1..150 become 0..149."""

    NUM_CLASSES = 150
    CLASS_NAMES = palettes.ADE20K_CLASSES
    PALETTE = palettes.ade20k_palette()
    MODES = ("train", "val")

    def __init__(self, transforms: Sequence[Callable], dataset_root: str,
                 mode: str = "train") -> None:
        super().__init__(transforms, dataset_root, mode, self.NUM_CLASSES, self.IGNORE_INDEX)
        split = "training" if self.mode == "train" else "validation"
        image_dir = Path(dataset_root) / "images" / split
        require_dir(image_dir, "expected ADEChallengeData2016 with images/ and annotations/")
        images = sorted(image_dir.glob("*.jpg"))
        if not images:
            raise DataError(f"{image_dir}: no *.jpg images")
        label_dir = Path(dataset_root) / "annotations" / split
        self.file_list = [(str(p), str(label_dir / f"{p.stem}.png")) for p in images]
        check_files_exist(self.file_list, str(dataset_root))

    def load_label(self, path: str) -> np.ndarray:
        raw = read_label(path).astype(np.int64)
        return np.where(raw == 0, self.ignore_index, raw - 1)
