"""MMSeg-named transforms against hand-computed sizes, cv2 on uint8 and sampling statistics
(test_mmseg_pipelines.py compares whole pipelines with mmsegmentation itself)."""
import cv2
import numpy as np
import pytest

from gcseg.data import mmseg_transforms as M
from gcseg.data import transforms as T
from gcseg.errors import ConfigError, DataError


def sample(h: int, w: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"img": rng.integers(0, 256, (h, w, 3)).astype(np.float32),
            "label": rng.integers(0, 4, (h, w)).astype(np.uint8), "trans_info": []}


# ----------------------------------------------------------------------------- Resize(scale)
@pytest.mark.parametrize("hw, scale, expected_hw", [
    ((1024, 2048), (2048, 1024), (1024, 2048)),  # Cityscapes at its own size: unchanged
    ((1024, 2048), (2049, 1025), (1025, 2049)),  # f = 2049/2048: 1024 * f + 0.5 = 1025.0
    ((375, 500), (2048, 512), (512, 683)),       # f = 512/375: 500 * f = 682.67
    ((500, 333), (2048, 512), (769, 512)),       # portrait: the short side fits 512
    ((37, 53), (2048, 512), (512, 733)),         # f = 512/37: 53 * f = 733.4
])
def test_mmseg_resize_keeps_the_ratio_with_mmcvs_sizes(hw, scale, expected_hw):
    data = sample(*hw)
    out = T.Resize(scale=list(scale), keep_ratio=True)(data)
    assert out["img"].shape[:2] == expected_hw and out["label"].shape == expected_hw
    assert out["trans_info"] == [("resize", hw)]


def test_mmseg_resize_pixels_are_cv2_bilinear_on_uint8_and_nearest_labels():
    data = sample(37, 53)
    image, label = data["img"].astype(np.uint8), data["label"].copy()
    out = T.Resize(scale=[2048, 512], keep_ratio=True)(data)
    expected = cv2.resize(image, (733, 512), interpolation=cv2.INTER_LINEAR)
    assert out["img"].dtype == np.float32
    np.testing.assert_array_equal(out["img"], expected.astype(np.float32))
    np.testing.assert_array_equal(
        out["label"], cv2.resize(label, (733, 512), interpolation=cv2.INTER_NEAREST))
    # float bilinear would give other (non-integer) values
    assert not np.array_equal(out["img"], cv2.resize(image.astype(np.float32), (733, 512)))
    exact = T.Resize(scale=[40, 30])(sample(37, 53))  # without keep_ratio: exactly (w, h)
    assert exact["img"].shape[:2] == (30, 40)


def test_mmseg_resize_after_normalize_is_refused_and_argument_mixes_are_config_errors():
    data = T.Normalize()(sample(8, 8))
    with pytest.raises(DataError, match="Resize works on the 0..255 image.*before Normalize"):
        T.Resize(scale=[16, 16], keep_ratio=True)(data)
    with pytest.raises(ConfigError, match="scale .* not with PaddleSeg's target_size"):
        T.Resize(target_size=[16, 16], scale=[16, 16])
    assert T.Resize([20, 18]).target_size == (20, 18)  # PaddleSeg's positional form still works


# ----------------------------------------------------------------------------- RandomResize
def test_random_resize_draws_the_ratio_uniformly_and_keeps_the_aspect_ratio():
    transform = M.RandomResize(scale=[200, 100], ratio_range=[0.5, 2.0], keep_ratio=True)
    widths = []
    for seed in range(400):
        np.random.seed(seed)
        out = transform(sample(20, 40))
        height, width = out["img"].shape[:2]
        assert abs(width / height - 2.0) < 0.1 and out["label"].shape == (height, width)
        widths.append(width)
    ratios = np.array(widths) / 200
    assert ratios.min() >= 0.5 - 0.01 and ratios.max() <= 2.0
    assert abs(ratios.mean() - 1.25) < 0.05  # uniform on [0.5, 2]: mean 1.25
    assert abs(np.mean(ratios < 1.25) - 0.5) < 0.08


def test_random_resize_between_two_sizes_draws_each_side():
    transform = M.RandomResize(scale=[[30, 10], [40, 20]])
    sizes = set()
    for seed in range(200):
        np.random.seed(seed)
        height, width = transform(sample(8, 8))["img"].shape[:2]
        assert 30 <= width <= 40 and 10 <= height <= 20
        sizes.add((width, height))
    assert len(sizes) > 50
    with pytest.raises(ConfigError, match="RandomResize.ratio_range: required"):
        M.RandomResize(scale=[30, 10])


