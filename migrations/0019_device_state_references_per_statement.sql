-- device_state's reference to its device, checked once per statement as migration 0004 checks
-- the other tables' references, instead of by 0011's foreign key.
--
-- The key ran a query that found and locked the device row for every state row inserted: one per
-- device of a first scan, in the statement that writes the batch's scans, beside 0004's one
-- anti-join per statement for the scan rows themselves. The end-to-end bench (a first scan of
-- 10,000 devices into an empty database, PostgreSQL on the same 2 cores), four runs with the key
-- and four without, alternated: 7,260-8,953 devices/s and 942-1,283 ms of PostgreSQL CPU with it,
-- 8,536-9,530 devices/s and 858-1,004 ms without. Updating a state row never changes its device,
-- so the key cost nothing on later scans; there the trigger runs once per statement on no rows.
--   * a state row refers to a device that exists, or the statement writing it fails (23503);
--   * its device never changes;
--   * deleting a device deletes its state in the same statement, as ON DELETE CASCADE did.
-- As with 0004's checks, no row lock is taken: kbwatch deletes devices only in retention, which
-- locks them first and deletes only devices gone before the cutoff, whose state no scan writes.

ALTER TABLE kbwatch.device_state DROP CONSTRAINT device_state_device_fkey;

CREATE TRIGGER device_state_refs AFTER INSERT ON kbwatch.device_state
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT
    EXECUTE FUNCTION kbwatch.check_references('device_id', 'device', 'device_id');
CREATE TRIGGER device_state_keys BEFORE UPDATE OF device_id ON kbwatch.device_state
    FOR EACH ROW WHEN (OLD.device_id <> NEW.device_id)
    EXECUTE FUNCTION kbwatch.refuse_key_change();

-- The cascade, once per statement: the state of every device the statement deleted.
CREATE FUNCTION kbwatch.delete_device_states() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM kbwatch.device_state st WHERE st.device_id IN (SELECT r.device_id FROM removed r);
    RETURN NULL;
END
$$;
CREATE TRIGGER device_state_cascade AFTER DELETE ON kbwatch.device
    REFERENCING OLD TABLE AS removed FOR EACH STATEMENT
    EXECUTE FUNCTION kbwatch.delete_device_states();
