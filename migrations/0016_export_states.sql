-- Where each good scan's missing KBs came from. With `[tenant.export] fill`, a device that the
-- per-device budget has not reached within `fill_after` gets its state from the vulnerability
-- export instead: a good scan like any other (same intervals, same views), marked `export`.
-- Everything stored before this migration came from getmissingkbs.
ALTER TABLE kbwatch.device_scan
    ADD COLUMN source text NOT NULL DEFAULT 'getmissingkbs'
        CONSTRAINT device_scan_source_check CHECK (source IN ('getmissingkbs', 'export'));
-- A pack holds the scans of one run and one source.
ALTER TABLE kbwatch.scan_pack
    ADD COLUMN source text NOT NULL DEFAULT 'getmissingkbs'
        CONSTRAINT scan_pack_source_check CHECK (source IN ('getmissingkbs', 'export'));

-- The last good getmissingkbs scan: the planner orders and skips by it, so that a state from the
-- export never keeps a device from being requested. good_scanned_at stays the last good scan of
-- either source.
ALTER TABLE kbwatch.device_state ADD COLUMN good_requested_at timestamptz;
UPDATE kbwatch.device_state SET good_requested_at = good_scanned_at
WHERE good_scanned_at IS NOT NULL;

-- When the tenant's full export was last read through: a run reads it again only some hours
-- later, as a device the export does not name stays a candidate.
ALTER TABLE kbwatch.tenant ADD COLUMN export_read_at timestamptz;

-- Devices a run stored from the export; devices_ok stays the devices getmissingkbs answered.
ALTER TABLE kbwatch.scan_run
    ADD COLUMN devices_from_export integer NOT NULL DEFAULT 0;

-- 0014's view, with the pack's source.
CREATE OR REPLACE VIEW kbwatch.packed_scan AS
SELECT u.device_id, p.scan_run_id, p.scanned_from + u.offset_us * interval '1 microsecond'
       AS scanned_at, u.missing_kbs, u.cve_addressed_total, p.device_lo, p.device_hi,
       p.scanned_from, p.scanned_to, p.source
FROM kbwatch.scan_pack p
CROSS JOIN LATERAL unnest(p.device_ids, p.offsets_us, p.missing_kbs, p.cve_addressed_totals)
    AS u(device_id, offset_us, missing_kbs, cve_addressed_total);

-- 0014's packing, a run's scans of each source in packs of their own.
CREATE OR REPLACE FUNCTION kbwatch.pack_scans(run bigint) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    packed bigint;
BEGIN
    PERFORM 1 FROM kbwatch.scan_run r
    WHERE r.scan_run_id = run AND r.status <> 'running'
    FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    WITH moved AS (
        DELETE FROM kbwatch.device_scan s
        WHERE s.scan_run_id = run AND s.outcome = 'ok'
        RETURNING s.device_id, s.scanned_at, s.missing_kbs, s.cve_addressed_total, s.source
    ), fresh AS (
        SELECT m.*,
               (row_number() OVER (PARTITION BY m.source ORDER BY m.device_id) - 1) / 1000
                   AS pack
        FROM moved m
        WHERE NOT EXISTS (
            SELECT 1 FROM kbwatch.scan_pack p
            WHERE p.scan_run_id = run AND m.device_id BETWEEN p.device_lo AND p.device_hi
              AND m.device_id = ANY (p.device_ids))
    ), framed AS (
        SELECT f.*, min(f.scanned_at) OVER (PARTITION BY f.source, f.pack) AS base FROM fresh f
    ), inserted AS (
        INSERT INTO kbwatch.scan_pack (scan_run_id, device_lo, device_hi, scanned_from,
                                       scanned_to, device_ids, offsets_us, missing_kbs,
                                       cve_addressed_totals, source)
        SELECT run, min(x.device_id), max(x.device_id), min(x.scanned_at), max(x.scanned_at),
               array_agg(x.device_id ORDER BY x.device_id),
               array_agg((extract(epoch FROM x.scanned_at - x.base) * 1000000)::int8
                         ORDER BY x.device_id),
               array_agg(x.missing_kbs ORDER BY x.device_id),
               array_agg(x.cve_addressed_total ORDER BY x.device_id),
               x.source
        FROM framed x
        GROUP BY x.source, x.pack
        RETURNING cardinality(device_ids) AS n
    )
    SELECT coalesce(sum(i.n), 0) INTO packed FROM inserted i;
    RETURN packed;
END
$$;

-- Same columns and meaning as 0014's definition, and `source` appended.
CREATE OR REPLACE VIEW reporting.device_history AS
SELECT t.name AS tenant, d.machine_id, s.scan_run_id, s.scanned_at, s.outcome,
       s.missing_kbs, s.cve_addressed_total, s.source
FROM kbwatch.device_scan s
JOIN kbwatch.device d USING (device_id)
JOIN kbwatch.tenant t USING (tenant_id)
UNION ALL
SELECT t.name, d.machine_id, s.scan_run_id, s.scanned_at, 'ok', s.missing_kbs,
       s.cve_addressed_total, s.source
FROM kbwatch.packed_scan s
JOIN kbwatch.device d
  ON d.device_id = s.device_id AND int8range(s.device_lo, s.device_hi, '[]') @> d.device_id
JOIN kbwatch.tenant t ON t.tenant_id = d.tenant_id;

-- Same columns and meaning as 0014's definition, and `source` appended.
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
    OFFSET 0) m
WHERE s.outcome = 'ok'
UNION ALL
SELECT t.name, d.machine_id, s.scan_run_id, s.scanned_at, m.kb_id, m.cve_addressed, s.source
FROM kbwatch.packed_scan s
JOIN kbwatch.device d
  ON d.device_id = s.device_id AND int8range(s.device_lo, s.device_hi, '[]') @> d.device_id
JOIN kbwatch.tenant t ON t.tenant_id = d.tenant_id
CROSS JOIN LATERAL (
    SELECT m.kb_id, m.cve_addressed FROM kbwatch.missing_kb m
    WHERE m.device_id = s.device_id AND m.opened_scan_run_id <= s.scan_run_id
      AND coalesce(m.closed_scan_run_id, 9223372036854775807) > s.scan_run_id
    OFFSET 0) m;

-- Same columns and meaning as 0002's definition (devices_scanned: those getmissingkbs answered),
-- and the devices stored from the export appended.
CREATE OR REPLACE VIEW reporting.scan_runs AS
SELECT r.scan_run_id, t.name AS tenant, r.trigger, r.started_at, r.finished_at, r.status,
       r.devices_listed, r.devices_ok AS devices_scanned,
       r.devices_failed + r.devices_not_found AS devices_failed,
       r.api_calls, r.throttled, r.devices_from_export
FROM kbwatch.scan_run r
JOIN kbwatch.tenant t USING (tenant_id);
