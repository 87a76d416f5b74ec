"""Atomic file writes: one file (a temporary beside it, then os.replace) or a set of files that land together.

A set survives a kill at any instant, SIGKILL and power cuts included: its
temporaries are written and flushed first, then a journal naming every move is
written atomically beside them, then the moves are made and the journal is
deleted. Whoever next opens the folder (`complete_interrupted_set`, which the
project's readers and writers call) finds a journal only if the moves were
interrupted, and finishes them: the folder holds the old set or the new one,
never a mix. Temporaries carry their writer's process id, so those of a process
that no longer runs are removed; a live writer's are left alone.

Temporaries are created with the permissions the umask gives ordinary files
(not mkstemp's 0600), so outputs in a shared course folder stay readable.
"""

import contextlib
import json
import os
import re
import secrets
import signal
import tempfile
import threading
import time
from pathlib import Path

from fedmnist.defaults import PROJECT_DIR

TERMINATION_SIGNALS = tuple(s for s in (signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None)
JOURNAL = ".conjunto_en_curso.json"  # the moves of a set being replaced; present only while they are made
TEMPORARY = re.compile(r"\.(?P<name>.+)\.(?P<pid>[0-9]{1,10})-[0-9a-f]{8}\.tmp[^/]*")
JOURNAL_LIMIT = 1_000_000  # bytes: a journal names a few thousand files at most
PAUSE_VARIABLE = "FEDMNIST_PAUSE_BETWEEN_MOVES"  # seconds between a set's moves: the kill tests' window


class InterruptedSetError(OSError):
    """A folder whose interrupted set cannot be completed (a tampered journal, a read-only folder)."""


def temporary_beside(target, record=None):
    """Create an empty temporary file in `target`'s folder, keeping its suffix (Keras and matplotlib look at it).

    `record(tmp)` learns each name before its file exists, so that a signal arriving between the file's creation
    and this function's return still leaves the caller knowing what to remove.
    """
    target = Path(target)
    for _ in range(100):
        tmp = target.with_name(f".{target.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp{target.suffix}")
        if record is not None:
            record(tmp)
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"{target.parent}: could not create a temporary file for {target.name}")


