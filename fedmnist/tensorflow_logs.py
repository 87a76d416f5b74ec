"""TensorFlow's start without its C++ log lines, for the notebook.

Importing TensorFlow writes lines such as "oneDNN custom operations are on" to the
process's standard error from C++, below Python, where TF_CPP_MIN_LOG_LEVEL does
not reach them all; Jupyter shows them as a pink block that reads like an error.
"""

import contextlib
import os
import sys


@contextlib.contextmanager
def native_stderr_discarded():
    """Send what native code writes to file descriptor 2 to the null device for the block; Python's own warnings
    and exceptions still reach the user (Jupyter's sys.stderr is not descriptor 2)."""
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def start_tensorflow_quietly():
    """Import TensorFlow and Keras once, their start-up log lines discarded; later imports find them loaded."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with native_stderr_discarded():
        import keras  # noqa: F401
        import tensorflow  # noqa: F401
