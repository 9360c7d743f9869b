"""One-time dataset preparation: Cityscapes trainId labels, PASCAL VOC + SBD "aug" labels.

The scripts in scripts/ are thin wrappers around these functions.
"""
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Union

import numpy as np
from PIL import Image

from gcseg.data.images import read_label
from gcseg.errors import DataError, UsageError

# Cityscapes labelId -> trainId for the 19 evaluated classes (every other id is ignored, 255).
# The official table is cityscapesscripts.helpers.labels; this copy is used without it.
CITYSCAPES_ID_TO_TRAIN_ID = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9,
                             23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17,
                             33: 18}
IGNORE = 255


def _progress(items: List, description: str, show: bool) -> Iterable:
    if not show:
        return items
    from tqdm import tqdm
    return tqdm(items, desc=description, unit="file")


def cityscapes_id_to_train_id() -> Dict[int, int]:
    """The labelId -> trainId table: the official one when cityscapesscripts is installed."""
    try:
        from cityscapesscripts.helpers.labels import labels
    except ImportError:
        return dict(CITYSCAPES_ID_TO_TRAIN_ID)
    return {label.id: label.trainId for label in labels
            if label.id >= 0 and 0 <= label.trainId < IGNORE}


def cityscapes_lookup_table() -> np.ndarray:
    """A 256-entry ``uint8`` table mapping every labelId to its trainId (unmapped -> 255)."""
    table = np.full(256, IGNORE, dtype=np.uint8)
    for label_id, train_id in cityscapes_id_to_train_id().items():
        table[label_id] = train_id
    return table


def convert_cityscapes(root: Union[str, Path], overwrite: bool = False,
                       progress: bool = True) -> int:
    """Write ``*_gtFine_labelTrainIds.png`` beside every ``gtFine/**/*_gtFine_labelIds.png``.

    Existing outputs are kept unless ``overwrite``. Returns the number of files written.
    """
    gt_dir = Path(root) / "gtFine"
    if not gt_dir.is_dir():
        raise DataError(f"{gt_dir}: directory not found (expected the Cityscapes gtFine/ tree)")
    sources = sorted(gt_dir.glob("*/*/*_gtFine_labelIds.png"))
    if not sources:
        raise DataError(f"{gt_dir}: no <split>/<city>/*_gtFine_labelIds.png files")
    table = cityscapes_lookup_table()
    written = 0
    for source in _progress(sources, "labelTrainIds", progress):
        target = source.with_name(source.name.replace("_labelIds.png", "_labelTrainIds.png"))
        if target.exists() and not overwrite:
            continue
        label_ids = _read_index_png(source)
        Image.fromarray(table[label_ids]).save(target)
        written += 1
    return written


def _read_index_png(path: Path) -> np.ndarray:
    array = read_label(path)
    if array.dtype != np.uint8:
        raise DataError(f"{path}: expected an 8-bit single-channel label PNG, got "
                        f"{array.dtype} {array.shape}")
    return array


def _read_names(path: Path) -> List[str]:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def _load_mat_reader() -> Callable:
    try:
        from scipy.io import loadmat
    except ImportError:
        raise UsageError("reading SBD .mat files needs scipy, which gcseg does not require: "
                         "pip install 'scipy<1.14' (with Paddle 2.6) or scipy") from None
    return loadmat


def sbd_mask(mat_path: Path, loadmat: Optional[Callable] = None) -> np.ndarray:
    """The class mask (``uint8 [H, W]``, VOC class ids, 255 on boundaries) of an SBD cls .mat."""
    loadmat = loadmat or _load_mat_reader()
    try:
        mat = loadmat(str(mat_path))
        return np.asarray(mat["GTcls"][0]["Segmentation"][0], dtype=np.uint8)
    except (OSError, ValueError, KeyError, IndexError) as error:
        raise DataError(f"{mat_path}: not an SBD class annotation ({error})") from None


def aug_names(voc_root: Path, sbd_root: Path) -> List[str]:
    """SBD train + val images that are not in VOC 2012 trainval, sorted (PaddleSeg's aug.txt).

    PaddleSeg's ``trainaug`` is VOC train.txt followed by these: 1464 + 9118 = 10582 images.
    """
    sbd = _read_names(sbd_root / "dataset" / "train.txt")
    sbd += _read_names(sbd_root / "dataset" / "val.txt")
    voc = _read_names(voc_root / "VOC2012" / "ImageSets" / "Segmentation" / "trainval.txt")
    return sorted(set(sbd) - set(voc))


def prepare_voc_aug(voc_root: Union[str, Path], sbd_root: Union[str, Path],
                    progress: bool = True) -> int:
    """Write ``VOC2012/SegmentationClassAug/*.png`` from SBD's ``dataset/cls/*.mat`` and
    ``VOC2012/ImageSets/Segmentation/aug.txt``; returns the number of aug.txt entries.

    ``voc_root`` is the VOCdevkit directory, ``sbd_root`` SBD's ``benchmark_RELEASE``.
    """
    voc_root, sbd_root = Path(voc_root), Path(sbd_root)
    cls_dir = sbd_root / "dataset" / "cls"
    if not cls_dir.is_dir():
        raise DataError(f"{cls_dir}: directory not found (expected SBD's benchmark_RELEASE)")
    names = aug_names(voc_root, sbd_root)
    loadmat = _load_mat_reader()
    out_dir = voc_root / "VOC2012" / "SegmentationClassAug"
    out_dir.mkdir(exist_ok=True)
    for mat_path in _progress(sorted(cls_dir.glob("*.mat")), "SegmentationClassAug", progress):
        Image.fromarray(sbd_mask(mat_path, loadmat)).save(out_dir / f"{mat_path.stem}.png")
    missing = [n for n in names if not (out_dir / f"{n}.png").is_file()]
    if missing:
        raise DataError(f"{cls_dir}: {len(missing)} images of aug.txt have no .mat, e.g. "
                        f"{', '.join(missing[:3])}")
    list_path = voc_root / "VOC2012" / "ImageSets" / "Segmentation" / "aug.txt"
    list_path.write_text("".join(f"{name}\n" for name in names))
    return len(names)
