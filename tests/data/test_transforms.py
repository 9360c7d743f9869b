"""Transforms against hand-computed expectations, and against PaddleSeg 2.8 where it is cheap."""
import cv2
import numpy as np
import pytest

from gcseg.data import transforms as T
from gcseg.errors import ConfigError, DataError


def sample(h=10, w=20, value=10.0, label_value=1):
    return {"img": np.full((h, w, 3), value, np.float32),
            "label": np.full((h, w), label_value, np.uint8), "trans_info": []}


def test_random_padding_crop_pads_image_with_127_5_and_label_with_255():
    out = T.RandomPaddingCrop(crop_size=[30, 16])(sample(h=10, w=20))  # crop (w, h) = (30, 16)
    assert out["img"].shape == (16, 30, 3) and out["label"].shape == (16, 30)
    assert np.all(out["img"][:10, :20] == 10.0) and np.all(out["label"][:10, :20] == 1)
    assert np.all(out["img"][10:] == 127.5) and np.all(out["img"][:, 20:] == 127.5)
    assert np.all(out["label"][10:] == 255) and np.all(out["label"][:, 20:] == 255)
    assert out["trans_info"] == []  # a training-only transform: nothing to undo


def test_random_padding_crop_takes_one_window_from_image_and_label():
    data = sample(h=8, w=8)
    data["img"] = np.arange(64, dtype=np.float32).reshape(8, 8, 1).repeat(3, axis=2)
    data["label"] = np.arange(64, dtype=np.uint8).reshape(8, 8)
    np.random.seed(3)
    out = T.RandomPaddingCrop(crop_size=[4, 2])(data)
    top_left = out["label"][0, 0]
    top, left = divmod(int(top_left), 8)
    assert np.array_equal(out["label"], np.arange(64).reshape(8, 8)[top:top + 2, left:left + 4])
    assert np.array_equal(out["img"][..., 0], out["label"].astype(np.float32))


def test_category_max_ratio_rejects_windows_dominated_by_one_class():
    data = sample(h=8, w=16, label_value=0)
    data["label"][:, 14:] = 1  # class 1 only in the two right-most columns
    np.random.seed(0)
    out = T.RandomPaddingCrop(crop_size=[4, 4], category_max_ratio=0.9, loop_times=200)(data)
    assert set(np.unique(out["label"])) == {0, 1}
    assert out["img"].shape == (4, 4, 3)


@pytest.mark.parametrize("flip, axis", [(T.RandomHorizontalFlip, 1), (T.RandomVerticalFlip, 0)])
def test_flips_move_image_and_label_together(flip, axis):
    label = np.arange(12, dtype=np.uint8).reshape(3, 4)
    data = {"img": np.stack([label * 10.0] * 3, axis=-1).astype(np.float32), "label": label,
            "trans_info": []}
    out = flip(prob=1.0)(data)
    assert np.array_equal(out["label"], np.flip(label, axis))
    assert np.array_equal(out["img"][..., 2], np.flip(label, axis) * 10.0)
    kept = flip(prob=0.0)({"img": data["img"].copy(), "label": label, "trans_info": []})
    assert np.array_equal(kept["label"], label)


def test_padding_records_the_shape_before_and_pads_bottom_right():
    out = T.Padding(target_size=[32, 16])(sample(h=10, w=20))
    assert out["trans_info"] == [("padding", (10, 20))]
    assert out["img"].shape == (16, 32, 3)
    assert np.all(out["img"][10:] == 127.5) and np.all(out["label"][:, 20:] == 255)
    with pytest.raises(DataError, match="larger than Padding.target_size 8x8"):
        T.Padding(target_size=8)(sample(h=10, w=20))


def test_resize_records_the_shape_before_and_uses_nearest_for_labels():
    data = sample(h=10, w=20)
    data["label"][:, 10:] = 7
    out = T.Resize(target_size=[8, 4])(data)
    assert out["trans_info"] == [("resize", (10, 20))]
    assert out["img"].shape == (4, 8, 3)
    assert np.array_equal(out["label"], np.array([[1] * 4 + [7] * 4] * 4, np.uint8))
    ratio = T.Resize(target_size=[32, 32], keep_ratio=True)(sample(h=10, w=20))
    assert ratio["img"].shape == (16, 32, 3)  # scale min(32/20, 32/10) = 1.6


def test_resize_by_long_and_short():
    assert T.ResizeByLong(long_size=40)(sample(h=10, w=20))["img"].shape == (20, 40, 3)
    short = T.ResizeByShort(short_size=5)(sample(h=10, w=20))
    assert short["img"].shape == (5, 10, 3) and short["trans_info"] == [("resize", (10, 20))]
    capped = T.ResizeByShort(short_size=30, max_size=40)(sample(h=10, w=20))
    assert capped["img"].shape == (20, 40, 3)  # 30 would make the long side 60 > 40


def test_normalize_numbers():
    data = {"img": np.array([[[0, 51, 255]]], np.float32), "trans_info": []}
    assert np.allclose(T.Normalize()(dict(data))["img"], [[[-1.0, -0.6, 1.0]]])
    imagenet = T.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    expected = [(0 - 0.485) / 0.229, (0.2 - 0.456) / 0.224, (1 - 0.406) / 0.225]
    assert np.allclose(imagenet(dict(data))["img"], [[expected]], atol=1e-6)


