"""
A filter bank's responses
=========================

Texture and edge analysis apply a bank of filters to every image: Gabor filters at
several orientations and frequencies, or derivative filters. One call computes every
image against every filter; complex filters work as they are.
"""

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap
from skimage import data
from skimage.filters import gabor_kernel

import batchconv as bc

# %%
# Gabor filters
# -------------
#
# Eight complex Gabor kernels from scikit-image: four orientations at two frequencies.
# ``correlate`` conjugates complex filters (as ``scipy.signal.correlate`` does), which
# leaves the magnitude of the response, the local energy at that orientation and
# frequency, unchanged.

image = data.camera()[::2, ::2].astype(np.float32) / 255  # 256 x 256
thetas = np.arange(4) * np.pi / 4
frequencies = [0.1, 0.25]
kernels = [gabor_kernel(f, theta=t, sigma_x=4, sigma_y=4) for f in frequencies for t in thetas]
# a bank is one array: pad the kernels, centred, to the largest one's size
size = np.max([k.shape for k in kernels], axis=0)
bank = np.stack(
    [
        np.pad(k, [((s - n) // 2, s - n - (s - n) // 2) for s, n in zip(size, k.shape)])
        for k in kernels
    ]
).astype(np.complex64)  # float32 images with complex64 filters: complex64 results
print("bank:", bank.shape, bank.dtype)

responses = bc.correlate(image[None], bank, mode="same", padding="symmetric")[0]
energy = np.abs(responses)  # (8, 256, 256)
print("responses:", responses.shape, responses.dtype)

fig, axes = plt.subplots(3, 5, figsize=(12, 7.4), gridspec_kw={"width_ratios": [1.6, 1, 1, 1, 1]})
gs = axes[0, 0].get_gridspec()
for ax in axes[:, 0]:
    ax.remove()
big = fig.add_subplot(gs[:, 0])
big.imshow(image, cmap="gray")
big.set_title("image")
big.set_axis_off()
for n, (f, t) in enumerate((f, t) for f in frequencies for t in thetas):
    row, col = divmod(n, 4)
    ax = axes[row, col + 1]
    ax.imshow(energy[n], cmap="magma")
    ax.set_title(f"f={f}, {np.degrees(t):.0f} deg", fontsize=9)
    ax.set_axis_off()
# the kernels themselves (real parts) on the last row
for col in range(4):
    ax = axes[2, col + 1]
    ax.imshow(bank[col + 4].real, cmap="RdBu_r")
    ax.set_title(f"kernel, f=0.25, {np.degrees(thetas[col]):.0f} deg", fontsize=8)
    ax.set_axis_off()
fig.tight_layout()

# %%
# The dominant orientation of each pixel is where the bank's energy peaks (the bank is
# an axis of the result, so plain NumPy finishes the job):

strongest = energy[4:]  # f = 0.25
dominant = np.argmax(strongest, axis=0).astype(float)
dominant[strongest.max(axis=0) < 0.15 * strongest.max()] = np.nan  # flat regions: no texture
colors = ListedColormap(["#e41a1c", "#377eb8", "#4daf4a", "#984ea3"])
fig, ax = plt.subplots(figsize=(5.6, 4.6))
ax.imshow(image, cmap="gray", alpha=0.5)
im = ax.imshow(dominant, cmap=colors, vmin=-0.5, vmax=3.5, interpolation="nearest", alpha=0.85)
cb = fig.colorbar(im, ax=ax, ticks=range(4), fraction=0.046)
cb.ax.set_yticklabels([f"{np.degrees(t):.0f} deg" for t in thetas])
ax.set_title("strongest orientation (f=0.25), where there is texture", fontsize=10)
ax.set_axis_off()
fig.tight_layout()

# %%
# Derivative filters on a batch
# -----------------------------
#
# Sobel derivatives along rows and columns and a Laplacian, as a bank of three 3x3
# filters, over a batch of images (here two crops). ``padding="symmetric"`` repeats the
# edge sample, as ``scipy.ndimage``'s default boundary does.

sobel_r = np.outer([-1, 0, 1], [1, 2, 1]).astype(np.float32)
laplace = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], np.float32)
derivatives = np.stack([sobel_r, sobel_r.T, laplace])
coins = data.coins().astype(np.float32) / 255
batch = np.stack([coins[:150, :190], coins[150:300, 190:380]])  # (2, 150, 190)

out = bc.correlate(batch, derivatives, mode="same", padding="symmetric")  # (2, 3, 150, 190)
magnitude = np.hypot(out[:, 0], out[:, 1])
print("out:", out.shape)

fig, axes = plt.subplots(2, 4, figsize=(12, 5.2))
titles = ["image", "d/d row (Sobel)", "d/d column (Sobel)", "gradient magnitude"]
for n in range(2):
    panels = [batch[n], out[n, 0], out[n, 1], magnitude[n]]
    for ax, img, title in zip(axes[n], panels, titles):
        if title in ("image", "gradient magnitude"):
            ax.imshow(img, cmap="gray")
        else:  # signed: white is zero
            v = np.abs(img).max()
            ax.imshow(img, cmap="RdBu_r", vmin=-v, vmax=v)
        if n == 0:
            ax.set_title(title, fontsize=10)
        ax.set_axis_off()
fig.tight_layout()

# sphinx_gallery_thumbnail_number = 1
