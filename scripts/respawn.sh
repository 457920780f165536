#!/bin/sh
# respawn.sh COMMAND [ARG...]: run COMMAND, and run it again a second after it ends, as a machine's supervisor
# (systemd's Restart=always) would. `make run`, `make cluster-run` and the benches' stacks start their
# long-running processes through it, so a process that crashes (or that exits because it stopped working: see
# the Celery workers' broker watch) comes back by itself, and honcho (which stops everything when one process
# ends) never sees it go. Like systemd's start limit, it gives up (exit 1, and honcho then stops the rest) when
# the command ended within QUICK_SECONDS of its start QUICK_LIMIT times in a row: a command that cannot start
# (a port in use, a wrong setting) is reported, not retried for ever. TERM or INT stop the command and the loop.
QUICK_SECONDS=${RESPAWN_QUICK_SECONDS:-10}
QUICK_LIMIT=${RESPAWN_QUICK_LIMIT:-5}
child=
quick=0
stop() {
  if [ -n "$child" ]; then
    kill -TERM "$child" 2>/dev/null
    wait "$child"
  fi
  exit 0
}
trap stop TERM INT
while :; do
  started=$(date +%s)
  "$@" &
  child=$!
  wait "$child"
  code=$?
  child=
  if [ $(($(date +%s) - started)) -lt "$QUICK_SECONDS" ]; then
    quick=$((quick + 1))
  else
    quick=0
  fi
  if [ "$quick" -ge "$QUICK_LIMIT" ]; then
    echo "respawn: '$1' ended (exit $code) within ${QUICK_SECONDS} s of its start $quick times in a row; giving up" >&2
    exit 1
  fi
  echo "respawn: '$1' ended (exit $code); starting it again in 1 s" >&2
  sleep 1
done
