"""Safe outputs for batches: never touch an input, write whole files or nothing, resume, lock.

The small API that ``brainage predict`` (and any other batch runner) builds on:

* :func:`label_paths` / :func:`label_path_for`: one unique, predictable label-map path per input.
  Rule: ``<labels_dir>/<folder of the input relative to the inputs' common folder>/<stem><suffix>``
  where ``<stem>`` is the file name without its image suffix (``sub-01_T1w.nii.gz`` ->
  ``sub-01_T1w``; a DICOM folder keeps its name). Inputs that all sit in one folder therefore get
  flat names (``labels/sub-01_T1w_tissues.nii.gz``); ``a/sub.nii.gz`` and ``b/sub.nii.gz`` get
  ``labels/a/sub_tissues.nii.gz`` and ``labels/b/sub_tissues.nii.gz``. Inputs of one folder whose
  stems coincide (``x.nii`` and ``x.nii.gz``, or names differing only in case) keep their whole
  file name instead: ``x.nii_tissues.nii.gz``, ``x.nii.gz_tissues.nii.gz``.
* :func:`check_outputs_do_not_touch_inputs`: refuses (:class:`OutputError`) any output that is an
  input, lies inside an input folder, would be read as an input by a later run, or is shared by
  two outputs.
* :func:`atomic_write_image`, :func:`atomic_write_text`: a temporary name in the same folder,
  fsync, then an atomic rename; an exception (also a signal turned into one) removes the
  temporary file, so a path holds the whole new file, the whole old file, or nothing.
* :class:`ResultsCSV`: the results table, locked against a second run (``<output>.lock``,
  ``filelock``), header first, then one row appended, flushed and fsync'ed per finished input;
  ``mode="resume"`` reads back the rows already there. Cells are escaped against spreadsheet
  formula injection (OWASP).
* :func:`catch_signals` turns SIGINT/SIGTERM into :class:`Interrupted`, so that clean-up runs and
  the command can exit 130/143 with one line.
"""
from __future__ import annotations

import csv
import fnmatch
import io as _io
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
LABEL_SUFFIX = "_tissues.nii.gz"

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


class OutputError(ValueError):
    """An output cannot be written safely (it would touch an input, exists, is locked...)."""


class OutputLockedError(OutputError):
    """Another run holds the lock of this output."""


# --------------------------------------------------------------------------- naming

def input_stem(path: str | os.PathLike) -> str:
    """File name without its image suffix (``a/b/sub01_T1.nii.gz`` -> ``sub01_T1``)."""
    name = Path(str(path).rstrip("/\\")).name
    for suffix in IMAGE_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def _common_folder(inputs: Sequence[str]) -> str:
    parents = [os.path.dirname(os.path.abspath(str(p).rstrip("/\\")) or os.sep) for p in inputs]
    try:
        return os.path.commonpath(parents)
    except ValueError:   # different drives (Windows): keep whole paths
        return ""


def _relative_folder(path: str, root: str) -> str:
    parent = os.path.dirname(os.path.abspath(path.rstrip("/\\")))
    if root:
        rel = os.path.relpath(parent, root)
        return "" if rel == "." else rel
    drive, tail = os.path.splitdrive(parent)
    return os.path.join(drive.replace(":", ""), tail.lstrip("/\\"))


def label_paths(inputs: Sequence[str], labels_dir: str | os.PathLike,
                suffix: str = LABEL_SUFFIX) -> dict[str, Path]:
    """The label-map path of every input (rule in the module docstring); unique per input.

    Raises :class:`OutputError` if two distinct inputs would still share a path (only possible
    when one input is given twice under different spellings)."""
    root = _common_folder(inputs) if inputs else ""
    base = Path(labels_dir)
    folders = {p: _relative_folder(str(p), root) for p in inputs}
    stems = {p: input_stem(p) for p in inputs}
    seen: dict[str, list[str]] = {}
    for p in inputs:
        seen.setdefault(os.path.join(folders[p], stems[p]).lower(), []).append(p)
    out: dict[str, Path] = {}
    for p in inputs:
        clash = len(seen[os.path.join(folders[p], stems[p]).lower()]) > 1
        name = Path(str(p).rstrip("/\\")).name if clash else stems[p]
        out[p] = base / folders[p] / f"{name}{suffix}"
    by_path: dict[str, str] = {}
    for p, q in out.items():
        other = by_path.setdefault(str(q).lower(), p)
        if other != p:
            raise OutputError(f"inputs {other} and {p} would both write {q}; give each input once")
    return out


def label_path_for(input_path: str, inputs: Sequence[str], labels_dir: str | os.PathLike,
                   suffix: str = LABEL_SUFFIX) -> Path:
    """The label-map path of ``input_path`` within the batch ``inputs`` (see :func:`label_paths`)."""
    return label_paths(inputs, labels_dir, suffix)[input_path]


# --------------------------------------------------------------------------- inputs vs outputs

def _is_image_name(path: str) -> bool:
    return str(path).lower().endswith(IMAGE_SUFFIXES)


