-- kbwatch's internal tables. Reporting tools read the `reporting` views (0002), never these.
CREATE SCHEMA IF NOT EXISTS kbwatch;

CREATE TABLE kbwatch.tenant (
    tenant_id  integer GENERATED ALWAYS AS IDENTITY CONSTRAINT tenant_pkey PRIMARY KEY,
    name       text NOT NULL CONSTRAINT tenant_name_key UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE kbwatch.scan_run (
    scan_run_id       bigint GENERATED ALWAYS AS IDENTITY CONSTRAINT scan_run_pkey PRIMARY KEY,
    tenant_id         integer NOT NULL CONSTRAINT scan_run_tenant_fkey REFERENCES kbwatch.tenant,
    trigger           text NOT NULL,
    -- The cron tick a scheduled run belongs to; replicas skip a tick another one has taken.
    scheduled_for     timestamptz,
    -- hostname:pid of the process that ran it.
    runner            text,
    started_at        timestamptz NOT NULL DEFAULT now(),
    finished_at       timestamptz,
    status            text NOT NULL DEFAULT 'running'
        CONSTRAINT scan_run_status_check
        CHECK (status IN ('running', 'completed', 'partial', 'failed', 'interrupted')),
    devices_listed    integer NOT NULL DEFAULT 0,
    devices_planned   integer NOT NULL DEFAULT 0,
    devices_ok        integer NOT NULL DEFAULT 0,
    devices_not_found integer NOT NULL DEFAULT 0,
    devices_failed    integer NOT NULL DEFAULT 0,
    devices_rejected  integer NOT NULL DEFAULT 0,
    api_calls         bigint NOT NULL DEFAULT 0,
    throttled         bigint NOT NULL DEFAULT 0,
    -- The per-minute rate getmissingkbs was paced at when the run ended: the configured quota,
    -- or lower when the server throttled below it.
    effective_per_minute integer,
    error             text
);
-- Latest runs of a tenant, and finding runs left `running` by a crashed process.
CREATE INDEX scan_run_tenant_idx ON kbwatch.scan_run (tenant_id, scan_run_id DESC);
-- At most one run per tenant and cron tick (manual runs have no tick: NULLs never collide).
CREATE UNIQUE INDEX scan_run_tick_key ON kbwatch.scan_run (tenant_id, scheduled_for);

CREATE TABLE kbwatch.device (
    device_id               bigint GENERATED ALWAYS AS IDENTITY CONSTRAINT device_pkey PRIMARY KEY,
    tenant_id               integer NOT NULL CONSTRAINT device_tenant_fkey REFERENCES kbwatch.tenant,
    -- Lower-case 40-hex id when valid; an invalid id is kept as listed and never requested.
    machine_id              text NOT NULL,
    id_valid                boolean NOT NULL,
    computer_dns_name       text,
    os_platform             text,
    os_version              text,
    os_build                bigint,
    health_status           text,
    onboarding_status       text,
    -- The API returns a number although the docs say string: kept as text.
    rbac_group_id           text,
    rbac_group_name         text,
    machine_tags            text[],
    first_seen              timestamptz,
    last_seen               timestamptz,
    is_potential_duplication boolean,
    merged_into_machine_id  text,
    -- The whole entity as listed, unknown fields included.
    raw                     jsonb NOT NULL,
    first_listed_at         timestamptz NOT NULL,
    last_listed_at          timestamptz NOT NULL,
    last_listed_run_id      bigint NOT NULL,
    -- Set when a complete listing no longer contains the device; cleared if it comes back.
    gone_at                 timestamptz,
    last_scanned_at         timestamptz,
    last_scan_outcome       text,
    last_good_scan_run_id   bigint,
    last_good_scan_at       timestamptz,
    -- lastSeen as it was at the last good scan: the planner rescans devices whose lastSeen moved.
    last_seen_at_good_scan  timestamptz,
    CONSTRAINT device_tenant_machine_key UNIQUE (tenant_id, machine_id)
);

CREATE TABLE kbwatch.kb (
    kb_id             text CONSTRAINT kb_pkey PRIMARY KEY,
    name              text,
    url               text,
    products_names    text[],
    cve_addressed     integer,
    -- Fleet-wide count the API reports with each item; latest value only.
    machine_missed_on bigint,
    first_seen_at     timestamptz NOT NULL,
    last_seen_at      timestamptz NOT NULL
);

-- One row per device per scan: the time series of counts.
CREATE TABLE kbwatch.device_scan (
    device_id           bigint NOT NULL CONSTRAINT device_scan_device_fkey REFERENCES kbwatch.device,
    scan_run_id         bigint NOT NULL CONSTRAINT device_scan_run_fkey REFERENCES kbwatch.scan_run,
    scanned_at          timestamptz NOT NULL,
    outcome             text NOT NULL
        CONSTRAINT device_scan_outcome_check CHECK (outcome IN ('ok', 'not_found', 'failed')),
    missing_kbs         integer,
    cve_addressed_total bigint,
    error               text,
    CONSTRAINT device_scan_pkey PRIMARY KEY (device_id, scan_run_id)
);
CREATE INDEX device_scan_run_idx ON kbwatch.device_scan (scan_run_id);

-- One row per interval during which a device was missing a KB (with one cveAddressed value).
-- A good scan opens rows for KBs that appear, closes rows for KBs that are gone (or whose
-- cveAddressed changed), and writes nothing for KBs that stay.
CREATE TABLE kbwatch.missing_kb (
    device_id          bigint NOT NULL CONSTRAINT missing_kb_device_fkey REFERENCES kbwatch.device,
    kb_id              text NOT NULL CONSTRAINT missing_kb_kb_fkey REFERENCES kbwatch.kb,
    opened_scan_run_id bigint NOT NULL,
    closed_scan_run_id bigint,
    cve_addressed      integer,
    CONSTRAINT missing_kb_pkey PRIMARY KEY (device_id, kb_id, opened_scan_run_id)
);
-- At most one open interval per device and KB; also the lookup of a device's current set.
CREATE UNIQUE INDEX missing_kb_open_idx ON kbwatch.missing_kb (device_id, kb_id)
    WHERE closed_scan_run_id IS NULL;
