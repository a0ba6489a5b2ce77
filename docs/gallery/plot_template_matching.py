"""
Template matching
=================

Find where a pattern occurs in an image: the normalised cross-correlation
(``metric="ncc"``, the Pearson correlation of the template with each window) is 1 where
a window is the template up to brightness and contrast, and near 0 where it is unrelated.
"""

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle
from skimage import data

import batchconv as bc

# %%
# Every coin like this one
# ------------------------
#
# One template, cut from the image itself, against every window of the image. With
# ``mode="valid"`` (the default) the score at ``(row, column)`` belongs to the window
# whose top-left corner is there.

image = data.coins().astype(np.float32) / 255  # 303 x 384, gray
template = image[170:220, 75:130]  # one coin
scores = bc.correlate(image[None], template, metric="ncc")[0]
print(scores.shape, scores.dtype, f"best score {scores.max():.3f}")

# %%
# There is no single best match: every coin of that size scores high. A few lines of
# NumPy find the peaks: take the best score, keep it if it is above the threshold, blank
# out the windows that overlap it, and repeat.


def find_peaks(scores, threshold, size):
    """(row, column, score) of each peak above threshold, at least size apart."""
    s = scores.copy()
    peaks = []
    while True:
        i, j = np.unravel_index(np.argmax(s), s.shape)
        if s[i, j] < threshold:
            return peaks
        peaks.append((i, j, scores[i, j]))
        rows = slice(max(i - size[0] + 1, 0), i + size[0])
        cols = slice(max(j - size[1] + 1, 0), j + size[1])
        s[rows, cols] = -1  # windows that overlap this match


matches = find_peaks(scores, threshold=0.55, size=template.shape)
print(f"{len(matches)} matches (row, column, score):")
for n in range(0, len(matches), 5):
    print("  ".join(f"({i:3d}, {j:3d}) {s:.2f}" for i, j, s in matches[n : n + 5]))

h, w = template.shape
fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), gridspec_kw={"width_ratios": [1.1, 1]})
axes[0].imshow(image, cmap="gray", vmin=0, vmax=1)
axes[0].set_title(f"{len(matches)} matches with a score above 0.55")
for i, j, s in matches:
    axes[0].add_patch(Rectangle((j, i), w, h, fill=False, edgecolor="#ff3b30", lw=2))
    axes[0].text(
        j + 1,
        i + 1,
        f"{s:.2f}",
        color="white",
        fontsize=7.5,
        va="top",
        bbox=dict(facecolor="#ff3b30", edgecolor="none", pad=1),
    )
inset = axes[0].inset_axes([1.01, 0.0, 0.16, 0.2])  # the template, beside the image
inset.imshow(template, cmap="gray", vmin=0, vmax=1)
inset.set_title("template", fontsize=9)
inset.set_axis_off()
im = axes[1].imshow(scores, cmap="RdBu_r", vmin=-1, vmax=1)
axes[1].set_title('scores (metric="ncc"), by top-left corner')
fig.colorbar(im, ax=axes[1], fraction=0.04)
for ax in axes:
    ax.set_axis_off()
fig.tight_layout()

# %%
# Many templates at once, without the score maps
# ----------------------------------------------
#
# A bank of templates is one call: every template against every image. When only the
# best location matters, ``reduce="argmax"`` returns it (row, column) and
# ``reduce="max"`` its score, computed block by block: the score maps are never held.
#
# Here four patches of a portrait are searched for in a second, darker and noisy copy of
# it.

portrait = data.astronaut()[::2, ::2].mean(axis=2).astype(np.float32) / 255  # 256 x 256
corners = [(40, 85), (100, 150), (160, 40), (190, 190)]
bank = np.stack([portrait[i : i + 40, j : j + 40] for i, j in corners])  # (4, 40, 40)

rng = np.random.default_rng(0)
photo = 0.6 * portrait + 0.15 + 0.05 * rng.standard_normal(portrait.shape, dtype=np.float32)

where = bc.correlate(photo[None], bank, metric="ncc", reduce="argmax")[0]  # (4, 2)
best = bc.correlate(photo[None], bank, metric="ncc", reduce="max")[0]  # (4,)
for (i, j), (fi, fj), s in zip(corners, where, best):
    print(f"template cut at ({i:3d}, {j:3d}) found at ({fi:3d}, {fj:3d}), score {s:.3f}")

colors = ["#ff3b30", "#ffcc00", "#34c759", "#0a84ff"]
fig = plt.figure(figsize=(10, 5.2))
grid = fig.add_gridspec(2, 4, width_ratios=[1, 1, 0.15, 4])
for n, (t, c) in enumerate(zip(bank, colors)):
    ax = fig.add_subplot(grid[n // 2, n % 2])
    ax.imshow(t, cmap="gray", vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"template {n}", fontsize=9)
    for side in ax.spines.values():
        side.set_edgecolor(c)
        side.set_linewidth(3)
ax = fig.add_subplot(grid[:, 3])
ax.imshow(photo, cmap="gray", vmin=0, vmax=1)
for n, ((fi, fj), s, c) in enumerate(zip(where, best, colors)):
    ax.add_patch(Rectangle((fj, fi), 40, 40, fill=False, edgecolor=c, lw=2.5))
    ax.text(
        fj + 1,
        fi - 2,
        f"{n}: {s:.2f}",
        color="black",
        fontsize=9,
        bbox=dict(facecolor=c, edgecolor="none", pad=1.5),
    )
ax.set_title('reduce="argmax" and "max" on a darker, noisy copy')
ax.set_axis_off()
fig.tight_layout()

# %%
# The same search with OpenCV would be one ``cv2.matchTemplate`` call and one
# ``cv2.minMaxLoc`` per template; see :doc:`/coming_from/opencv`.

# sphinx_gallery_thumbnail_number = 1
