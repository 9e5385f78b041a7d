#!/bin/sh
# Point DNS records at the failed-over VMs. After failover a replica may
# have a different IP address than its primary (see the network mapping
# rules), so plans end by updating the records clients use.
#
# Usage: update-dns.sh --zone ZONE [--ttl SECONDS]
#
# This example only prints the nsupdate commands a real script would send;
# it is safe on any machine. See quiesce-db.sh for the DRPLAN_* contract.
set -eu

job_id=${DRPLAN_JOB_ID:-manual}
kind=${DRPLAN_FAILOVER_KIND:-planned}
direction=${DRPLAN_DIRECTION:-forward}
group=${DRPLAN_GROUP:-web}
vms_json=${DRPLAN_VMS:-[]}
key=${DRPLAN_IDEMPOTENCY_KEY:-}
output=${DRPLAN_OUTPUT:-/dev/null}

zone=
ttl=60
while [ $# -gt 0 ]; do
    case $1 in
        --zone) [ $# -ge 2 ] || { echo "update-dns: --zone needs a value" >&2; exit 2; }
                zone=$2; shift 2 ;;
        --ttl)  [ $# -ge 2 ] || { echo "update-dns: --ttl needs a value" >&2; exit 2; }
                ttl=$2; shift 2 ;;
        -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
        *)      echo "update-dns: unknown argument: $1" >&2; exit 2 ;;
    esac
done
[ -n "$zone" ] || { echo "update-dns: --zone is required" >&2; exit 2; }
case $ttl in
    ''|*[!0-9]*) echo "update-dns: --ttl must be a number of seconds" >&2; exit 2 ;;
esac

vm_names() {
    case $1 in
        *'"name"'*) printf '%s\n' "$1" | tr ',{}' '\n\n\n' |
            sed -n 's/^[[:space:]]*"name"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p' ;;
        *) printf '%s\n' "$1" | tr ',' '\n' | sed -n 's/^[^"]*"\([^"]*\)".*/\1/p' ;;
    esac
}

# Replacing a record is idempotent by itself; the marker also keeps a
# repeated run from bumping the zone serial (and paging the DNS team) twice.
# Run by hand (no key), there is nothing to remember the work under.
marker=
if [ -n "$key" ]; then
    marker_dir=${TMPDIR:-/tmp}/drplan-scripts-$(id -u)
    marker=$marker_dir/update-dns.$(printf '%s' "$key" | tr -c 'A-Za-z0-9._-' '_')
    mkdir -p "$marker_dir"
    if [ -f "$marker" ]; then
        echo "update-dns: already done for key $key; reporting the earlier result"
        cat "$marker" >>"$output"
        exit 0
    fi
fi

echo "update-dns: job $job_id, $kind failover ($direction), group $group, zone $zone"
updated=
for vm in $(vm_names "$vms_json"); do
    # A real script would ask the fabric (or the VM) for the replica's new
    # address; the simulated one has none to give.
    echo "update-dns: would send: update delete $vm.$zone A"
    echo "update-dns: would send: update add $vm.$zone $ttl A <address of the $vm replica>"
    updated=${updated:+$updated,}$vm
done
[ -n "$updated" ] || echo "update-dns: no VMs given in DRPLAN_VMS; nothing to update"

results=$(printf 'dns_zone=%s\ndns_updated=%s\n' "$zone" "$updated")
printf '%s\n' "$results" >>"$output"
if [ -n "$marker" ]; then
    # Rename last: the marker appears only once the work and its outputs
    # are done, so a crash in between means the work is done again.
    printf '%s\n' "$results" >"$marker.tmp.$$"
    mv "$marker.tmp.$$" "$marker"
fi
echo "update-dns: done"
