-- Each device's last scan and last good scan in one narrow row, kept as results are written,
-- instead of being looked up in device_scan by every read that needs them.
--
-- reporting.devices probed device_scan twice per device (its last scan, its last good scan): over
-- a year of 100,000 devices that was 200,000 index probes into 36.5 M rows, 1.1-1.4 s. The
-- planner made the same probe for every listed device at the start of every run. A row here is
-- about 90 bytes and is rewritten in place (a HOT update: the key never changes, and the pages keep
-- room for the next version), so it costs one small write per device scan and no index entries.
--
-- Same meaning as the probes: the last scan is the one of the highest scan run; the "good"
-- columns and the counts are those of the last `ok` scan (NULL before the first one).
CREATE TABLE kbwatch.device_state (
    device_id           bigint CONSTRAINT device_state_pkey PRIMARY KEY
        CONSTRAINT device_state_device_fkey REFERENCES kbwatch.device ON DELETE CASCADE,
    scan_run_id         bigint NOT NULL,
    scanned_at          timestamptz NOT NULL,
    outcome             text NOT NULL,
    good_scan_run_id    bigint,
    good_scanned_at     timestamptz,
    -- lastSeen as listed at the last good scan: the planner rescans devices whose lastSeen moved.
    good_last_seen      timestamptz,
    missing_kbs         integer,
    cve_addressed_total bigint
) WITH (fillfactor = 70);

INSERT INTO kbwatch.device_state (device_id, scan_run_id, scanned_at, outcome, good_scan_run_id,
                                  good_scanned_at, good_last_seen, missing_kbs,
                                  cve_addressed_total)
SELECT d.device_id, last_scan.scan_run_id, last_scan.scanned_at, last_scan.outcome,
       last_good.scan_run_id, last_good.scanned_at, last_good.last_seen, last_good.missing_kbs,
       last_good.cve_addressed_total
FROM kbwatch.device d
JOIN LATERAL (
    SELECT s.scan_run_id, s.scanned_at, s.outcome FROM kbwatch.device_scan s
    WHERE s.device_id = d.device_id
    ORDER BY s.scan_run_id DESC LIMIT 1) last_scan ON true
LEFT JOIN LATERAL (
    SELECT s.scan_run_id, s.scanned_at, s.last_seen, s.missing_kbs, s.cve_addressed_total
    FROM kbwatch.device_scan s
    WHERE s.device_id = d.device_id AND s.outcome = 'ok'
    ORDER BY s.scan_run_id DESC LIMIT 1) last_good ON true;

-- Same columns and meaning as migration 0005's definition.
CREATE OR REPLACE VIEW reporting.devices AS
SELECT t.name AS tenant, d.machine_id, d.computer_dns_name, d.os_platform, d.os_build,
       d.health_status, d.onboarding_status, d.rbac_group_name, d.machine_tags, d.last_seen,
       st.scanned_at AS last_scanned_at, st.outcome AS last_scan_outcome, st.missing_kbs,
       st.cve_addressed_total
FROM kbwatch.device d
JOIN kbwatch.tenant t USING (tenant_id)
LEFT JOIN kbwatch.device_state st ON st.device_id = d.device_id
WHERE d.gone_at IS NULL;
