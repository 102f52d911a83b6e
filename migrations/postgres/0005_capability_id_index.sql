-- An invoke without product_id resolves its capability id alone (tolerant reading of real
-- clients): index the capability id so that lookup stays an index scan at any catalog size.
CREATE INDEX capabilities_capability_id ON capabilities (capability_id);
