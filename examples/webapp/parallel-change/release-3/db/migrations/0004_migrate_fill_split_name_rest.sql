-- Release 3, migrate: rows release 1 wrote after release 2's backfill (while release 2 rolled out) still
-- lack the new columns. Only release 2 runs now, and it writes both, so this pass completes the copy.
-- slipway:batch table=items key=id size=100
UPDATE items
SET first_name = CASE WHEN name LIKE '% %' THEN rtrim(rtrim(name, replace(name, ' ', ''))) ELSE name END,
    last_name = CASE WHEN name LIKE '% %' THEN substr(name, length(rtrim(name, replace(name, ' ', ''))) + 1) ELSE '' END
WHERE id BETWEEN :batch_start AND :batch_end AND first_name IS NULL AND name IS NOT NULL;
