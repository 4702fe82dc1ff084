"""Names and defaults of the deploy options, defined once and importable without numpy or torch (the CLI
declares its options with them, and `cnntool --help` imports nothing heavy)."""

PRECISIONS = ("int8", "fp16")
CALIB_METHODS = ("minmax", "entropy", "percentile")
DEFAULT_CALIB = 256
DEFAULT_CALIB_METHOD = "minmax"
DEFAULT_MAX_DROP = 1.0  # percentage points of test accuracy
RUNTIMES = ("torch", "torch-channels-last", "onnx-fp32", "onnx-int8", "openvino")
DEFAULT_REPEATS = 5
