#!/usr/bin/env python3
"""Helpers for tests/e2e/run: read outscore's JSON log, and drive Postfix
over SMTP with many messages per session and many sessions at once.

  e2e.py count LOG                     number of "scored" events so far
  e2e.py event LOG KEY=VALUE...        the last scored event matching all
                                       keys (login, from, queue_id), as JSON
  e2e.py load HOST PORT SESSIONS MESSAGES SPAM_EVERY EXPECT_REFUSAL_PREFIX [tempfail-ok]
                                       SESSIONS concurrent SMTP sessions, each
                                       sending MESSAGES messages over its one
                                       connection; every SPAM_EVERY-th carries
                                       GTUBE. Prints a JSON summary; exit 1 if
                                       any reply was not the expected one.
                                       With tempfail-ok, 4xx replies (milter
                                       gone) are counted, not errors.
  e2e.py big HOST PORT TAG SPAM        one message with a ~59 KB header field
                                       (one milter packet) and a 3 MB
                                       body, GTUBE at the very end if SPAM=1;
                                       prints the final reply ("250 ..." or
                                       "550 5.7.1 ...").
  e2e.py idle HOST PORT FLAGFILE       one session: a message (must get 250),
                                       then idle until FLAGFILE exists (<=60 s),
                                       then another message; prints the replies
                                       of both, one per line.
  e2e.py hold HOST PORT...             listen on each PORT (another program
                                       holding it, as Rspamd holds 11332 and
                                       11334), accept and close connections
                                       until killed; prints "held P..." once
                                       listening ("busy P" for a port some
                                       other process already holds).
"""
import json
import os
import smtplib
import sys
import threading
import time

RUN = os.urandom(4).hex()
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


def scored(log):
    events = []
    with open(log, encoding="utf-8", errors="replace") as f:
        for line in f:
            if '"message":"scored"' not in line:
                continue
            try:
                e = json.loads(line)
            except ValueError:
                continue
            e["queue_id"] = (e.get("span") or {}).get("queue_id", "-")
            events.append(e)
    return events


def cmd_count(log):
    print(len(scored(log)))


def cmd_event(log, *pairs):
    want = dict(p.split("=", 1) for p in pairs)
    for e in reversed(scored(log)):
        if all(str(e.get(k)) == v for k, v in want.items()):
            print(json.dumps(e))
            return 0
    print(f"no scored event with {want}", file=sys.stderr)
    return 1


def session(host, port, sid, count, spam_every, refusal_prefix, tempfail_ok, result):
    ok = bad = refused = tempfailed = 0
    stages = {}
    texts = set()
    errors = []
    try:
        smtp = smtplib.SMTP(host, port, local_hostname="load.client", timeout=60)
        smtp.ehlo()
        for i in range(count):
            spam = spam_every > 0 and (i + 1) % spam_every == 0
            body = f"Load test message {i} of session {sid}.\r\n"
            if spam:
                body += GTUBE + "\r\n"
            # One sender per message: the daemon enforces per-account volume
            # limits and blocks an account after spam, so a shared sender
            # would turn a load test into a limits test.
            sender = f"load-{RUN}-{sid}-{i}@example.com"
            msg = (
                f"From: <{sender}>\r\n"
                f"To: <sink{sid}@load.test>\r\n"
                f"Subject: load {sid}/{i}\r\n"
                f"Message-ID: <load.{sid}.{i}@example.com>\r\n"
                "\r\n" + body
            )
            try:
                smtp.sendmail(sender, [f"sink{sid}@load.test"], msg)
                if spam:
                    bad += 1
                    errors.append(f"session {sid} msg {i}: GTUBE accepted")
                else:
                    ok += 1
            except (smtplib.SMTPSenderRefused, smtplib.SMTPRecipientsRefused) as e:
                if isinstance(e, smtplib.SMTPRecipientsRefused):
                    code, text = next(iter(e.recipients.values()))
                else:
                    code, text = e.smtp_code, e.smtp_error
                if tempfail_ok and 400 <= code < 500:
                    # The milter is gone: Postfix tempfails the rest of
                    # this session; count them and stop.
                    stage = "rcpt" if isinstance(e, smtplib.SMTPRecipientsRefused) else "mail"
                    stages[stage] = stages.get(stage, 0) + 1
                    tempfailed += count - i
                    break
                else:
                    bad += 1
                    errors.append(f"session {sid} msg {i}: {code} {text!r}")
            except smtplib.SMTPDataError as e:
                text = e.smtp_error.decode("utf-8", "replace")
                reply = f"{e.smtp_code} {text}"
                if tempfail_ok and 400 <= e.smtp_code < 500:
                    stages["data"] = stages.get("data", 0) + 1
                    tempfailed += count - i
                    break
                elif spam and reply.startswith(refusal_prefix):
                    refused += 1
                    texts.add(reply)
                else:
                    bad += 1
                    errors.append(f"session {sid} msg {i}: {reply}")
        smtp.quit()
    except (OSError, smtplib.SMTPException) as e:
        errors.append(f"session {sid}: {type(e).__name__}: {e}")
    result[sid] = (ok, refused, bad, texts, errors, tempfailed, stages)


