"""Diagrams of the spec language, drawn when the docs build (matplotlib's plot directive).

``roles_figure``: example specs with each letter coloured by its role, as batchconv's
own parser assigns it. ``summed_figure`` and ``paired_figure``: what a call computes for
channels that are summed ("nchw,kchw->nkhw|hw") and for channels that are paired
("nchw,chw->nchw|hw").
``stride_figure``: which samples each output reads under stride and dilation.

To look at one outside the docs: ``python3 -c "import spec_roles as s;
s.summed_figure().savefig('summed.png')"`` in this folder.
"""

import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, Rectangle

from batchconv.spec import parse_spec

COLORS = {
    "batch": "#1f77b4",
    "bank": "#e67e22",
    "summed": "#2ca02c",
    "paired": "#9467bd",
    "sliding": "#d62728",
    "reduced": "#8c564b",
    "one-sided": "#7f7f7f",
}

EXAMPLES = [
    ("nhw,khw->nkhw|hw", "the default for 2-D: every image against every filter"),
    ("nchw,kchw->nkhw|hw", "channels summed, as in a CNN layer"),
    ("nchw,chw->nchw|hw", "depthwise: channel c of x with filter c"),
    ("nhwc,hwco->nhwo|hw", "TensorFlow's NHWC images and HWIO filters"),
    ("nhw,khw->nk|hw", "sliding axes left out of the output: reduced"),
]


def roles(spec):
    """{letter: role} for a spec, from batchconv's parser."""
    s = parse_spec(spec)
    out = {}
    for role in ("batch", "bank", "summed", "paired"):
        for c in getattr(s, role):
            out[c] = role
    for c in s.x_summed + s.w_summed:
        out[c] = "one-sided"
    for c in s.sliding:
        out[c] = "reduced" if c in s.reduced else "sliding"
    return out


def _draw_spec(ax, x0, y, spec, size, fig_width):
    """Draw the spec's characters from x0 (axes fraction), each letter in its role's
    colour."""
    role = roles(spec)
    advance = 0.6 * size / 72 / fig_width  # a monospace character's width, as a fraction
    x = x0
    for ch in spec:
        color = COLORS[role[ch]] if ch in role else "#333333"
        weight = "bold" if ch in role else "normal"
        ax.text(
            x,
            y,
            ch,
            color=color,
            fontsize=size,
            family="monospace",
            weight=weight,
            va="center",
            ha="left",
        )
        x += advance


def roles_figure():
    width = 7.4
    fig = plt.figure(figsize=(width, 3.3))
    ax = fig.add_axes([0, 0, 1, 1])
    ax.set_axis_off()
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    step = 0.16
    for i, (spec, what) in enumerate(EXAMPLES):
        y = 0.92 - i * step
        _draw_spec(ax, 0.02, y, spec, 15, width)
        ax.text(0.41, y, what, fontsize=9.5, va="center", color="#333333")
    # legend of the roles
    y = 0.92 - len(EXAMPLES) * step + 0.03
    x = 0.02
    for name, color in COLORS.items():
        ax.add_patch(Rectangle((x, y - 0.03), 0.022, 0.06, color=color))
        ax.text(x + 0.03, y, name, fontsize=9, va="center")
        x += 0.03 + (0.55 * 9 / 72 * len(name)) / width + 0.035
    return fig


def _stack(ax, x, y, w, h, depth, color, offset=0.12, alpha=0.25, lw=1.2):
    """A stack of ``depth`` planes (channels) drawn back to front."""
    for d in range(depth - 1, -1, -1):
        ax.add_patch(
            Rectangle(
                (x + d * offset, y + d * offset),
                w,
                h,
                facecolor=color,
                edgecolor=color,
                alpha=alpha if d else alpha + 0.15,
                lw=lw,
            )
        )
    return (x, y)


def _arrow(ax, a, b, color="#444444", style="-|>", rad=0.0):
    ax.add_patch(
        FancyArrowPatch(
            a,
            b,
            arrowstyle=style,
            mutation_scale=14,
            color=color,
            lw=1.3,
            connectionstyle=f"arc3,rad={rad}",
        )
    )


def _panel_summed(ax):
    ax.set_title('"nchw,kchw->nkhw|hw": channels summed, every item with every filter', fontsize=11)
    # x: 3 items of 3 channels
    for n in range(3):
        y = 7.6 - n * 3.0
        _stack(ax, 0.3, y, 2.2, 2.2, 3, COLORS["batch"])
        ax.text(0.1, y + 1.1, f"n={n}", ha="right", va="center", fontsize=10, color=COLORS["batch"])
    # the window on item 0, in every channel
    for d in range(3):
        ax.add_patch(
            Rectangle(
                (0.9 + d * 0.12, 8.4 + d * 0.12),
                0.8,
                0.8,
                fill=False,
                edgecolor=COLORS["sliding"],
                lw=1.6,
                ls="--",
            )
        )
    ax.text(1.55, 10.4, "x\nitems, channels", ha="center", va="bottom", fontsize=10)
    # w: 2 filters of 3 channels
    for k in range(2):
        y = 8.0 - k * 2.4
        _stack(ax, 4.3, y, 0.8, 0.8, 3, COLORS["bank"])
        ax.text(5.55, y + 0.45, f"k={k}", va="center", fontsize=10, color=COLORS["bank"])
    ax.text(4.9, 10.4, "w\nfilters, channels", ha="center", va="bottom", fontsize=10)
    # result: 3 x 2 maps
    for n in range(3):
        for k in range(2):
            x, y = 7.0 + k * 2.0, 7.9 - n * 3.0
            ax.add_patch(Rectangle((x, y), 1.6, 1.6, facecolor="#dddddd", edgecolor="#777777"))
    ax.add_patch(Rectangle((9.4, 9.05), 0.18, 0.18, color=COLORS["sliding"]))
    ax.text(7.8, 9.6, "k=0", ha="center", fontsize=10, color=COLORS["bank"])
    ax.text(9.8, 9.6, "k=1", ha="center", fontsize=10, color=COLORS["bank"])
    ax.text(8.8, 10.4, "result (n, k, h, w)\nevery pair", ha="center", va="bottom", fontsize=10)
    _arrow(ax, (1.9, 9.3), (9.4, 9.15), COLORS["sliding"], rad=-0.18)
    _arrow(ax, (5.15, 6.0), (9.45, 9.05), COLORS["bank"], rad=0.25)
    ax.text(
        5.05,
        1.0,
        "one output = sum over c and the window of x[n, c, window] * w[k, c]",
        ha="center",
        fontsize=10,
    )


