-- Whether a scan pack holds a device, read from its deltas without decoding them all.
--
-- Since 0022 the delete trigger of 0014 and retention's search for gone devices decoded every
-- scan pack whose device range holds the device, and looked for it in the ids: 107 µs a pack,
-- against 11 µs for the ids stored whole. A gone device lies in the range of every pack kept
-- since (its id sits among the others'), so over a year kept the trigger on a batch of 500 gone
-- devices took 20 s. Summing the deltas until they reach the device stops halfway on average,
-- and builds no array: 34 µs a pack. What it measured: docs/benchmarks.md.

-- Whether the ids that `deltas` encode (ascending, as a pack's are) include `wanted`.
CREATE FUNCTION kbwatch.delta_contains(deltas bigint[], wanted bigint) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    delta bigint;
    id bigint := 0;
BEGIN
    FOREACH delta IN ARRAY deltas LOOP
        id := id + delta;
        IF id >= wanted THEN
            RETURN id = wanted;
        END IF;
    END LOOP;
    RETURN false;
END
$$;

-- 0022's trigger function, testing membership without decoding.
CREATE OR REPLACE FUNCTION kbwatch.refuse_packed_device_delete() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    referenced bigint;
BEGIN
    SELECT r.device_id INTO referenced FROM removed r
    WHERE EXISTS (SELECT 1 FROM kbwatch.scan_pack p
                  WHERE int8range(p.device_lo, p.device_hi, '[]') @> r.device_id
                    AND kbwatch.delta_contains(p.device_id_deltas, r.device_id))
    LIMIT 1;
    IF referenced IS NOT NULL THEN
        RAISE EXCEPTION 'device device_id = % is not deleted: scan_pack rows refer to it',
            referenced USING ERRCODE = 'foreign_key_violation', TABLE = 'device';
    END IF;
    RETURN NULL;
END
$$;
