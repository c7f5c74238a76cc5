-- The record store and run ledger. Applied idempotently at every start (CREATE ... IF NOT EXISTS);
-- additive changes go at the end as ALTER ... IF NOT EXISTS so existing data directories migrate.

CREATE TABLE IF NOT EXISTS schema_meta (
    key   text PRIMARY KEY,
    value text NOT NULL
);

CREATE TABLE IF NOT EXISTS records (
    connector    text        NOT NULL,
    stream       text        NOT NULL,
    key          text        NOT NULL,
    data         jsonb       NOT NULL,
    deleted      boolean     NOT NULL DEFAULT false,
    first_run_id text        NOT NULL,
    last_run_id  text        NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (connector, stream, key)
);

-- The committed cursor of each stream: what the next run's START.state carries.
CREATE TABLE IF NOT EXISTS stream_state (
    connector    text        NOT NULL,
    stream       text        NOT NULL,
    cursor       jsonb,
    cursor_bytes bigint      NOT NULL,
    run_id       text        NOT NULL,
    committed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (connector, stream)
);

-- The latest proven checkpoint of each stream of a run: its resume point while it runs,
-- what gets committed when it ends. `facts` is that stream's counters at the checkpoint, so a
-- retried collect attempt resumes its counts exactly.
CREATE TABLE IF NOT EXISTS run_checkpoints (
    run_id       text        NOT NULL,
    stream       text        NOT NULL,
    seq          bigint      NOT NULL,
    cursor       jsonb,
    cursor_bytes bigint      NOT NULL,
    facts        jsonb       NOT NULL,
    written_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, stream)
);

CREATE TABLE IF NOT EXISTS runs (
    run_id          text PRIMARY KEY,
    connector       text        NOT NULL,
    trigger         text        NOT NULL,
    mode            text        NOT NULL,
    status          text        NOT NULL,
    needs_retry     boolean     NOT NULL DEFAULT false,
    reason          text,
    attempt         int         NOT NULL DEFAULT 1,
    records_emitted bigint      NOT NULL DEFAULT 0,
    records_durable bigint      NOT NULL DEFAULT 0,
    progress        jsonb,
    facts           jsonb,
    outcome         jsonb,
    started_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz
);
CREATE INDEX IF NOT EXISTS runs_connector_started ON runs (connector, started_at DESC);

