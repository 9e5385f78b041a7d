#!/bin/sh
# Smoke-test an application after failover: is it up, and does it answer
# with the page users expect?
#
# Usage: smoke-test.sh --url URL
#   SMOKE_EXPECT       text the page must contain (default: none)
#   SMOKE_SIMULATE_FAILURE=1  fail on purpose, to try drplan's retry,
#                      skip and error policies against the simulated fabric
#
# This example only prints the checks a real script would make; it is safe
# on any machine. See quiesce-db.sh for the DRPLAN_* contract.
set -eu

job_id=${DRPLAN_JOB_ID:-manual}
kind=${DRPLAN_FAILOVER_KIND:-planned}
direction=${DRPLAN_DIRECTION:-forward}
group=${DRPLAN_GROUP:-web}
vms_json=${DRPLAN_VMS:-[]}
key=${DRPLAN_IDEMPOTENCY_KEY:-}
output=${DRPLAN_OUTPUT:-/dev/null}
expect=${SMOKE_EXPECT:-}

url=
while [ $# -gt 0 ]; do
    case $1 in
        --url) [ $# -ge 2 ] || { echo "smoke-test: --url needs a value" >&2; exit 2; }
               url=$2; shift 2 ;;
        -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
        *)     echo "smoke-test: unknown argument: $1" >&2; exit 2 ;;
    esac
done
[ -n "$url" ] || { echo "smoke-test: --url is required" >&2; exit 2; }

vm_names() {
    case $1 in
        *'"name"'*) printf '%s\n' "$1" | tr ',{}' '\n\n\n' |
            sed -n 's/^[[:space:]]*"name"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p' ;;
        *) printf '%s\n' "$1" | tr ',' '\n' | sed -n 's/^[^"]*"\([^"]*\)".*/\1/p' ;;
    esac
}

# A smoke test only reads, so running it twice is harmless: no marker is
# needed. The key is still logged so the run can be matched to the job.
echo "smoke-test: job $job_id, $kind failover ($direction), group $group${key:+, key $key}"
if [ "$kind" = test ]; then
    echo "smoke-test: drill: probing through the test network, not production"
fi
checked=0
for vm in $(vm_names "$vms_json"); do
    echo "smoke-test: would check that $vm answers on its service port"
    checked=$((checked + 1))
done
echo "smoke-test: would fetch $url${expect:+ and look for \"$expect\"}"

if [ "${SMOKE_SIMULATE_FAILURE:-0}" = 1 ]; then
    echo "smoke-test: FAILED (SMOKE_SIMULATE_FAILURE=1): $url did not answer" >&2
    exit 1
fi
printf 'smoke_url=%s\nsmoke_vms_checked=%s\n' "$url" "$checked" >>"$output"
echo "smoke-test: passed"
