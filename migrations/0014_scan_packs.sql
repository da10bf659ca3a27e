-- A run's good scans packed into a few rows once the run has ended, instead of one device_scan
-- row per device and scan kept for ever.
--
-- Over a year of 100,000 devices scanned daily device_scan held 36.5 M rows: 2,665 MB of heap
-- and 1,569 MB of key, most of the schema's 4,982 MB. A row's header and line pointer alone are
-- 28 bytes. Since migration 0011 nothing reads a device's last scan from device_scan, so its
-- good scans can move, once their run has ended, into packs of up to 1,000 devices: per device,
-- ordered by id, its id, its scan's time as microseconds after the pack's first scan (exact) and
-- its two counts, as arrays that TOAST compresses. Failed and not-found scans, with their errors,
-- stay rows of device_scan. The lastSeen a scan row kept (0005) is not packed: only the planner
-- read it, and it reads the last good scan's from device_state.
--
-- Same views, same columns, same rows: they read device_scan and the packs.
CREATE TABLE kbwatch.scan_pack (
    scan_run_id          bigint NOT NULL CONSTRAINT scan_pack_run_fkey REFERENCES kbwatch.scan_run,
    -- The pack's lowest and highest device id: a device's packs are found without opening them.
    device_lo            bigint NOT NULL,
    device_hi            bigint NOT NULL,
    -- The pack's first and last scan time.
    scanned_from         timestamptz NOT NULL,
    scanned_to           timestamptz NOT NULL,
    device_ids           bigint[] NOT NULL,
    offsets_us           bigint[] NOT NULL,
    missing_kbs          integer[] NOT NULL,
    cve_addressed_totals bigint[] NOT NULL,
    CONSTRAINT scan_pack_pkey PRIMARY KEY (scan_run_id, device_lo)
);
-- A device's packs, without reading every pack's row.
CREATE INDEX scan_pack_devices_idx ON kbwatch.scan_pack
    USING gist (int8range(device_lo, device_hi, '[]'));

-- A device a pack holds is not deleted, as one a device_scan row refers to is not (0004). The ids
-- in a pack come from device_scan rows, which referred to existing devices.
CREATE FUNCTION kbwatch.refuse_packed_device_delete() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    referenced bigint;
BEGIN
    SELECT r.device_id INTO referenced FROM removed r
    WHERE EXISTS (SELECT 1 FROM kbwatch.scan_pack p
                  WHERE int8range(p.device_lo, p.device_hi, '[]') @> r.device_id
                    AND r.device_id = ANY (p.device_ids))
    LIMIT 1;
    IF referenced IS NOT NULL THEN
        RAISE EXCEPTION 'device device_id = % is not deleted: scan_pack rows refer to it',
            referenced USING ERRCODE = 'foreign_key_violation', TABLE = 'device';
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER device_packed AFTER DELETE ON kbwatch.device
    REFERENCING OLD TABLE AS removed FOR EACH STATEMENT
    EXECUTE FUNCTION kbwatch.refuse_packed_device_delete();

-- Every packed scan, as device_scan held it (outcome 'ok', no error).
CREATE VIEW kbwatch.packed_scan AS
SELECT u.device_id, p.scan_run_id, p.scanned_from + u.offset_us * interval '1 microsecond'
       AS scanned_at, u.missing_kbs, u.cve_addressed_total, p.device_lo, p.device_hi,
       p.scanned_from, p.scanned_to
FROM kbwatch.scan_pack p
CROSS JOIN LATERAL unnest(p.device_ids, p.offsets_us, p.missing_kbs, p.cve_addressed_totals)
    AS u(device_id, offset_us, missing_kbs, cve_addressed_total);

-- Packs the good scans of run `run` if it has ended (a running run packs nothing), in packs of
-- up to 1,000 devices; returns the number of scans packed. The run's row is locked, so that two
-- packers of one run wait for each other. A scan of a device the run has packed already (a batch
-- written again after the run ended) is dropped: the scan stored first is kept, as device_scan's
-- key kept it.
CREATE FUNCTION kbwatch.pack_scans(run bigint) RETURNS bigint
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
        RETURNING s.device_id, s.scanned_at, s.missing_kbs, s.cve_addressed_total
    ), fresh AS (
        SELECT m.*, (row_number() OVER (ORDER BY m.device_id) - 1) / 1000 AS pack
        FROM moved m
        WHERE NOT EXISTS (
            SELECT 1 FROM kbwatch.scan_pack p
            WHERE p.scan_run_id = run AND m.device_id BETWEEN p.device_lo AND p.device_hi
              AND m.device_id = ANY (p.device_ids))
    ), framed AS (
        SELECT f.*, min(f.scanned_at) OVER (PARTITION BY f.pack) AS base FROM fresh f
    ), inserted AS (
        INSERT INTO kbwatch.scan_pack (scan_run_id, device_lo, device_hi, scanned_from,
                                       scanned_to, device_ids, offsets_us, missing_kbs,
                                       cve_addressed_totals)
        SELECT run, min(x.device_id), max(x.device_id), min(x.scanned_at), max(x.scanned_at),
               array_agg(x.device_id ORDER BY x.device_id),
               array_agg((extract(epoch FROM x.scanned_at - x.base) * 1000000)::int8
                         ORDER BY x.device_id),
               array_agg(x.missing_kbs ORDER BY x.device_id),
               array_agg(x.cve_addressed_total ORDER BY x.device_id)
        FROM framed x
        GROUP BY x.pack
        RETURNING cardinality(device_ids) AS n
    )
    SELECT coalesce(sum(i.n), 0) INTO packed FROM inserted i;
    RETURN packed;