def check_outputs_do_not_touch_inputs(inputs: Iterable[str], outputs: Iterable[str | os.PathLike],
                                      input_patterns: Iterable[str] = ()) -> None:
    """Raise :class:`OutputError` (naming both paths) unless every output is safe to write.

    ``inputs``: the expanded inputs (files or DICOM folders). ``outputs``: every path the run
    will write (CSV, lock, label maps). ``input_patterns``: the INPUT arguments as given (folders,
    globs): an image output that a later run on them would pick up as a scan is refused too.
    An output is refused when it is an input (same path, symlink or hard link), lies inside an
    input folder, is an existing folder, or is shared by two outputs.
    """
    inputs = [str(p) for p in inputs]
    real_inputs = {os.path.realpath(p): p for p in inputs}
    inodes = {}
    for p in inputs:
        try:
            st = os.stat(p)
            inodes[(st.st_dev, st.st_ino)] = p
        except OSError:
            pass
    input_dirs = {r: p for r, p in real_inputs.items() if os.path.isdir(r)}
    patterns = [str(p) for p in input_patterns]
    seen: dict[str, str] = {}
    for out in outputs:
        out = str(out)
        real = os.path.realpath(out)
        hit = real_inputs.get(real)
        if hit is None and os.path.exists(real):
            st = os.stat(real)
            hit = inodes.get((st.st_dev, st.st_ino))
        if hit is not None:
            raise OutputError(f"{out} is the input {hit}: it would be overwritten")
        for d, p in input_dirs.items():
            if real.startswith(d.rstrip(os.sep) + os.sep):
                raise OutputError(f"{out} lies inside the input folder {p}")
        if os.path.isdir(real):
            raise OutputError(f"{out} is a folder, not a file")
        if _is_image_name(real):
            for pat in patterns:
                if any(c in pat for c in "*?["):
                    if fnmatch.fnmatch(real, os.path.abspath(pat)) or fnmatch.fnmatch(out, pat):
                        raise OutputError(f"{out} matches the input pattern {pat}: a later run "
                                          "would read it as a scan")
                elif os.path.isdir(pat) and os.path.dirname(real) == os.path.realpath(pat):
                    raise OutputError(f"{out} would be written into the input folder {pat}, "
                                      "where a later run would read it as a scan")
        key = os.path.normcase(real).lower()
        if key in seen:
            other = seen[key]
            raise OutputError(f"two outputs would share one file: {other} and {out}")
        seen[key] = out


# --------------------------------------------------------------------------- atomic files

def _temporary_name(path: Path) -> Path:
    """A hidden temporary name beside ``path`` with the same suffixes (writers pick the format
    by suffix), unique per process."""
    suffix = next((s for s in IMAGE_SUFFIXES if path.name.lower().endswith(s)), path.suffix)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + suffix, dir=path.parent)
    os.close(fd)
    return Path(tmp)


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:   # Windows cannot open folders; rename is durable enough there
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _file_mode(path: Path) -> int:
    """The mode a new file gets (umask applied), or the replaced file's mode
    (mkstemp creates 0600)."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


def _atomic(path: str | os.PathLike, write) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_name(path)
    try:
        write(tmp)
        _fsync_path(tmp)
        os.chmod(tmp, _file_mode(path))
        os.replace(tmp, path)
    except BaseException:   # also KeyboardInterrupt and signals: leave no partial file behind
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_text(text: str, path: str | os.PathLike, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` whole or not at all (temporary file + rename)."""
    return _atomic(path, lambda tmp: tmp.write_bytes(text.encode(encoding)))


def atomic_write_image(image, path: str | os.PathLike, compress: bool = True) -> Path:
    """Write a SimpleITK image to ``path`` whole or not at all (temporary file + rename).

    Raises OSError (or RuntimeError from SimpleITK) when the folder is not writable."""
    import SimpleITK as sitk

    def write(tmp: Path) -> None:
        sitk.WriteImage(image, str(tmp), useCompression=compress)
    return _atomic(path, write)


# --------------------------------------------------------------------------- results CSV

def escape_cell(value) -> str:
    """A CSV cell that spreadsheets will not run as a formula (OWASP CSV injection).

    Text starting with ``= + - @``, tab or carriage return gets a leading ``'``; plain numbers
    (``-3.25``) are kept as they are."""
    s = "" if value is None else str(value)
    if s.startswith(_FORMULA_START) and not _NUMBER.fullmatch(s):
        return "'" + s
    return s


def _format_row(cells: Sequence[str]) -> bytes:
    buf = _io.StringIO()
    csv.writer(buf).writerow(cells)
    return buf.getvalue().encode("utf-8")


