-- A device's scan state is read from its device_scan rows instead of being copied into its device
-- row after every scan. The copy rewrote the whole device row (about 1.4 kB with the raw entity)
-- a second time in each scan, after the listing had written it: on the first scan of 10,000 devices
-- that UPDATE took 115 ms of the database's time (psql, 2 cores), and it doubled the dead rows the
-- device table left behind per scan.
--
-- The one thing a scan row did not hold is the device's lastSeen when it was scanned, which the
-- planner compares with the lastSeen listed now: device_scan keeps it from now on.
ALTER TABLE kbwatch.device_scan ADD COLUMN last_seen timestamptz;
UPDATE kbwatch.device_scan s SET last_seen = d.last_seen_at_good_scan
FROM kbwatch.device d
WHERE s.device_id = d.device_id AND s.scan_run_id = d.last_good_scan_run_id;

-- Same columns and meaning: the last scan's time and outcome, the counts of the last good scan.
CREATE OR REPLACE VIEW reporting.devices AS
SELECT t.name AS tenant, d.machine_id, d.computer_dns_name, d.os_platform, d.os_build,
       d.health_status, d.onboarding_status, d.rbac_group_name, d.machine_tags, d.last_seen,
       last_scan.scanned_at AS last_scanned_at, last_scan.outcome AS last_scan_outcome,
       last_good.missing_kbs, last_good.cve_addressed_total
FROM kbwatch.device d
JOIN kbwatch.tenant t USING (tenant_id)
LEFT JOIN LATERAL (
    SELECT s.scanned_at, s.outcome FROM kbwatch.device_scan s
    WHERE s.device_id = d.device_id
    ORDER BY s.scan_run_id DESC LIMIT 1) last_scan ON true
LEFT JOIN LATERAL (
    SELECT s.missing_kbs, s.cve_addressed_total FROM kbwatch.device_scan s
    WHERE s.device_id = d.device_id AND s.outcome = 'ok'
    ORDER BY s.scan_run_id DESC LIMIT 1) last_good ON true
WHERE d.gone_at IS NULL;

ALTER TABLE kbwatch.device
    DROP COLUMN last_scanned_at,
    DROP COLUMN last_scan_outcome,
    DROP COLUMN last_good_scan_run_id,
    DROP COLUMN last_good_scan_at,
    DROP COLUMN last_seen_at_good_scan;
