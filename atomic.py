"""Atomic file writes: a temporary file in the target's folder, then os.replace."""

import contextlib
import os
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_path(target):
    """Yield a temporary path beside `target`; move it onto `target` only if the block succeeds.

    The temporary name keeps the target's suffix, so writers that look at the
    extension (Keras's `.h5`, matplotlib's `.png`) still pick the right format.
    """
    target = Path(target)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=target.suffix)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomically(target, data):
    """Write `data` to `target` so that readers see the old file or the whole new one."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_text_atomically(target, text):
    write_bytes_atomically(target, text.encode("utf-8"))


def check_writable(folder):
    """Create `folder` if needed; raise OSError with a clear message if files cannot be written there."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise OSError(f"{folder}: folder is not writable ({err.strerror})") from None
