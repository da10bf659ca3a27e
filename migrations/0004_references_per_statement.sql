-- The references of the two fact tables, checked once per statement instead of once per row.
--
-- A foreign key runs a query that finds and locks the referenced row for every row inserted. Writing
-- the first scan of 10,000 devices, those checks were most of the cost of the fact tables (psql, 2
-- cores: 31,318 missing_kb rows 331 ms with their two keys, 76 ms without; 10,000 device_scan rows
-- 160 ms with theirs, 32 ms without), and the scan's database time bounds its speed. The triggers
-- below keep the same guarantees with one anti-join per statement (the same 31,318 rows, written in
-- ten statements: 128 ms checked, 96 ms not):
--   * a fact row refers to a device, KB and scan run that exist, or its statement fails;
--   * a fact row's references never change;
--   * a device, KB or scan run that a fact row refers to cannot be deleted, nor its key changed.
-- kbwatch itself never deletes these rows. Unlike a foreign key, these checks take no row locks: a
-- delete racing with the insert of a row that refers to the deleted row can let both through.

ALTER TABLE kbwatch.missing_kb
    DROP CONSTRAINT missing_kb_device_fkey,
    DROP CONSTRAINT missing_kb_kb_fkey;
ALTER TABLE kbwatch.device_scan
    DROP CONSTRAINT device_scan_device_fkey,
    DROP CONSTRAINT device_scan_run_fkey;

CREATE FUNCTION kbwatch.missing_kb_check_refs() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    orphan record;
BEGIN
    SELECT a.device_id, a.kb_id INTO orphan
    FROM added a
    WHERE NOT EXISTS (SELECT 1 FROM kbwatch.device d WHERE d.device_id = a.device_id)
       OR NOT EXISTS (SELECT 1 FROM kbwatch.kb k WHERE k.kb_id = a.kb_id)
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'missing_kb row refers to device % or KB % that does not exist',
            orphan.device_id, orphan.kb_id
            USING ERRCODE = 'foreign_key_violation', TABLE = 'missing_kb';
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER missing_kb_refs AFTER INSERT ON kbwatch.missing_kb
    REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION kbwatch.missing_kb_check_refs();

CREATE FUNCTION kbwatch.device_scan_check_refs() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    orphan record;
BEGIN
    SELECT a.device_id, a.scan_run_id INTO orphan
    FROM added a
    WHERE NOT EXISTS (SELECT 1 FROM kbwatch.device d WHERE d.device_id = a.device_id)
       OR NOT EXISTS (SELECT 1 FROM kbwatch.scan_run r WHERE r.scan_run_id = a.scan_run_id)
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'device_scan row refers to device % or scan run % that does not exist',
            orphan.device_id, orphan.scan_run_id
            USING ERRCODE = 'foreign_key_violation', TABLE = 'device_scan';
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER device_scan_refs AFTER INSERT ON kbwatch.device_scan
    REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION kbwatch.device_scan_check_refs();

-- Keys that fact rows refer to, and the references themselves, are not updated.
CREATE FUNCTION kbwatch.refuse_key_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the keys of kbwatch.% are not changed: fact rows refer to them', TG_TABLE_NAME
        USING ERRCODE = 'foreign_key_violation', TABLE = TG_TABLE_NAME;
END
$$;
CREATE TRIGGER missing_kb_keys BEFORE UPDATE OF device_id, kb_id ON kbwatch.missing_kb
    FOR EACH ROW WHEN (OLD.device_id <> NEW.device_id OR OLD.kb_id <> NEW.kb_id)
    EXECUTE FUNCTION kbwatch.refuse_key_change();
CREATE TRIGGER device_scan_keys BEFORE UPDATE OF device_id, scan_run_id ON kbwatch.device_scan
    FOR EACH ROW WHEN (OLD.device_id <> NEW.device_id OR OLD.scan_run_id <> NEW.scan_run_id)
    EXECUTE FUNCTION kbwatch.refuse_key_change();
CREATE TRIGGER device_keys BEFORE UPDATE OF device_id ON kbwatch.device
    FOR EACH ROW WHEN (OLD.device_id <> NEW.device_id)
    EXECUTE FUNCTION kbwatch.refuse_key_change();
CREATE TRIGGER kb_keys BEFORE UPDATE OF kb_id ON kbwatch.kb
    FOR EACH ROW WHEN (OLD.kb_id <> NEW.kb_id)
    EXECUTE FUNCTION kbwatch.refuse_key_change();
CREATE TRIGGER scan_run_keys BEFORE UPDATE OF scan_run_id ON kbwatch.scan_run
    FOR EACH ROW WHEN (OLD.scan_run_id <> NEW.scan_run_id)
    EXECUTE FUNCTION kbwatch.refuse_key_change();

-- A device, KB or scan run still referred to is not deleted.
CREATE FUNCTION kbwatch.refuse_referenced_delete() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    referenced boolean;
BEGIN
    -- One branch per table: each statement names its own table's columns.
    IF TG_TABLE_NAME = 'device' THEN
        referenced := EXISTS (
            SELECT 1 FROM removed r
            WHERE EXISTS (SELECT 1 FROM kbwatch.device_scan s WHERE s.device_id = r.device_id)
               OR EXISTS (SELECT 1 FROM kbwatch.missing_kb m WHERE m.device_id = r.device_id));
    ELSIF TG_TABLE_NAME = 'kb' THEN
        -- No index leads from a KB to its rows (a foreign key had none either): KBs are not deleted.
        referenced := EXISTS (
            SELECT 1 FROM removed r
            WHERE EXISTS (SELECT 1 FROM kbwatch.missing_kb m WHERE m.kb_id = r.kb_id));
    ELSE
        referenced := EXISTS (
            SELECT 1 FROM removed r
            WHERE EXISTS (SELECT 1 FROM kbwatch.device_scan s WHERE s.scan_run_id = r.scan_run_id));
    END IF;
    IF referenced THEN
        RAISE EXCEPTION 'kbwatch.% rows that fact rows refer to are not deleted', TG_TABLE_NAME
            USING ERRCODE = 'foreign_key_violation', TABLE = TG_TABLE_NAME;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER device_referenced AFTER DELETE ON kbwatch.device
    REFERENCING OLD TABLE AS removed
    FOR EACH STATEMENT EXECUTE FUNCTION kbwatch.refuse_referenced_delete();
CREATE TRIGGER kb_referenced AFTER DELETE ON kbwatch.kb
    REFERENCING OLD TABLE AS removed
    FOR EACH STATEMENT EXECUTE FUNCTION kbwatch.refuse_referenced_delete();
CREATE TRIGGER scan_run_referenced AFTER DELETE ON kbwatch.scan_run
    REFERENCING OLD TABLE AS removed
    FOR EACH STATEMENT EXECUTE FUNCTION kbwatch.refuse_referenced_delete();
