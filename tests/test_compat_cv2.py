"""batchconv.compat.cv2 against OpenCV: matchTemplate's six methods with and without a
mask (binary and float, one channel and three), filter2D's anchors, borders, depths."""

from itertools import product

import numpy as np
import pytest

from batchconv.compat import cv2

ocv = pytest.importorskip("cv2")


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.uint8])
@pytest.mark.parametrize("mask_kind", [None, "binary", "float", "one channel"])
def test_match_template_equals_opencv(channels, dtype, mask_kind):
    rng = np.random.default_rng(channels * 10 + (dtype == np.uint8))
    img = (rng.random((40, 36, channels)) * 255).astype(dtype)
    img = img[..., 0] if channels == 1 else img
    tpl = img[5:16, 7:15].copy()
    if dtype == np.float32:
        tpl += rng.standard_normal(tpl.shape).astype(np.float32) * 5
    mask = {
        None: None,
        "binary": ((rng.random(tpl.shape) < 0.7) * 255).astype(np.uint8),
        "float": rng.random(tpl.shape).astype(np.float32),
        "one channel": ((rng.random(tpl.shape[:2]) < 0.7) * 255).astype(np.uint8),
    }[mask_kind]
    for method in range(6):
        want = ocv.matchTemplate(img, tpl, method, mask=mask)
        got = cv2.matchTemplate(img, tpl, method, mask=mask)
        assert got.dtype == np.float32 and got.shape == want.shape
        scale = max(1.0, float(np.abs(want).max()))
        np.testing.assert_allclose(got, want, atol=2e-5 * scale, err_msg=f"method {method}")


def test_ccoeff_centres_each_channel():
    """The core's ncc centres the whole window; compat.cv2 each channel, as OpenCV."""
    import batchconv as bc

    rng = np.random.default_rng(3)
    img = rng.random((30, 30, 3)).astype(np.float32)
    tpl = img[4:12, 6:13] * np.array([1.0, 0.5, 2.0], np.float32)
    ours = cv2.matchTemplate(img, tpl, cv2.TM_CCOEFF_NORMED)
    np.testing.assert_allclose(ours, ocv.matchTemplate(img, tpl, ocv.TM_CCOEFF_NORMED), atol=2e-5)
    core = bc.correlate(img, tpl, "hwc,hwc->hw|hw", metric="ncc")
    assert np.abs(core - ours).max() > 1e-3


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64])
def test_filter2d_equals_opencv(channels, dtype):
    rng = np.random.default_rng(channels)
    src = (rng.random((20, 17, channels)) * 255).astype(dtype)
    src = src[..., 0] if channels == 1 else src
    borders = [
        cv2.BORDER_CONSTANT,
        cv2.BORDER_REPLICATE,
        cv2.BORDER_REFLECT,
        cv2.BORDER_REFLECT_101,
    ]
    for ksize, border, ddepth in product([(3, 3), (4, 5), (1, 6)], borders, (-1, 5, 6)):
        k = rng.standard_normal(ksize)
        for anchor in [(-1, -1), (0, 0), (ksize[1] - 1, ksize[0] - 1)]:
            kw = dict(anchor=anchor, delta=1.5, borderType=border)
            try:
                want = ocv.filter2D(src, ddepth, k, **kw)
            except ocv.error:  # a combination of depths OpenCV does not offer
                continue
            got = cv2.filter2D(src, ddepth, k, **kw)
            assert got.dtype == want.dtype and got.shape == want.shape
            # 8-bit: OpenCV sums in float32 before rounding (at most 1 apart)
            tol = 1 if want.dtype == np.uint8 else 1e-6 * max(1.0, float(np.abs(want).max()))
            assert np.abs(got.astype(np.float64) - want).max() <= tol, (ksize, border, anchor)


def test_errors():
    img = np.zeros((10, 10), np.float32)
    with pytest.raises(TypeError, match="uint8 or both float32"):
        cv2.matchTemplate(img.astype(np.float64), img[:3, :3].astype(np.float64), 0)
    with pytest.raises(ValueError, match="larger"):
        cv2.matchTemplate(img[:3, :3], img, 0)
    with pytest.raises(ValueError, match="method"):
        cv2.matchTemplate(img, img[:3, :3], 7)
    with pytest.raises(ValueError, match="not supported"):
        cv2.filter2D(img, -1, np.ones((3, 3)), borderType=cv2.BORDER_WRAP)
