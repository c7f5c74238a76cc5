#!/usr/bin/env bash
# A PDPP connector in bash, writing its protocol lines by hand (written by `pdpp-orch connectors
# new --lang shell`): a working example to change into yours. No jq needed: START is one line of
# compact JSON, read with grep and sed.
#
# It collects one stream, `items`, from a JSON-lines file (ITEMS_FILE: one flat item a line, each
# with an "id" and an "updated_at"), incrementally:
# - START.state carries the cursor the last run committed, {"updated_at": ..., "id": ...}: only
#   items after it are collected (a first run gets "state": null and collects everything);
# - a STATE every CHECKPOINT_EVERY items and one at the end (the runtime commits the latest STATE
#   whose records are all durable: an interrupted run resumes from there);
# - an item marked "archived" is skipped (SKIP_RESULT, reason archived; the registry maps that
#   reason to informational, so the run still succeeds);
# - an item with "unavailable": true is a DETAIL_GAP; a recovery run serves it back in
#   START.detail_gaps (and on DETAIL_GAPS_PAGE_REQUEST): this connector then fetches exactly
#   those items and answers each with RECORD + DETAIL_GAP_RECOVERED (DETAIL_GAP_ATTEMPTED while
#   it is still unavailable), with no STATE: a recovery does not move the cursor.
# The exit status agrees with DONE: 0 for succeeded. docs/protocol.md has every message.
set -euo pipefail

STREAM=items
CHECKPOINT_EVERY=${CHECKPOINT_EVERY:-100}
emitted=0

# The string value of field $1 in the JSON text $2 (values without escaped quotes).
field() { sed -n "s/.*\"$1\": *\"\([^\"]*\)\".*/\1/p" <<<"$2"; }

record() { # KEY DATA: a RECORD of an item, its line as the data
  printf '{"type":"RECORD","stream":"%s","key":"%s","data":%s}\n' "$STREAM" "$1" "$2"
  emitted=$((emitted + 1))
}

state() { # UPDATED_AT ID: the cursor after everything written so far
  printf '{"type":"STATE","stream":"%s","cursor":{"updated_at":"%s","id":"%s"}}\n' "$STREAM" "$1" "$2"
}

item() { # ID: the item's line in ITEMS_FILE, if any (the upstream; a real connector calls its API)
  grep -E "\"id\": *\"$1\"" "$ITEMS_FILE" | head -n 1 || true
}

forward() { # the forward walk: every item after the committed cursor, oldest first
  local cursor since since_id excluded updated id line n=0 saved=
  cursor=$(grep -o '"state":{[^}]*"'"$STREAM"'":{[^}]*}' <<<"$start" || true)
  since=$(field updated_at "$cursor")
  since_id=$(field id "$cursor")
  # Items an open gap stands for: their recovery fetches them, not this run.
  excluded=$(grep -o '"exclude_resources":\[[^]]*\]' <<<"$start" || true)
  # stderr is the connector's log: `pdpp-orch logs RUN_ID` shows it, attempt by attempt.
  echo "collecting items after ${since:-the start} ${since_id}" >&2
  while IFS=$'\t' read -r updated id line; do
    if [[ -n $since && ! ($updated > $since || ($updated == "$since" && $id > $since_id)) ]]; then
      continue
    fi
    if [[ $excluded == *"\"$id\""* ]]; then
      :
    elif [[ $line =~ \"archived\":\ *true ]]; then
      printf '{"type":"SKIP_RESULT","stream":"%s","reason":"archived","message":"archived upstream","resource_ids":["%s"]}\n' "$STREAM" "$id"
    elif [[ $line =~ \"unavailable\":\ *true ]]; then
      printf '{"type":"DETAIL_GAP","stream":"%s","record_key":"%s","reason":"upstream_unavailable","retryable":true,"detail_locator":{"id":"%s"}}\n' "$STREAM" "$id" "$id"
    else
      record "$id" "$line"
    fi
    since=$updated since_id=$id n=$((n + 1))
    if ((n % CHECKPOINT_EVERY == 0)); then state "$since" "$since_id" && saved=$n; fi
  done < <(while IFS= read -r l; do
    [[ -n ${l// /} ]] && printf '%s\t%s\t%s\n' "$(field updated_at "$l")" "$(field id "$l")" "$l"
  done <"$ITEMS_FILE" | LC_ALL=C sort)
  if [[ -n $since && $saved != "$n" ]]; then state "$since" "$since_id"; fi
}

serve() { # PAGE: answer each served gap of a page (START.detail_gaps or a page response)
  local gap gap_id lease_id key line served=0
  while IFS= read -r gap; do
    [[ -z $gap ]] && continue
    echo "fetching served gap $(field gap_id "$gap")" >&2
    gap_id=$(field gap_id "$gap") lease_id=$(field lease_id "$gap") key=$(field record_key "$gap")
    served=$((served + 1))
    line=$(item "$key")
    if [[ -z $line || $line =~ \"unavailable\":\ *true ]]; then
      printf '{"type":"DETAIL_GAP_ATTEMPTED","gap_id":"%s","stream":"%s","lease_id":"%s"}\n' "$gap_id" "$STREAM" "$lease_id"
    else
      record "$key" "$line"
      printf '{"type":"DETAIL_GAP_RECOVERED","gap_id":"%s","stream":"%s","lease_id":"%s"}\n' "$gap_id" "$STREAM" "$lease_id"
    fi
  done < <(grep -o '"gap_id":"[^"]*"[^{}]*"record_key":"[^"]*"' <<<"$1" || true)
  return $((served == 0))
}

recover() { # a recovery run: START's page, then ask for more until a page comes back empty
  local page=$start n=0 response
  while serve "$page"; do
    n=$((n + 1))
    printf '{"type":"DETAIL_GAPS_PAGE_REQUEST","reference_only":true,"request_id":"page-%s","streams":["%s"]}\n' "$n" "$STREAM"
    IFS= read -r response || break
    page=$response
  done
}

IFS= read -r start
if [[ $start == *'"recovery_only":true'* ]]; then
  recover
elif [[ $start == *"{\"name\":\"$STREAM\""* ]]; then
  forward
fi
printf '{"type":"DONE","status":"succeeded","records_emitted":%s}\n' "$emitted"
cat >/dev/null # the runtime closes stdin once it has DONE
