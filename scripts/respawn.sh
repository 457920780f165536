#!/bin/sh
# respawn.sh COMMAND [ARG...]: run COMMAND, and run it again a second after it ends, as a machine's supervisor
# (systemd's Restart=always) would. `make run`, `make cluster-run` and the benches' stacks start each long-running
# process through it, so a process that crashes (or that exits because it stopped working: see the Celery
# workers' broker watch) comes back by itself, and honcho (which stops everything when one process ends) never
# sees it go. TERM or INT stop the command and the loop.
child=
stop() {
  if [ -n "$child" ]; then
    kill -TERM "$child" 2>/dev/null
    wait "$child"
  fi
  exit 0
}
trap stop TERM INT
while :; do
  "$@" &
  child=$!
  wait "$child"
  code=$?
  echo "respawn: '$1' ended (exit $code); starting it again in 1 s" >&2
  sleep 1
done
