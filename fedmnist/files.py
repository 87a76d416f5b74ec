"""Atomic file writes: one file (a temporary beside it, then os.replace) or a set of files that land together.

Temporaries are created with the permissions the umask gives ordinary files
(not mkstemp's 0600), so outputs in a shared course folder stay readable.
"""

import contextlib
import os
import secrets
import signal
import tempfile
import threading
from pathlib import Path

TERMINATION_SIGNALS = tuple(s for s in (signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None)


def temporary_beside(target):
    """Create an empty temporary file in `target`'s folder, keeping its suffix (Keras and matplotlib look at it)."""
    target = Path(target)
    for _ in range(100):
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp{target.suffix}")
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"{target.parent}: could not create a temporary file for {target.name}")


@contextlib.contextmanager
def atomic_path(target):
    """Yield a temporary path beside `target`; move it onto `target` only if the block succeeds."""
    tmp = temporary_beside(target)
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


class OutputSet:
    """Several output files that replace the old ones together, or not at all.

        with OutputSet(remove=[stale_model]) as outputs:
            save_model(model, outputs.stage(out / "modelo_global_fedavg.h5"))
            outputs.write_text(out / "resultados.json", text)

    Every file is first written to a temporary beside its target. Only when the
    block ends without error are they flushed to disk and moved into place, and
    the `remove` paths deleted, with SIGINT, SIGTERM and SIGHUP held back until
    the moves are done. An error, a full disk, Ctrl-C or SIGTERM while staging
    deletes the temporaries and leaves every earlier output as it was. (SIGKILL
    or a power cut during the moves themselves, microseconds long, can still
    leave a mix.)
    """

    def __init__(self, remove=()):
        self.staged, self.remove = {}, [Path(p) for p in remove]
        self.pending_signal, self.previous_handlers = None, {}

    def stage(self, target):
        """A temporary path to write `target`'s new content to."""
        target = Path(target)
        if target in self.staged:
            raise ValueError(f"{target} is staged twice")
        self.staged[target] = temporary_beside(target)
        return self.staged[target]

    def write_bytes(self, target, data):
        self.stage(target).write_bytes(data)

    def write_text(self, target, text):
        self.write_bytes(target, text.encode("utf-8"))

    def __enter__(self):
        self.handle_signals(self.raise_exit)
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                for tmp in self.staged.values():
                    flush_to_disk(tmp)
                self.handle_signals(self.hold_back)
                for target, tmp in self.staged.items():
                    os.replace(tmp, target)
                for path in self.remove:
                    if path not in self.staged:
                        path.unlink(missing_ok=True)
                for folder in {target.parent for target in self.staged}:
                    flush_to_disk(folder)
        finally:
            for tmp in self.staged.values():
                tmp.unlink(missing_ok=True)
            self.restore_signals()
        if self.pending_signal is not None:
            raise SystemExit(128 + self.pending_signal)
        return False

    # -- signals: only the main thread may install handlers; elsewhere the set is still all-or-nothing on errors.

    def handle_signals(self, handler):
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGINT, *TERMINATION_SIGNALS):
            previous = signal.signal(signum, handler)
            self.previous_handlers.setdefault(signum, previous)

    def restore_signals(self):
        for signum, handler in self.previous_handlers.items():
            signal.signal(signum, handler)
        self.previous_handlers = {}

    @staticmethod
    def raise_exit(signum, frame):
        raise SystemExit(128 + signum)  # unwinds through __exit__, which deletes the temporaries

    def hold_back(self, signum, frame):
        self.pending_signal = signum


def flush_to_disk(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
