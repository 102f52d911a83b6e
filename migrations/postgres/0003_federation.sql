-- Federation admission, reputation and live stats. Mirrored in
-- migrations/sqlite/0003_federation.sql. Same conventions as 0001: unix milliseconds, JSON
-- as TEXT, doubles for scores.

-- Spec §2.6: what a pending peer's verified manifest offers, for the operator deciding on
-- admission. Deliberately a table of its own that no serving query (search, manifest,
-- invoke, well-known) reads, so a query that forgets a filter cannot expose it.
CREATE TABLE peer_previews (
    peer_id BIGINT PRIMARY KEY REFERENCES peers (id) ON DELETE CASCADE,
    capabilities TEXT NOT NULL DEFAULT '[]',          -- JSON array: the first tools, summarised
    capabilities_count BIGINT NOT NULL DEFAULT 0,
    public_key TEXT,                                  -- the key the manifest verified with
    manifest_url TEXT,
    verified_at BIGINT,                              -- NULL until a manifest verified
    checked_at BIGINT NOT NULL,
    error TEXT                                        -- why the last attempt failed, if it did
);

-- Spec §2.5: hubs that identified themselves with X-AIMarket-Crawler. Unauthenticated
-- claims, bounded in number by the recorder.
CREATE TABLE inbound_crawlers (
    url TEXT PRIMARY KEY,                             -- origin form
    first_seen BIGINT NOT NULL,
    last_seen BIGINT NOT NULL,
    hits BIGINT NOT NULL DEFAULT 1,
    status TEXT NOT NULL DEFAULT 'recorded',          -- recorded | pending_peer | known_peer | refused
    detail TEXT
);

CREATE INDEX inbound_crawlers_last_seen ON inbound_crawlers (last_seen);

-- Spec §5.2: signed reputation events accepted from admitted peers. `signature` holds the
-- decoded signature bytes as hex, so a replay is refused however its base64 is spelled.
CREATE TABLE reputation_events (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    signature TEXT NOT NULL UNIQUE,
    consumer_hub TEXT NOT NULL,
    provider_hub TEXT NOT NULL,                       -- origin form
    kind TEXT NOT NULL,
    capability_id TEXT,
    event_ts BIGINT NOT NULL,
    price_usd DOUBLE PRECISION NOT NULL DEFAULT 0,
    latency_ms BIGINT NOT NULL DEFAULT 0,
    received_at BIGINT NOT NULL
);

CREATE INDEX reputation_events_provider ON reputation_events (provider_hub, event_ts);
CREATE INDEX reputation_events_received ON reputation_events (received_at);

-- Spec §5.1: the last computed components of each peer's trust score (the score itself is
-- peers.trust_score, which search and the published documents read).
CREATE TABLE peer_reputation (
    peer_url TEXT PRIMARY KEY,
    age DOUBLE PRECISION NOT NULL,
    bond DOUBLE PRECISION NOT NULL,
    success_rate DOUBLE PRECISION NOT NULL,
    volume DOUBLE PRECISION NOT NULL,
    calls_30d BIGINT NOT NULL,
    successes_30d BIGINT NOT NULL,
    volume_usd_30d DOUBLE PRECISION NOT NULL,
    events_30d BIGINT NOT NULL,
    event_successes_30d BIGINT NOT NULL,
    computed_at BIGINT NOT NULL
);

-- Measured per-capability outcomes of calls routed through this hub over 30 days, and the
-- capability's trust once it has enough calls (NULL before). Read by the catalog's one
-- trust function through the capability queries.
CREATE TABLE capability_reputation (
    origin TEXT NOT NULL,
    product_id TEXT NOT NULL,
    capability_id TEXT NOT NULL,
    calls_30d BIGINT NOT NULL,
    successes_30d BIGINT NOT NULL,
    trust_score DOUBLE PRECISION,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (origin, product_id, capability_id)
);
