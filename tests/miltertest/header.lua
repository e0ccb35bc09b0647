-- Header addition: an accepted message gets X-Outscore-Score added
-- (SMFIR_ADDHEADER) carrying the score the daemon logged for it.
dofile(dir .. "/common.lua")

run("header", function()
  local conn = open_postfix_like()
  step("conninfo", mt.conninfo(conn, "client.example", "192.0.2.10"))
  send_message(conn, {
    from = "alice@example.com",
    rcpts = { "bob@example.net" },
    headers = plain_headers("alice@example.com", "bob@example.net", "Header test"),
    body = "Just a short note.\r\n",
  })
  expect_reply(conn, SMFIR_ACCEPT, "end of message")
  check(mt.eom_check(conn, MT_HDRADD, "X-Outscore-Score"), "X-Outscore-Score not added")
  check(not mt.eom_check(conn, MT_HDRCHANGE), "a header was changed")
  check(not mt.eom_check(conn, MT_HDRDELETE), "a header was deleted")
  check(not mt.eom_check(conn, MT_BODYCHANGE), "the body was changed")
  local value = mt.getheader(conn, "X-Outscore-Score", 0)
  check(value ~= nil, "mt.getheader(X-Outscore-Score) returned nil")
  local score = tonumber(trim(value))
  check(score ~= nil, "X-Outscore-Score is not a number: " .. value)
  local e = last_scored()
  check(math.abs(score - e.score) < 0.005,
    string.format("header score %s, logged score %s", value, tostring(e.score)))
  mt.abort(conn)
  mt.disconnect(conn)
end)
