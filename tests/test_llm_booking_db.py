"""The booking database shared by several dialogue replicas: never an overbooked slot.

Real processes (one per simulated replica) book the last free bay at the same moment on
one SQLite file; exactly one wins and the others get a clean "fully booked" refusal.
Likewise for the last booking a user's quota allows, on different slots.
"""

from __future__ import annotations

import multiprocessing as mp
from datetime import date, datetime, time, timedelta
from pathlib import Path

from services.llm.db.store import Booker, BookingError, BookingStore, count
from services.llm.quotas import QuotaExceeded, Quotas

REPLICAS = 4


def _next_weekday() -> date:
    day = date.today() + timedelta(days=7)
    while day.weekday() > 4:
        day += timedelta(days=1)
    return day


def _replica(url: str, starts_at: datetime, index: int, barrier: mp.synchronize.Barrier,
             results: mp.Queue) -> None:  # type: ignore[type-arg]
    store = BookingStore(url, bays=1)
    barrier.wait()
    try:
        booked = store.book("oil_change", starts_at, f"Caller {index}", f"555-010{index}")
        results.put(("booked", booked["confirmation_id"]))
    except BookingError as exc:
        results.put(("refused", str(exc)))
    except Exception as exc:  # noqa: BLE001 - reported to the test, which fails on it
        results.put(("crashed", repr(exc)))
    finally:
        store.dispose()


def test_replicas_racing_for_the_last_bay_book_it_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    BookingStore(url, bays=1).create()
    starts_at = datetime.combine(_next_weekday(), time(9, 0))
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(REPLICAS)
    results = ctx.Queue()
    workers = [ctx.Process(target=_replica, args=(url, starts_at, i, barrier, results))
               for i in range(REPLICAS)]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    kinds = sorted(kind for kind, _ in outcomes)
    assert kinds == ["booked"] + ["refused"] * (REPLICAS - 1), outcomes
    assert all("fully booked" in detail for kind, detail in outcomes if kind == "refused")
    store = BookingStore(url, bays=1)
    assert count(store) == 1
    store.dispose()


def _quota_replica(url: str, index: int, barrier: mp.synchronize.Barrier,
                   results: mp.Queue) -> None:  # type: ignore[type-arg]
    """One replica booking its own free slot for the same user as the others."""
    store = BookingStore(url)
    starts_at = datetime.combine(_next_weekday(), time(8 + index))
    barrier.wait()
    try:
        store.book("oil_change", starts_at, "Racer", "555-0200",
                   booker=Booker(f"race-{index}", "racer", Quotas(max_bookings_per_user=1)))
        results.put("booked")
    except QuotaExceeded as exc:
        results.put(exc.reason.value)
    except Exception as exc:  # noqa: BLE001 - reported to the test, which fails on it
        results.put(repr(exc))
    finally:
        store.dispose()


def test_replicas_racing_past_a_users_quota_book_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    BookingStore(url).create()
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(REPLICAS)
    results = ctx.Queue()
    workers = [ctx.Process(target=_quota_replica, args=(url, i, barrier, results))
               for i in range(REPLICAS)]
    for worker in workers:
        worker.start()
    outcomes = sorted(results.get(timeout=60) for _ in workers)
    for worker in workers:
        worker.join(timeout=30)
    assert outcomes == ["booked"] + ["user_bookings"] * (REPLICAS - 1), outcomes
    store = BookingStore(url)
    assert count(store) == 1
    store.dispose()
