-- Several messages on one milter connection, the way Postfix reuses it:
-- ABORT after every end-of-message, a double ABORT, an RSET (ABORT) in the
-- middle of a transaction, clean and GTUBE messages mixed. Every message
-- gets its own verdict and its own envelope (nothing leaks over).
dofile(dir .. "/common.lua")

run("multi", function()
  local conn = open_postfix_like()
  step("conninfo", mt.conninfo(conn, "client.example", "192.0.2.10"))
  step("helo", mt.helo(conn, "client.example"))
  local before = #scored_events()

  local plan = {
    { from = "a1@example.com", rcpts = { "r1@example.net", "r2@example.net", "r3@example.net" }, login = "alice", qid = "QID0001", spam = false },
    { from = "a2@example.com", rcpts = { "r1@example.net" }, qid = nil, spam = true },
    { from = "a3@example.com", rcpts = { "r1@example.net", "r2@example.net" }, login = "bob", qid = "QID0003", spam = false },
    { from = "a4@example.com", rcpts = { "r1@example.net", "r4@example.net" }, login = "carol", qid = "QID0004", spam = true },
    { from = "a5@example.com", rcpts = { "r5@example.net" }, qid = nil, spam = false },
  }
  for i, m in ipairs(plan) do
    if i == 3 then
      -- RSET in the middle of a transaction: Postfix sends ABORT.
      step("macro MAIL", mt.macro(conn, SMFIC_MAIL, "{mail_addr}", "rset@example.com"))
      step("mailfrom", mt.mailfrom(conn, "<rset@example.com>"))
      expect_reply(conn, SMFIR_CONTINUE, "MAIL before RSET")
      step("rcptto", mt.rcptto(conn, "<x@example.net>"))
      expect_reply(conn, SMFIR_CONTINUE, "RCPT before RSET")
      step("abort (RSET)", mt.abort(conn))
    end
    local body = "Message " .. i .. ".\r\n"
    if m.spam then body = body .. GTUBE .. "\r\n" end
    m.headers = plain_headers(m.from, m.rcpts[1], "Message " .. i)
    m.body = body
    send_message(conn, m)
    if m.spam then
      expect_reply(conn, SMFIR_REPLYCODE, "message " .. i .. " (GTUBE)")
    else
      expect_reply(conn, SMFIR_ACCEPT, "message " .. i .. " (clean)")
      check(mt.eom_check(conn, MT_HDRADD, "X-Outscore-Score"), "message " .. i .. ": no score header")
    end
    -- Postfix sends ABORT after every end-of-message; sometimes twice.
    step("abort", mt.abort(conn))
    if i % 2 == 0 then step("second abort", mt.abort(conn)) end
  end

  local events = scored_events()
  check(#events - before == #plan,
    string.format("%d messages scored, want %d (the RSET one must not be)", #events - before, #plan))
  for i, m in ipairs(plan) do
    local e = events[before + i]
    check(e.from == m.from, string.format("message %d: logged from %s, want %s", i, e.from, m.from))
    check(e.rcpts == #m.rcpts, string.format("message %d: logged %d rcpts, want %d", i, e.rcpts, #m.rcpts))
    check(e.login == (m.login or "-"), string.format("message %d: logged login %s", i, e.login))
    check(e.queue_id == (m.qid or "-"), string.format("message %d: logged queue id %s", i, e.queue_id))
    check(e.refused == m.spam, string.format("message %d: refused=%s", i, tostring(e.refused)))
  end
  mt.disconnect(conn)
end)
