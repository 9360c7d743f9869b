"""Dataset checks: a full report for ``scripts/check_dataset.py`` and a cheap one for training.

:func:`check_dataset` walks every entry of a dataset and collects *all* its problems (missing
files, unreadable or corrupt images and labels, image/label size mismatches, label values that
are neither a class nor the ignore index, duplicate entries) together with the class pixel
histogram. :func:`check_config` does it for a config's train and val datasets, building them
with the constructors' file-existence check deferred so that every missing file is listed, not
just the first few. :func:`quick_check` is what the trainer can afford before its first step.
"""
import collections
import dataclasses
import os
import sys
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
from tqdm import tqdm

from gcseg.data.datasets import deferred_file_checks
from gcseg.data.images import read_image
from gcseg.stopping import handling_signals
from gcseg.errors import DataError

SPLITS = ("train_dataset", "val_dataset")
# The dataset does not know the config's path: commands that do put it in for this placeholder
# (gcseg.cli.naming_the_config).
CONFIG_PLACEHOLDER = "<config>"
FULL_CHECK_HINT = (f"scripts/check_dataset.py --config {CONFIG_PLACEHOLDER} finds every bad "
                   "file of the datasets at once")


@dataclasses.dataclass
class Problem:
    """One thing wrong with a dataset: ``kind`` is one of :data:`PROBLEM_KINDS`."""

    kind: str
    path: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.kind:<15} {self.path}" + (f": {self.detail}" if self.detail else "")


PROBLEM_KINDS = ("dataset", "missing", "unreadable", "size mismatch", "bad label values",
                 "duplicate")


@dataclasses.dataclass
class DatasetReport:
    """The outcome of :func:`check_dataset`. ``histogram[k]`` counts the pixels of class ``k``;
    ``ignored`` counts ``ignore_index`` pixels (values outside both are problems)."""

    name: str
    num_samples: int
    class_names: List[str]
    ignore_index: int
    histogram: np.ndarray
    ignored: int = 0
    problems: List[Problem] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def counts(self) -> Dict[str, int]:
        """Number of problems by kind."""
        return dict(collections.Counter(problem.kind for problem in self.problems))

    def format(self) -> str:
        """The report as text: a summary line, every problem, then the class histogram."""
        state = "OK" if self.ok else f"{len(self.problems)} problem(s) (" + ", ".join(
            f"{count} {kind}" for kind, count in self.counts().items()) + ")"
        lines = [f"{self.name}: {self.num_samples} samples: {state}"]
        lines += [f"  {problem}" for problem in self.problems]
        if self.num_samples:
            lines += ["", format_histogram(self.histogram, self.class_names, self.ignored,
                                           self.ignore_index)]
        return "\n".join(lines)


def format_histogram(histogram: np.ndarray, class_names: List[str], ignored: int,
                     ignore_index: int) -> str:
    """A table of pixels per class (with the ignore index last) and their share."""
    total = max(int(histogram.sum()) + ignored, 1)
    rows = [(f"{k:>3} {name}", int(count)) for k, (name, count)
            in enumerate(zip(class_names, histogram))]
    rows.append((f"    ignore ({ignore_index})", ignored))
    width = max(len(label) for label, _ in rows + [("class", 0)])
    lines = [f"  {'class':<{width}} {'pixels':>14} {'share':>8}"]
    lines += [f"  {label:<{width}} {count:>14,} {100.0 * count / total:>7.2f}%"
              for label, count in rows]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- one entry
def _read(read: Any, path: str) -> Tuple[Optional[np.ndarray], Optional[Problem]]:
    """``read(path)`` or the problem it has: a checker reports any failure instead of raising,
    whatever the decoder throws for a corrupt file."""
    if not os.path.isfile(path):
        return None, Problem("missing", path)
    try:
        return read(path), None
    except DataError as error:
        return None, Problem("unreadable", path, str(error).split(": ", 1)[-1])
    except Exception as error:  # noqa: BLE001 - decoders raise many types on corrupt files
        return None, Problem("unreadable", path, f"{type(error).__name__}: {error}")


