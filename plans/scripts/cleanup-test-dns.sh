#!/bin/sh
# Remove the DNS records a test failover registered in the drill zone, so a
# completed drill leaves nothing behind. Runs as a test cleanup step, after
# drplan has deleted the test VMs.
#
# Usage: cleanup-test-dns.sh --zone ZONE
#
# This example only prints the nsupdate commands a real script would send;
# it is safe on any machine. See quiesce-db.sh for the DRPLAN_* contract.
set -eu

job_id=${DRPLAN_JOB_ID:-manual}
kind=${DRPLAN_FAILOVER_KIND:-test}
direction=${DRPLAN_DIRECTION:-forward}
vms_json=${DRPLAN_VMS:-[]}
key=${DRPLAN_IDEMPOTENCY_KEY:-}
output=${DRPLAN_OUTPUT:-/dev/null}

zone=
while [ $# -gt 0 ]; do
    case $1 in
        --zone) [ $# -ge 2 ] || { echo "cleanup-test-dns: --zone needs a value" >&2; exit 2; }
                zone=$2; shift 2 ;;
        -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
        *)      echo "cleanup-test-dns: unknown argument: $1" >&2; exit 2 ;;
    esac
done
[ -n "$zone" ] || { echo "cleanup-test-dns: --zone is required" >&2; exit 2; }

# Refuse to touch a production zone: this script deletes records, and a
# drill must never change production.
case $zone in
    *.test.example|test.example) ;;
    *) echo "cleanup-test-dns: refusing to clean '$zone': not a drill zone (*.test.example)" >&2; exit 2 ;;
esac

vm_names() {
    case $1 in
        *'"name"'*) printf '%s\n' "$1" | tr ',{}' '\n\n\n' |
            sed -n 's/^[[:space:]]*"name"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p' ;;
        *) printf '%s\n' "$1" | tr ',' '\n' | sed -n 's/^[^"]*"\([^"]*\)".*/\1/p' ;;
    esac
}

# Run by hand (no key), there is nothing to remember the work under.
marker=
if [ -n "$key" ]; then
    marker_dir=${TMPDIR:-/tmp}/drplan-scripts-$(id -u)
    marker=$marker_dir/cleanup-test-dns.$(printf '%s' "$key" | tr -c 'A-Za-z0-9._-' '_')
    mkdir -p "$marker_dir"
    if [ -f "$marker" ]; then
        echo "cleanup-test-dns: already done for key $key; reporting the earlier result"
        cat "$marker" >>"$output"
        exit 0
    fi
fi

echo "cleanup-test-dns: job $job_id, cleanup of a $kind failover ($direction), zone $zone"
removed=0
names=$(vm_names "$vms_json")
if [ -n "$names" ]; then
    for vm in $names; do
        echo "cleanup-test-dns: would send: update delete $vm.$zone A"
        removed=$((removed + 1))
    done
else
    # Cleanup may run without a VM list (the test VMs are already gone):
    # then remove every record the drill registered in the zone.
    echo "cleanup-test-dns: would delete every A record in $zone registered by job $job_id"
fi

results=$(printf 'test_dns_zone=%s\ntest_dns_records_removed=%s\n' "$zone" "$removed")
printf '%s\n' "$results" >>"$output"
if [ -n "$marker" ]; then
    # Rename last: the marker appears only once the work and its outputs
    # are done, so a crash in between means the work is done again.
    printf '%s\n' "$results" >"$marker.tmp.$$"
    mv "$marker.tmp.$$" "$marker"
fi
echo "cleanup-test-dns: done"
