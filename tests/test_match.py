"""bc.match against the pipeline users build by hand (multi-template-matching's): one
cv2.matchTemplate per template, skimage's peak_local_max on each map, then greedy
non-maximum suppression across templates by box overlap (IoU)."""

from __future__ import annotations

import numpy as np
import pytest

import batchconv as bc

cv2 = pytest.importorskip("cv2")
skimage = pytest.importorskip("skimage")
from skimage import data  # noqa: E402
from skimage.feature import peak_local_max  # noqa: E402

METHODS = {"ncc": cv2.TM_CCOEFF_NORMED, "ssd": cv2.TM_SQDIFF}


def by_hand(scene, templates, metric, threshold, max_overlap, top=None):
    """The multi-template-matching pipeline, written plainly: a set of (template, y, x)
    and their scores."""
    low = metric == "ssd"
    hits = []
    for t, tpl in enumerate(templates):
        m = cv2.matchTemplate(scene, tpl, METHODS[metric]).astype(np.float64)
        a, thr = (-m, -threshold) if low else (m, threshold)
        for y, x in peak_local_max(a, threshold_abs=thr, exclude_border=False):
            hits.append((m[y, x], t, y, x, tpl.shape[0], tpl.shape[1]))
    hits.sort(key=lambda h: (h[0] if low else -h[0], h[1], h[2], h[3]))
    kept = []
    for h in hits:
        ok = True
        for k in kept:
            iy = max(0, min(h[2] + h[4], k[2] + k[4]) - max(h[2], k[2]))
            ix = max(0, min(h[3] + h[5], k[3] + k[5]) - max(h[3], k[3]))
            inter = iy * ix
            union = h[4] * h[5] + k[4] * k[5] - inter
            if inter > max_overlap * union:
                ok = False
                break
        if ok:
            kept.append(h)
            if top is not None and len(kept) == top:
                break
    return kept


def scene_and_templates(n_templates=24):
    """A scene from skimage's images, and templates of several sizes cut from it (some
    cut twice: the same object found by two templates, one suppressed)."""
    scene = np.ascontiguousarray(data.gravel()[::2, ::2], np.float32) / 255  # 256 x 256
    rng = np.random.default_rng(7)
    templates = []
    for i in range(n_templates):
        h, w = (12, 16, 20)[i % 3], (14, 18)[i % 2]
        y, x = rng.integers(0, 256 - h), rng.integers(0, 256 - w)
        templates.append(np.ascontiguousarray(scene[y : y + h, x : x + w]))
    return scene, templates


@pytest.mark.parametrize("metric, threshold", [("ncc", 0.8), ("ssd", 0.5)])
def test_the_same_hits_as_by_hand(metric, threshold):
    scene, templates = scene_and_templates()
    want = by_hand(scene, templates, metric, threshold, 0.25)
    got = bc.match(scene, templates, metric=metric, threshold=threshold, max_overlap=0.25)
    assert len(want) >= 20
    assert {(t, y, x) for _, t, y, x, _, _ in want} == {
        (int(t), int(y), int(x)) for t, (y, x) in zip(got.template, got.start, strict=True)
    }
    scores = {(t, y, x): s for s, t, y, x, _, _ in want}
    for t, (y, x), s in zip(got.template, got.start, got.score, strict=True):
        assert abs(s - scores[(int(t), int(y), int(x))]) <= 1e-4 * (1 if metric == "ncc" else 50)
    np.testing.assert_array_equal(got.stop - got.start, [templates[t].shape for t in got.template])
    # best first
    assert (np.diff(got.score) <= 0).all() if metric == "ncc" else (np.diff(got.score) >= 0).all()


def test_top_and_labels_and_a_batch():
    """top: the best hits per image; templates made noisier one by one, so that their
    scores are far apart (no tie to break by rounding)."""
    scene, templates = scene_and_templates(6)
    rng = np.random.default_rng(1)
    templates = [
        (t + 0.15 * i * rng.standard_normal(t.shape)).astype(np.float32)
        for i, t in enumerate(templates)
    ]
    want = by_hand(scene, templates, "ncc", 0.5, 0.25, top=3)
    labels = [f"t{i}" for i in range(6)]
    got = bc.match(np.stack([scene, scene[::-1]]), templates, threshold=0.5, top=3, labels=labels)
    first = got.image == 0
    assert first.sum() == 3 and (~first).sum() <= 3
    pairs = zip(got.template[first], got.start[first], strict=True)
    assert [(int(t), *map(int, p)) for t, p in pairs] == [(t, y, x) for _, t, y, x, _, _ in want]
    assert got.label[first].tolist() == [f"t{t}" for _, t, _, _, _, _ in want]


