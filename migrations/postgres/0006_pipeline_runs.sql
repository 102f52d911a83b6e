-- Pipeline runs (issue #17): the answer of every run that started, with its signed bill of
-- materials, readable by trace id (`GET /ai-market/v2/pipelines/{trace_id}`).
CREATE TABLE pipeline_runs (
    trace_id     TEXT PRIMARY KEY,
    status       BIGINT NOT NULL,
    answer       TEXT NOT NULL,
    total_micros BIGINT NOT NULL,
    created_at   BIGINT NOT NULL
);
