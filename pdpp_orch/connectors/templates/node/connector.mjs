// A PDPP connector in plain Node (no packages), writing its protocol lines by hand (written by
// `pdpp-orch connectors new --lang node`): a working example to change into yours.
//
// It collects one stream, `items`, from a JSON-lines file (ITEMS_FILE: one item a line, each
// with an `id` and an `updated_at`), incrementally:
// - START.state carries the cursor the last run committed, {updated_at, id}: only items after
//   it are collected (a first run gets `state: null` and collects everything);
// - a STATE every CHECKPOINT_EVERY items and one at the end (the runtime commits the latest
//   STATE whose records are all durable: an interrupted run resumes from there);
// - an item marked "archived" is skipped (SKIP_RESULT, reason `archived`; the registry maps that
//   reason to `informational`, so the run still succeeds);
// - an item with "unavailable": true is a DETAIL_GAP; a recovery run serves it back in
//   START.detail_gaps (and on DETAIL_GAPS_PAGE_REQUEST): this connector then fetches exactly
//   those items and answers each with RECORD + DETAIL_GAP_RECOVERED (DETAIL_GAP_ATTEMPTED while
//   it is still unavailable), with no STATE: a recovery does not move the cursor.
// The exit status agrees with DONE: 0 for succeeded. docs/protocol.md has every message.
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";

const STREAM = "items";
const CHECKPOINT_EVERY = Number(process.env.CHECKPOINT_EVERY ?? 100);
const input = createInterface({ input: process.stdin, crlfDelay: Infinity })[Symbol.asyncIterator]();
let emitted = 0;
let pages = 0;

const send = (msg) => process.stdout.write(JSON.stringify(msg) + "\n");
const record = (item) => {
  send({ type: "RECORD", stream: STREAM, key: String(item.id), data: item, emitted_at: new Date().toISOString() });
  emitted += 1;
};

// The upstream: every item, by id. A real connector calls its API here.
function readItems() {
  const items = new Map();
  for (const line of readFileSync(process.env.ITEMS_FILE, "utf8").split("\n")) {
    if (line.trim()) {
      const item = JSON.parse(line);
      items.set(String(item.id), item);
    }
  }
  return items;
}

const position = (item) => [String(item.updated_at), String(item.id)];
const after = (a, b) => a[0] > b[0] || (a[0] === b[0] && a[1] > b[1]);

// The forward walk: every item after the committed cursor, oldest first.
function forward(start, items) {
  let cursor = start.state?.[STREAM] ?? null;
  const since = cursor ? [cursor.updated_at, cursor.id] : ["", ""];
  const scope = start.scope.streams.find((s) => s.name === STREAM);
  // Items an open gap stands for: their recovery fetches them, not this run.
  const excluded = new Set(scope.exclude_resources ?? []);
  const todo = [...items.values()].filter((i) => after(position(i), since));
  todo.sort((a, b) => (after(position(a), position(b)) ? 1 : -1));
  // stderr is the connector's log: `pdpp-orch logs RUN_ID` shows it, attempt by attempt.
  console.error(`${todo.length} item(s) after ${cursor ? JSON.stringify(cursor) : "the start"}`);
  todo.forEach((item, n) => {
    const key = String(item.id);
    if (excluded.has(key)) {
      // skipped: not this run's
    } else if (item.archived) {
      send({ type: "SKIP_RESULT", stream: STREAM, reason: "archived", message: "archived upstream", resource_ids: [key] });
    } else if (item.unavailable) {
      send({ type: "DETAIL_GAP", stream: STREAM, record_key: key, reason: "upstream_unavailable", retryable: true, detail_locator: { id: key } });
    } else {
      record(item);
    }
    cursor = { updated_at: item.updated_at, id: key };
    if ((n + 1) % CHECKPOINT_EVERY === 0 && n + 1 < todo.length) send({ type: "STATE", stream: STREAM, cursor });
  });
  if (cursor) send({ type: "STATE", stream: STREAM, cursor });
}

// The next page of served gaps: ask, then wait for the answer (an empty page: no more).
async function nextPage() {
  pages += 1;
  const requestId = `page-${pages}`;
  send({ type: "DETAIL_GAPS_PAGE_REQUEST", reference_only: true, request_id: requestId, streams: [STREAM] });
  for (;;) {
    const { value, done } = await input.next();
    if (done) return [];
    const msg = JSON.parse(value);
    if (msg.type === "DETAIL_GAPS_PAGE_RESPONSE" && msg.request_id === requestId) return msg.detail_gaps;
  }
}

// A recovery run: fetch exactly the gaps served, page by page; no STATE.
async function recover(start, items) {
  let page = start.detail_gaps;
  while (page.length > 0) {
    console.error(`fetching ${page.length} served gap(s)`);
    for (const gap of page) {
      const item = items.get(String(gap.record_key));
      if (!item || item.unavailable) {
        send({ type: "DETAIL_GAP_ATTEMPTED", gap_id: gap.gap_id, stream: STREAM, lease_id: gap.lease_id });
      } else {
        record(item);
        send({ type: "DETAIL_GAP_RECOVERED", gap_id: gap.gap_id, stream: STREAM, lease_id: gap.lease_id });
      }
    }
    page = await nextPage();
  }
}

const start = JSON.parse((await input.next()).value);
const items = readItems();
if (start.recovery_only) {
  await recover(start, items);
} else if (start.scope.streams.some((s) => s.name === STREAM)) {
  forward(start, items);
}
send({ type: "DONE", status: "succeeded", records_emitted: emitted });
while (!(await input.next()).done); // the runtime closes stdin once it has DONE
