-- Catalog store: peers, their capabilities, crawl runs and the catalog version.
-- Portable conventions (mirrored in migrations/postgres): timestamps are unix milliseconds,
-- JSON is TEXT, money is a double (REAL here), booleans are 0/1.

CREATE TABLE peers (
    -- AUTOINCREMENT: a deleted peer's id is never reused, so ids held elsewhere stay unambiguous.
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    url TEXT NOT NULL UNIQUE,                         -- origin form: scheme://host[:port]
    name TEXT,
    well_known_url TEXT NOT NULL,
    manifest_url TEXT,
    pinned_key TEXT,
    key_source TEXT CHECK (key_source IN ('operator', 'tofu', 'announce')),
    state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'active')),
    trusted INTEGER NOT NULL DEFAULT 0 CHECK (trusted IN (0, 1)),
    depth INTEGER NOT NULL DEFAULT 0,
    first_seen INTEGER NOT NULL,
    last_crawl INTEGER,
    last_success INTEGER,
    first_success INTEGER,
    well_known_etag TEXT,
    well_known_last_modified TEXT,
    manifest_etag TEXT,
    manifest_last_modified TEXT,
    last_error TEXT,
    capability_count INTEGER NOT NULL DEFAULT 0,
    categories TEXT NOT NULL DEFAULT '[]',            -- JSON array of strings
    bond_usd REAL NOT NULL DEFAULT 0,
    trust_score REAL NOT NULL DEFAULT 0.5,
    updated_at INTEGER NOT NULL
);

CREATE INDEX peers_state ON peers (state);

CREATE TABLE capabilities (
    id INTEGER PRIMARY KEY,
    -- The peer whose manifest listed this tool (the hub it was learned from).
    peer_id INTEGER NOT NULL REFERENCES peers (id) ON DELETE CASCADE,
    origin TEXT NOT NULL,                             -- owning origin = the tool's source_hub
    via TEXT,                                         -- NULL, or the peer hub it came through
    product_id TEXT NOT NULL,
    capability_id TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    input_schema TEXT NOT NULL,                       -- JSON
    output_schema TEXT,                               -- JSON
    price_usd REAL NOT NULL DEFAULT 0,
    p50_latency_ms INTEGER,
    success_rate REAL,
    invoke_url TEXT,
    tool_json TEXT NOT NULL,                          -- the tool object as served
    content_hash TEXT NOT NULL,                       -- sha256 hex; equal hash = no write
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    UNIQUE (origin, product_id, capability_id)
);

-- Covers the per-peer (key, hash) read of every catalog write, so comparing a re-crawled
-- manifest with the stored one never touches the wide rows.
CREATE INDEX capabilities_peer
    ON capabilities (peer_id, origin, product_id, capability_id, content_hash);
CREATE INDEX capabilities_product ON capabilities (product_id, capability_id);

CREATE TABLE crawl_runs (
    id INTEGER PRIMARY KEY,
    started_at INTEGER NOT NULL,
    finished_at INTEGER,
    peers_reached INTEGER NOT NULL DEFAULT 0,
    capabilities_indexed INTEGER NOT NULL DEFAULT 0,
    not_modified INTEGER NOT NULL DEFAULT 0,
    rejected INTEGER NOT NULL DEFAULT 0,
    errors TEXT NOT NULL DEFAULT '[]',                -- JSON array of {peer, error}
    status TEXT NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'completed', 'failed'))
);

-- One row; `version` goes up by one on every change to what the catalog shows, so the
-- indexer and the manifest cache can tell when they are stale.
CREATE TABLE catalog_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);

INSERT INTO catalog_state (id, version) VALUES (1, 0);
