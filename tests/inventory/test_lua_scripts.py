"""Each inventory Lua script on its own, against a real Redis, with its edge cases."""

import time

import pytest

from inventory.redis_keys import inventory_keys
from inventory.scripts import (
    AdjustResult,
    ArmResult,
    ClaimResult,
    CommitResult,
    ReleaseResult,
    lua_script,
)

DROP = 901  # the scripts need no database row: only the keys


@pytest.fixture
def keys():
    return inventory_keys(DROP)


def arm(redis, keys, quantity, taken=0, epoch="1.0"):
    script = lua_script("arm")
    return ArmResult(script(keys=[keys.stock, keys.sold, keys.meta], args=[quantity, taken, epoch], client=redis))


def claim(redis, keys, claim_id, shopper, units=1, limit=1, hold_ms=60_000):
    code, stock = lua_script("claim")(
        keys=[keys.stock, keys.holds, keys.expiry, keys.customers],
        args=[claim_id, shopper, units, limit, hold_ms],
        client=redis,
    )
    return ClaimResult(code), stock


def commit(redis, keys, claim_id, shopper, units=1):
    return CommitResult(
        lua_script("commit")(
            keys=[keys.stock, keys.sold, keys.holds, keys.expiry, keys.customers, keys.committed],
            args=[claim_id, shopper, units],
            client=redis,
        )
    )


def release(redis, keys, claim_id):
    return ReleaseResult(
        lua_script("release")(keys=[keys.stock, keys.holds, keys.expiry, keys.customers], args=[claim_id], client=redis)
    )


def sweep(redis, keys, batch=100):
    return [
        c.decode()
        for c in lua_script("sweep")(
            keys=[keys.stock, keys.holds, keys.expiry, keys.customers], args=[batch], client=redis
        )
    ]


def state(redis, keys):
    stock = redis.get(keys.stock)
    return {
        "stock": None if stock is None else int(stock),
        "sold": int(redis.get(keys.sold) or 0),
        "holds": {k.decode(): v.decode() for k, v in redis.hgetall(keys.holds).items()},
        "customers": {k.decode(): int(v) for k, v in redis.hgetall(keys.customers).items()},
    }


# --- arm -------------------------------------------------------------------------------------


def test_arm_loads_the_stock_once(redis, keys):
    assert arm(redis, keys, 10, taken=3) is ArmResult.ARMED
    assert state(redis, keys)["stock"] == 7
    assert int(redis.get(keys.sold)) == 3


def test_arm_twice_never_resets_a_live_counter(redis, keys):
    arm(redis, keys, 10)
    claim(redis, keys, "c1", 1)
    assert arm(redis, keys, 50) is ArmResult.ALREADY_ARMED
    assert state(redis, keys)["stock"] == 9


def test_arm_over_keys_of_another_drop_with_the_same_id_reports_them(redis, keys):
    arm(redis, keys, 10, epoch="1.0")
    claim(redis, keys, "c1", 1)
    assert arm(redis, keys, 50, epoch="2.0") is ArmResult.FOREIGN
    assert state(redis, keys)["stock"] == 9  # the caller decides; the script changed nothing


# --- claim -----------------------------------------------------------------------------------


def test_claim_decrements_and_records_a_hold(redis, keys):
    arm(redis, keys, 2)
    assert claim(redis, keys, "c1", 7) == (ClaimResult.CLAIMED, 1)
    s = state(redis, keys)
    assert s["holds"] == {"c1": "7:1"}
    assert s["customers"] == {"7": 1}
    assert redis.zscore(keys.expiry, "c1") > time.time() * 1000


def test_claim_at_stock_zero_is_sold_out_and_changes_nothing(redis, keys):
    arm(redis, keys, 1)
    claim(redis, keys, "c1", 1)
    before = state(redis, keys)
    assert claim(redis, keys, "c2", 2) == (ClaimResult.SOLD_OUT, 0)
    assert state(redis, keys) == before


def test_claim_over_the_limit_is_refused(redis, keys):
    arm(redis, keys, 10)
    assert claim(redis, keys, "c1", 5, units=2, limit=2)[0] is ClaimResult.CLAIMED
    before = state(redis, keys)
    assert claim(redis, keys, "c2", 5, units=1, limit=2) == (ClaimResult.LIMIT_REACHED, 8)
    assert state(redis, keys) == before


def test_claim_more_than_left_is_insufficient(redis, keys):
    arm(redis, keys, 1)
    assert claim(redis, keys, "c1", 5, units=2, limit=3) == (ClaimResult.INSUFFICIENT, 1)
    assert state(redis, keys)["stock"] == 1


def test_claim_without_stock_key_is_not_armed(redis, keys):
    assert claim(redis, keys, "c1", 5) == (ClaimResult.NOT_ARMED, 0)
    assert redis.exists(keys.stock, keys.holds, keys.customers) == 0


def test_claim_id_reused_is_refused(redis, keys):
    arm(redis, keys, 5)
    claim(redis, keys, "c1", 1)
    assert claim(redis, keys, "c1", 2)[0] is ClaimResult.DUPLICATE_CLAIM
    assert state(redis, keys)["stock"] == 4


# --- commit ----------------------------------------------------------------------------------


def test_commit_turns_the_hold_into_a_sale_once(redis, keys):
    arm(redis, keys, 3)
    claim(redis, keys, "c1", 1)
    assert commit(redis, keys, "c1", 1) is CommitResult.COMMITTED
    assert commit(redis, keys, "c1", 1) is CommitResult.ALREADY_COMMITTED
    s = state(redis, keys)
    assert (s["stock"], s["sold"], s["holds"], s["customers"]) == (2, 1, {}, {"1": 1})


