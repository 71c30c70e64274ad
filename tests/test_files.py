"""Records as plain files (runner.files): writes are atomic and leave no temporary file, JSON values are plain,
readers skip a torn line and never unpickle, run folders are found in natural order, all without torch."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from runner.errors import RecordError
from runner.files import (
    atomic_write_bytes,
    find_run_folders,
    natural_key,
    plain,
    read_array,
    read_json,
    read_json_or_none,
    read_jsonl,
    rewrite_jsonl,
    run_status,
    save_array,
    write_json,
)
from tests.conftest import PROJECT


def test_json_values_are_plain_numbers_and_non_finite_floats_are_null(tmp_path):
    write_json(tmp_path / "x.json", {"a": float("nan"), "b": torch.tensor(2.0), "c": np.float32(0.5), "d": (1, 2)})
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": None, "b": 2.0, "c": 0.5, "d": [1, 2]}
    assert plain({"tensor": torch.tensor([1.0, float("inf")]), "array": np.arange(3)}) == {
        "tensor": [1.0, None],
        "array": [0, 1, 2],
    }


def test_a_failed_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "summary.json"
    write_json(target, {"status": "completed"})

    def fails(handle):
        handle.write(b'{"status": "fail')
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(target, fails)
    assert read_json(target) == {"status": "completed"}
    assert list(tmp_path.iterdir()) == [target]


def test_jsonl_readers_skip_a_torn_last_line_and_what_is_not_an_object(tmp_path):
    (tmp_path / "m.jsonl").write_text('{"epoch": 1}\n[1, 2]\n{"epoch": 2}\n{"epo')
    assert read_jsonl(tmp_path / "m.jsonl") == [{"epoch": 1}, {"epoch": 2}]
    assert read_jsonl(tmp_path / "missing.jsonl") == []
    rewrite_jsonl(tmp_path / "m.jsonl", [{"epoch": 1}])
    assert read_jsonl(tmp_path / "m.jsonl") == [{"epoch": 1}]


def test_json_objects_are_read_or_refused_with_the_reason(tmp_path):
    (tmp_path / "list.json").write_text("[1]")
    (tmp_path / "torn.json").write_text('{"a": ')
    with pytest.raises(ValueError, match="not a JSON object"):
        read_json(tmp_path / "list.json")
    assert read_json_or_none(tmp_path / "torn.json") is None
    assert read_json_or_none(tmp_path / "missing.json") is None
    (tmp_path / "run").mkdir()
    write_json(tmp_path / "run" / "summary.json", {"status": "diverged"})
    assert run_status(tmp_path / "run") == "diverged" and run_status(tmp_path) is None


def test_arrays_round_trip_and_pickles_are_refused(tmp_path):
    save_array(tmp_path / "logits.npy", np.eye(3, dtype=np.float16))
    assert np.array_equal(read_array(tmp_path / "logits.npy", "logits"), np.eye(3))
    np.save(tmp_path / "objects.npy", np.array([{"code": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(RecordError, match="cannot read logits"):
        read_array(tmp_path / "objects.npy", "logits")
    with pytest.raises(RecordError, match="no logits there"):
        read_array(tmp_path / "missing.npy", "logits")


def npy_header(version: int, shape: tuple, descr: str = "<f4") -> bytes:
    """An .npy header written by hand, as np.save would write it for ``version`` (1, 2 or 3), so that it can
    claim any shape whatever data follows it."""
    text = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode()
    length_size = 2 if version == 1 else 4
    prefix = b"\x93NUMPY" + bytes([version, 0])
    padding = -(len(prefix) + length_size + len(text) + 1) % 64
    header = text + b" " * padding + b"\n"
    return prefix + len(header).to_bytes(length_size, "little") + header


@pytest.mark.parametrize("version", [1, 2, 3])
def test_every_npy_version_is_read_and_a_lying_header_is_refused_before_allocating(tmp_path, version):
    values = np.arange(6, dtype="<f4").reshape(2, 3)
    (tmp_path / "fine.npy").write_bytes(npy_header(version, (2, 3)) + values.tobytes())
    assert np.array_equal(read_array(tmp_path / "fine.npy", "logits"), values)

    # 10^13 float32 values would be 40 TB: the header is refused for the 24 bytes that follow it.
    (tmp_path / "huge.npy").write_bytes(npy_header(version, (10**13,)) + values.tobytes())
    with pytest.raises(RecordError) as raised:
        read_array(tmp_path / "huge.npy", "logits")
    assert str(raised.value) == (
        f"{tmp_path / 'huge.npy'}: cannot read logits: its header promises an array of shape (10000000000000,) "
        "and dtype float32 (40000000000000 bytes), but 24 bytes follow it; the file is truncated or damaged."
    )


def test_a_truncated_array_is_refused(tmp_path):
    save_array(tmp_path / "logits.npy", np.eye(3, dtype=np.float32))
    (tmp_path / "torn.npy").write_bytes((tmp_path / "logits.npy").read_bytes()[:-4])
    with pytest.raises(RecordError, match=r"torn.npy: cannot read logits: .* \(36 bytes\), but 32 bytes follow"):
        read_array(tmp_path / "torn.npy", "logits")
    (tmp_path / "header.npy").write_bytes((tmp_path / "logits.npy").read_bytes()[:40])
    with pytest.raises(RecordError, match="header.npy: cannot read logits"):
        read_array(tmp_path / "header.npy", "logits")
    (tmp_path / "future.npy").write_bytes(npy_header(9, (3,)) + bytes(12))
    with pytest.raises(RecordError, match=r"future.npy: cannot read logits \(.npy format version 9.0 is not 1, 2"):
        read_array(tmp_path / "future.npy", "logits")


@pytest.mark.parametrize(
    ("array", "dtype"),
    [
        (np.array(["cat", "dog"]), "<U3"),
        (np.array([b"cat"]), "|S3"),
        (np.array([1 + 2j]), "complex128"),
        (np.zeros(2, dtype=[("x", "<f4"), ("y", "<i4")]), r"\[\('x', '<f4'\), \('y', '<i4'\)\]"),
        (np.array(["2025-01-01"], dtype="datetime64[D]"), r"datetime64\[D\]"),
    ],
)
def test_arrays_of_anything_but_plain_numbers_are_refused(tmp_path, array, dtype):
    np.save(tmp_path / "odd.npy", array, allow_pickle=False)
    with pytest.raises(RecordError, match=rf"odd.npy: cannot read logits: it holds {dtype} values, not numbers\."):
        read_array(tmp_path / "odd.npy", "logits")


def test_plain_number_kinds_are_read(tmp_path):
    for array in (np.array([True, False]), np.array([-3, 4], dtype=np.int8), np.array([7], dtype=">u8")):
        np.save(tmp_path / "plain.npy", array)
        assert np.array_equal(read_array(tmp_path / "plain.npy", "labels"), array)


def test_an_archive_of_arrays_is_refused(tmp_path):
    np.savez(tmp_path / "several.npz", logits=np.eye(2), labels=np.arange(2))
    with pytest.raises(RecordError, match="several.npz: expected one array saved with np.save, found an archive"):
        read_array(tmp_path / "several.npz", "logits")


def test_run_folders_are_found_in_natural_order_and_hidden_folders_are_skipped(tmp_path):
    for name in ("10", "2", ".submitit/1", "notes"):
        (tmp_path / name).mkdir(parents=True)
    for name in ("10", "2", ".submitit/1"):
        (tmp_path / name / "summary.json").write_text("{}")
    assert [folder.name for folder in find_run_folders([tmp_path])] == ["2", "10"]
    assert sorted(["job 10", "job 2"], key=natural_key) == ["job 2", "job 10"]
    with pytest.raises(RecordError, match="no such file or folder"):
        find_run_folders([tmp_path / "missing"])


def test_reading_records_imports_no_torch():
    code = "import sys, runner.files, runner.compare, runner.ensemble; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=PROJECT, check=True, timeout=60)


def test_a_file_nested_too_deeply_for_the_parser_is_refused_like_any_damaged_file(tmp_path):
    (tmp_path / "summary.json").write_text("[" * 100000)
    with pytest.raises(ValueError, match="nested too deeply"):
        read_json(tmp_path / "summary.json")
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 1}\n' + "[" * 100000 + "\n")
    assert read_jsonl(tmp_path / "metrics.jsonl") == [{"epoch": 1}]