def cmd_load(host, port, sessions, messages, spam_every, refusal_prefix, mode=""):
    tempfail_ok = mode == "tempfail-ok"
    port, sessions, messages, spam_every = int(port), int(sessions), int(messages), int(spam_every)
    result = {}
    started = time.monotonic()
    threads = [
        threading.Thread(
            target=session,
            args=(host, port, sid, messages, spam_every, refusal_prefix, tempfail_ok, result),
        )
        for sid in range(sessions)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    elapsed = time.monotonic() - started
    accepted = sum(r[0] for r in result.values())
    refused = sum(r[1] for r in result.values())
    bad = sum(r[2] for r in result.values())
    tempfailed = sum(r[5] for r in result.values())
    stages = {}
    for r in result.values():
        for k, v in r[6].items():
            stages[k] = stages.get(k, 0) + v
    texts = sorted(set().union(*(r[3] for r in result.values())) if result else set())
    errors = [e for r in result.values() for e in r[4]]
    if len(result) != sessions:
        errors.append(f"{sessions - len(result)} sessions did not finish")
    summary = {
        "sessions": sessions,
        "messages": sessions * messages,
        "accepted": accepted,
        "refused": refused,
        "tempfailed": tempfailed,
        "tempfail_stages": stages,
        "unexpected": bad,
        "refusal_texts": texts,
        "seconds": round(elapsed, 2),
        "errors": errors[:10],
    }
    print(json.dumps(summary))
    want_refused = sessions * (messages // spam_every if spam_every else 0)
    if tempfail_ok:
        good = not errors and accepted + refused + tempfailed == sessions * messages
    else:
        good = (
            not errors
            and accepted + refused == sessions * messages
            and refused == want_refused
        )
    return 0 if good else 1


def cmd_big(host, port, tag, spam):
    # A folded header: 780 lines of 74 characters, ~59 KB in one field.
    # (Postfix 3.7 silently cut a 90 KB field to ~60 KB, header_size_limit
    # notwithstanding; the last token shows whether it arrived whole.)
    fold = "\r\n\t".join(f"token-{i:05d}-" + "x" * 62 for i in range(780))
    line = "The quick brown fox jumps over the lazy dog, again and again. 0123456789\r\n"
    body = line * (3 * 1024 * 1024 // len(line))
    if spam == "1":
        body += GTUBE + "\r\n"
    msg = (
        f"From: <big-{tag}@example.com>\r\n"
        f"To: <bob@example.net>\r\n"
        f"Subject: big {tag} spam={spam}\r\n"
        f"X-Big-Header: {fold}\r\n"
        "\r\n" + body
    )
    smtp = smtplib.SMTP(host, int(port), local_hostname="big.client", timeout=120)
    try:
        smtp.sendmail(f"big-{tag}@example.com", ["bob@example.net"], msg)
        print("250 accepted")
    except smtplib.SMTPDataError as e:
        print(f"{e.smtp_code} {e.smtp_error.decode('utf-8', 'replace')}")
    smtp.quit()
    return 0


def attempt(smtp, sender, text):
    try:
        smtp.sendmail(sender, ["bob@example.net"], text)
        return "250 accepted"
    except smtplib.SMTPSenderRefused as e:
        return f"{e.smtp_code} {e.smtp_error.decode('utf-8', 'replace')}"
    except smtplib.SMTPRecipientsRefused as e:
        code, text = next(iter(e.recipients.values()))
        return f"{code} {text.decode('utf-8', 'replace')}"
    except smtplib.SMTPDataError as e:
        return f"{e.smtp_code} {e.smtp_error.decode('utf-8', 'replace')}"


def cmd_idle(host, port, flag):
    import os

    smtp = smtplib.SMTP(host, int(port), local_hostname="idle.client", timeout=60)
    msg = "From: <idle@example.com>\r\nSubject: idle\r\n\r\nhello\r\n"
    print(attempt(smtp, "idle@example.com", msg), flush=True)
    for _ in range(600):
        if os.path.exists(flag):
            break
        time.sleep(0.1)
    print(attempt(smtp, "idle@example.com", msg), flush=True)
    try:
        smtp.quit()
    except smtplib.SMTPException:
        pass
    return 0


def cmd_hold(host, *ports):
    import selectors
    import socket

    sel = selectors.DefaultSelector()
    held, busy = [], []
    for port in ports:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # Bind despite connections of an earlier run in TIME_WAIT; a port
        # another process listens on still fails (and is reported busy).
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, int(port)))
        except OSError:
            s.close()
            busy.append(port)
            continue
        s.listen(16)
        sel.register(s, selectors.EVENT_READ)
        held.append(port)
    print("held " + " ".join(held) + "".join(f"\nbusy {p}" for p in busy), flush=True)
    while True:
        for key, _ in sel.select():
            conn, _ = key.fileobj.accept()
            conn.close()


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    cmd, args = argv[1], argv[2:]
    if cmd == "count":
        return cmd_count(*args) or 0
    if cmd == "event":
        return cmd_event(*args)
    if cmd == "idle":
        return cmd_idle(*args)
    if cmd == "big":
        return cmd_big(*args)
    if cmd == "load":
        return cmd_load(*args)
    if cmd == "hold":
        return cmd_hold(*args)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