-- Aggregated run events: one per flush, per stream+reason of skips, per terminal outcome.
CREATE TABLE IF NOT EXISTS spine_events (
    id          bigserial PRIMARY KEY,
    run_id      text        NOT NULL,
    connector   text        NOT NULL,
    event_type  text        NOT NULL,
    payload     jsonb       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS spine_events_run ON spine_events (run_id, id);

-- The gap ledger. `gap_key` is the identity (connector, stream, kind, subject) without the
-- volatile locator, so the same miss found by two runs is one gap.
CREATE TABLE IF NOT EXISTS gaps (
    gap_id          text PRIMARY KEY,
    connector       text        NOT NULL,
    stream          text        NOT NULL,
    kind            text        NOT NULL,
    subject         text        NOT NULL,
    reason          text        NOT NULL,
    recovery_class  text        NOT NULL,
    status          text        NOT NULL DEFAULT 'pending',
    locator         jsonb,
    attempts        int         NOT NULL DEFAULT 0,
    not_before      timestamptz,
    last_error      text,
    found_run_id    text        NOT NULL,
    last_seen_run_id text       NOT NULL,
    recovered_run_id text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS gaps_open ON gaps (connector, status);

-- Lines that failed validation, truncated, with where they came from.
CREATE TABLE IF NOT EXISTS quarantine (
    run_id      text        NOT NULL,
    attempt     int         NOT NULL,
    line_no     bigint      NOT NULL,
    kind        text        NOT NULL,
    detail      text        NOT NULL,
    line_bytes  bigint      NOT NULL,
    excerpt     text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, attempt, line_no)
);

-- v2: the retry hint a gap belongs to (a hint refers to its gaps by this id, so the ids
-- themselves never enter Temporal history).
ALTER TABLE gaps ADD COLUMN IF NOT EXISTS hint_id text;
CREATE INDEX IF NOT EXISTS gaps_hint ON gaps (connector, hint_id);
CREATE INDEX IF NOT EXISTS gaps_seen ON gaps (connector, last_seen_run_id);

-- v3: gap recovery. A lease hands a batch of gaps to one recovery run; `terminal_reason` says
-- why a gap will not be retried (not_found after max attempts, quarantined after 8 without
-- progress); `last_attempt_at` rotates leases fairly (least tried, longest waiting first).
ALTER TABLE gaps ADD COLUMN IF NOT EXISTS lease_id text;
ALTER TABLE gaps ADD COLUMN IF NOT EXISTS leased_until timestamptz;
ALTER TABLE gaps ADD COLUMN IF NOT EXISTS last_attempt_at timestamptz;
ALTER TABLE gaps ADD COLUMN IF NOT EXISTS terminal_reason text;
CREATE INDEX IF NOT EXISTS gaps_lease ON gaps (connector, lease_id);

-- v4: interactions. A connector's INTERACTION waits here for its owner. The prompt stays in
-- this table only; the answer (`response`) is written by `pdpp-orch respond`, read once by the
-- run's collect activity, and cleared then or when `response_expires_at` passes, whichever is
-- first: it never enters Temporal history.
CREATE TABLE IF NOT EXISTS interactions (
    run_id              text        NOT NULL,
    request_id          text        NOT NULL,
    connector           text        NOT NULL,
    kind                text        NOT NULL,
    message             text,
    status              text        NOT NULL DEFAULT 'pending',
    response            jsonb,
    response_status     text,
    response_expires_at timestamptz,
    expires_at          timestamptz NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    closed_at           timestamptz,
    PRIMARY KEY (run_id, request_id)
);

-- v5: one forward run per connector at a time. The holder's row is taken over once its run
-- has an outcome or its workflow is no longer running (terminated, timed out).
CREATE TABLE IF NOT EXISTS connector_locks (
    connector   text PRIMARY KEY,
    run_id      text        NOT NULL,
    acquired_at timestamptz NOT NULL DEFAULT now()
);

-- v6: why a run did not succeed, in the connector's own words: its DONE.error.message and the
-- tail of its stderr (bounded). They stay here; Temporal history never holds them.
ALTER TABLE runs ADD COLUMN IF NOT EXISTS connector_error text;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS stderr_tail text;

-- v6 too: gap pages and owner assistance. A recovery run is served its lease's gaps page by
-- page (START.detail_gaps, then each DETAIL_GAPS_PAGE_RESPONSE): `served_lease_id` is the lease a gap was served under, so one
-- leased but never served goes back to pending without an attempt counted. `parent_stream` is
-- the DETAIL_GAP's own, served back with the gap as it came.
ALTER TABLE gaps ADD COLUMN IF NOT EXISTS served_lease_id text;
ALTER TABLE gaps ADD COLUMN IF NOT EXISTS parent_stream text;

-- A connector's ASSISTANCE: a notice to its owner that never blocks the run (approve a sign-in
-- on your phone, operate the browser). The message stays in this table only; `detail` keeps its
-- kind, reason_code, attachments and input_schema, with secret-looking parts redacted. Open until
-- the connector's ASSISTANCE_STATUS (resolved, cancelled, timed_out, escalated) or the run's end
-- (resolved if it succeeded, else cancelled; `expired` once its own timeout had passed).
CREATE TABLE IF NOT EXISTS assistance (
    run_id           text        NOT NULL,
    assistance_id    text        NOT NULL,
    connector        text        NOT NULL,
    attempt          int         NOT NULL,
    message          text        NOT NULL,
    owner_action     text        NOT NULL,
    progress_posture text        NOT NULL,
    sensitivity      text        NOT NULL DEFAULT 'none',
    stream           text,
    detail           jsonb,
    status           text        NOT NULL DEFAULT 'open',
    status_message   text,
    expires_at       timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    closed_at        timestamptz,
    PRIMARY KEY (run_id, assistance_id)
);
CREATE INDEX IF NOT EXISTS assistance_open ON assistance (status, connector);

-- v7: the connector's stderr, per attempt, as it comes (`pdpp-orch logs RUN_ID`). Each attempt
-- keeps its last 400 lines of at most 500 characters; collect is tried at most 5 times, so a
-- run keeps at most 2,000 lines (about 1 MB). Like the tail in `runs`, never in Temporal history.
CREATE TABLE IF NOT EXISTS connector_stderr (
    run_id   text        NOT NULL,
    attempt  int         NOT NULL,
    line_no  bigint      NOT NULL,
    line     text        NOT NULL,
    at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, attempt, line_no)
);

-- v8: runtime-owned continuations (SKIP_RESULT.continuation): a connector finished a bounded page
-- of a long walk (a historical backfill) and more is planned for its next run. Planned work, not a
-- miss; what it says (its boundary and slice, cursor-like) stays here, the run's facts count it.
CREATE TABLE IF NOT EXISTS continuations (
    run_id      text        NOT NULL,
    attempt     int         NOT NULL,
    line_no     bigint      NOT NULL,
    connector   text        NOT NULL,
    stream      text        NOT NULL,
    reason      text        NOT NULL,
    fact        jsonb       NOT NULL,
    message     text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, attempt, line_no)
);

-- v9: what an open gap stands for, in records, when that is not one per gap (an item is one): the
-- records a range is estimated to hold (from the density of what its run covered), a skipped
-- stream's shortfall against the connector's own total, the coverage keys a lost checkpoint left
-- unaccounted. NULL: not known (a whole run that failed, an unanswered interaction).
ALTER TABLE gaps ADD COLUMN IF NOT EXISTS records_estimate bigint;