class ResultsCSV:
    """A results table that is always a valid CSV of complete rows on disk.

    ``mode``: "new" refuses an existing non-empty file; "resume" keeps its rows (after checking
    the header) and reports them through :meth:`is_done`; "overwrite" replaces it. A missing
    file is created in every mode. The lock ``<output>.lock`` (a ``filelock.FileLock``, held
    while the object is open) makes a second run on the same file fail at once with
    :class:`OutputLockedError`; the lock file itself stays and is harmless.

    >>> with ResultsCSV("results.csv", ["input", "age"], mode="resume") as out:
    ...     for path in inputs:
    ...         if not out.is_done(path):
    ...             out.append({"input": path, "age": 42.0})
    """

    MODES = ("new", "resume", "overwrite")

    def __init__(self, path: str | os.PathLike, columns: Sequence[str], *, mode: str = "new",
                 key: str = "input"):
        if mode not in self.MODES:
            raise ValueError(f"mode must be one of {self.MODES}, not {mode!r}")
        self.path = Path(path)
        self.columns = list(columns)
        self.mode, self.key = mode, key
        self.lock_path = Path(os.path.realpath(self.path) + ".lock")
        self.rows: list[dict[str, str]] = []   # rows already on disk when opened (as stored)
        self._done: set[str] = set()
        self._fd: int | None = None
        self._lock = None

    # -- opening
    def __enter__(self) -> "ResultsCSV":
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def open(self) -> "ResultsCSV":
        """Take the lock, then create, check, replace or read the file (by ``mode``)."""
        from filelock import FileLock, Timeout
        if self.path.is_dir():
            raise OutputError(f"{self.path} is a folder, not a file")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            lock = FileLock(str(self.lock_path), timeout=0)
            lock.acquire()
        except Timeout:
            raise OutputLockedError(f"another run is writing {self.path} (it holds {self.lock_path}); "
                                    "wait for it to finish or choose another output") from None
        except OSError as e:
            raise OutputError(f"cannot write {self.path}: {e.strerror or e}") from None
        self._lock = lock
        try:
            self._prepare()
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | getattr(os, "O_BINARY", 0))
        except BaseException:
            self.close()
            raise
        return self

    def _prepare(self) -> None:
        exists = self.path.exists() and self.path.stat().st_size > 0
        if exists and self.mode == "new":
            raise OutputError(f"{self.path} exists: add --resume to skip the inputs already in "
                              "it, or --overwrite to replace it")
        if exists and self.mode == "resume":
            self._read_back()
            return
        try:
            atomic_write_text(_format_row(self.columns).decode("utf-8"), self.path)
        except OSError as e:
            raise OutputError(f"cannot write {self.path}: {e.strerror or e}") from None

    def _read_back(self) -> None:
        data = self.path.read_bytes()
        whole = data[:data.rfind(b"\n") + 1]   # a row cut short by a crash is dropped (redone)
        try:
            rows = list(csv.reader(_io.StringIO(whole.decode("utf-8-sig"), newline="")))
        except (UnicodeDecodeError, csv.Error) as e:
            raise OutputError(f"cannot resume {self.path}: not a brainage CSV ({e})") from None
        if not rows or rows[0] != self.columns:
            raise OutputError(f"cannot resume {self.path}: its header is not {','.join(self.columns)}")
        for n, cells in enumerate(rows[1:], start=2):
            if len(cells) != len(self.columns):
                raise OutputError(f"cannot resume {self.path}: line {n} has {len(cells)} cells, "
                                  f"not {len(self.columns)}")
            row = dict(zip(self.columns, cells))
            self.rows.append(row)
            self._done.add(row[self.key])
        if len(whole) < len(data):              # only now that the file is known to be ours
            with open(self.path, "r+b") as f:
                f.truncate(len(whole))

    # -- use
    def is_done(self, key_value: str) -> bool:
        """Whether a row for this input (its unescaped ``key`` value) is already in the file."""
        return escape_cell(key_value) in self._done

    def append(self, row: dict) -> None:
        """Append one complete row (missing columns empty), flushed and fsync'ed."""
        if self._fd is None:
            raise OutputError(f"{self.path} is not open")
        data = _format_row([escape_cell(row.get(c, "")) for c in self.columns])
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]
        os.fsync(self._fd)
        self._done.add(escape_cell(row.get(self.key, "")))

    def close(self) -> None:
        """Close the file and release the lock (safe to call twice)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None


# --------------------------------------------------------------------------- signals

class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived. Raised by the handler of :func:`catch_signals`, so that every
    ``finally`` (e.g. the temporary-file clean-up of :func:`atomic_write_image`) runs; not an
    ``Exception``, so per-input ``except Exception`` blocks do not swallow it. Exit with
    ``128 + signum`` (130 for SIGINT, 143 for SIGTERM)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _on_signal(signum, frame):
    raise Interrupted(signum)


def catch_signals() -> dict:
    """Turn SIGINT and SIGTERM into :class:`Interrupted` (main thread only); returns the previous
    handlers for :func:`restore_signals`."""
    import signal
    import threading
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}


def restore_signals(old: dict) -> None:
    """Put back the handlers that :func:`catch_signals` replaced."""
    import signal
    for s, h in old.items():
        signal.signal(s, h)


def signal_name(signum: int) -> str:
    """``SIGTERM`` for 15."""
    import signal
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


__all__ = ["OutputError", "OutputLockedError", "input_stem", "label_paths", "label_path_for",
           "check_outputs_do_not_touch_inputs", "atomic_write_text", "atomic_write_image",
           "escape_cell", "ResultsCSV", "LABEL_SUFFIX", "Interrupted", "catch_signals",
           "restore_signals", "signal_name"]
