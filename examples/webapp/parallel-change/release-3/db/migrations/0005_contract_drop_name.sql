-- Release 3, contract: drop the old column. Slipway holds this until every target runs release 3 (which
-- never touches `name`) and its verify passed; rolling back to release 2 afterwards is refused.
ALTER TABLE items DROP COLUMN name;
