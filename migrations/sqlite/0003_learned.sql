-- Verdicts the abuse team taught the content classifier, one per report:
-- learning a report again with the same verdict is refused, the opposite
-- verdict replaces the row (and the model's counts are reversed first).
-- Rows go with the report when it is purged.
CREATE TABLE learned (
    report_id  TEXT PRIMARY KEY NOT NULL,
    verdict    TEXT NOT NULL CHECK (verdict IN ('spam', 'ham')),
    actor      TEXT NOT NULL,
    reason     TEXT NOT NULL,
    learned_at INTEGER NOT NULL
);
CREATE INDEX learned_at ON learned (learned_at);
