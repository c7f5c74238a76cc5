#!/bin/sh
# One-shot, in temporalio/admin-tools: once the frontend answers, create the namespace the
# worker uses and register the search attributes its workflows upsert (the list in README.md's
# operator guide). Safe to run again: what exists is left as it is.
set -eu

NS=${TEMPORAL_NAMESPACE:-default}
RETENTION=${TEMPORAL_NAMESPACE_RETENTION:-30d}

attempt=0
until temporal operator cluster health >/dev/null 2>&1; do
    attempt=$((attempt + 1))
    if [ "$attempt" -ge 60 ]; then
        echo "Temporal at $TEMPORAL_ADDRESS is not healthy after 2 minutes" >&2
        exit 1
    fi
    sleep 2
done

if temporal operator namespace describe --namespace "$NS" >/dev/null 2>&1; then
    echo "namespace $NS: already there"
else
    temporal operator namespace create --namespace "$NS" --retention "$RETENTION"
fi

# One attribute per call, so a re-run skips the ones that exist instead of failing on the first.
register() {
    name=$1
    type=$2
    if temporal operator search-attribute list --namespace "$NS" | grep -qw "$name"; then
        echo "search attribute $name: already there"
    else
        temporal operator search-attribute create --namespace "$NS" --name "$name" --type "$type"
    fi
}

register PdppConnector Keyword
register PdppTrigger Keyword
register PdppRunStatus Keyword
register PdppNeedsRetry Bool
register PdppRecordsDurable Int
register PdppGapsOpen Int
echo "namespace $NS is ready for pdpp-orchestrator"