def test_commit_after_the_hold_was_swept_takes_the_unit_again(redis, keys):
    arm(redis, keys, 2)
    claim(redis, keys, "c1", 1)
    release(redis, keys, "c1")
    assert commit(redis, keys, "c1", 1) is CommitResult.RETAKEN
    s = state(redis, keys)
    assert (s["stock"], s["sold"], s["customers"]) == (1, 1, {"1": 1})


def test_commit_after_the_hold_was_swept_and_stock_gone_is_lost(redis, keys):
    arm(redis, keys, 1)
    claim(redis, keys, "c1", 1)
    release(redis, keys, "c1")
    claim(redis, keys, "c2", 2)
    assert commit(redis, keys, "c1", 1) is CommitResult.LOST
    s = state(redis, keys)
    assert (s["stock"], s["sold"], s["holds"]) == (0, 0, {"c2": "2:1"})


# --- release ---------------------------------------------------------------------------------


def test_release_returns_the_unit_and_double_release_changes_nothing(redis, keys):
    arm(redis, keys, 1)
    claim(redis, keys, "c1", 4)
    assert release(redis, keys, "c1") is ReleaseResult.RELEASED
    after_first = state(redis, keys)
    assert after_first == {"stock": 1, "sold": 0, "holds": {}, "customers": {}}
    assert release(redis, keys, "c1") is ReleaseResult.NOT_HELD
    assert state(redis, keys) == after_first


def test_release_of_a_committed_claim_changes_nothing(redis, keys):
    arm(redis, keys, 1)
    claim(redis, keys, "c1", 4)
    commit(redis, keys, "c1", 4)
    assert release(redis, keys, "c1") is ReleaseResult.NOT_HELD
    assert state(redis, keys)["stock"] == 0


# --- sweep -----------------------------------------------------------------------------------


def test_sweep_returns_expired_holds_only(redis, keys):
    arm(redis, keys, 3)
    claim(redis, keys, "short", 1, hold_ms=1)
    claim(redis, keys, "long", 2, hold_ms=60_000)
    time.sleep(0.01)
    assert sweep(redis, keys) == ["short"]
    s = state(redis, keys)
    assert (s["stock"], s["holds"], s["customers"]) == (2, {"long": "2:1"}, {"2": 1})
    assert sweep(redis, keys) == []


def test_sweep_works_in_batches(redis, keys):
    arm(redis, keys, 5)
    for i in range(5):
        claim(redis, keys, f"c{i}", i, hold_ms=1)
    time.sleep(0.01)
    assert len(sweep(redis, keys, batch=2)) == 2
    assert len(sweep(redis, keys, batch=10)) == 3
    assert state(redis, keys)["stock"] == 5


def test_an_expired_hold_can_still_be_committed_before_the_sweep(redis, keys):
    arm(redis, keys, 1)
    claim(redis, keys, "c1", 1, hold_ms=1)
    time.sleep(0.01)
    assert commit(redis, keys, "c1", 1) is CommitResult.COMMITTED
    assert sweep(redis, keys) == []
    assert state(redis, keys)["stock"] == 0


# --- adjust ----------------------------------------------------------------------------------


def adjust(redis, keys, quantity):
    code, stock = lua_script("adjust")(keys=[keys.stock, keys.meta], args=[quantity], client=redis)
    return AdjustResult(code), stock


def test_adjust_moves_the_stock_by_the_difference(redis, keys):
    arm(redis, keys, 10)
    claim(redis, keys, "c1", 1)
    assert adjust(redis, keys, 15) == (AdjustResult.ADJUSTED, 14)
    assert adjust(redis, keys, 5) == (AdjustResult.ADJUSTED, 4)


def test_adjust_below_what_is_taken_is_refused(redis, keys):
    arm(redis, keys, 2)
    claim(redis, keys, "c1", 1)
    claim(redis, keys, "c2", 2)
    assert adjust(redis, keys, 1) == (AdjustResult.BELOW_TAKEN, 0)
    assert state(redis, keys)["stock"] == 0
    assert adjust(redis, keys, 2) == (AdjustResult.ADJUSTED, 0)


def test_adjust_of_an_unarmed_drop(redis, keys):
    assert adjust(redis, keys, 5) == (AdjustResult.NOT_ARMED, 0)
    assert redis.exists(keys.stock) == 0


# --- rebuild ---------------------------------------------------------------------------------


def test_rebuild_replaces_redis_with_the_database_truth(redis, keys):
    arm(redis, keys, 10)
    claim(redis, keys, "stray", 9)  # a hold the database never heard of
    args = [10, 3, 60_000, "1.0", 1, 1, "paid1", "pend1", "5", "2", "4", "1", "5", "2"]
    stock, sold, held = lua_script("rebuild")(keys=keys.as_list(), args=args, client=redis)
    assert (stock, sold, held) == (7, 1, 2)
    s = state(redis, keys)
    assert s["holds"] == {"pend1": "5:2"}
    assert s["customers"] == {"4": 1, "5": 2}
    assert redis.sismember(keys.committed, "paid1")
    # the rebuilt state behaves: the pending hold commits, the paid one is not sold twice
    assert commit(redis, keys, "pend1", 5, units=2) is CommitResult.COMMITTED
    assert commit(redis, keys, "paid1", 4) is CommitResult.ALREADY_COMMITTED


def test_script_flush_is_survived(redis, keys):
    """A Redis that restarted has no scripts: EVALSHA's NOSCRIPT is answered by loading it again."""
    arm(redis, keys, 2)
    redis.script_flush()
    assert claim(redis, keys, "c1", 1) == (ClaimResult.CLAIMED, 1)
