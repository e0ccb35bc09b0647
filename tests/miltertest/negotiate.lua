-- Option negotiation as Postfix 3.7 offers it (v6, actions 0x1FF, steps
-- 0x1FFFFF), then a narrower offer: outscore must ask only for what it
-- uses and never for more than the MTA offers.
dofile(dir .. "/common.lua")

run("negotiate", function()
  local conn = open_postfix_like()
  -- What an outbound scorer needs.
  check(mt.test_action(conn, SMFIF_ADDHDRS), "ADDHDRS not requested")
  check(mt.test_action(conn, SMFIF_CHGHDRS), "CHGHDRS not requested")
  check(mt.test_action(conn, SMFIF_QUARANTINE), "QUARANTINE not requested")
  -- What it must not ask for.
  check(not mt.test_action(conn, SMFIF_CHGBODY), "CHGBODY requested")
  check(not mt.test_action(conn, SMFIF_ADDRCPT), "ADDRCPT requested")
  check(not mt.test_action(conn, SMFIF_DELRCPT), "DELRCPT requested")
  check(not mt.test_action(conn, SMFIF_CHGFROM), "CHGFROM requested")
  -- It must see every stage it scores on: connect, mail, rcpt, headers, body.
  check(not mt.test_option(conn, SMFIP_NOCONNECT), "NOCONNECT set")
  check(not mt.test_option(conn, SMFIP_NOMAIL), "NOMAIL set")
  check(not mt.test_option(conn, SMFIP_NORCPT), "NORCPT set")
  check(not mt.test_option(conn, SMFIP_NOHDRS), "NOHDRS set")
  check(not mt.test_option(conn, SMFIP_NOBODY), "NOBODY set")
  -- Steps it answers must not be marked no-reply (MAIL and RCPT can refuse).
  check(not mt.test_option(conn, SMFIP_NR_MAIL), "NR_MAIL set: MAIL could not be refused")
  check(not mt.test_option(conn, SMFIP_NR_RCPT), "NR_RCPT set: RCPT could not be refused")
  -- DATA is answered: unanswered, Postfix's next packet waits ~40 ms for
  -- the delayed ACK (Nagle) on every message over TCP.
  check(not mt.test_option(conn, SMFIP_NR_DATA), "NR_DATA set: costs ~40 ms per message over TCP")
  -- Original header spacing (DKIM-safe), no reply per header.
  check(mt.test_option(conn, SMFIP_HDR_LEADSPC), "HDR_LEADSPC not requested")
  check(mt.test_option(conn, SMFIP_NR_HDR), "NR_HDR not requested")

  -- The negotiated connection works: a CONNECT and HELO go through.
  step("conninfo", mt.conninfo(conn, "client.example", "192.0.2.10"))
  step("helo", mt.helo(conn, "client.example"))
  step("macro MAIL", mt.macro(conn, SMFIC_MAIL, "{mail_addr}", "a@example.com"))
  step("mailfrom", mt.mailfrom(conn, "<a@example.com>"))
  expect_reply(conn, SMFIR_CONTINUE, "MAIL FROM after negotiation")
  mt.abort(conn)
  mt.disconnect(conn)

  -- An MTA that offers only ADDHDRS (and a smaller step set): the reply must
  -- be a subset of the offer or Postfix would drop the milter.
  local conn2 = mt.connect(socket, 20, 0.25)
  check(conn2 ~= nil, "second connect failed")
  step("narrow negotiate", mt.negotiate(conn2, 6, 0x7F, SMFIF_ADDHDRS))
  check(mt.test_action(conn2, SMFIF_ADDHDRS), "ADDHDRS missing from narrow offer")
  check(not mt.test_action(conn2, SMFIF_CHGHDRS), "CHGHDRS requested though not offered")
  check(not mt.test_action(conn2, SMFIF_QUARANTINE), "QUARANTINE requested though not offered")
  check(not mt.test_option(conn2, SMFIP_NR_HDR), "NR_HDR requested though not offered")
  check(not mt.test_option(conn2, SMFIP_HDR_LEADSPC), "HDR_LEADSPC requested though not offered")
  mt.disconnect(conn2)
end)
