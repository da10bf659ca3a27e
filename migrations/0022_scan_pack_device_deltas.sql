-- A scan pack's device ids kept as deltas: the first id, then each id's difference from the one
-- before. The ids of a pack are sorted, and mostly consecutive, so the deltas are mostly 1 and
-- TOAST compresses them to almost nothing; the ids themselves did not compress well.
--
-- Over a year of 100,000 devices scan_pack held 36,500 packs in 362 MB: the device ids took
-- 3,272 bytes a pack (3.3 bytes a scan), their deltas take 124. What it saves and costs on that
-- year: docs/storage.md. Same views, same columns, same rows.

-- The deltas of `ids` (the first id, then each id minus the one before), and back. Pure
-- functions of their argument, so every role may run them. plpgsql, because a loop over an
-- expanded array decodes a pack's 1,000 ids faster than a window over unnest (0.08 against
-- 0.24 µs an id, measured on that year).
CREATE FUNCTION kbwatch.delta_encode(ids bigint[]) RETURNS bigint[]
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    deltas bigint[] := ids;
    previous bigint := 0;
BEGIN
    FOR i IN 1 .. coalesce(cardinality(ids), 0) LOOP
        deltas[i] := ids[i] - previous;
        previous := ids[i];
    END LOOP;
    RETURN deltas;
END
$$;

CREATE FUNCTION kbwatch.delta_decode(deltas bigint[]) RETURNS bigint[]
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    ids bigint[] := deltas;
    id bigint := 0;
BEGIN
    FOR i IN 1 .. coalesce(cardinality(deltas), 0) LOOP
        id := id + deltas[i];
        ids[i] := id;
    END LOOP;
    RETURN ids;
END
$$;

-- The packs kept so far, rewritten with their deltas. The ids are cleared in the same update, so
-- that their space can be reused once the old rows are vacuumed.
ALTER TABLE kbwatch.scan_pack
    ADD COLUMN device_id_deltas bigint[],
    ALTER COLUMN device_ids DROP NOT NULL;
UPDATE kbwatch.scan_pack
SET device_id_deltas = kbwatch.delta_encode(device_ids), device_ids = NULL;
ALTER TABLE kbwatch.scan_pack ALTER COLUMN device_id_deltas SET NOT NULL;

-- 0016's view, over the deltas.
CREATE OR REPLACE VIEW kbwatch.packed_scan AS
SELECT u.device_id, p.scan_run_id, p.scanned_from + u.offset_us * interval '1 microsecond'
       AS scanned_at, u.missing_kbs, u.cve_addressed_total, p.device_lo, p.device_hi,
       p.scanned_from, p.scanned_to, p.source
FROM kbwatch.scan_pack p
CROSS JOIN LATERAL unnest(kbwatch.delta_decode(p.device_id_deltas), p.offsets_us, p.missing_kbs,
                          p.cve_addressed_totals)
    AS u(device_id, offset_us, missing_kbs, cve_addressed_total);

-- 0014's trigger function, over the deltas.
CREATE OR REPLACE FUNCTION kbwatch.refuse_packed_device_delete() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    referenced bigint;
BEGIN
    SELECT r.device_id INTO referenced FROM removed r
    WHERE EXISTS (SELECT 1 FROM kbwatch.scan_pack p
                  WHERE int8range(p.device_lo, p.device_hi, '[]') @> r.device_id
                    AND r.device_id = ANY (kbwatch.delta_decode(p.device_id_deltas)))
    LIMIT 1;
    IF referenced IS NOT NULL THEN
        RAISE EXCEPTION 'device device_id = % is not deleted: scan_pack rows refer to it',
            referenced USING ERRCODE = 'foreign_key_violation', TABLE = 'device';
    END IF;
    RETURN NULL;
END
$$;

-- 0016's packing, writing the deltas.
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
              AND m.device_id = ANY (kbwatch.delta_decode(p.device_id_deltas)))
    ), framed AS (
        SELECT f.*, min(f.scanned_at) OVER (PARTITION BY f.source, f.pack) AS base FROM fresh f
    ), inserted AS (
        INSERT INTO kbwatch.scan_pack (scan_run_id, device_lo, device_hi, scanned_from,
                                       scanned_to, device_id_deltas, offsets_us, missing_kbs,
                                       cve_addressed_totals, source)
        SELECT run, min(x.device_id), max(x.device_id), min(x.scanned_at), max(x.scanned_at),
               kbwatch.delta_encode(array_agg(x.device_id ORDER BY x.device_id)),
               array_agg((extract(epoch FROM x.scanned_at - x.base) * 1000000)::int8
                         ORDER BY x.device_id),
               array_agg(x.missing_kbs ORDER BY x.device_id),
               array_agg(x.cve_addressed_total ORDER BY x.device_id),
               x.source
        FROM framed x
        GROUP BY x.source, x.pack
        RETURNING cardinality(device_id_deltas) AS n
    )
    SELECT coalesce(sum(i.n), 0) INTO packed FROM inserted i;
    RETURN packed;
END
$$;

-- Same columns and meaning as 0021's definition; the scan pack's ids decoded from its deltas.
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
  ON d.device_id = x.device_id AND int8range(p.device_lo, p.device_hi, '[]') @> d.device_id;

ALTER TABLE kbwatch.scan_pack DROP COLUMN device_ids;