def test_a_list_of_images_of_other_sizes_and_channels():
    rng = np.random.default_rng(3)
    a, b = rng.random((60, 80, 3)), rng.random((90, 70, 3))
    templates = [a[5:17, 9:21], b[40:50, 30:44]]
    got = bc.match([a, b], templates, threshold=0.95, channel_axis=-1)
    assert sorted(zip(got.image.tolist(), got.template.tolist(), got.start.tolist())) == [
        (0, 0, [5, 9]),
        (1, 1, [40, 30]),
    ]


def test_volumes():
    rng = np.random.default_rng(4)
    vol = rng.random((30, 32, 28))
    tpl = vol[4:12, 10:16, 3:11]
    got = bc.match(vol, [tpl], threshold=0.95)
    assert got.start.tolist() == [[4, 10, 3]] and got.stop.tolist() == [[12, 16, 11]]


def test_tables():
    scene, templates = scene_and_templates(4)
    got = bc.match(scene, templates, threshold=0.8, labels=list("abcd"))
    rec = got.to_records()
    names = ("image", "template", "label", "score", "start0", "stop0", "start1", "stop1")
    assert rec.dtype.names == names
    assert len(rec) == len(got) and rec["label"].tolist() == got.label.tolist()
    pd = pytest.importorskip("pandas")
    df = got.to_pandas()
    assert isinstance(df, pd.DataFrame) and list(df.columns) == list(names)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"max_overlap": 1.5}, ValueError, "max_overlap"),
        ({"top": 0}, ValueError, "top must be"),
        ({"labels": ["a"]}, ValueError, "one per template"),
        ({"channel_axis": 0}, ValueError, "channel_axis"),
    ],
)
def test_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        bc.match(np.ones((20, 20)), [np.ones((3, 3)), np.ones((4, 4))], threshold=0.5, **kwargs)


def test_a_template_larger_than_the_image():
    with pytest.raises(ValueError, match="larger than an image"):
        bc.match(np.ones((10, 10)), [np.ones((12, 3))], threshold=0.5)


def test_one_template_array_is_one_template():
    """An array of templates is one template (a bank is a list), whatever its axes."""
    rng = np.random.default_rng(5)
    scene = rng.random((120, 160))
    got = bc.match(scene, scene[10:30, 40:60], threshold=0.9)
    assert got.template.tolist() == [0] and got.start.tolist() == [[10, 40]]
    bank = np.stack([scene[10:30, 40:60], scene[50:70, 90:110]])
    got = bc.match(scene, list(bank), threshold=0.9)
    assert sorted(got.start.tolist()) == [[10, 40], [50, 90]]


def test_volumes_with_channels():
    rng = np.random.default_rng(6)
    vol = rng.random((20, 20, 20, 3))
    got = bc.match(vol, [vol[2:8, 3:9, 4:10]], threshold=0.9, channel_axis=-1)
    assert got.start.tolist() == [[2, 3, 4]] and got.stop.tolist() == [[8, 9, 10]]


def test_channels_must_agree_and_images_must_be_given():
    img = np.random.default_rng(7).random((50, 60, 3))
    for template in (img[5:15, 5:15, 0], img[5:15, 5:15, :2]):
        with pytest.raises(ValueError, match="channels"):
            bc.match(img, [template], threshold=0.9, channel_axis=-1)
    with pytest.raises(ValueError, match="empty list"):
        bc.match([], [np.ones((5, 5))], threshold=0.9)


@pytest.mark.parametrize("top", [None, 5])
@pytest.mark.parametrize("dims", [2, 3])
def test_suppression_compiled_equals_numpy(dims, top):
    """The compiled greedy loop keeps exactly the boxes the NumPy loop keeps."""
    from batchconv import compiled
    from batchconv.match import _suppress

    rng = np.random.default_rng(dims)
    n = 400
    image = rng.integers(0, 3, n)
    template = rng.integers(0, 4, n)
    score = np.round(rng.random(n), 2)  # ties too
    start = rng.integers(0, 60, (n, dims))
    stop = start + rng.integers(3, 15, (n, dims))
    for best_low in (False, True):
        for overlap in (0.0, 0.25, 0.7):
            args = (image, template, score, start, stop, best_low, overlap, top)
            with compiled.use_numba(True):
                fast = _suppress(*args)
            with compiled.use_numba(False):
                slow = _suppress(*args)
            np.testing.assert_array_equal(fast, slow)


