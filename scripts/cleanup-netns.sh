#!/usr/bin/env bash
# Remove network namespaces left behind by test-bed runs that died
# (crash, SIGKILL, CI timeout). Test-bed namespaces are named
# PREFIX<pid>-<counter> (letters, pid, dash, counter); only those whose pid
# is no longer alive are removed, so runs still going on are left alone.
# Usage: scripts/cleanup-netns.sh [--all]   (--all: ignore the pid check)
set -euo pipefail

all=0
[[ "${1:-}" == "--all" ]] && all=1

removed=0
while read -r name _; do
    [[ "$name" =~ ^[a-z]+([0-9]+)-[0-9]+$ ]] || continue
    pid="${BASH_REMATCH[1]}"
    if [[ $all -eq 0 && -d "/proc/$pid" ]]; then
        continue
    fi
    # Processes still inside (daemons of the dead run): by pid, not by name.
    pids=$(ip netns pids "$name" 2>/dev/null || true)
    if [[ -n "$pids" ]]; then
        kill -TERM $pids 2>/dev/null || true
        sleep 1
        kill -KILL $pids 2>/dev/null || true
    fi
    ip netns del "$name" 2>/dev/null || true
    rm -rf "/var/run/frr/$name" "/run/evpnd/$name.sock"
    removed=$((removed + 1))
done < <(ip netns list 2>/dev/null)
echo "cleanup-netns: removed $removed stale namespace(s)"
