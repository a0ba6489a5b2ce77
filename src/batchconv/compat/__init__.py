"""Front-ends with other libraries' signatures and semantics, onto the same engine: a
user's code written for ``scipy.ndimage`` runs by changing the import.

* :mod:`batchconv.compat.ndimage`: ``correlate``, ``convolve``, ``correlate1d``,
  ``convolve1d`` with ndimage's modes (``reflect``, ``mirror``, ``nearest``, ``wrap``,
  ``grid-wrap``, ``constant``, ``grid-constant``, ``grid-mirror``), ``cval``, ``origin``
  and ``axes``.
* :mod:`batchconv.compat.torch`: ``conv1d``, ``conv2d``, ``conv3d`` as
  ``torch.nn.functional``'s (``groups``, ``bias``, ``padding``), with ``nn.Conv*d``'s
  ``padding_mode``.
* :mod:`batchconv.compat.tf`: ``conv1d``, ``conv2d``, ``conv3d``, ``depthwise_conv2d`` as
  ``tf.nn``'s (``"SAME"``, ``"VALID"`` or explicit padding, ``data_format``).
* :mod:`batchconv.compat.cv2`: ``matchTemplate`` (six methods, masks) and ``filter2D``
  as OpenCV's.
* :mod:`batchconv.compat.scipy_signal`: ``correlate``, ``convolve``, ``correlate2d``,
  ``convolve2d``, ``fftconvolve``, ``oaconvolve`` as ``scipy.signal``'s.

Each is a thin layer: it works out the spec, the per-side padding and the padding mode
of the core (``bc.correlate``'s ``mode=((lo, hi), ...)`` and ``padding=``), and calls it.
"""