def _mtm_scene():
    """Two of skimage's images side by side (gravel, coins), 256 x 512, and 24 templates
    of six shapes cut from both."""
    gravel = data.gravel()[::2, ::2].astype(np.float32) / 255
    coins = data.coins()[:256, 60:316].astype(np.float32) / 255
    scene = np.ascontiguousarray(np.hstack([gravel, coins]))
    rng = np.random.default_rng(12)
    templates = []
    for i in range(24):
        h, w = (12, 18, 24)[i % 3], (14, 20)[i % 2]
        y, x = rng.integers(0, 256 - h), rng.integers(0, 512 - w)
        noise = 0.02 * rng.standard_normal((h, w)).astype(np.float32)
        templates.append(np.ascontiguousarray(scene[y : y + h, x : x + w] + noise))
    return scene, templates


@pytest.mark.parametrize("metric, threshold", [("ncc", 0.7), ("ssd", 0.3)])
def test_the_same_hits_as_multi_template_matching(metric, threshold):
    """bc.match against the multi-template-matching package itself (2.0.1):
    matchTemplates for TM_CCOEFF_NORMED; for TM_SQDIFF, which its matchTemplates
    refuses ("not supported"), the two steps it is made of, findMatches then NMS."""
    MTM = pytest.importorskip("MTM")
    scene, templates = _mtm_scene()
    listed = [(str(i), t) for i, t in enumerate(templates)]
    if metric == "ncc":
        hits = MTM.matchTemplates(
            listed, scene, cv2.TM_CCOEFF_NORMED, score_threshold=threshold, maxOverlap=0.25
        )
    else:
        found = MTM.findMatches(listed, scene, cv2.TM_SQDIFF, score_threshold=threshold)
        hits = MTM.NMS(found, threshold, sortAscending=True, maxOverlap=0.25)
    got = bc.match(scene, templates, metric=metric, threshold=threshold, max_overlap=0.25)
    theirs = {(int(label), box[1], box[0]): score for label, box, score in hits}
    ours = {
        (int(t), int(y), int(x)): s
        for t, (y, x), s in zip(got.template, got.start, got.score, strict=True)
    }
    assert len(theirs) >= 20 and set(ours) == set(theirs)
    tol = 1e-4 if metric == "ncc" else 1e-4 * max(t.size for t in templates)
    for key, s in ours.items():
        assert abs(s - theirs[key]) <= tol
    boxes = {(int(label), box[1], box[0]): box[2:] for label, box, _ in hits}
    for t, (y, x), (h, w) in zip(got.template, got.start, got.stop - got.start, strict=True):
        assert boxes[(int(t), int(y), int(x))] == (w, h)


def test_masks_as_multi_template_matching_uses_them():
    """mask=: one per template (None: no mask), as MTM takes (label, template, mask)
    for TM_CCORR_NORMED (our cosine); the same hits and scores."""
    MTM = pytest.importorskip("MTM")
    scene, templates = _mtm_scene()
    templates = templates[:12]
    rng = np.random.default_rng(3)
    masks = [(rng.random(t.shape) < 0.75).astype(np.float32) for t in templates]
    masks[5] = None
    listed = [
        (str(i), t) if m is None else (str(i), t, m)
        for i, (t, m) in enumerate(zip(templates, masks, strict=True))
    ]
    hits = MTM.matchTemplates(
        listed, scene, cv2.TM_CCORR_NORMED, score_threshold=0.97, maxOverlap=0.25
    )
    got = bc.match(scene, templates, metric="cosine", threshold=0.97, max_overlap=0.25, mask=masks)
    theirs = {(int(label), box[1], box[0]): score for label, box, score in hits}
    ours = {
        (int(t), int(y), int(x)): s
        for t, (y, x), s in zip(got.template, got.start, got.score, strict=True)
    }
    assert len(theirs) >= 10 and set(ours) == set(theirs)
    for key, s in ours.items():
        assert abs(s - theirs[key]) <= 1e-4


def test_one_mask_for_every_template_and_channels():
    rng = np.random.default_rng(5)
    img = rng.random((50, 60, 3))
    templates = [img[10:18, 20:30], img[30:38, 5:15]]
    disc = np.hypot(*np.mgrid[-4:4, -5:5]) < 4.5  # (8, 10): every channel
    got = bc.match(img, templates, threshold=0.99, channel_axis=-1, mask=disc)
    assert sorted(zip(got.template.tolist(), got.start.tolist())) == [(0, [10, 20]), (1, [30, 5])]
    with pytest.raises(ValueError, match="mask of template 0"):
        bc.match(img, templates, threshold=0.9, channel_axis=-1, mask=np.ones((3, 3)))
    with pytest.raises(ValueError, match="one per template"):
        bc.match(img, templates, threshold=0.9, channel_axis=-1, mask=[None])
