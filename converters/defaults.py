"""`convert`'s defaults, defined once: `converters.export.ConvertRequest` and the `convert` CLI both
take them from here. A module of constants only, so `convert --help` imports neither NumPy nor
TensorFlow to show them.
"""

from __future__ import annotations

DEFAULT_SAMPLES = 300  # int8: calibration images drawn from the training split
DEFAULT_SEED = 0  # int8: seed of that sample
DEFAULT_MAX_DROP = 1.0  # test-accuracy points a variant may lose against the Keras model
