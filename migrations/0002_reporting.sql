-- The public contract for reporting tools: columns are only ever added, never changed.
CREATE SCHEMA IF NOT EXISTS reporting;

CREATE VIEW reporting.scan_runs AS
SELECT r.scan_run_id, t.name AS tenant, r.trigger, r.started_at, r.finished_at, r.status,
       r.devices_listed, r.devices_ok AS devices_scanned,
       r.devices_failed + r.devices_not_found AS devices_failed,
       r.api_calls, r.throttled
FROM kbwatch.scan_run r
JOIN kbwatch.tenant t USING (tenant_id);

-- Devices in the latest listing, with the counts of their last good scan.
CREATE VIEW reporting.devices AS
SELECT t.name AS tenant, d.machine_id, d.computer_dns_name, d.os_platform, d.os_build,
       d.health_status, d.onboarding_status, d.rbac_group_name, d.machine_tags, d.last_seen,
       d.last_scanned_at, d.last_scan_outcome, s.missing_kbs, s.cve_addressed_total
FROM kbwatch.device d
JOIN kbwatch.tenant t USING (tenant_id)
LEFT JOIN kbwatch.device_scan s
       ON s.device_id = d.device_id AND s.scan_run_id = d.last_good_scan_run_id
WHERE d.gone_at IS NULL;

CREATE VIEW reporting.device_history AS
SELECT t.name AS tenant, d.machine_id, s.scan_run_id, s.scanned_at, s.outcome,
       s.missing_kbs, s.cve_addressed_total
FROM kbwatch.device_scan s
JOIN kbwatch.device d USING (device_id)
JOIN kbwatch.tenant t USING (tenant_id);

-- The exact set of KBs each device was missing at each good scan, rebuilt from the intervals.
CREATE VIEW reporting.missing_kb_snapshots AS
SELECT t.name AS tenant, d.machine_id, s.scan_run_id, s.scanned_at, m.kb_id, m.cve_addressed
FROM kbwatch.device_scan s
JOIN kbwatch.missing_kb m
  ON m.device_id = s.device_id
 AND m.opened_scan_run_id <= s.scan_run_id
 AND (m.closed_scan_run_id IS NULL OR m.closed_scan_run_id > s.scan_run_id)
JOIN kbwatch.device d ON d.device_id = s.device_id
JOIN kbwatch.tenant t ON t.tenant_id = d.tenant_id
WHERE s.outcome = 'ok';

CREATE VIEW reporting.current_missing_kbs AS
SELECT t.name AS tenant, d.machine_id, d.computer_dns_name, m.kb_id, k.name AS kb_name,
       k.products_names, k.url, m.cve_addressed, o.scanned_at AS missing_since
FROM kbwatch.missing_kb m
JOIN kbwatch.device d ON d.device_id = m.device_id
JOIN kbwatch.tenant t ON t.tenant_id = d.tenant_id
JOIN kbwatch.kb k ON k.kb_id = m.kb_id
LEFT JOIN kbwatch.device_scan o
       ON o.device_id = m.device_id AND o.scan_run_id = m.opened_scan_run_id
WHERE m.closed_scan_run_id IS NULL AND d.gone_at IS NULL;

-- Each device counts once a day, with its last good scan of that (UTC) day.
CREATE VIEW reporting.fleet_daily AS
SELECT t.name AS tenant, x.day,
       count(*) AS devices_reporting,
       count(*) FILTER (WHERE x.missing_kbs > 0) AS devices_missing_any,
       sum(x.missing_kbs) AS missing_kbs_total,
       sum(x.cve_addressed_total) AS cve_addressed_total
FROM (
    SELECT DISTINCT ON (s.device_id, (s.scanned_at AT TIME ZONE 'UTC')::date)
           d.tenant_id, (s.scanned_at AT TIME ZONE 'UTC')::date AS day,
           s.missing_kbs, s.cve_addressed_total
    FROM kbwatch.device_scan s
    JOIN kbwatch.device d USING (device_id)
    WHERE s.outcome = 'ok'
    ORDER BY s.device_id, (s.scanned_at AT TIME ZONE 'UTC')::date, s.scanned_at DESC
) x
JOIN kbwatch.tenant t USING (tenant_id)
GROUP BY t.name, x.day;

-- A closed interval counts as a remediation unless the same KB reopened on that device at the
-- same scan (a cveAddressed change, not a fix).
CREATE VIEW reporting.kb_remediation AS
WITH fixed AS (
    SELECT d.tenant_id, m.kb_id, m.device_id,
           extract(epoch FROM (c.scanned_at - o.scanned_at)) / 86400.0 AS days
    FROM kbwatch.missing_kb m
    JOIN kbwatch.device d ON d.device_id = m.device_id
    LEFT JOIN kbwatch.device_scan o
           ON o.device_id = m.device_id AND o.scan_run_id = m.opened_scan_run_id
    LEFT JOIN kbwatch.device_scan c
           ON c.device_id = m.device_id AND c.scan_run_id = m.closed_scan_run_id
    WHERE m.closed_scan_run_id IS NOT NULL
      AND NOT EXISTS (
          SELECT 1 FROM kbwatch.missing_kb r
          WHERE r.device_id = m.device_id AND r.kb_id = m.kb_id
            AND r.opened_scan_run_id = m.closed_scan_run_id)
), open_now AS (
    SELECT d.tenant_id, m.kb_id, count(*) AS devices_missing_now
    FROM kbwatch.missing_kb m
    JOIN kbwatch.device d ON d.device_id = m.device_id
    WHERE m.closed_scan_run_id IS NULL AND d.gone_at IS NULL
    GROUP BY d.tenant_id, m.kb_id
), fixed_agg AS (
    SELECT tenant_id, kb_id, count(DISTINCT device_id) AS devices_remediated,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY days) AS median_days_to_remediate
    FROM fixed
    GROUP BY tenant_id, kb_id
)
SELECT t.name AS tenant, k.kb_id, k.name AS kb_name,
       coalesce(o.devices_missing_now, 0) AS devices_missing_now,
       coalesce(f.devices_remediated, 0) AS devices_remediated,
       f.median_days_to_remediate
FROM (SELECT tenant_id, kb_id FROM open_now UNION SELECT tenant_id, kb_id FROM fixed_agg) tk
JOIN kbwatch.tenant t ON t.tenant_id = tk.tenant_id
JOIN kbwatch.kb k ON k.kb_id = tk.kb_id
LEFT JOIN open_now o ON o.tenant_id = tk.tenant_id AND o.kb_id = tk.kb_id
LEFT JOIN fixed_agg f ON f.tenant_id = tk.tenant_id AND f.kb_id = tk.kb_id;

-- Read-only access for reporting tools: the views, nothing else. Roles are cluster-wide, so
-- another database on the same server may have created it already.
DO $$
BEGIN
    CREATE ROLE kbwatch_reader NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$;
GRANT USAGE ON SCHEMA reporting TO kbwatch_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA reporting TO kbwatch_reader;
