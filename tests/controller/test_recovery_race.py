"""Workers racing to recover the same dead trials on a real PostgreSQL study: the storage's refusal of
a second change of a finished trial picks one winner per trial, with no claim of our own."""

from __future__ import annotations

import threading
from collections import Counter

from controller.store.study import CampaignStudy
from tests.controller.pg import postgres_url  # noqa: F401 (a fixture)
from tests.controller.test_study import KNOBS, PARENT

RECOVERERS = 4
DEAD = 6


def test_racing_recoverers_requeue_each_dead_trial_exactly_once(postgres_url):  # noqa: F811
    victim = CampaignStudy(postgres_url, "race", seed=0)
    dead = [victim.ask(PARENT, KNOBS, tier="proxy", operation="tune").number for _ in range(DEAD)]
    recoverers = [CampaignStudy(postgres_url, "race", seed=n) for n in range(RECOVERERS)]
    start = threading.Barrier(RECOVERERS)
    won: dict[int, list[int]] = {}
    errors: list[BaseException] = []

    def recover(index: int) -> None:
        study = recoverers[index]
        seen_running = False

        def dead_after_everyone_has_read(number: int) -> bool:
            # Every recoverer has listed the trials as RUNNING before any of them fails one.
            nonlocal seen_running
            if not seen_running:
                seen_running = True
                start.wait(timeout=30)
            return False

        try:
            won[index] = study.recover_stale(dead_after_everyone_has_read)
        except BaseException as exc:  # reported below: a thread's exception would be lost
            errors.append(exc)

    threads = [threading.Thread(target=recover, args=(i,)) for i in range(RECOVERERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors

    wins = Counter(n for numbers in won.values() for n in numbers)
    assert wins == Counter(dead), f"each dead trial is recovered by exactly one caller: {won}"
    records = victim.trials()
    assert all(records[n].state == "FAIL" for n in dead)
    requeued = Counter(r.attrs.requeued_from for r in records if r.state == "WAITING")
    assert requeued == Counter(dead), f"re-queued {dict(requeued)}"
