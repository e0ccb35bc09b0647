-- A GTUBE message is refused at end-of-message with a custom reply
-- (SMFIR_REPLYCODE, not a bare SMFIR_REJECT): 550 5.7.1 and the text the
-- daemon logged for that verdict, byte for byte.
dofile(dir .. "/common.lua")

run("reject", function()
  local conn = open_postfix_like()
  step("conninfo", mt.conninfo(conn, "client.example", "192.0.2.10"))
  local reply = send_message(conn, {
    from = "spammer@example.com",
    rcpts = { "victim@example.net" },
    login = "spammer",
    headers = plain_headers("spammer@example.com", "victim@example.net", "GTUBE"),
    body = "This is the GTUBE test.\r\n" .. GTUBE .. "\r\n",
  })
  expect_reply(conn, SMFIR_REPLYCODE, "end of message (GTUBE)")
  local e = last_scored()
  check(e.refused, "GTUBE message not logged as refused")
  check(e.login == "spammer", "logged login " .. tostring(e.login))
  local code, enh, text = split_reply(e.reply)
  check(code == "550", "logged reply code " .. code)
  check(enh == "5.7.1", "logged enhanced status " .. enh)
  check(mt.eom_check(conn, MT_SMTPREPLY, code, enh, text),
    "the reply on the wire is not the logged one: " .. e.reply)
  check(not mt.eom_check(conn, MT_SMTPREPLY, code, enh, text .. "x"),
    "MT_SMTPREPLY check is not exact")
  check(not mt.eom_check(conn, MT_HDRADD), "a refused message got headers added")
  mt.abort(conn)
  mt.disconnect(conn)
end)