def _panel_paired(ax):
    ax.set_title('"nchw,chw->nchw|hw": channels paired (depthwise)', fontsize=11)
    chans = ["#9467bd", "#b39ddb", "#d1c4e9"]
    names = ["c=0", "c=1", "c=2"]
    for c in range(3):
        y = 7.6 - c * 3.0
        ax.add_patch(
            Rectangle(
                (0.3, y), 2.2, 2.2, facecolor=chans[c], alpha=0.55, edgecolor=COLORS["paired"]
            )
        )
        ax.add_patch(
            Rectangle(
                (0.9, y + 0.8), 0.8, 0.8, fill=False, edgecolor=COLORS["sliding"], lw=1.6, ls="--"
            )
        )
        ax.text(
            0.1, y + 1.1, names[c], ha="right", va="center", fontsize=10, color=COLORS["paired"]
        )
        ax.add_patch(
            Rectangle(
                (4.3, y + 0.7), 0.8, 0.8, facecolor=chans[c], alpha=0.55, edgecolor=COLORS["paired"]
            )
        )
        ax.add_patch(Rectangle((7.0, y), 2.2, 2.2, facecolor="#dddddd", edgecolor="#777777"))
        ax.add_patch(Rectangle((8.0, y + 1.2), 0.18, 0.18, color=COLORS["sliding"]))
        _arrow(ax, (2.55, y + 1.1), (4.25, y + 1.1), COLORS["paired"])
        _arrow(ax, (5.15, y + 1.1), (6.95, y + 1.1), COLORS["paired"])
    ax.text(1.4, 10.4, "x, item n\nchannels c", ha="center", va="bottom", fontsize=10)
    ax.text(4.7, 10.4, "w\none filter per c", ha="center", va="bottom", fontsize=10)
    ax.text(8.1, 10.4, "result (n, c, h, w)\none map per c", ha="center", va="bottom", fontsize=10)
    ax.text(
        4.7,
        1.0,
        "one output = sum over the window of x[n, c, window] * w[c]",
        ha="center",
        fontsize=10,
    )


def _panel_figure(draw):
    fig, ax = plt.subplots(figsize=(7.0, 6.2))
    ax.set_xlim(-0.9, 11.0)
    ax.set_ylim(0.5, 11.6)
    ax.set_aspect("equal")
    ax.set_axis_off()
    draw(ax)
    fig.subplots_adjust(left=0.0, right=1.0, top=0.95, bottom=0.0)
    return fig


def summed_figure():
    return _panel_figure(_panel_summed)


def paired_figure():
    return _panel_figure(_panel_paired)


def stride_figure():
    """Which samples each output reads: a 3-tap filter under stride and dilation."""
    cases = [(1, 1, "stride=1, dilation=1"), (2, 1, "stride=2"), (1, 2, "dilation=2")]
    n, taps, rows = 9, 3, 3
    fig, axes = plt.subplots(1, 3, figsize=(7.4, 1.75))
    for ax, (stride, dil, title) in zip(axes, cases):
        ax.set_xlim(-2.2, n + 0.1)
        ax.set_ylim(-rows - 0.35, 1.5)
        ax.set_aspect("equal")
        ax.set_axis_off()
        ax.set_title(title, fontsize=9.5)
        for i in range(n):
            ax.add_patch(Rectangle((i, 0), 0.9, 0.9, facecolor="#e8eef6", edgecolor="#7a8ca5"))
            ax.text(i + 0.45, 0.45, str(i), ha="center", va="center", fontsize=7)
        ax.text(-0.2, 0.45, "x", ha="right", va="center", fontsize=8)
        for j in range(rows):
            y = -1.15 - j
            start = j * stride
            ax.text(
                -0.2,
                y + 0.45,
                f"out[{j}]",
                ha="right",
                va="center",
                fontsize=7.5,
                color=COLORS["sliding"],
            )
            for i in range(n):
                ax.add_patch(
                    Rectangle((i, y), 0.9, 0.9, facecolor="white", edgecolor="#dddddd", lw=0.8)
                )
            for t in range(taps):
                ax.add_patch(
                    Rectangle(
                        (start + t * dil, y), 0.9, 0.9, facecolor=COLORS["sliding"], alpha=0.8
                    )
                )
    fig.subplots_adjust(left=0.01, right=0.99, top=0.86, bottom=0.0, wspace=0.06)
    return fig
