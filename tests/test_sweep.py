"""Sweeps that use the whole machine (runner/sweep.py, conf/hydra/launcher/gpus.yaml): device slots taken and
given back through lock files, their mapping onto faked GPUs and CPU cores, the memory cap, and a real packed
multirun on CPU in which a job that runs out of GPU memory fails alone."""

import io
import json
import threading
import time
from collections import Counter

import pytest
import torch

from runner import sweep
from runner.models.convnet import ConvNet
from tests.conftest import SMALL_MODEL, SMOKE, run_entrypoint

OPTIONS_TESTED = {"hydra/launcher": {"gpus"}}

EIGHT_GPUS = [str(index) for index in range(8)]


class OutOfMemoryNetwork(ConvNet):
    """A network whose forward pass fails the way a CUDA allocation does when the GPU is full."""

    def forward(self, x):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 64.00 GiB.")


def hold_slots_at_once(folder, count: int, slots: int, gpus: list[str], cores: int) -> list[sweep.Slot]:
    """``count`` jobs (threads) taking slots concurrently; returns the slots they held while all were held."""
    barrier = threading.Barrier(count)
    held: list[sweep.Slot] = []

    def job():
        with sweep.device_slot(folder, slots, gpus, cores, apply=False) as slot:
            held.append(slot)
            barrier.wait(timeout=30)  # nobody lets go before everyone holds one

    workers = [threading.Thread(target=job) for _ in range(count)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    return held


def test_sixteen_jobs_on_eight_gpus_two_per_gpu(tmp_path):
    slots = sweep.parallel_jobs(jobs_per_gpu=2, cpu_jobs=2, gpus=EIGHT_GPUS)
    assert slots == 16
    held = hold_slots_at_once(tmp_path, 16, slots, EIGHT_GPUS, cores=32)
    assert sorted(slot.index for slot in held) == list(range(16))  # no slot used twice
    assert Counter(slot.gpu for slot in held) == {gpu: 2 for gpu in EIGHT_GPUS}
    assert all(slot.device == f"cuda:{int(slot.gpu)}" for slot in held)
    assert {slot.memory_fraction for slot in held} == {0.5} and {slot.threads for slot in held} == {2}


def test_a_small_sweep_spreads_over_gpus_before_doubling_up():
    # Round robin: 4 slots on 8 GPUs give 4 GPUs one job each, with no memory cap.
    mapped = [sweep.slot_device(index, 4, EIGHT_GPUS, cores=8) for index in range(4)]
    assert [slot.device for slot in mapped] == ["cuda:0", "cuda:1", "cuda:2", "cuda:3"]
    assert {slot.memory_fraction for slot in mapped} == {None}
    # Uneven: 12 slots on 8 GPUs put at most 2 on a GPU, so each is capped to half.
    assert max(Counter(sweep.slot_device(k, 12, EIGHT_GPUS, 8).gpu for k in range(12)).values()) == 2
    assert sweep.slot_device(11, 12, EIGHT_GPUS, 8).memory_fraction == 0.5
    assert sweep.slot_device(0, 8, ["0", "1"], 8).memory_fraction == 0.25


def test_a_released_slot_is_reused_and_a_full_machine_waits(tmp_path):
    first, first_lock = sweep.acquire_slot(tmp_path, 2)
    second, second_lock = sweep.acquire_slot(tmp_path, 2)
    assert {first, second} == {0, 1}
    taken = []
    waiter = threading.Thread(target=lambda: taken.append(sweep.acquire_slot(tmp_path, 2, poll_s=0.02)))
    waiter.start()
    time.sleep(0.3)
    assert not taken  # both slots are held: the third job waits
    first_lock.close()
    waiter.join(timeout=10)
    assert taken and taken[0][0] == first  # the slot just freed
    taken[0][1].close()
    second_lock.close()


def test_cpu_threads_are_split_between_jobs():
    assert sweep.parallel_jobs(jobs_per_gpu=4, cpu_jobs=3, gpus=[]) == 3
    assert [sweep.slot_device(k, 2, [], cores=8).threads for k in range(2)] == [4, 4]
    assert sweep.slot_device(0, 3, [], cores=16).threads == 5  # cores // jobs, never more threads than cores
    assert sweep.slot_device(0, 4, [], cores=2).threads == 1  # more jobs than cores: one thread each
    cpu = sweep.slot_device(1, 2, [], cores=2)
    assert (cpu.device, cpu.gpu, cpu.memory_fraction) == ("cpu", None, None)
    # trainer.device=cpu stays on the CPU on a GPU machine; a named device is kept and not capped.
    assert sweep.slot_device(0, 16, EIGHT_GPUS, 32, requested="cpu").device == "cpu"
    named = sweep.slot_device(5, 16, EIGHT_GPUS, 32, requested="cuda:1")
    assert (named.device, named.memory_fraction, named.threads) == ("cuda:1", None, 2)
    # joblib's n_jobs: -1 is one job per core, -2 all cores but one.
    assert [sweep.joblib_slots(n, cores=8) for n in (3, -1, -2)] == [3, 8, 7]
    with pytest.raises(ValueError, match="jobs_per_gpu"):
        sweep.parallel_jobs(jobs_per_gpu=0, cpu_jobs=2, gpus=EIGHT_GPUS)


def test_a_slot_sets_threads_and_caps_gpu_memory(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(torch, "set_num_threads", lambda count: calls.append(("threads", count)))
    monkeypatch.setattr(
        torch.cuda, "set_per_process_memory_fraction", lambda share, device: calls.append((share, str(device)))
    )
    with sweep.device_slot(tmp_path, 16, EIGHT_GPUS, cores=32) as slot:
        assert slot.device == "cuda:0"
    assert calls == [("threads", 2), (0.5, "cuda:0")]


def test_visible_gpus_follow_cuda_visible_devices(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,7")
    assert sweep.visible_gpus() == ["4", "5", "7"]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert sweep.visible_gpus() == ["0", "1", "2"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert sweep.visible_gpus() == []


def test_slot_folders_are_per_sweep(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert sweep.slot_folder("a") == sweep.slot_folder(tmp_path / "a") != sweep.slot_folder(tmp_path / "b")


def test_out_of_memory_reason_names_the_cap_and_what_to_lower():
    error = torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB.\nmore detail")
    shared = sweep.out_of_memory_reason(error, {"memory_fraction": 0.25, "device": "cuda:3"})
    assert "0.25 of cuda:3" in shared and "sweep.jobs_per_gpu" in shared and shared.endswith("2.00 GiB.")
    assert "data.batch_size" in sweep.out_of_memory_reason(error, None)


@pytest.mark.slow
def test_packed_cpu_sweep_records_slots_and_an_out_of_memory_job_fails_alone(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    networks = f"runner.models.convnet.ConvNet,{OutOfMemoryNetwork.__module__}.OutOfMemoryNetwork"
    arguments = ["-m", "hydra/launcher=gpus", "sweep.cpu_jobs=2", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    arguments += SMOKE + SMALL_MODEL + [f"model._target_={networks}", "activation=relu,gelu"]
    result = run_entrypoint(arguments, tmp_path, env_extra={"CUDA_VISIBLE_DEVICES": ""})
    assert result.returncode == 1, result.stderr  # Hydra re-raises the first failure after every job ran
    assert "2 completed, 2 failed" in result.stderr, result.stderr
    assert not sweep.slot_folder(tmp_path / "sweep").exists()  # the lock files go with the sweep

    folders = sorted(path.parent for path in (tmp_path / "sweep").glob("*/summary.json"))
    summaries = {folder: json.loads((folder / "summary.json").read_text()) for folder in folders}
    completed = [summary for summary in summaries.values() if summary["status"] == "completed"]
    assert len(completed) == 2 and all(summary["device"] == "cpu" for summary in completed)
    threads = max(1, sweep.available_cores() // 2)
    for folder, summary in summaries.items():
        slot = summary["slot"]
        assert slot["index"] in (0, 1) and slot["slots"] == 2 and slot["device"] == "cpu"
        assert slot["threads"] == threads and slot["memory_fraction"] is None
        if summary["status"] == "failed":
            assert any("OutOfMemoryNetwork" in override for override in summary["overrides"])
            assert summary["error"].startswith("CUDA out of memory (the whole GPU)")
            assert (folder / "error.txt").read_text().strip().splitlines()[-1] == summary["error"]


def test_the_report_lists_failed_and_interrupted_jobs_and_says_how_to_resume(tmp_path):
    for job, status in enumerate(("completed", "interrupted", "failed")):
        folder = tmp_path / str(job)
        (folder / ".hydra").mkdir(parents=True)
        (folder / ".hydra" / "config.yaml").write_text("seed: 0\n")
        (folder / "summary.json").write_text(json.dumps({"status": status}))
    (tmp_path / "2" / "error.txt").write_text("Traceback\nValueError: the loss is nan\n")
    stream = io.StringIO()
    assert sweep.report(tmp_path, stream) is True
    text = stream.getvalue()
    assert f"Sweep {tmp_path}: 1 completed, 1 failed, 1 interrupted." in text
    assert f"  failed: {tmp_path / '2'}  (ValueError: the loss is nan)" in text
    assert f"  interrupted: {tmp_path / '1'}  (the same sweep command again resumes it" in text
    (tmp_path / "1" / "summary.json").write_text(json.dumps({"status": "completed"}))
    (tmp_path / "2" / "summary.json").write_text(json.dumps({"status": "completed"}))
    assert sweep.report(tmp_path, io.StringIO()) is False
