"""batchconv.compat.tf against jax.lax.conv_general_dilated (which implements TF's
'SAME' rule): conv1d/2d/3d and depthwise_conv2d, sizes 15-17, strides 1-3, dilations
1-2, float64. Run as a script (tests/test_compat_tf.py runs it in its own process:
JAX's threads and the test suite's forks do not mix); prints one line per failure and
'cases N failed M' last."""

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)
from jax import lax  # noqa: E402

from batchconv.compat import tf  # noqa: E402

DN = {1: ("NWC", "WIO", "NWC"), 2: ("NHWC", "HWIO", "NHWC"), 3: ("NDHWC", "DHWIO", "NDHWC")}
KERNELS = {1: (3,), 2: (3, 4), 3: (3, 2, 2)}


def main() -> None:
    rng = np.random.default_rng(0)
    cases = failed = 0
    for d in (1, 2, 3, "depthwise"):
        nd = 2 if d == "depthwise" else d
        for size in (15, 16, 17):
            for s in (1, 2, 3):
                for dl in (1, 2):
                    x = rng.standard_normal((2, *[size] * nd, 3))
                    k = KERNELS[nd]
                    if d == "depthwise":
                        w = rng.standard_normal((*k, 3, 2))
                        got = tf.depthwise_conv2d(x, w, strides=s, padding="SAME", dilations=dl)
                        want = np.concatenate(  # (per channel: fast to compile)
                            [
                                np.asarray(
                                    lax.conv_general_dilated(
                                        x[..., c : c + 1],
                                        w[..., c : c + 1, :],
                                        (s, s),
                                        "SAME",
                                        rhs_dilation=(dl, dl),
                                        dimension_numbers=DN[2],
                                    )
                                )
                                for c in range(3)
                            ],
                            axis=-1,
                        )
                    else:
                        w = rng.standard_normal((*k, 3, 4))
                        want = np.asarray(
                            lax.conv_general_dilated(
                                x,
                                w,
                                (s,) * d,
                                "SAME",
                                rhs_dilation=(dl,) * d,
                                dimension_numbers=DN[d],
                            )
                        )
                        conv = getattr(tf, f"conv{d}d")
                        got = (
                            conv(x, w, stride=s, padding="SAME", dilations=dl)
                            if d == 1
                            else conv(x, w, strides=s, padding="SAME", dilations=dl)
                        )
                    cases += 1
                    if got.shape != want.shape or np.abs(got - want).max() > 1e-10:
                        failed += 1
                        print(f"conv {d} size {size} stride {s} dilation {dl}: differs")
    print(f"cases {cases} failed {failed}")


if __name__ == "__main__":
    main()
