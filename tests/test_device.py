"""Where a run trains and in what precision (runner.device): CPU by name, autocast types per precision, loss
scaling only under float16, and the automatic evaluation batch per kind of device."""

import pytest
import torch

from runner.device import autocast, loss_scaler, pick_autocast, pick_device, pick_eval_batch_size


def test_the_device_by_name_and_auto_without_cuda():
    assert pick_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert pick_device("auto") == torch.device("cpu")


@pytest.mark.parametrize(
    ("precision", "device", "dtype"),
    [
        ("auto", "cpu", None),  # bfloat16 matmuls are slower than fp32 on a CPU without AMX
        ("auto", "cuda", torch.bfloat16),
        ("fp32", "cuda", None),
        ("bf16", "cpu", torch.bfloat16),
        ("fp16", "cuda", torch.float16),
    ],
)
def test_precision_picks_the_autocast_type(precision, device, dtype):
    assert pick_autocast(precision, torch.device(device)) is dtype


def test_only_float16_scales_the_loss_and_fp32_autocasts_nothing():
    cpu = torch.device("cpu")
    assert loss_scaler(cpu, torch.float16).is_enabled()
    assert not loss_scaler(cpu, torch.bfloat16).is_enabled() and not loss_scaler(cpu, None).is_enabled()
    with autocast(cpu, None):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    with autocast(cpu, torch.bfloat16):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16


def test_automatic_evaluation_batch_is_small_on_a_cpu_and_large_on_a_gpu():
    assert pick_eval_batch_size("auto", torch.device("cpu")) == 64
    assert pick_eval_batch_size("auto", torch.device("cuda")) == 2000
    assert pick_eval_batch_size(300, torch.device("cpu")) == 300


def test_a_thread_budget_sets_the_runs_cpu_threads(monkeypatch):
    from runner.device import set_threads

    threads = torch.get_num_threads()
    try:
        set_threads(1)
        assert torch.get_num_threads() == 1
        set_threads("auto")  # leaves it as it is
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
