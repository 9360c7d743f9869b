"""Reading image and label files, and the image files a path names."""
import os

import numpy as np
import pytest
from PIL import Image

from gcseg.data.images import collect_images, read_image, read_label
from gcseg.errors import DataError, UsageError


def test_read_image_gives_rgb_float32_or_bgr_when_asked(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    path = tmp_path / "image.png"
    Image.fromarray(pixels).save(path)  # PIL writes RGB

    rgb = read_image(path)

    assert rgb.dtype == np.float32 and rgb.shape == (5, 7, 3)
    np.testing.assert_array_equal(rgb, pixels)
    np.testing.assert_array_equal(read_image(path, to_rgb=False), pixels[:, :, ::-1])


def test_read_image_applies_the_exif_orientation(tmp_path):
    """As OpenCV (and so PaddleSeg) reads a phone photo: displayed upright."""
    image = Image.fromarray(np.zeros((20, 40, 3), dtype=np.uint8))
    exif = image.getexif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    path = tmp_path / "phone.jpg"
    image.save(path, exif=exif.tobytes())
    assert read_image(path).shape == (40, 20, 3)


def test_read_image_names_a_missing_or_undecodable_file(tmp_path):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"not an image")
    with pytest.raises(DataError, match="absent.png: cannot read image \\(no such file\\)"):
        read_image(tmp_path / "absent.png")
    with pytest.raises(DataError, match="corrupt.png: cannot read image \\(not a readable"):
        read_image(corrupt)


def test_read_label_gives_palette_indices_and_refuses_a_colour_image(tmp_path):
    indices = np.array([[0, 3, 255], [18, 1, 2]], dtype=np.uint8)
    palette_png = Image.fromarray(indices, mode="P")
    palette_png.putpalette([value for i in range(256) for value in (i, 255 - i, 7)])
    palette_png.save(tmp_path / "label.png")
    np.testing.assert_array_equal(read_label(tmp_path / "label.png"), indices)

    Image.fromarray(np.zeros((2, 3, 3), dtype=np.uint8)).save(tmp_path / "colour.png")
    with pytest.raises(DataError, match="colour.png: label must be a single-channel"):
        read_label(tmp_path / "colour.png")


def test_image_list_entries_are_relative_to_the_list_folder(tmp_path, monkeypatch):
    """As PaddleSeg's get_image_list: the first field of each line, joined to the list's
    folder; absolute entries stay as they are."""
    lists, images = tmp_path / "lists", tmp_path / "images"
    for name in ("a.png", "b.png"):
        (images / name).parent.mkdir(parents=True, exist_ok=True)
        (images / name).write_bytes(b"")
    absolute = tmp_path / "elsewhere" / "c.png"
    lists.mkdir()
    (lists / "test.txt").write_text(f"../images/a.png ../labels/a.png\n\n"
                                    f"../images/b.png\n{absolute}\n")
    monkeypatch.chdir(images)  # a relative entry would be found here if cwd counted

    found, image_dir = collect_images(str(lists / "test.txt"))

    assert [os.path.normpath(p) for p in found] == [str(images / "a.png"),
                                                    str(images / "b.png"), str(absolute)]
    assert image_dir == str(tmp_path)  # the deepest folder holding every entry


def test_a_directory_gives_its_images_recursively_in_order(tmp_path):
    for name in ("b/2.JPG", "a/1.png", "a/notes.txt", "3.webp"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    found, image_dir = collect_images(str(tmp_path))
    assert found == [str(tmp_path / name) for name in ("3.webp", "a/1.png", "b/2.JPG")]
    assert image_dir == str(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="empty: no images in this directory"):
        collect_images(str(tmp_path / "empty"))