def test_resize_step_scaling_draws_from_the_step_grid():
    fixed = T.ResizeStepScaling(0.5, 0.5)(sample(h=10, w=20))
    assert fixed["img"].shape == (5, 10, 3) and fixed["label"].shape == (5, 10)
    widths = set()
    for seed in range(100):
        np.random.seed(seed)
        widths.add(T.ResizeStepScaling(0.5, 2.0, 0.25)(sample(h=10, w=20))["img"].shape[1])
    assert widths == {10, 15, 20, 25, 30, 35, 40}  # 20 x {0.5, 0.75, ..., 2.0}


def test_random_distort_keeps_shape_and_range_and_is_seeded():
    image = np.random.default_rng(0).integers(0, 256, (8, 8, 3)).astype(np.float32)
    distort = T.RandomDistort(brightness_prob=1, contrast_prob=1, saturation_prob=1, hue_prob=1)
    np.random.seed(1)
    first = distort({"img": image.copy(), "trans_info": []})["img"]
    np.random.seed(1)
    second = distort({"img": image.copy(), "trans_info": []})["img"]
    assert first.shape == (8, 8, 3) and first.dtype == np.float32
    assert np.array_equal(first, second) and not np.array_equal(first, image)
    assert first.min() >= 0 and first.max() <= 255


def test_compose_reads_bgr_files_as_rgb_chw(tmp_path):
    image = np.zeros((4, 6, 3), np.uint8)
    image[..., 0] = 200  # red, in RGB order
    cv2.imwrite(str(tmp_path / "a.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(tmp_path / "a_label.png"), np.full((4, 6), 2, np.uint8))
    out = T.Compose([])({"img": str(tmp_path / "a.png"), "label": str(tmp_path / "a_label.png")})
    assert out["img"].shape == (3, 4, 6) and out["img"].dtype == np.float32
    assert np.all(out["img"][0] == 200) and np.all(out["img"][1:] == 0)
    assert out["label"].dtype == np.int64 and np.all(out["label"] == 2)
    assert out["trans_info"] == []


def test_compose_errors_name_the_files(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="broken.png: cannot read image"):
        T.Compose([])({"img": str(tmp_path / "broken.png")})
    cv2.imwrite(str(tmp_path / "img.png"), np.zeros((4, 6, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "lab.png"), np.zeros((5, 6), np.uint8))
    with pytest.raises(DataError, match=r"img.png is 6x4 but label .*lab.png is 6x5"):
        T.Compose([])({"img": str(tmp_path / "img.png"), "label": str(tmp_path / "lab.png")})


@pytest.mark.parametrize("build, message", [
    (lambda: T.RandomPaddingCrop(crop_size=[512]), "RandomPaddingCrop.crop_size"),
    (lambda: T.RandomPaddingCrop(crop_size=[512, -1]), "RandomPaddingCrop.crop_size"),
    (lambda: T.Resize(interp="BOX"), "Resize.interp"),
    (lambda: T.Normalize(std=[0.5, 0, 0.5]), "Normalize.std"),
    (lambda: T.RandomHorizontalFlip(prob=2), "RandomHorizontalFlip.prob"),
    (lambda: T.ResizeStepScaling(2.0, 0.5), "ResizeStepScaling.max_scale_factor"),
    (lambda: T.Compose("Normalize"), "Compose.transforms"),
])
def test_bad_arguments_are_config_errors_naming_transform_and_argument(build, message):
    with pytest.raises(ConfigError, match=message):
        build()


# ----------------------------------------------------------------------------- PaddleSeg parity
@pytest.fixture(scope="module")
def paddleseg_transforms():
    return pytest.importorskip("paddleseg.transforms")


def run_paddleseg(ops, image, label):
    data = {"img": image.copy(), "label": label.copy(), "trans_info": [], "gt_fields": ["label"]}
    for op in ops:
        data = op(data)
    return data


def run_gcseg(ops, image, label):
    data = {"img": image.copy(), "label": label.copy(), "trans_info": []}
    for op in ops:
        data = op(data)
    return data


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_same_seed_gives_paddleseg_output(paddleseg_transforms, seed):
    P = paddleseg_transforms
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (24, 40, 3)).astype(np.float32)
    label = rng.integers(0, 5, (24, 40)).astype(np.uint8)
    ours = [T.ResizeStepScaling(0.5, 2.0, 0.25), T.RandomScaleAspect(0.5, 0.33),
            T.RandomRotation(15), T.RandomPaddingCrop([32, 32]), T.Normalize(),
            T.Padding([40, 36]), T.Resize([20, 18])]
    theirs = [P.ResizeStepScaling(0.5, 2.0, 0.25), P.RandomScaleAspect(0.5, 0.33),
              P.RandomRotation(15), P.RandomPaddingCrop([32, 32]), P.Normalize(),
              P.Padding([40, 36]), P.Resize([20, 18])]
    np.random.seed(seed)
    expected = run_paddleseg(theirs, image, label)
    np.random.seed(seed)
    got = run_gcseg(ours, image, label)
    assert np.allclose(got["img"], expected["img"], atol=1e-5)
    assert np.array_equal(got["label"], expected["label"])
    assert [(op, tuple(hw)) for op, hw in expected["trans_info"]] == got["trans_info"]