END
$$;
REVOKE ALL ON FUNCTION kbwatch.pack_scans(bigint) FROM PUBLIC;

-- Same columns and meaning as migration 0002's definition.
CREATE OR REPLACE VIEW reporting.device_history AS
SELECT t.name AS tenant, d.machine_id, s.scan_run_id, s.scanned_at, s.outcome,
       s.missing_kbs, s.cve_addressed_total
FROM kbwatch.device_scan s
JOIN kbwatch.device d USING (device_id)
JOIN kbwatch.tenant t USING (tenant_id)
UNION ALL
SELECT t.name, d.machine_id, s.scan_run_id, s.scanned_at, 'ok', s.missing_kbs,
       s.cve_addressed_total
FROM kbwatch.packed_scan s
JOIN kbwatch.device d
  ON d.device_id = s.device_id AND int8range(s.device_lo, s.device_hi, '[]') @> d.device_id
JOIN kbwatch.tenant t ON t.tenant_id = d.tenant_id;

-- A scan's intervals, found per device through this index: those still open or closed after the
-- scan, a few per device whatever the length of the history kept. Over a year of 100,000 devices
-- the last scan's snapshots probed every interval of each device (37 on average) and took 2.5 s.
-- The views look a scan's intervals up in a subquery of their own (OFFSET 0) so that the planner
-- probes them with both columns of this index for each scan.
CREATE INDEX missing_kb_device_closed_idx
    ON kbwatch.missing_kb (device_id, coalesce(closed_scan_run_id, 9223372036854775807));

-- Same columns and meaning as migration 0002's definition: an interval closed by no scan counts
-- as closed after every scan.
CREATE OR REPLACE VIEW reporting.missing_kb_snapshots AS
SELECT t.name AS tenant, d.machine_id, s.scan_run_id, s.scanned_at, m.kb_id, m.cve_addressed
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
SELECT t.name, d.machine_id, s.scan_run_id, s.scanned_at, m.kb_id, m.cve_addressed
FROM kbwatch.packed_scan s
JOIN kbwatch.device d
  ON d.device_id = s.device_id AND int8range(s.device_lo, s.device_hi, '[]') @> d.device_id
JOIN kbwatch.tenant t ON t.tenant_id = d.tenant_id
CROSS JOIN LATERAL (
    SELECT m.kb_id, m.cve_addressed FROM kbwatch.missing_kb m
    WHERE m.device_id = s.device_id AND m.opened_scan_run_id <= s.scan_run_id
      AND coalesce(m.closed_scan_run_id, 9223372036854775807) > s.scan_run_id
    OFFSET 0) m;

-- The definition of migration 0008, over device_scan's good scans and the packed ones. A pack is
-- opened only if its first and last scans bound it into the days asked for.
CREATE OR REPLACE FUNCTION kbwatch.fleet_days(after date, through date)
RETURNS TABLE (tenant_id integer, day date, devices_reporting bigint, devices_missing_any bigint,
               missing_kbs_total bigint, cve_addressed_total numeric)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    WITH good AS (
        SELECT s.device_id, s.scanned_at, s.missing_kbs, s.cve_addressed_total
        FROM kbwatch.device_scan s
        WHERE s.outcome = 'ok'
          AND s.scanned_at >= ((after + 1)::timestamp AT TIME ZONE 'UTC')
          AND s.scanned_at < coalesce((through + 1)::timestamp AT TIME ZONE 'UTC', 'infinity')
        UNION ALL
        SELECT s.device_id, s.scanned_at, s.missing_kbs, s.cve_addressed_total
        FROM kbwatch.packed_scan s
        WHERE s.scanned_to >= ((after + 1)::timestamp AT TIME ZONE 'UTC')
          AND s.scanned_from < coalesce((through + 1)::timestamp AT TIME ZONE 'UTC', 'infinity')
          AND s.scanned_at >= ((after + 1)::timestamp AT TIME ZONE 'UTC')
          AND s.scanned_at < coalesce((through + 1)::timestamp AT TIME ZONE 'UTC', 'infinity')
    )
    SELECT d.tenant_id, x.day, count(*), count(*) FILTER (WHERE x.missing_kbs > 0),
           sum(x.missing_kbs), sum(x.cve_addressed_total)
    FROM (
        SELECT DISTINCT ON (s.device_id, (s.scanned_at AT TIME ZONE 'UTC')::date)
               s.device_id, (s.scanned_at AT TIME ZONE 'UTC')::date AS day, s.missing_kbs,
               s.cve_addressed_total
        FROM good s
        ORDER BY s.device_id, (s.scanned_at AT TIME ZONE 'UTC')::date, s.scanned_at DESC
    ) x
    JOIN kbwatch.device d ON d.device_id = x.device_id
    GROUP BY d.tenant_id, x.day
$$;

-- Every ended run packed now; device_scan keeps its rows' space for the runs to come.
SELECT kbwatch.pack_scans(r.scan_run_id)
FROM kbwatch.scan_run r
WHERE r.status <> 'running'
  AND EXISTS (SELECT 1 FROM kbwatch.device_scan s WHERE s.scan_run_id = r.scan_run_id)
ORDER BY r.scan_run_id;
