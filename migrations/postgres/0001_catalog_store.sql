-- Catalog store: peers, their capabilities, crawl runs and the catalog version.
-- Portable conventions (mirrored in migrations/sqlite): timestamps are BIGINT unix
-- milliseconds, JSON is TEXT, money is DOUBLE PRECISION, every integer is BIGINT (the
-- shared Rust code decodes them all as i64).

CREATE TABLE peers (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    url TEXT NOT NULL UNIQUE,                         -- origin form: scheme://host[:port]
    name TEXT,
    well_known_url TEXT NOT NULL,
    manifest_url TEXT,
    pinned_key TEXT,
    key_source TEXT CHECK (key_source IN ('operator', 'tofu', 'announce')),
    state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'active')),
    trusted BOOLEAN NOT NULL DEFAULT FALSE,
    depth BIGINT NOT NULL DEFAULT 0,
    first_seen BIGINT NOT NULL,
    last_crawl BIGINT,
    last_success BIGINT,
    first_success BIGINT,
    well_known_etag TEXT,
    well_known_last_modified TEXT,
    manifest_etag TEXT,
    manifest_last_modified TEXT,
    last_error TEXT,
    capability_count BIGINT NOT NULL DEFAULT 0,
    categories TEXT NOT NULL DEFAULT '[]',            -- JSON array of strings
    bond_usd DOUBLE PRECISION NOT NULL DEFAULT 0,
    trust_score DOUBLE PRECISION NOT NULL DEFAULT 0.5,
    updated_at BIGINT NOT NULL
);

CREATE INDEX peers_state ON peers (state);

CREATE TABLE capabilities (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The peer whose manifest listed this tool (the hub it was learned from).
    peer_id BIGINT NOT NULL REFERENCES peers (id) ON DELETE CASCADE,
    origin TEXT NOT NULL,                             -- owning origin = the tool's source_hub
    via TEXT,                                         -- NULL, or the peer hub it came through
    product_id TEXT NOT NULL,
    capability_id TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    input_schema TEXT NOT NULL,                       -- JSON
    output_schema TEXT,                               -- JSON
    price_usd DOUBLE PRECISION NOT NULL DEFAULT 0,
    p50_latency_ms BIGINT,
    success_rate DOUBLE PRECISION,
    invoke_url TEXT,
    tool_json TEXT NOT NULL,                          -- the tool object as served
    content_hash TEXT NOT NULL,                       -- sha256 hex; equal hash = no write
    first_seen BIGINT NOT NULL,
    last_seen BIGINT NOT NULL,
    UNIQUE (origin, product_id, capability_id)
);

-- Covers the per-peer (key, hash) read of every catalog write, so comparing a re-crawled
-- manifest with the stored one never touches the wide rows.
CREATE INDEX capabilities_peer
    ON capabilities (peer_id, origin, product_id, capability_id, content_hash);
CREATE INDEX capabilities_product ON capabilities (product_id, capability_id);

CREATE TABLE crawl_runs (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    started_at BIGINT NOT NULL,
    finished_at BIGINT,
    peers_reached BIGINT NOT NULL DEFAULT 0,
    capabilities_indexed BIGINT NOT NULL DEFAULT 0,
    not_modified BIGINT NOT NULL DEFAULT 0,
    rejected BIGINT NOT NULL DEFAULT 0,
    errors TEXT NOT NULL DEFAULT '[]',                -- JSON array of {peer, error}
    status TEXT NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'completed', 'failed'))
);

-- One row; `version` goes up by one on every change to what the catalog shows, so the
-- indexer and the manifest cache can tell when they are stale.
CREATE TABLE catalog_state (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL
);

INSERT INTO catalog_state (id, version) VALUES (1, 0);
