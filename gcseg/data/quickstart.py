"""The built-in quickstart dataset: procedurally drawn street scenes in the Cityscapes layout.

Each scene has sky, buildings with windows, trees, a road in perspective with lane marks,
sidewalks, poles, cars and people, with random geometry and per-class colour and texture, so a
small GCNet trained from scratch on CPU learns it well above chance within a few hundred
iterations. Labels are Cityscapes trainIds (8 of the 19 classes occur), so the dataset loads
with ``type: Cityscapes``. Generation is deterministic from the seed.
"""
import json
import shutil
from pathlib import Path
from typing import Tuple, Union

import cv2
import numpy as np

ROAD, SIDEWALK, BUILDING, POLE, VEGETATION, SKY, PERSON, CAR = 0, 1, 2, 5, 8, 10, 11, 13
QUICKSTART_TRAIN_IDS = (ROAD, SIDEWALK, BUILDING, POLE, VEGETATION, SKY, PERSON, CAR)
SPLITS = (("train", "synthtown"), ("val", "synthville"))
MARKER = "quickstart.json"

# Per-class pixel noise (std, 0..255 scale): smooth sky, grainy road, busy foliage.
_NOISE_STD = np.zeros(256, dtype=np.float32)
_NOISE_STD[[ROAD, SIDEWALK, BUILDING, POLE, VEGETATION, SKY, PERSON, CAR]] = (
    7, 6, 9, 5, 22, 3, 8, 6)


def _jitter(rng: np.random.Generator, base: Tuple[int, int, int], spread: int) -> Tuple[int, ...]:
    return tuple(int(np.clip(c + rng.integers(-spread, spread + 1), 0, 255)) for c in base)


def _fill_rect(img, label, x0, y0, x1, y1, color, class_id) -> None:
    cv2.rectangle(img, (int(x0), int(y0)), (int(x1), int(y1)), color, -1)
    cv2.rectangle(label, (int(x0), int(y0)), (int(x1), int(y1)), class_id, -1)


def _draw_sky(img, rng, horizon: int) -> None:
    top, bottom = np.array(_jitter(rng, (95, 150, 215), 20)), np.array(_jitter(rng, (185, 210,
                                                                                     235), 15))
    t = np.linspace(0.0, 1.0, horizon)[:, None, None]
    img[:horizon] = (top * (1 - t) + bottom * t).astype(np.uint8)


