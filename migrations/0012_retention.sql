-- History kept for `retention.keep_days` days (src/store/retention.rs): one row per retention
-- pass, with the cutoff it dropped history before, when it ran and what it dropped.
--
-- A pass runs when its cutoff (UTC midnight keep_days days before its day) is later than every
-- earlier pass's: once a day, and again the same day only if keep_days was lowered. It is claimed
-- here under the advisory lock (1801615204, -1): kbwatch's class, whose key 0 is the fleet-day
-- roll-up and whose keys from 1 are the tenant locks. Replicas sharing the database thus drop each
-- day's history once, one at a time. A pass that did not finish (an error, a shutdown) is not
-- taken up again that day: the next day's drops what it left.
CREATE TABLE kbwatch.retention_pass (
    retention_pass_id bigint GENERATED ALWAYS AS IDENTITY CONSTRAINT retention_pass_pkey PRIMARY KEY,
    keep_days    integer NOT NULL,
    cutoff       timestamptz NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    -- NULL while the pass runs, and for one that stopped before its end.
    finished_at  timestamptz,
    -- Rows dropped from each table (so far, for a pass a shutdown stopped; none are recorded for
    -- one an error stopped).
    device_scans bigint NOT NULL DEFAULT 0,
    missing_kbs  bigint NOT NULL DEFAULT 0,
    devices      bigint NOT NULL DEFAULT 0,
    fleet_days   bigint NOT NULL DEFAULT 0,
    scan_runs    bigint NOT NULL DEFAULT 0
);
