"""scripts/respawn.sh, the supervisor `make run` starts every process under: a command that ends is started
again, one that cannot start is given up on (so honcho stops the rest), TERM stops the command and the loop."""

import os
import signal
import subprocess
import time
from pathlib import Path

RESPAWN = str(Path(__file__).resolve().parents[1] / "scripts" / "respawn.sh")


def test_a_command_that_ends_is_started_again(tmp_path):
    runs = tmp_path / "runs"
    # Each run leaves a line and ends at once; a quick limit above what the test waits for
    loop = subprocess.Popen([RESPAWN, "sh", "-c", f"echo run >> {runs}"], stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "RESPAWN_QUICK_LIMIT": "100"})  # fmt: skip
    time.sleep(3.5)
    loop.send_signal(signal.SIGTERM)
    _, err = loop.communicate(timeout=10)
    assert loop.returncode == 0
    assert len(runs.read_text().splitlines()) >= 3
    assert "respawn: 'sh' ended (exit 0); starting it again in 1 s" in err


def test_a_command_that_cannot_start_is_given_up_on():
    loop = subprocess.run([RESPAWN, "sh", "-c", "exit 3"], capture_output=True, text=True, timeout=30,
                          env={**os.environ, "RESPAWN_QUICK_LIMIT": "3"})  # fmt: skip
    assert loop.returncode == 1
    assert "ended (exit 3) within 10 s of its start 3 times in a row; giving up" in loop.stderr


def test_term_stops_the_command_and_the_loop(tmp_path):
    pid_file = tmp_path / "pid"
    loop = subprocess.Popen([RESPAWN, "sh", "-c", f"echo $$ > {pid_file}; exec sleep 60"], stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    deadline = time.monotonic() + 10
    while not (pid_file.exists() and pid_file.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.05)
    child = int(pid_file.read_text())
    loop.send_signal(signal.SIGTERM)
    _, err = loop.communicate(timeout=10)
    assert loop.returncode == 0
    assert "respawn:" not in err  # stopped, not restarted
    assert not Path(f"/proc/{child}").exists()
