"""Images decode as the training frameworks decode them: RGB, EXIF orientation applied,
16-bit grey scaled (not clipped), palette and alpha resolved; the size a label is scaled by
is the displayed one."""

from __future__ import annotations

import numpy as np
from PIL import Image

from deployer.datasets.base import image_size, to_rgb


def test_modes_become_rgb_like_the_frameworks(tmp_path):
    grey16 = Image.fromarray(np.full((4, 6), 65535, np.uint16))
    assert np.asarray(to_rgb(grey16)).tolist()[0][0] == [255, 255, 255]
    half = Image.fromarray(np.full((4, 6), 32896, np.uint16))            # 128 * 257
    assert np.asarray(to_rgb(half))[0, 0].tolist() == [128, 128, 128]
    palette = Image.fromarray(np.zeros((4, 6, 3), np.uint8)).convert("P")
    rgba = Image.fromarray(np.full((4, 6, 4), 200, np.uint8), "RGBA")
    grey = Image.fromarray(np.full((4, 6), 7, np.uint8), "L")
    for im in (palette, rgba, grey):
        out = to_rgb(im)
        assert out.mode == "RGB" and out.size == (6, 4)
    assert np.asarray(to_rgb(grey))[0, 0].tolist() == [7, 7, 7]


def test_exif_rotation_is_applied_and_sizes_follow_it(tmp_path):
    pixels = np.zeros((4, 6, 3), np.uint8)
    pixels[0, 0] = 255                                  # a marked corner
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6                                    # "rotate 90 CW to display"
    Image.fromarray(pixels).save(path, exif=exif, quality=100)
    assert image_size(path) == (4, 6)                   # displayed width x height
    with Image.open(path) as im:
        shown = to_rgb(im)
    assert shown.size == (4, 6)
    assert np.asarray(shown)[0, -1].mean() > 200        # the corner moved where the viewer shows it
