//! Message analysis: raw RFC 5322 bytes → parsed facts for the rules. Never
//! fails: a broken message is parsed as well as possible. No I/O.
