-- Dropped tools with their reasons (issue #15), stored so they survive a restart and every
-- replica shows them (they were kept in the memory of the replica that crawled).
--
-- Per run: how many tools the run dropped and a sample with reasons (at most 50, at most
-- 20 per peer, in crawl order), listed newest run first by GET /ai-market/v2/federation/crawls.
ALTER TABLE crawl_runs ADD COLUMN rejected_tools INTEGER NOT NULL DEFAULT 0;
ALTER TABLE crawl_runs ADD COLUMN rejected_tools_sample TEXT NOT NULL DEFAULT '[]';

-- Per peer: the verdict on its last new manifest (a 304 keeps it), at most 20 tools with
-- reasons; the next new manifest replaces it. Gone with the peer.
CREATE TABLE peer_rejections (
    peer_id INTEGER PRIMARY KEY REFERENCES peers (id) ON DELETE CASCADE,
    run_id INTEGER NOT NULL,
    judged_at INTEGER NOT NULL,                     -- unix ms: when that run started
    rejected_tools INTEGER NOT NULL,
    tools TEXT NOT NULL DEFAULT '[]'          -- JSON array of {peer, index, name, reason}
);
