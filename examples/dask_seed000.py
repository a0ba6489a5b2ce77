"""Seed 000 at scale on a Dask cluster: every image against every filter, 3-D 'same'
correlation, max over the result (``"nhwd,khwd->nk|hwd"``), 96x96x3 float32.

    python examples/dask_seed000.py                        # 500 x 1000, LocalCluster 2 x 1
    python examples/dask_seed000.py --images 100 --filters 200 --check
    python examples/dask_seed000.py --scheduler tcp://scheduler-host:8786   # a real cluster

The images and filters are generated on the workers as chunked Dask arrays (at scale they
would come from ``da.from_zarr``, ``da.from_delayed`` over files, ...): the client never
holds them. ``bc.correlate`` returns a lazy (images x filters) table; each task correlates
one chunk of images with one chunk of filters, the max fused in. Watch it on the dashboard
(the link is printed) or in the progress bar.

Pointing the same code at a real cluster: start ``dask scheduler`` on one machine and
``dask worker tcp://scheduler-host:8786 --nthreads 1`` on each (one thread per worker
process, or per core: batchconv uses one thread per task unless ``workers=`` says
otherwise), install batchconv on every worker, and pass ``--scheduler``.
"""

from __future__ import annotations

import argparse
import time

import dask.array as da
import numpy as np
from distributed import Client, LocalCluster, progress

import batchconv as bc

SPEC = "nhwd,khwd->nk|hwd"
SHAPE = (96, 96, 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--filters", type=int, default=1000)
    ap.add_argument("--image-chunk", type=int, default=50)
    ap.add_argument("--filter-chunk", type=int, default=500)
    ap.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes")
    ap.add_argument("--threads", type=int, default=1, help="threads per worker")
    ap.add_argument("--scheduler", help="address of a running scheduler (else a LocalCluster)")
    ap.add_argument(
        "--check",
        action="store_true",
        help="compare a corner of the table with the in-memory result",
    )
    args = ap.parse_args()

    cluster = None
    if args.scheduler:
        client = Client(args.scheduler)
    else:
        cluster = LocalCluster(n_workers=args.workers, threads_per_worker=args.threads)
        client = Client(cluster)
    print("dashboard:", client.dashboard_link)

    rng = da.random.default_rng(0)
    x = rng.random((args.images, *SHAPE), chunks=(args.image_chunk, -1, -1, -1), dtype=np.float32)
    w = rng.random((args.filters, *SHAPE), chunks=(args.filter_chunk, -1, -1, -1), dtype=np.float32)
    table = bc.correlate(x, w, SPEC, mode="same", reduce="max")  # lazy: nothing runs yet
    print(
        f"table {table.shape} {table.dtype}, {table.npartitions} output blocks of "
        f"{args.image_chunk} x {args.filter_chunk} pairs"
    )

    t0 = time.perf_counter()
    future = client.compute(table)
    progress(future)
    result = future.result()
    seconds = time.perf_counter() - t0
    print(
        f"\n{args.images} x {args.filters} pairs in {seconds:.1f} s "
        f"({seconds / result.size * 1e6:.0f} us per pair)"
    )

    if args.check:  # a few rows and columns from every block of the table
        rows = np.unique(np.linspace(0, args.images - 1, 6).astype(int))
        cols = np.unique(np.linspace(0, args.filters - 1, 6).astype(int))
        expected = bc.correlate(
            x[rows].compute(), w[cols].compute(), SPEC, mode="same", reduce="max"
        )
        np.testing.assert_allclose(result[np.ix_(rows, cols)], expected, rtol=1e-5)
        print(f"{rows.size} x {cols.size} pairs across the table equal the in-memory result")
    client.close()
    if cluster is not None:
        cluster.close()


if __name__ == "__main__":
    main()
