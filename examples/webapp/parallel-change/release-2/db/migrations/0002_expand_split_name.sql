-- Release 2, expand: new nullable columns. Release 1 keeps working: it neither reads nor writes them.
ALTER TABLE items ADD COLUMN first_name TEXT;
ALTER TABLE items ADD COLUMN last_name TEXT;
