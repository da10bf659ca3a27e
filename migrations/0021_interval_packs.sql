-- A run's closed missing-KB intervals packed into a few rows once the run has ended, as its good
-- scans are (0014), instead of one missing_kb row per interval kept for ever.
--
-- Over a year of 100,000 devices (three KBs a month each, fixed within 2 to 40 days) missing_kb
-- held 3.9 M intervals in 766 MB: heap 357 MB, key 185 MB, the scan-read index 189 MB, the
-- open-interval index 36 MB; more than half the schema, and 4 times the whole schema after the
-- first scan. An interval that has closed never changes again. Once the run that closed it has
-- ended, it moves into a pack of the intervals that run closed on the devices of one of its scan
-- packs (the same device ranges, run after run): per interval, ordered by device, KB and opening
-- run, its device, KB, opening run, opening and closing time (exact), cveAddressed and whether
-- its closing was a fix, as arrays that TOAST compresses. Open intervals, and those closed by a
-- run still running, stay rows: the write path reads and closes only those.
--
-- Same views, same columns, same rows: they read missing_kb and the packs. A scan's snapshot is
-- read per scan pack (one hash join of its devices with the intervals open at its run), no longer
-- by a probe per device and scan. What it saves and costs on that year: docs/storage.md.
CREATE TABLE kbwatch.interval_pack (
    closed_scan_run_id   bigint NOT NULL
        CONSTRAINT interval_pack_run_fkey REFERENCES kbwatch.scan_run,
    -- The closing run's tenant: a scan's intervals are looked for among its tenant's packs.
    tenant_id            integer NOT NULL,
    -- The pack's lowest and highest device id, and its earliest opening run: every interval of
    -- the pack was open from opened_lo to closed_scan_run_id at most, so the packs of a scan pack
    -- (devices, run) are found without opening the others.
    device_lo            bigint NOT NULL,
    device_hi            bigint NOT NULL,
    opened_lo            bigint NOT NULL,
    -- The pack's first and last closing time.
    closed_from          timestamptz,
    closed_to            timestamptz,
    device_ids           bigint[] NOT NULL,
    kb_ids               text[] NOT NULL,
    opened_scan_run_ids  bigint[] NOT NULL,
    opened_ats           timestamptz[] NOT NULL,
    closed_ats           timestamptz[] NOT NULL,
    cve_addressed        integer[] NOT NULL,
    fixed                boolean[] NOT NULL,
    CONSTRAINT interval_pack_pkey PRIMARY KEY (closed_scan_run_id, device_lo)
);
-- The packs of some devices open at a run (a scan pack's snapshot), and a device's packs.
CREATE INDEX interval_pack_devices_runs_idx ON kbwatch.interval_pack
    USING gist (int8range(device_lo, device_hi, '[]'), int8range(opened_lo, closed_scan_run_id));

-- A device or KB a pack refers to is not deleted, as one a missing_kb row refers to is not (0004).
-- The intervals in a pack come from missing_kb rows, which referred to existing ones.
CREATE FUNCTION kbwatch.refuse_interval_packed_delete() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    referenced text;
BEGIN
    IF TG_TABLE_NAME = 'device' THEN
        SELECT r.device_id::text INTO referenced FROM removed r
        WHERE EXISTS (SELECT 1 FROM kbwatch.interval_pack q
                      WHERE int8range(q.device_lo, q.device_hi, '[]') @> r.device_id
                        AND r.device_id = ANY (q.device_ids))
        LIMIT 1;
    ELSE
        SELECT r.kb_id INTO referenced FROM removed r
        WHERE EXISTS (SELECT 1 FROM kbwatch.interval_pack q WHERE r.kb_id = ANY (q.kb_ids))
        LIMIT 1;
    END IF;
    IF referenced IS NOT NULL THEN
        RAISE EXCEPTION '% % is not deleted: interval_pack rows refer to it',
            TG_TABLE_NAME, referenced USING ERRCODE = 'foreign_key_violation', TABLE = TG_TABLE_NAME;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER device_interval_packed AFTER DELETE ON kbwatch.device
    REFERENCING OLD TABLE AS removed FOR EACH STATEMENT
    EXECUTE FUNCTION kbwatch.refuse_interval_packed_delete();
CREATE TRIGGER kb_interval_packed AFTER DELETE ON kbwatch.kb
    REFERENCING OLD TABLE AS removed FOR EACH STATEMENT
    EXECUTE FUNCTION kbwatch.refuse_interval_packed_delete();

-- Every packed interval, as missing_kb held it.
CREATE VIEW kbwatch.packed_interval AS
SELECT u.device_id, u.kb_id, u.opened_scan_run_id, q.closed_scan_run_id, u.cve_addressed,
       u.opened_at, u.closed_at, u.fixed, q.tenant_id, q.device_lo, q.device_hi, q.opened_lo,
       q.closed_from, q.closed_to
FROM kbwatch.interval_pack q
CROSS JOIN LATERAL unnest(q.device_ids, q.kb_ids, q.opened_scan_run_ids, q.opened_ats,
                          q.closed_ats, q.cve_addressed, q.fixed)
    AS u(device_id, kb_id, opened_scan_run_id, opened_at, closed_at, cve_addressed, fixed);

-- Every interval, in a row or a pack.
CREATE VIEW kbwatch.missing_kb_interval AS
SELECT m.device_id, m.kb_id, m.opened_scan_run_id, m.closed_scan_run_id, m.cve_addressed,
       m.opened_at, m.closed_at, m.fixed
FROM kbwatch.missing_kb m
UNION ALL
SELECT i.device_id, i.kb_id, i.opened_scan_run_id, i.closed_scan_run_id, i.cve_addressed,
       i.opened_at, i.closed_at, i.fixed
FROM kbwatch.packed_interval i;

-- Packs the intervals closed by the runs `runs` that have ended (a running run packs nothing),
-- after their scans (pack_scans: a pack takes the device range of a scan pack); returns the
-- number of intervals packed. The runs' rows are locked, so that two packers of one run wait for
-- each other. A run packed already is packed again with its new intervals (a batch written again
-- after the run ended), so each run's packs always hold all its intervals in order.
CREATE FUNCTION kbwatch.pack_intervals(runs bigint[]) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    ended bigint[];
    packed bigint;
BEGIN
    SELECT array_agg(r.scan_run_id ORDER BY r.scan_run_id) INTO ended
    FROM (SELECT r.scan_run_id FROM kbwatch.scan_run r
          WHERE r.scan_run_id = ANY (runs) AND r.status <> 'running'
          ORDER BY r.scan_run_id
          FOR UPDATE) r;
    IF ended IS NULL THEN
        RETURN 0;
    END IF;
    WITH rows_moved AS (
        DELETE FROM kbwatch.missing_kb m
        WHERE m.closed_scan_run_id = ANY (ended)
        RETURNING m.device_id, m.kb_id, m.opened_scan_run_id, m.closed_scan_run_id,
                  m.cve_addressed, m.opened_at, m.closed_at, m.fixed
    ), packs_moved AS (
        DELETE FROM kbwatch.interval_pack q
        WHERE q.closed_scan_run_id = ANY (ended)
          AND EXISTS (SELECT 1 FROM kbwatch.missing_kb m
                      WHERE m.closed_scan_run_id = q.closed_scan_run_id)
        RETURNING q.closed_scan_run_id, q.device_lo
    ), moved AS (
        SELECT * FROM rows_moved
        UNION ALL
        -- The statement reads the packs as they were before its deletes.
        SELECT i.device_id, i.kb_id, i.opened_scan_run_id, i.closed_scan_run_id,
               i.cve_addressed, i.opened_at, i.closed_at, i.fixed
        FROM kbwatch.packed_interval i
        JOIN packs_moved p USING (closed_scan_run_id, device_lo)
    ), blocked AS (
        -- The device range of the closing run's scan pack each interval's device is in.
        SELECT m.*,
               coalesce((SELECT max(p.device_lo) FROM kbwatch.scan_pack p
                         WHERE p.scan_run_id = m.closed_scan_run_id
                           AND p.device_lo <= m.device_id), 0) AS block
        FROM moved m
    ), inserted AS (
        INSERT INTO kbwatch.interval_pack (closed_scan_run_id, tenant_id, device_lo, device_hi,
                                           opened_lo, closed_from, closed_to, device_ids, kb_ids,
                                           opened_scan_run_ids, opened_ats, closed_ats,
                                           cve_addressed, fixed)
        SELECT x.closed_scan_run_id, r.tenant_id, min(x.device_id), max(x.device_id),
               min(x.opened_scan_run_id), min(x.closed_at), max(x.closed_at),
               array_agg(x.device_id ORDER BY x.device_id, x.kb_id, x.opened_scan_run_id),
               array_agg(x.kb_id ORDER BY x.device_id, x.kb_id, x.opened_scan_run_id),
               array_agg(x.opened_scan_run_id ORDER BY x.device_id, x.kb_id,
                         x.opened_scan_run_id),
               array_agg(x.opened_at ORDER BY x.device_id, x.kb_id, x.opened_scan_run_id),
               array_agg(x.closed_at ORDER BY x.device_id, x.kb_id, x.opened_scan_run_id),
               array_agg(x.cve_addressed ORDER BY x.device_id, x.kb_id, x.opened_scan_run_id),
               array_agg(x.fixed ORDER BY x.device_id, x.kb_id, x.opened_scan_run_id)
        FROM blocked x
        JOIN kbwatch.scan_run r ON r.scan_run_id = x.closed_scan_run_id
        GROUP BY x.closed_scan_run_id, x.block, r.tenant_id
        RETURNING cardinality(device_ids) AS n
    )
    SELECT coalesce(sum(i.n), 0) INTO packed FROM inserted i;
    RETURN packed;
END
$$;
REVOKE ALL ON FUNCTION kbwatch.pack_intervals(bigint[]) FROM PUBLIC;

-- 0013's rebuild, from the intervals in rows and in packs.
CREATE OR REPLACE FUNCTION kbwatch.rebuild_kb_fixes() RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(1801615204, -2);
    LOCK TABLE kbwatch.kb_fix_new IN EXCLUSIVE MODE;
    DELETE FROM kbwatch.kb_fix_new;
    DELETE FROM kbwatch.kb_fix;
    INSERT INTO kbwatch.kb_fix (tenant_id, kb_id, devices_remediated, days, median_days)
    SELECT d.tenant_id, m.kb_id, count(DISTINCT m.device_id), array_agg(x.days),
           percentile_cont(0.5) WITHIN GROUP (ORDER BY x.days)
    FROM kbwatch.missing_kb_interval m
    JOIN kbwatch.device d ON d.device_id = m.device_id
    CROSS JOIN LATERAL (
        SELECT (extract(epoch FROM (m.closed_at - m.opened_at)) / 86400.0)::float8 AS days) x
    WHERE m.fixed
    GROUP BY d.tenant_id, m.kb_id;
END
$$;
REVOKE ALL ON FUNCTION kbwatch.rebuild_kb_fixes() FROM PUBLIC;

-- A scan pack's snapshot: the intervals open at run `run` on the pack's devices (`device_ids`
-- between `lo` and `hi`, scanned at `scanned_from` plus `offsets_us`), in rows and in the packs
-- of the tenant's runs since, matched to the devices by one hash join. Read per scan pack rather
-- than per device: a probe per device and scan was most of the time of one scan's snapshot, and
-- a pack holds the intervals of many devices. Runs as its owner, so that kbwatch_reader needs no
-- access to the tables.
CREATE FUNCTION kbwatch.scan_pack_snapshot(run bigint, tenant integer, lo bigint, hi bigint,
                                           device_ids bigint[], offsets_us bigint[],
                                           scanned_from timestamptz)
RETURNS TABLE (device_id bigint, scanned_at timestamptz, kb_id text, cve_addressed integer)
LANGUAGE sql STABLE SECURITY DEFINER ROWS 3000
SET search_path = pg_catalog, pg_temp SET enable_nestloop = off SET jit = off AS $$
    SELECT s.device_id,
           scan_pack_snapshot.scanned_from + s.offset_us * interval '1 microsecond' AS scanned_at,
           i.kb_id, i.cve_addressed
    FROM unnest(scan_pack_snapshot.device_ids, scan_pack_snapshot.offsets_us)
        AS s(device_id, offset_us)
    JOIN (
        SELECT m.device_id, m.kb_id, m.cve_addressed
        FROM kbwatch.missing_kb m
        WHERE m.device_id BETWEEN lo AND hi AND m.opened_scan_run_id <= run
          AND coalesce(m.closed_scan_run_id, 9223372036854775807) > run
        UNION ALL
        SELECT u.device_id, u.kb_id, u.cve_addressed
        FROM kbwatch.interval_pack q
        CROSS JOIN LATERAL unnest(q.device_ids, q.kb_ids, q.opened_scan_run_ids,
                                  q.cve_addressed)
            AS u(device_id, kb_id, opened_scan_run_id, cve_addressed)
        WHERE int8range(q.device_lo, q.device_hi, '[]') && int8range(lo, hi, '[]')
          AND int8range(q.opened_lo, q.closed_scan_run_id) @> run
          AND q.tenant_id = tenant AND u.opened_scan_run_id <= run
    ) i ON i.device_id = s.device_id
$$;
REVOKE ALL ON FUNCTION kbwatch.scan_pack_snapshot(bigint, integer, bigint, bigint, bigint[],
                                                  bigint[], timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kbwatch.scan_pack_snapshot(bigint, integer, bigint, bigint, bigint[],
                                                     bigint[], timestamptz) TO kbwatch_reader;

-- Same columns and meaning as 0016's definition. A scan still a device_scan row (its run has not
-- ended) probes its intervals in rows and in packs; a packed scan's come from its scan pack's
-- snapshot.
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
                                              p.device_hi, p.device_ids, p.offsets_us,
                                              p.scanned_from) x
JOIN kbwatch.device d
  ON d.device_id = x.device_id AND int8range(p.device_lo, p.device_hi, '[]') @> d.device_id;

-- The history so far: every ended run's closed intervals. missing_kb keeps the space the rows
-- took until `VACUUM FULL kbwatch.missing_kb` (run it while no kbwatch runs, after the upgrade).
SELECT kbwatch.pack_intervals(coalesce(array_agg(DISTINCT m.closed_scan_run_id), '{}'))
FROM kbwatch.missing_kb m
WHERE m.closed_scan_run_id IS NOT NULL;

-- The closed intervals still in rows (their run is running), for the packing at its end.
CREATE INDEX missing_kb_closed_idx ON kbwatch.missing_kb (closed_scan_run_id)
    WHERE closed_scan_run_id IS NOT NULL;

-- 0018's index found a device's intervals open at a run among the many it had closed; closed
-- intervals are packed now, and the key (device_id first) finds the few left.
DROP INDEX kbwatch.missing_kb_device_closed_opened_idx;
