"""Redis killed mid-sale, seen the way a shop sees it: the whole stack as `make run` starts it (uvicorn,
the Celery worker, the ticker, beat, localstripe) on a Redis of its own, 400 shoppers driven over HTTP by
``simulate_drop`` (they retry a 503 after its Retry-After, as the page does), and the Redis SIGKILLed
and restarted empty while they queue and buy. The run is ``bench/chaos.py``; this test reads its JSON.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _postgres_answers() -> bool:
    """bench/chaos.py runs its stack on a throwaway PostgreSQL database (several processes write at once)."""
    if shutil.which("psql") is None:
        return False
    try:
        done = subprocess.run(["psql", "-w", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qAtc",
                               "select 1"], capture_output=True, text=True, timeout=15)  # fmt: skip
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not _postgres_answers(), reason="needs PostgreSQL on 127.0.0.1:5432 (user postgres)"),
]


def test_after_redis_is_lost_mid_sale_the_sale_heals_by_itself(tmp_path, request):
    out = tmp_path / "chaos.json"
    command = [
        sys.executable, "bench/chaos.py", "--shoppers", "400", "--units", "30", "--faults", "redis",
        "--only-chaos", "--at", "redis=3", "--redis-down", "2", "--settle", "60", "--max-seconds", "400",
        "--database", f"flashsale_heals_{os.getpid()}", "--json", str(out), "--keep-logs",
    ]  # fmt: skip
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=480)
    logs = Path(re.search(r"logs in (\S+)", run.stderr).group(1)) if "logs in " in run.stderr else None
    request.addfinalizer(lambda: shutil.rmtree(logs, ignore_errors=True) if logs else None)
    assert out.exists(), run.stderr[-3000:]
    result = json.loads(out.read_text())
    report = result["reports"]["chaos"]
    healing = report["healing"]
    timeline = "\n".join(f"{e['at']:+.1f} s {e['what']}" for e in result["timeline"])
    if logs is not None:  # what the ticker and beat said, should a step below fail
        timeline += "".join(f"\n--- {name}\n" + (logs / name).read_text(errors="replace")[-2500:]
                            for name in ("ticker.log", "beat.log") if (logs / name).exists())  # fmt: skip

    # The fault struck while shoppers were at it: some were told to try again (503 + Retry-After)
    assert any("SIGKILL" in e["what"] for e in result["timeline"]), timeline
    assert report["errors"].get("503 service_unavailable", 0) > 0, report["errors"]
    # Within a second of Redis answering again, the drop is rebuilt (the ticker's or beat's watch, not a beat task)
    rebuilt_after = result["redis_rebuilt_after_seconds"]
    assert rebuilt_after is not None, timeline
    assert rebuilt_after < 1.0, timeline
    # Nothing oversold, every unit sold, every shopper told an outcome (no final "not in queue" or "no card")
    assert report["oversold"] == 0
    assert report["units_accounted"]["paid"] == 30, report["units_accounted"]
    assert healing["shoppers_without_outcome"] == {}, (report["outcomes"], timeline)
    assert report["unfinished_shoppers"] == 0
    # No money lost: every capture at Stripe is a paid order or was refunded
    money = healing["money"]
    assert money["captured_at_stripe"] == money["paid"] + money["refunded"], money
    # The stores agree without an operator: reconcile_drop finds nothing to change
    assert healing["reconcile_finds_nothing"], result["failures"]
    # Every 5xx was the designed, retried 503
    assert set(report["server_errors"]) <= {f"{step} 503 service_unavailable" for step in
                                            ("authorization", "challenge", "join", "position", "purchase", "session",
                                             "sign_in")}, report["server_errors"]  # fmt: skip
    assert run.returncode == 0, (result["failures"], run.stderr[-3000:])
