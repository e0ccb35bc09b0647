-- Mail handed to sendmail(1), as Postfix's cleanup passes it to
-- non_smtpd_milters: a faked connect from localhost, port 0, HELO localhost,
-- no login, addresses without angle brackets, and an empty null sender.
-- outscore accepts it, adds its header and marks it a local submission.
dofile(dir .. "/common.lua")

run("local", function()
  local conn = open_postfix_like()
  step("conninfo", mt.conninfo(conn, "localhost", "127.0.0.1"))
  step("helo", mt.helo(conn, "localhost"))

  local senders = { "web@example.com", "" }
  for i, sender in ipairs(senders) do
    step("macro MAIL", mt.macro(conn, SMFIC_MAIL, "i", "LOCALQ" .. i, "{mail_addr}", sender))
    step("mailfrom", mt.mailfrom(conn, sender))
    expect_reply(conn, SMFIR_CONTINUE, "MAIL FROM " .. sender)
    step("rcptto", mt.rcptto(conn, "bob@example.net"))
    expect_reply(conn, SMFIR_CONTINUE, "RCPT TO (no brackets)")
    step("data", mt.data(conn))
    step("header", mt.header(conn, "Subject", "from a web application " .. i))
    step("eoh", mt.eoh(conn))
    step("body", mt.bodystring(conn, "Your order has shipped.\r\n"))
    step("eom", mt.eom(conn))
    expect_reply(conn, SMFIR_ACCEPT, "end of message (local " .. i .. ")")
    check(mt.eom_check(conn, MT_HDRADD, "X-Outscore-Score"), "no score header on local mail " .. i)
    local e = last_scored()
    check(e.local_submission, "message " .. i .. " not logged as a local submission")
    check(e.from == sender, string.format("message %d: logged from %q, want %q", i, e.from, sender))
    check(e.rcpts == 1, "message " .. i .. ": logged rcpts " .. tostring(e.rcpts))
    check(e.queue_id == "LOCALQ" .. i, "message " .. i .. ": logged queue id " .. tostring(e.queue_id))
    check(e.login == "-", "message " .. i .. ": logged login " .. tostring(e.login))
    mt.abort(conn)
  end
  mt.disconnect(conn)
end)
