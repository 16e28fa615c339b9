"""The scheduler's lease on real SQLite and PostgreSQL: one holder, takeover after expiry, fencing."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import text

from broker.store import Store
from broker.store.lease import Lease, LeaseLost


@pytest.fixture
def store(db_url: str) -> Store:
    return Store(db_url)


def test_one_broker_holds_the_lease_and_the_other_waits(store: Store) -> None:
    first, second = Lease(store, "a", "10.0.0.1:50051", ttl_s=30), Lease(store, "b", ttl_s=30)
    assert first.try_acquire() == 1
    assert second.try_acquire() is None
    holder = first.holder()
    assert holder is not None
    assert (holder.broker_id, holder.address, holder.epoch) == ("a", "10.0.0.1:50051", 1)
    assert 25 < holder.expires_in_s <= 30
    first.renew()  # still ours


def test_an_expired_lease_passes_to_the_standby_with_a_higher_epoch(store: Store) -> None:
    first, second = Lease(store, "a", ttl_s=0.3), Lease(store, "b", ttl_s=30)
    assert first.try_acquire() == 1
    time.sleep(0.4)
    assert second.try_acquire() == 2
    with pytest.raises(LeaseLost):
        first.renew()
    with store.engine.begin() as conn, pytest.raises(LeaseLost):
        first.fence(conn)
    with store.engine.begin() as conn:
        second.fence(conn)  # the new holder writes


def test_a_fenced_write_of_a_broker_that_lost_the_lease_is_not_stored(store: Store) -> None:
    first, second = Lease(store, "a", ttl_s=0.3), Lease(store, "b", ttl_s=30)
    first.try_acquire()
    with store.engine.begin() as conn:
        conn.execute(text("CREATE TABLE probe (n INTEGER)"))
    time.sleep(0.4)  # paused past its lease...
    second.try_acquire()
    with pytest.raises(LeaseLost), store.engine.begin() as conn:  # ...its late write fails whole
        conn.execute(text("INSERT INTO probe VALUES (1)"))
        first.fence(conn)
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM probe")).scalar_one() == 0


def test_an_expired_lease_that_nobody_took_cannot_be_written_under_until_renewed(store: Store) -> None:
    lease = Lease(store, "a", ttl_s=0.2)
    lease.try_acquire()
    time.sleep(0.3)
    with store.engine.begin() as conn, pytest.raises(LeaseLost):
        lease.fence(conn)
    lease.renew()  # nobody took it: the holder may extend it
    with store.engine.begin() as conn:
        lease.fence(conn)


def test_a_released_lease_is_taken_at_once(store: Store) -> None:
    first, second = Lease(store, "a", ttl_s=30), Lease(store, "b", ttl_s=30)
    first.try_acquire()
    first.release()
    assert second.try_acquire() == 2
