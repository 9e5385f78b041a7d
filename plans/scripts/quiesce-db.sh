#!/bin/sh
# Check that a database failed over quiesced, before it starts at the
# recovery site. It runs in the Boot phase of a planned failover: the
# primaries were shut down cleanly (which flushes and quiesces the
# database) and the final delta shipped; this confirms that the shipped
# log ends with a clean shutdown (no half-written pages, no open
# transactions) before the replicas start.
#
# Usage: quiesce-db.sh --database NAME
#
# This example only prints the commands a real script would run; it is safe
# on any machine. It shows the contract every drplan script follows:
#   - drplan passes context in DRPLAN_* variables (defaults below make the
#     script runnable by hand);
#   - lines appended to "$DRPLAN_OUTPUT" as key=value are kept by drplan and
#     shown in the job's step output;
#   - scripts run at least once: after a crash drplan may run the same
#     attempt again with the same DRPLAN_IDEMPOTENCY_KEY, so the script
#     remembers finished work under that key and does not redo it.
set -eu

job_id=${DRPLAN_JOB_ID:-manual}
kind=${DRPLAN_FAILOVER_KIND:-planned}
direction=${DRPLAN_DIRECTION:-forward}
group=${DRPLAN_GROUP:-database}
vms_json=${DRPLAN_VMS:-[]}
key=${DRPLAN_IDEMPOTENCY_KEY:-}
output=${DRPLAN_OUTPUT:-/dev/null}

database=
while [ $# -gt 0 ]; do
    case $1 in
        --database) [ $# -ge 2 ] || { echo "quiesce-db: --database needs a value" >&2; exit 2; }
                    database=$2; shift 2 ;;
        -h|--help)  sed -n '2,9p' "$0"; exit 0 ;;
        *)          echo "quiesce-db: unknown argument: $1" >&2; exit 2 ;;
    esac
done
[ -n "$database" ] || { echo "quiesce-db: --database is required" >&2; exit 2; }

# VM names from the JSON in DRPLAN_VMS: a list of names, or of objects with
# a "name" field. (A real script would use jq; this one needs only POSIX sh.)
vm_names() {
    case $1 in
        *'"name"'*) printf '%s\n' "$1" | tr ',{}' '\n\n\n' |
            sed -n 's/^[[:space:]]*"name"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p' ;;
        *) printf '%s\n' "$1" | tr ',' '\n' | sed -n 's/^[^"]*"\([^"]*\)".*/\1/p' ;;
    esac
}

# The idempotency marker: one file per key, holding the outputs of the run
# that finished, so a repeated run can report the same outputs again.
# Run by hand (no key), there is nothing to remember the work under.
marker=
if [ -n "$key" ]; then
    marker_dir=${TMPDIR:-/tmp}/drplan-scripts-$(id -u)
    marker=$marker_dir/quiesce-db.$(printf '%s' "$key" | tr -c 'A-Za-z0-9._-' '_')
    mkdir -p "$marker_dir"
    if [ -f "$marker" ]; then
        echo "quiesce-db: already done for key $key; reporting the earlier result"
        cat "$marker" >>"$output"
        exit 0
    fi
fi

echo "quiesce-db: job $job_id, $kind failover ($direction), group $group"
if [ "$kind" != planned ]; then
    # The plan restricts this step to planned failovers; say so if someone
    # runs it otherwise, but do no harm.
    echo "quiesce-db: warning: a $kind failover has no clean shutdown of the primary to check; nothing to do"
fi
for vm in $(vm_names "$vms_json"); do
    echo "quiesce-db: would check on the failed-over replica of $vm that the log of [$database] ends with a clean shutdown"
done
echo "quiesce-db: would compare the last log sequence number of [$database] with the one the primary shipped"

quiesced_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)
results=$(printf 'quiesced_database=%s\nquiesced_at=%s\n' "$database" "$quiesced_at")
printf '%s\n' "$results" >>"$output"
if [ -n "$marker" ]; then
    # Rename last: the marker appears only once the work and its outputs
    # are done, so a crash in between means the work is done again.
    printf '%s\n' "$results" >"$marker.tmp.$$"
    mv "$marker.tmp.$$" "$marker"
fi
echo "quiesce-db: [$database] quiesced at $quiesced_at"
