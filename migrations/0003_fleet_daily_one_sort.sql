-- reporting.fleet_daily, same columns and meaning, one sort instead of two: the last good scan of
-- each device and day is picked from device_scan alone (narrow rows), and the tenant × day totals
-- are hashed on the tenant's id before its name is joined. Over 30 daily scans of 10,000 devices
-- this took the query from 330–400 ms to 200–250 ms on 2 cores (the old plan sorted 300,000 rows
-- twice, both sorts spilling to disk at the default work_mem).
CREATE OR REPLACE VIEW reporting.fleet_daily AS
SELECT t.name AS tenant, y.day, y.devices_reporting, y.devices_missing_any, y.missing_kbs_total,
       y.cve_addressed_total
FROM (
    SELECT d.tenant_id, x.day,
           count(*) AS devices_reporting,
           count(*) FILTER (WHERE x.missing_kbs > 0) AS devices_missing_any,
           sum(x.missing_kbs) AS missing_kbs_total,
           sum(x.cve_addressed_total) AS cve_addressed_total
    FROM (
        SELECT DISTINCT ON (s.device_id, (s.scanned_at AT TIME ZONE 'UTC')::date)
               s.device_id, (s.scanned_at AT TIME ZONE 'UTC')::date AS day,
               s.missing_kbs, s.cve_addressed_total
        FROM kbwatch.device_scan s
        WHERE s.outcome = 'ok'
        ORDER BY s.device_id, (s.scanned_at AT TIME ZONE 'UTC')::date, s.scanned_at DESC
    ) x
    JOIN kbwatch.device d USING (device_id)
    GROUP BY d.tenant_id, x.day
) y
JOIN kbwatch.tenant t USING (tenant_id);