def _draw_buildings(img, label, rng, horizon: int) -> None:
    w = img.shape[1]
    x = int(rng.integers(-20, 5))
    while x < w:
        width = int(rng.integers(w // 12, w // 4))
        if rng.random() < 0.8:
            top = int(rng.integers(horizon // 8, max(horizon - 8, horizon // 8 + 1)))
            wall = _jitter(rng, (125, 112, 100), 35)
            _fill_rect(img, label, x, top, x + width, horizon - 1, wall, BUILDING)
            window = tuple(int(c * 0.45) for c in wall)
            for wy in range(top + 3, horizon - 5, 8):
                for wx in range(x + 3, x + width - 4, 7):
                    cv2.rectangle(img, (wx, wy), (wx + 3, wy + 4), window, -1)
        x += width


def _draw_ground(img, label, rng, horizon: int) -> None:
    h, w = img.shape[:2]
    _fill_rect(img, label, 0, horizon, w - 1, h - 1, _jitter(rng, (175, 150, 165), 20), SIDEWALK)
    for y in range(horizon + 4, h, 6):
        cv2.line(img, (0, y), (w - 1, y), _jitter(rng, (140, 120, 130), 10), 1)
    vanish = int(w * rng.uniform(0.35, 0.65))
    half_top, left, right = int(w * 0.06), int(w * rng.uniform(0.0, 0.2)), int(w * rng.uniform(
        0.8, 1.0))
    road = np.array([[vanish - half_top, horizon], [vanish + half_top, horizon],
                     [right, h - 1], [left, h - 1]], dtype=np.int32)
    cv2.fillPoly(img, [road], _jitter(rng, (80, 80, 85), 12))
    cv2.fillPoly(label, [road], ROAD)
    for t0 in np.arange(0.1, 1.0, 0.2):
        y0, y1 = horizon + t0 * (h - horizon), horizon + (t0 + 0.08) * (h - horizon)
        x0, x1 = vanish + (w / 2 - vanish) * t0, vanish + (w / 2 - vanish) * (t0 + 0.08)
        cv2.line(img, (int(x0), int(y0)), (int(x1), int(y1)), (235, 235, 225), 1 + int(t0 * 3))


def _draw_trees(img, label, rng, horizon: int) -> None:
    w = img.shape[1]
    for _ in range(int(rng.integers(1, 5))):
        cx, radius = int(rng.integers(0, w)), int(rng.integers(horizon // 6 + 2, horizon // 3 + 3))
        cy = int(horizon - radius * rng.uniform(0.3, 1.0))
        axes = (radius, int(radius * rng.uniform(0.7, 1.1)))
        color = _jitter(rng, (60, 120, 45), 25)
        cv2.ellipse(img, (cx, cy), axes, 0, 0, 360, color, -1)
        cv2.ellipse(label, (cx, cy), axes, 0, 0, 360, VEGETATION, -1)


def _perspective(rng, horizon: int, h: int, low: float = 0.15) -> Tuple[int, float]:
    """A ground row below the horizon and its depth scale (0 at the horizon, 1 at the bottom)."""
    bottom = int(rng.integers(horizon + int(low * (h - horizon)) + 1, h))
    return bottom, (bottom - horizon) / (h - horizon)


def _draw_poles(img, label, rng, horizon: int) -> None:
    h, w = img.shape[:2]
    for _ in range(int(rng.integers(0, 3))):
        x, (bottom, depth) = int(rng.integers(0, w)), _perspective(rng, horizon, h)
        height, thick = int(h * (0.3 + 0.5 * depth)), max(1, int(1 + 3 * depth))
        _fill_rect(img, label, x, max(bottom - height, 0), x + thick, bottom,
                   _jitter(rng, (150, 150, 145), 15), POLE)


def _draw_cars(img, label, rng, horizon: int) -> None:
    h, w = img.shape[:2]
    bodies = ((200, 30, 30), (30, 60, 180), (225, 225, 225), (35, 35, 40), (160, 165, 170))
    placements = sorted(_perspective(rng, horizon, h, low=0.2)
                        for _ in range(int(rng.integers(1, 5))))
    for bottom, depth in placements:  # far to near, so nearer cars hide farther ones
        car_h = int(6 + 0.45 * (h - horizon) * depth)
        car_w = int(car_h * rng.uniform(1.6, 2.3))
        x = int(rng.integers(w // 8, max(w - w // 8 - car_w, w // 8 + 1)))
        top = bottom - car_h
        body = _jitter(rng, bodies[int(rng.integers(len(bodies)))], 20)
        _fill_rect(img, label, x, top + car_h // 3, x + car_w, bottom - car_h // 6, body, CAR)
        _fill_rect(img, label, x + car_w // 5, top, x + car_w * 4 // 5, top + car_h // 3,
                   tuple(int(c * 0.7) for c in body), CAR)
        cv2.rectangle(img, (x + car_w // 4, top + 1), (x + car_w * 3 // 4, top + car_h // 3),
                      (40, 50, 60), -1)
        for wheel_x in (x + car_w // 5, x + car_w * 4 // 5):
            axes = (max(car_w // 9, 1), max(car_h // 6, 1))
            cv2.ellipse(img, (wheel_x, bottom - car_h // 6), axes, 0, 0, 360, (15, 15, 15), -1)
            cv2.ellipse(label, (wheel_x, bottom - car_h // 6), axes, 0, 0, 360, CAR, -1)


def _draw_people(img, label, rng, horizon: int) -> None:
    h, w = img.shape[:2]
    for _ in range(int(rng.integers(1, 4))):
        bottom, depth = _perspective(rng, horizon, h)
        height = int(8 + 0.6 * (h - horizon) * depth)
        x = int(rng.choice([rng.integers(0, w // 5), rng.integers(w * 4 // 5, w)]))
        width, head = max(height // 4, 2), max(height // 7, 1)
        shirt = _jitter(rng, ((200, 40, 60), (40, 160, 70), (230, 200, 40))[rng.integers(3)], 30)
        _fill_rect(img, label, x, bottom - height + 2 * head, x + width, bottom - height // 2,
                   shirt, PERSON)
        _fill_rect(img, label, x, bottom - height // 2, x + width, bottom,
                   _jitter(rng, (40, 40, 90), 20), PERSON)
        center = (x + width // 2, bottom - height + head)
        cv2.circle(img, center, head, _jitter(rng, (225, 180, 150), 20), -1)
        cv2.circle(label, center, head, PERSON, -1)


def render_scene(rng: np.random.Generator, size: Tuple[int, int]) -> Tuple[np.ndarray,
                                                                             np.ndarray]:
    """One street scene of ``size`` (w, h): ``(RGB uint8 [H, W, 3], trainId uint8 [H, W])``."""
    w, h = size
    img = np.zeros((h, w, 3), dtype=np.uint8)
    label = np.full((h, w), SKY, dtype=np.uint8)
    horizon = int(h * rng.uniform(0.42, 0.6))
    _draw_sky(img, rng, horizon)
    _draw_buildings(img, label, rng, horizon)
    _draw_ground(img, label, rng, horizon)
    for draw in (_draw_trees, _draw_poles, _draw_cars, _draw_people):
        draw(img, label, rng, horizon)
    noisy = img.astype(np.float32) * rng.uniform(0.8, 1.15)
    noisy += rng.standard_normal(img.shape, dtype=np.float32) * _NOISE_STD[label][..., None]
    return np.clip(noisy, 0, 255).astype(np.uint8), label


def _write_split(root: Path, split: str, city: str, count: int, size: Tuple[int, int],
                 seed: int) -> None:
    image_dir = root / "leftImg8bit" / split / city
    label_dir = root / "gtFine" / split / city
    for folder in (image_dir, label_dir):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    for i in range(count):
        rng = np.random.default_rng([seed, 0 if split == "train" else 1, i])
        image, label = render_scene(rng, size)
        stem = f"{city}_{i:06d}_000019"
        cv2.imwrite(str(image_dir / f"{stem}_leftImg8bit.png"),
                    cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(label_dir / f"{stem}_gtFine_labelTrainIds.png"), label)


def make_quickstart_dataset(root: Union[str, Path], num_train: int = 64, num_val: int = 16,
                            size: Tuple[int, int] = (256, 128), seed: int = 0) -> Path:
    """Write the quickstart dataset under ``root`` (Cityscapes layout) and return ``root``.

    A marker file records the arguments; a complete dataset made with the same arguments is
    left as it is.
    """
    root = Path(root)
    settings = {"num_train": num_train, "num_val": num_val, "size": list(size), "seed": seed}
    marker = root / MARKER
    if marker.is_file() and json.loads(marker.read_text()) == settings:
        return root
    marker.unlink(missing_ok=True)
    for (split, city), count in zip(SPLITS, (num_train, num_val)):
        _write_split(root, split, city, count, tuple(size), seed)
    marker.write_text(json.dumps(settings))
    return root
