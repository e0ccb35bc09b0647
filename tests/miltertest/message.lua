-- One full message, every step Postfix sends (connect, helo, macros,
-- MAIL with ESMTP args, two RCPTs, DATA, headers, body), accepted with
-- outscore's score header; the daemon saw the envelope as sent.
dofile(dir .. "/common.lua")

run("message", function()
  local conn = open_postfix_like()
  step("macro CONNECT", mt.macro(conn, SMFIC_CONNECT, "j", "mta.example", "{daemon_name}", "smtpd"))
  step("conninfo", mt.conninfo(conn, "client.example", "192.0.2.10"))
  step("helo", mt.helo(conn, "client.example"))
  local body = "Hello Bob,\r\n\r\nthe minutes of today's meeting are below.\r\n\r\n-- \r\nAlice\r\n"
  local reply = send_message(conn, {
    from = "alice@example.com",
    rcpts = { "bob@example.net", "carol@example.org" },
    login = "alice",
    qid = "4ABCDEF123",
    headers = plain_headers("alice@example.com", "bob@example.net", "Minutes"),
    body = body,
  })
  expect_reply(conn, SMFIR_ACCEPT, "end of message (clean)")

  local e = last_scored()
  check(e.from == "alice@example.com", "logged sender " .. tostring(e.from))
  check(e.rcpts == 2, "logged rcpts " .. tostring(e.rcpts) .. ", want 2")
  check(e.login == "alice", "logged login " .. tostring(e.login))
  check(e.queue_id == "4ABCDEF123", "logged queue id " .. tostring(e.queue_id))
  check(not e.refused, "clean message logged as refused")
  mt.abort(conn)
  mt.disconnect(conn)
end)
