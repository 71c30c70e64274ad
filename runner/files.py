"""Reading and writing the plain files a run leaves behind, without torch, so that the commands that only read
records (``compare``, ``ensemble``) start at once.

Every whole-file write goes to a temporary name first and is then renamed over the target, so a process killed
at any moment leaves the previous complete file, never half of a new one. Readers treat every file as data
from someone else: a torn last line is skipped, NumPy arrays are read without unpickling.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from runner.errors import RecordError

if TYPE_CHECKING:
    import numpy as np

# The files that make a folder a run folder.
RUN_FILES = ("summary.json", "metrics.jsonl")


def temporary_path(path: Path) -> Path:
    """A hidden sibling named after the writing process, so two writers never share a temporary file."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def atomic_write_bytes(path: Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Call ``write(handle)`` on a temporary file, flush it to disk, then rename it over ``path``."""
    temporary = temporary_path(path)
    try:
        with open(temporary, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def plain(value: Any) -> Any:
    """JSON-ready: tensors and NumPy values become numbers or lists, non-finite floats become null."""
    if callable(getattr(value, "tolist", None)) and not isinstance(value, (str, bytes)):
        # A torch tensor (numel) or a NumPy array or scalar (size): one element reads as that number.
        count = value.numel() if callable(getattr(value, "numel", None)) else getattr(value, "size", 1)
        value = value.item() if count == 1 else value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value


def write_json(path: Path, data: Any) -> None:
    text = json.dumps(plain(data), indent=2) + "\n"
    atomic_write_bytes(path, lambda handle: handle.write(text.encode()))


def parse_json(text: str):
    """``json.loads``, with a file nested too deeply for the parser (``[[[[...``) a ``ValueError`` like any
    other text that is not JSON."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply to be read") from None


def read_json(path: Path) -> dict:
    """A JSON object from ``path``; ``OSError`` or ``ValueError`` (with the reason) when the file is missing,
    unreadable, not JSON or not an object."""
    data = parse_json(path.read_text())
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


def read_json_or_none(path: Path) -> dict | None:
    """``read_json``, or None for a missing or damaged file."""
    try:
        return read_json(path)
    except (OSError, ValueError):
        return None


def append_jsonl(path: Path, row: dict) -> None:
    # One write call per line: a reader sees whole lines, and a kill loses at most the line being written.
    with open(path, "a") as handle:
        handle.write(json.dumps(plain(row)) + "\n")
        handle.flush()


def rewrite_jsonl(path: Path, rows: list[dict]) -> None:
    text = "".join(json.dumps(plain(row)) + "\n" for row in rows)
    atomic_write_bytes(path, lambda handle: handle.write(text.encode()))


def read_jsonl(path: Path) -> list[dict]:
    """The complete JSON-object lines of a JSON-lines file; a torn last line (a killed writer) is skipped."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    rows = []
    for line in text.splitlines():
        try:
            row = parse_json(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def save_array(path: Path, array) -> None:
    import numpy as np  # here, so that reading JSON records does not pay for NumPy's import

    atomic_write_bytes(path, lambda handle: np.save(handle, array, allow_pickle=False))


# The first bytes of a zip file, which is what np.savez writes (the second: an empty one).
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
# Plain numbers: bool, signed and unsigned integers, floats. Not complex, dates, text, bytes, records or objects.
NUMBER_KINDS = "biuf"


def read_array(path: Path, what: str) -> np.ndarray:
    """A NumPy array saved with ``np.save``, read without unpickling: a file from elsewhere can hold numbers,
    never code. Its header is checked before anything is allocated: it must describe plain numbers, and exactly
    as many bytes as follow it, so a header that claims 10^13 elements is refused, not obeyed. ``RecordError``
    names the file when it is missing, unreadable or refused."""
    import numpy as np
    from numpy.lib import format as npy

    if not path.is_file():
        raise RecordError(f"{path}: no {what} there.")
    header_readers = {(1, 0): npy.read_array_header_1_0, (2, 0): npy.read_array_header_2_0}
    header_readers[3, 0] = npy.read_array_header_2_0  # version 3 differs only in allowing utf-8 field names
    try:
        with open(path, "rb") as handle:
            if handle.read(4) in ZIP_MAGICS:
                raise RecordError(f"{path}: expected one array saved with np.save, found an archive of several.")
            handle.seek(0)
            version = npy.read_magic(handle)
            if version not in header_readers:
                raise ValueError(f".npy format version {version[0]}.{version[1]} is not 1, 2 or 3")
            shape, _, dtype = header_readers[version](handle)
            if dtype.kind not in NUMBER_KINDS:
                raise RecordError(f"{path}: cannot read {what}: it holds {dtype} values, not numbers.")
            expected = math.prod(shape) * dtype.itemsize
            left = os.fstat(handle.fileno()).st_size - handle.tell()
            if expected != left:
                raise RecordError(
                    f"{path}: cannot read {what}: its header promises an array of shape {shape} and dtype {dtype} "
                    f"({expected} bytes), but {left} bytes follow it; the file is truncated or damaged."
                )
            handle.seek(0)
            array = np.load(handle, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise RecordError(f"{path}: cannot read {what} ({error}).") from None
    return array


def natural_key(text: str) -> list:
    """Sort "job 2" before "job 10"."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def find_run_folders(paths: list[Path]) -> list[Path]:
    """Every folder at or below the given paths that holds a run's files (or a ``.hydra`` folder), in natural
    order; hidden folders are not searched."""
    found: dict[Path, None] = {}
    for path in paths:
        if not path.exists():
            raise RecordError(f"{path}: no such file or folder.")
        if path.is_file():
            path = path.parent
        for folder, subfolders, files in os.walk(path):
            subfolders[:] = sorted((name for name in subfolders if not name.startswith(".")), key=natural_key)
            here = Path(folder)
            if any(name in files for name in RUN_FILES) or (here / ".hydra").is_dir():
                found.setdefault(here.resolve())
    return list(found)


def run_status(folder: Path) -> str | None:
    """The status a run folder's ``summary.json`` records, or None when it records none."""
    summary = read_json_or_none(folder / "summary.json")
    return str(summary["status"]) if summary and summary.get("status") else None
