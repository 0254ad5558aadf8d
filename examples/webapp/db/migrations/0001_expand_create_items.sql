-- Release 1: the items table. The same file runs on SQLite and PostgreSQL.
-- IF NOT EXISTS adopts a database made by an earlier version of the example, which created the table itself.
-- `name` is nullable so that a later release can stop writing it before a contract migration drops it
-- (SQLite cannot drop a NOT NULL constraint in place): see docs/migrations.md, "The example's three releases".
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY,
    name TEXT
);
