-- Release 2, migrate: copy every old row's name into the new columns, 100 rows per committed batch.
-- Portable SQL (SQLite and PostgreSQL): rtrim(name, <every non-space character of name>) keeps the name
-- up to its last space, so the last word is the last name and the rest the first name.
-- slipway:batch table=items key=id size=100
UPDATE items
SET first_name = CASE WHEN name LIKE '% %' THEN rtrim(rtrim(name, replace(name, ' ', ''))) ELSE name END,
    last_name = CASE WHEN name LIKE '% %' THEN substr(name, length(rtrim(name, replace(name, ' ', ''))) + 1) ELSE '' END
WHERE id BETWEEN :batch_start AND :batch_end AND first_name IS NULL AND name IS NOT NULL;