# ----------------------------------------------------------------------------- RandomCrop
def test_random_crop_size_is_height_width_and_never_pads():
    out = M.RandomCrop(crop_size=[4, 6])(sample(10, 20))
    assert out["img"].shape == (4, 6, 3) and out["label"].shape == (4, 6)
    small = M.RandomCrop(crop_size=[64, 64])(sample(10, 20))
    assert small["img"].shape == (10, 20, 3)
    with pytest.raises(ConfigError, match=r"RandomCrop.crop_size: .*\[height, width\]"):
        M.RandomCrop(crop_size=[512])


def test_random_crop_takes_the_same_window_from_image_and_label():
    data = sample(12, 16)
    data["label"] = np.arange(12 * 16).reshape(12, 16) % 251
    data["img"] = np.repeat(data["label"][..., None], 3, axis=2).astype(np.float32)
    np.random.seed(5)
    out = M.RandomCrop(crop_size=[3, 5])(data)
    np.testing.assert_array_equal(out["img"][..., 1], out["label"].astype(np.float32))


def test_cat_max_ratio_prefers_windows_without_a_dominant_class():
    data = sample(16, 64)
    data["label"][:] = 0
    data["label"][:, 56:] = 1  # class 1 only in the 8 right-most columns

    def share_balanced(cat_max_ratio):
        balanced = 0
        for seed in range(200):
            np.random.seed(seed)
            window = M.RandomCrop(crop_size=[16, 16], cat_max_ratio=cat_max_ratio)(
                {"img": data["img"], "label": data["label"]})["label"]
            balanced += int(np.mean(window == 0) < 0.75 and np.any(window == 1))
        return balanced / 200

    # a random 16-wide window shows class 1 in at least 5 columns for 4 of 49 offsets
    assert share_balanced(1.0) < 0.15
    assert share_balanced(0.75) > 0.5  # up to 11 draws per sample


# ----------------------------------------------------------------------------- RandomFlip
def test_random_flip_probability_and_directions():
    label = np.arange(12, dtype=np.uint8).reshape(3, 4)
    flips = 0
    for seed in range(2000):
        np.random.seed(seed)
        out = M.RandomFlip(prob=0.5)({"img": np.zeros((3, 4, 3), np.float32), "label": label})
        flipped = np.array_equal(out["label"], label[:, ::-1])
        assert flipped or np.array_equal(out["label"], label)
        flips += flipped
    assert abs(flips / 2000 - 0.5) < 0.04
    vertical = M.RandomFlip(prob=1.0, direction="vertical")({"img": label[..., None] * 1.0,
                                                              "label": label})
    np.testing.assert_array_equal(vertical["label"], label[::-1])
    np.testing.assert_array_equal(vertical["img"][..., 0], label[::-1])
    with pytest.raises(ConfigError, match="RandomFlip.direction"):
        M.RandomFlip(direction="sideways")


# ----------------------------------------------------------------------------- photometric
def test_photometric_distortion_keeps_uint8_values_and_is_seeded():
    image = sample(16, 16)["img"]
    results = []
    for _ in range(2):
        np.random.seed(11)
        results.append(M.PhotoMetricDistortion()({"img": image.copy()})["img"])
    first, second = results
    assert first.dtype == np.float32 and np.array_equal(first, np.round(first))
    assert first.min() >= 0 and first.max() <= 255
    np.testing.assert_array_equal(first, second)
    changed = 0
    for seed in range(40):
        np.random.seed(seed)
        changed += not np.array_equal(M.PhotoMetricDistortion()({"img": image.copy()})["img"],
                                      image)
    assert changed >= 35  # all four steps skipped has probability 1/16


def test_photometric_distortion_with_neutral_ranges_leaves_a_grey_image_alone():
    grey = np.full((6, 6, 3), 97, np.float32)  # no saturation: a hue shift changes nothing
    neutral = M.PhotoMetricDistortion(brightness_delta=0, contrast_range=[1, 1],
                                      saturation_range=[1, 1])
    for seed in range(20):
        np.random.seed(seed)
        np.testing.assert_array_equal(neutral({"img": grey.copy()})["img"], grey)


# ----------------------------------------------------------------------------- Pad
def test_pad_fills_bottom_right_records_the_shape_and_takes_mmcvs_pad_val():
    out = M.Pad(size=[8, 6], pad_val={"img": 3, "seg": 200})(sample(4, 5))  # size is (w, h)
    assert out["img"].shape == (6, 8, 3) and out["trans_info"] == [("padding", (4, 5))]
    assert np.all(out["img"][4:] == 3) and np.all(out["img"][:, 5:] == 3)
    assert np.all(out["label"][4:] == 200) and np.all(out["label"][:, 5:] == 200)
    divisor = M.Pad(size_divisor=8)(sample(9, 16))
    assert divisor["img"].shape == (16, 16, 3)
    with pytest.raises(ConfigError, match="Pad: expected exactly one of size and size_divisor"):
        M.Pad()