@contextlib.contextmanager
def atomic_path(target):
    """Yield a temporary path beside `target`; move it onto `target` only if the block succeeds."""
    staged = {}  # {target: its temporary}, known before the temporary exists
    try:
        tmp = temporary_beside(target, record=lambda name: staged.__setitem__(target, name))
        yield tmp
        os.replace(tmp, target)
    finally:
        for name in staged.values():
            name.unlink(missing_ok=True)


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
    deletes the temporaries and leaves every earlier output as it was. SIGKILL
    or a power cut during the moves leaves the journal, and the next opening of
    the folder completes the set (see the module's docstring).
    """

    def __init__(self, remove=()):
        self.staged, self.remove = {}, [Path(p) for p in remove]
        self.pending_signal, self.previous_handlers = None, {}

    def stage(self, target):
        """A temporary path to write `target`'s new content to."""
        target = Path(target)
        if target in self.staged:
            raise ValueError(f"{target} is staged twice")
        if target.parent not in {t.parent for t in self.staged}:
            complete_interrupted_set(target.parent)
        return temporary_beside(target, record=lambda name: self.staged.__setitem__(target, name))

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
                journal = write_journal(self.staged, [p for p in self.remove if p not in self.staged])
                pause = float(os.environ.get(PAUSE_VARIABLE) or 0)
                for target, tmp in self.staged.items():
                    os.replace(tmp, target)
                    time.sleep(pause)
                for path in self.remove:
                    if path not in self.staged:
                        path.unlink(missing_ok=True)
                for folder in {target.parent for target in self.staged}:
                    flush_to_disk(folder)
                if journal is not None:
                    journal.unlink()
                    flush_to_disk(journal.parent)
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


def write_journal(staged, remove):
    """Write the journal of a set's moves in the folder that holds them all (None if the set is empty): after it,
    the set can always be completed, since every temporary is already whole on disk."""
    paths = [*staged, *remove]
    if not paths:
        return None
    folder = Path(os.path.commonpath([str(p.parent) for p in paths]))
    moves = [[os.path.relpath(tmp, folder), os.path.relpath(target, folder)] for target, tmp in staged.items()]
    record = {"pid": os.getpid(), "moves": moves, "remove": [os.path.relpath(p, folder) for p in remove]}
    journal = folder / JOURNAL
    tmp = temporary_beside(journal)
    try:
        tmp.write_text(json.dumps(record) + "\n")
        flush_to_disk(tmp)
        os.replace(tmp, journal)
    finally:
        tmp.unlink(missing_ok=True)
    flush_to_disk(folder)
    return journal


def journal_entries(folder, text):
    """The (temporary, target) moves and the removals of a journal, each checked to lie inside `folder` with the
    names this module writes; InterruptedSetError naming what is wrong otherwise."""
    where = f"{folder / JOURNAL}"
    try:
        record = json.loads(text)
        moves, remove = record["moves"], record["remove"]
        if not (isinstance(moves, list) and isinstance(remove, list)):
            raise TypeError
        pairs = [(str(tmp), str(target)) for tmp, target in moves]
        remove = [str(path) for path in remove]
    except (ValueError, KeyError, TypeError, RecursionError):
        raise InterruptedSetError(f"{where}: not a journal this project wrote; delete it and run again") from None
    for relative in [p for pair in pairs for p in pair] + remove:
        if os.path.isabs(relative) or ".." in Path(relative).parts:
            raise InterruptedSetError(f"{where}: names a path outside its folder; delete it and run again")
    for tmp, target in pairs:
        if not TEMPORARY.fullmatch(Path(tmp).name) or Path(tmp).parent != Path(target).parent:
            raise InterruptedSetError(f"{where}: a move that is not one of a temporary onto its target")
    return [(folder / tmp, folder / target) for tmp, target in pairs], [folder / p for p in remove]


def complete_interrupted_set(folder, log=print):
    """Finish the moves of a set whose writer was killed during them, and remove the temporaries of writers that no
    longer run; says what it did in one line. Returns True if a set was completed."""
    folder = Path(folder)
    journal = folder / JOURNAL
    completed = False
    if journal.is_file():
        if journal.stat().st_size > JOURNAL_LIMIT:
            raise InterruptedSetError(f"{journal}: larger than any journal this project writes; delete it")
        text = journal.read_text(errors="replace")
        moves, remove = journal_entries(folder, text)
        if writer_still_running(text):
            return False  # a concurrent run is making these moves right now
        try:
            for tmp, target in moves:
                if tmp.exists():
                    os.replace(tmp, target)
            for path in remove:
                path.unlink(missing_ok=True)
            flush_to_disk(folder)
            journal.unlink()
        except OSError as err:
            raise InterruptedSetError(
                f"{folder}: a run was stopped while replacing its files and the set cannot be completed here "
                f"({err.strerror or err}); make the folder writable and run again"
            ) from None
        log(f"{folder}: completed the set of {len(moves)} files a stopped run was replacing")
        completed = True
    remove_stale_temporaries(folder)
    return completed


def writer_still_running(text):
    pid = json.loads(text).get("pid")
    return isinstance(pid, int) and not isinstance(pid, bool) and pid != os.getpid() and process_alive(pid)


def remove_stale_temporaries(folder):
    """Delete the temporaries in `folder` whose writing process is gone (a killed run's); keep a live one's."""
    try:
        names = [entry.name for entry in os.scandir(folder) if entry.name.startswith(".")]
    except OSError:
        return
    for name in names:
        found = TEMPORARY.fullmatch(name)
        if found and not process_alive(int(found["pid"])):
            with contextlib.suppress(OSError):
                (Path(folder) / name).unlink()


def process_alive(pid):
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # another user's process, or a number we cannot ask about: leave its files alone
    return True


def project_relative(path):
    """`path` relative to the project when it is inside it, so results name no machine's folders."""
    path = Path(path).resolve()
    return str(path.relative_to(PROJECT_DIR)) if path.is_relative_to(PROJECT_DIR) else os.fspath(path)


def os_error_text(err, limit=160):
    """One short line for an OSError: its strerror, or the message inside h5py's multi-line report (a full disk
    says 'No space left on device', not a heap address), control characters escaped, at most `limit` long."""
    text = getattr(err, "strerror", None) or ""
    if not text:
        found = re.search(r"error message = '([^']*)'", str(err))
        text = found.group(1) if found else str(err).splitlines()[0] if str(err) else type(err).__name__
    filename = getattr(err, "filename", None)
    text = f"{text} ({filename})" if filename and str(filename) not in text else text
    text = ascii(text)[1:-1]
    return text if len(text) <= limit else text[: limit - 1] + "…"
