"""The loop's slot gate (controller.search.slots): one trial staged ahead of the slots, and a stop that
keeps a staged trial from starting."""

from __future__ import annotations

import threading

from controller.search.slots import SlotGate
from sandbox import GpuPool


def test_one_trial_is_staged_at_a_time_and_a_freed_slot_goes_to_it():
    stopped = threading.Event()
    gate = SlotGate(GpuPool.cpu(1), stopped.is_set)
    running = gate.stage(1, use_gpus=False)
    assert running is not None and running.take() == ()  # takes the only slot, leaves the staging place
    staged = gate.stage(1, use_gpus=False)
    assert staged is not None
    second_stage: list[object] = []
    waiter = threading.Thread(target=lambda: second_stage.append(gate.stage(1, use_gpus=False)))
    waiter.start()
    waiter.join(timeout=0.8)
    assert waiter.is_alive(), "a second trial may not stage while one waits for a slot"

    took: list[object] = []
    taker = threading.Thread(target=lambda: took.append(staged.take()))
    taker.start()
    taker.join(timeout=0.8)
    assert taker.is_alive(), "the staged trial waits while the slot is busy"
    running.free()
    taker.join(timeout=5)
    assert took == [()]
    waiter.join(timeout=5)  # the staged trial took its slot: the staging place is free again
    assert second_stage and second_stage[0] is not None
    for ticket in (running, staged, second_stage[0]):
        ticket.close()
    assert gate.pool.free == 1


def test_a_staged_trial_does_not_start_once_the_user_stopped():
    stopped = threading.Event()
    gate = SlotGate(GpuPool.cpu(1), stopped.is_set)
    running = gate.stage(1, use_gpus=False)
    running.take()
    staged = gate.stage(1, use_gpus=False)
    took: list[object] = []
    taker = threading.Thread(target=lambda: took.append(staged.take()))
    taker.start()
    stopped.set()
    taker.join(timeout=5)
    assert took == [None]
    assert gate.stage(1, use_gpus=False) is None  # nothing new stages after a stop
    running.close()
    staged.close()
    assert gate.pool.free == 1
    stopped.clear()
    assert gate.stage(1, use_gpus=False) is not None  # the staging place was given back
