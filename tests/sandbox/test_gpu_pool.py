"""GpuPool: k GPUs per lease, first come first served, thread-safe."""

from __future__ import annotations

import threading
import time

import pytest

from sandbox.gpu_pool import GpuPool


def wait_until(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


def test_leases_hand_out_distinct_gpus_and_give_them_back():
    pool = GpuPool(range(8))
    with pool.acquire(3) as first, pool.acquire(2) as second:
        assert first.gpus == (0, 1, 2) and second.gpus == (3, 4)
        assert pool.free == 3 and pool.total == 8
    assert pool.free == 8


def test_one_full_run_or_eight_single_gpu_runs():
    pool = GpuPool([4, 5, 6, 7, 0, 1, 2, 3])
    singles = [pool.acquire(1) for _ in range(8)]
    assert sorted(g for lease in singles for g in lease.gpus) == list(range(8))
    with pytest.raises(TimeoutError):
        pool.acquire(1, timeout=0.05)
    for lease in singles:
        lease.release()
        lease.release()  # a second release must not free the GPUs twice
    assert pool.free == 8
    with pool.acquire(8) as full:
        assert full.gpus == (4, 5, 6, 7, 0, 1, 2, 3)  # the order the pool was given


def test_waiting_full_request_is_not_starved_by_later_small_ones():
    pool = GpuPool(range(8))
    holder = pool.acquire(7)
    order: list[str] = []

    def request(name: str, k: int) -> None:
        with pool.acquire(k, timeout=10):
            order.append(name)
            time.sleep(0.05)

    big = threading.Thread(target=request, args=("big", 8))
    big.start()
    wait_until(lambda: pool.waiting == 1)
    small = threading.Thread(target=request, args=("small", 1))
    small.start()
    wait_until(lambda: pool.waiting == 2)
    time.sleep(0.1)
    assert order == [], "the 1-GPU request jumped the queue although one GPU was free"
    holder.release()
    big.join(5)
    small.join(5)
    assert order == ["big", "small"]


def test_timeout_leaves_the_queue_so_later_requests_proceed():
    pool = GpuPool(range(2))
    holder = pool.acquire(1)
    with pytest.raises(TimeoutError, match="no 2 GPU"):
        pool.acquire(2, timeout=0.05)
    with pool.acquire(1, timeout=0.5) as lease:  # would wait forever if the timed-out ticket stayed first
        assert lease.gpus == (1,)
    holder.release()


def test_requests_the_pool_can_never_serve_fail_at_once():
    pool = GpuPool(range(2))
    with pytest.raises(ValueError, match="cannot lease 3 GPU"):
        pool.acquire(3)
    with pytest.raises(ValueError, match="distinct"):
        GpuPool([0, 0])
    with pytest.raises(ValueError, match="GpuPool.cpu"):
        GpuPool([])


def test_cpu_pool_hands_out_no_gpus_but_limits_concurrency():
    pool = GpuPool.cpu(2)
    active = 0
    peak = 0
    lock = threading.Lock()

    def job() -> None:
        nonlocal active, peak
        with pool.acquire(1) as lease:
            assert lease.gpus == ()
            with lock:
                active += 1
                peak = max(peak, active)
            time.sleep(0.02)
            with lock:
                active -= 1

    threads = [threading.Thread(target=job) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert peak == 2 and pool.free == 2


def test_no_gpu_is_ever_held_by_two_leases_under_contention():
    pool = GpuPool(range(4))
    held: set[int] = set()
    lock = threading.Lock()
    errors: list[str] = []

    def worker(k: int) -> None:
        for _ in range(20):
            with pool.acquire(k, timeout=10) as lease:
                with lock:
                    if held & set(lease.gpus):
                        errors.append(f"{lease.gpus} overlaps {held}")
                    held.update(lease.gpus)
                time.sleep(0.001)
                with lock:
                    held.difference_update(lease.gpus)

    threads = [threading.Thread(target=worker, args=(k,)) for k in (1, 1, 2, 3, 4, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors and pool.free == 4
