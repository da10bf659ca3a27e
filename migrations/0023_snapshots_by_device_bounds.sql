-- A packed scan's snapshots joined to their devices by the scan pack's device range as two
-- comparisons, no longer as range containment, and those comparisons served by a btree index.
--
-- The planner estimates range containment between two tables at 0.001 of the pairs, whatever
-- the data. For a tenant of fewer than about 1,000 devices (one scan pack a run) it therefore
-- took every device's packs to be few, and read the whole view device by device: each scan
-- pack's snapshot computed once per device in its range. Over a year of 300 devices the view
-- in full (a Power BI import) took 58 s for 230,619 rows; comparisons are estimated at a third
-- each, and the same read hashes the devices once per pack. One device's or one scan's reads
-- keep their plans. What it measured: docs/benchmarks.md.
CREATE INDEX scan_pack_device_hi_lo_idx ON kbwatch.scan_pack (device_hi, device_lo);

-- Same columns and meaning as 0022's definition.
CREATE OR REPLACE VIEW reporting.missing_kb_snapshots AS
SELECT t.name AS tenant, d.machine_id, s.scan_run_id, s.scanned_at, m.kb_id, m.cve_addressed,
       s.source
FROM kbwatch.device_scan s
JOIN kbwatch.device d ON d.device_id = s.device_id
JOIN kbwatch.tenant t ON t.tenant_id = d.tenant_id
CROSS JOIN LATERAL (
    SELECT m.kb_id, m.cve_addressed FROM kbwatch.missing_kb m
    WHERE m.device_id = s.device_id AND m.opened_scan_run_id <= s.scan_run_id
      AND coalesce(m.closed_scan_run_id, 9223372036854775807) > s.scan_run_id
    UNION ALL
    SELECT u.kb_id, u.cve_addressed
    FROM kbwatch.interval_pack q
    CROSS JOIN LATERAL unnest(q.device_ids, q.kb_ids, q.opened_scan_run_ids, q.cve_addressed)
        AS u(device_id, kb_id, opened_scan_run_id, cve_addressed)
    WHERE int8range(q.device_lo, q.device_hi, '[]') @> s.device_id
      AND int8range(q.opened_lo, q.closed_scan_run_id) @> s.scan_run_id
      AND u.device_id = s.device_id AND u.opened_scan_run_id <= s.scan_run_id
    OFFSET 0) m
WHERE s.outcome = 'ok'
UNION ALL
SELECT t.name, d.machine_id, p.scan_run_id, x.scanned_at, x.kb_id, x.cve_addressed, p.source
FROM kbwatch.scan_pack p
JOIN kbwatch.scan_run r ON r.scan_run_id = p.scan_run_id
JOIN kbwatch.tenant t ON t.tenant_id = r.tenant_id
CROSS JOIN LATERAL kbwatch.scan_pack_snapshot(p.scan_run_id, r.tenant_id, p.device_lo,
                                              p.device_hi,
                                              kbwatch.delta_decode(p.device_id_deltas),
                                              p.offsets_us, p.scanned_from) x
JOIN kbwatch.device d
  ON d.device_id = x.device_id AND d.device_id BETWEEN p.device_lo AND p.device_hi;

