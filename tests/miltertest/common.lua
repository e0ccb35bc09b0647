-- Shared helpers for the miltertest scripts. Loaded with
--   dofile(dir .. "/common.lua")
-- Globals given by the runner (miltertest -D): socket (miltertest socket
-- syntax, e.g. inet:7522@127.0.0.1), logfile (the daemon's JSON log),
-- dir (this directory).

GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"

function fail(msg)
  error("FAIL: " .. msg, 0)
end

-- Run a test body; miltertest swallows Lua errors silently, so print the
-- reason (with a traceback) and exit non-zero ourselves.
function run(name, body)
  local ok, err = xpcall(body, debug.traceback)
  if not ok then
    io.stderr:write(name .. ": " .. tostring(err) .. "\n")
    os.exit(1)
  end
  mt.echo("ok " .. name)
end

function check(cond, msg)
  if not cond then fail(msg) end
end

-- Call a miltertest step; it returns nil on success or an error string.
function step(what, err)
  if err ~= nil then fail(what .. ": " .. tostring(err)) end
end

function expect_reply(conn, want, what)
  local got = mt.getreply(conn)
  if got ~= want then
    fail(string.format("%s: reply %q, want %q", what,
      string.char(math.floor(got)), string.char(math.floor(want))))
  end
end

-- Open a connection and negotiate the way Postfix 3.7 does with
-- milter_protocol = 6: version 6, actions 0x1FF, steps 0x1FFFFF.
-- miltertest reads argument 3 as the steps and argument 4 as the actions.
function open_postfix_like()
  local conn = mt.connect(socket, 20, 0.25)
  check(conn ~= nil, "mt.connect(" .. socket .. ") failed")
  step("negotiate", mt.negotiate(conn, 6, 0x1FFFFF, 0x1FF))
  return conn
end

local function unescape(s)
  return (s:gsub("\\r", "\r"):gsub("\\n", "\n"):gsub('\\"', '"'):gsub("\\\\", "\\"))
end

-- Every "scored" event the daemon has logged so far, oldest first.
-- The daemon writes the line before it sends the verdict, so by the time
-- miltertest has read a reply the line is in the file.
function scored_events()
  local f = io.open(logfile, "r")
  check(f ~= nil, "cannot open daemon log " .. tostring(logfile))
  local events = {}
  for line in f:lines() do
    if line:find('"message":"scored"', 1, true) then
      local e = {}
      e.login = line:match('"login":"([^"]*)"')
      e.from = line:match('"from":"([^"]*)"')
      e.rcpts = tonumber(line:match('"rcpts":(%d+)'))
      e.score = tonumber(line:match('"score":([-%d.eE+]+)'))
      e.refused = line:match('"refused":(%a+)') == "true"
      local r = line:match('"reply":"(.-[^\\])"') or line:match('"reply":"()"')
      e.reply = type(r) == "string" and unescape(r) or ""
      e.queue_id = line:match('"queue_id":"([^"]*)"')
      e.local_submission = line:match('"local":(%a+)') == "true"
      table.insert(events, e)
    end
  end
  f:close()
  return events
end

function last_scored()
  local events = scored_events()
  check(#events > 0, "the daemon logged no 'scored' event")
  return events[#events]
end

-- Split "550 5.7.1 text" into code, enhanced status, text.
function split_reply(reply)
  local code, enh, text = reply:match("^(%d%d%d) (%d%.%d+%.%d+) (.*)$")
  check(code ~= nil, "reply not in 'ddd x.y.z text' form: " .. reply)
  return code, enh, text
end

-- Trim surrounding white space (header values keep their leading space
-- because outscore negotiates SMFIP_HDR_LEADSPC).
function trim(s)
  return (s:gsub("^%s+", ""):gsub("%s+$", ""))
end

-- Send one whole message on an open connection, Postfix-style, and return
-- the end-of-message reply. opts: from, rcpts (list), login, qid, headers
-- (list of {name, value}), body.
function send_message(conn, opts)
  local mail_macros = { "{mail_addr}", opts.from }
  if opts.login then
    table.insert(mail_macros, "{auth_authen}"); table.insert(mail_macros, opts.login)
    table.insert(mail_macros, "{auth_type}"); table.insert(mail_macros, "PLAIN")
  end
  step("macro MAIL", mt.macro(conn, SMFIC_MAIL, table.unpack(mail_macros)))
  step("mailfrom", mt.mailfrom(conn, "<" .. opts.from .. ">", "SIZE=" .. #opts.body))
  expect_reply(conn, SMFIR_CONTINUE, "MAIL FROM")
  for i, rcpt in ipairs(opts.rcpts) do
    -- Postfix knows the queue id only from the 2nd RCPT on.
    if i > 1 and opts.qid then
      step("macro RCPT", mt.macro(conn, SMFIC_RCPT, "i", opts.qid, "{rcpt_addr}", rcpt))
    else
      step("macro RCPT", mt.macro(conn, SMFIC_RCPT, "{rcpt_addr}", rcpt))
    end
    step("rcptto", mt.rcptto(conn, "<" .. rcpt .. ">"))
    expect_reply(conn, SMFIR_CONTINUE, "RCPT TO " .. rcpt)
  end
  step("data", mt.data(conn))
  for _, h in ipairs(opts.headers) do
    step("header " .. h[1], mt.header(conn, h[1], h[2]))
  end
  step("eoh", mt.eoh(conn))
  step("body", mt.bodystring(conn, opts.body))
  step("eom", mt.eom(conn))
  return mt.getreply(conn)
end

function plain_headers(from, to, subject)
  return {
    { "From", "<" .. from .. ">" },
    { "To", "<" .. to .. ">" },
    { "Subject", subject },
    { "Date", "Sun, 22 Nov 2026 10:00:00 +0000" },
    { "Message-ID", "<" .. subject:gsub("%W", "") .. "@example.com>" },
  }
end