def _label_counts(label: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Distinct label values and their pixel counts."""
    if label.dtype == np.uint8:
        counts = np.bincount(label.ravel(), minlength=256)
        values = np.flatnonzero(counts)
        return values, counts[values]
    return np.unique(label, return_counts=True)


class _Checker:
    """Accumulates problems and the histogram while walking one dataset."""

    def __init__(self, dataset: Any, name: str) -> None:
        self.dataset = dataset
        self.report = DatasetReport(
            name=name, num_samples=len(dataset.file_list),
            class_names=list(dataset.class_names), ignore_index=dataset.ignore_index,
            histogram=np.zeros(dataset.num_classes, dtype=np.int64))

    def unique_entries(self) -> List[Tuple[str, Optional[str]]]:
        """The entries with each image's first occurrence only; repeats become problems."""
        seen: Dict[str, int] = {}
        unique = []
        for number, (img_path, label_path) in enumerate(self.dataset.file_list, 1):
            if img_path in seen:
                self.report.problems.append(Problem(
                    "duplicate", img_path, f"entry {number} repeats entry {seen[img_path]}"))
            else:
                seen[img_path] = number
                unique.append((img_path, label_path))
        return unique

    def entry(self, img_path: str, label_path: Optional[str]) -> None:
        image, problem = _read(lambda path: read_image(path, to_rgb=False), img_path)
        self._add(problem)
        if label_path is None:
            return
        label, problem = _read(self.dataset.load_label, label_path)
        self._add(problem)
        if label is None:
            return
        if image is not None and image.shape[:2] != label.shape[:2]:
            self._add(Problem("size mismatch", label_path,
                              f"label {label.shape[1]}x{label.shape[0]}, image {img_path} "
                              f"{image.shape[1]}x{image.shape[0]} (W x H)"))
        self.count(label, label_path)

    def count(self, label: np.ndarray, label_path: str) -> None:
        report, num_classes = self.report, self.dataset.num_classes
        values, counts = _label_counts(label)
        is_class = (values >= 0) & (values < num_classes)
        np.add.at(report.histogram, values[is_class].astype(np.int64), counts[is_class])
        is_ignored = values == report.ignore_index
        report.ignored += int(counts[is_ignored].sum())
        bad = values[~is_class & ~is_ignored]
        if bad.size:
            shown = bad[:10].tolist() + (["..."] if bad.size > 10 else [])
            self._add(Problem("bad label values", label_path,
                              f"{shown} are neither class ids 0..{num_classes - 1} nor "
                              f"ignore_index {report.ignore_index}"))

    def _add(self, problem: Optional[Problem]) -> None:
        if problem is not None:
            self.report.problems.append(problem)


def describe(dataset: Any) -> str:
    return f"{type(dataset).__name__} (mode {getattr(dataset, 'mode', '?')})"


def check_dataset(dataset: Any, name: Optional[str] = None,
                  progress: bool = True) -> DatasetReport:
    """Read every entry of ``dataset.file_list`` and report all problems and the histogram
    (a repeated image is reported and read once)."""
    checker = _Checker(dataset, name or describe(dataset))
    entries = tqdm(checker.unique_entries(), desc=checker.report.name, unit="sample", file=sys.stderr,
                   disable=not progress, leave=False)
    with handling_signals():  # Ctrl-C / SIGTERM end a long check (Paddle's handlers would not)
        for img_path, label_path in entries:
            checker.entry(img_path, label_path)
    return checker.report


def check_config(cfg: Any, progress: bool = True) -> List[DatasetReport]:
    """:func:`check_dataset` for each of the config's ``train_dataset`` / ``val_dataset``.

    A dataset that cannot be built at all (no root, no list file, a malformed list line) is
    reported as a ``dataset`` problem; config mistakes raise :class:`~gcseg.errors.ConfigError`.
    """
    reports = []
    for key in SPLITS:
        if not cfg.section(key):
            continue
        try:
            with deferred_file_checks():
                dataset = getattr(cfg, key)
        except DataError as error:
            reports.append(DatasetReport(key, 0, [], 255, np.zeros(0, dtype=np.int64),
                                         problems=[Problem("dataset", key, str(error))]))
            continue
        reports.append(check_dataset(dataset, f"{key}: {describe(dataset)}", progress))
    return reports


def quick_check(dataset: Any, samples: int = 1) -> None:
    """The checks a training run can afford at start: the dataset is not empty and its first
    ``samples`` entries read, match in size and hold valid label values (the constructors have
    already checked that every listed file exists). Raises :class:`~gcseg.errors.DataError`."""
    if len(dataset.file_list) == 0:
        raise DataError(f"{describe(dataset)} under {dataset.dataset_root}: no samples")
    checker = _Checker(dataset, describe(dataset))
    for img_path, label_path in dataset.file_list[:samples]:
        checker.entry(img_path, label_path)
    if checker.report.problems:
        first = checker.report.problems[0]
        raise DataError(f"{first.path}: {first.kind}" + (f": {first.detail}" if first.detail
                                                         else "") + f" ({FULL_CHECK_HINT})")
