#!/usr/bin/env python3
"""Helpers for tests/e2e/run: read outscore's JSON log, and drive Postfix
over SMTP with many messages per session and many sessions at once.

  e2e.py count LOG                     number of "scored" events so far
  e2e.py event LOG KEY=VALUE...        the last scored event matching all
                                       keys (login, from, queue_id), as JSON
  e2e.py load HOST PORT SESSIONS MESSAGES SPAM_EVERY EXPECT_REFUSAL_PREFIX
                                       SESSIONS concurrent SMTP sessions, each
                                       sending MESSAGES messages over its one
                                       connection; every SPAM_EVERY-th carries
                                       GTUBE. Prints a JSON summary; exit 1 if
                                       any reply was not the expected one.
  e2e.py big HOST PORT TAG SPAM        one message with a ~59 KB header field
                                       (one milter packet) and a 3 MB
                                       body, GTUBE at the very end if SPAM=1;
                                       prints the final reply ("250 ..." or
                                       "550 5.7.1 ...").
"""
import json
import smtplib
import sys
import threading
import time

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


def session(host, port, sid, count, spam_every, refusal_prefix, result):
    ok = bad = refused = 0
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
            msg = (
                f"From: <load{sid}@example.com>\r\n"
                f"To: <sink{sid}@load.test>\r\n"
                f"Subject: load {sid}/{i}\r\n"
                f"Message-ID: <load.{sid}.{i}@example.com>\r\n"
                "\r\n" + body
            )
            try:
                smtp.sendmail(f"load{sid}@example.com", [f"sink{sid}@load.test"], msg)
                if spam:
                    bad += 1
                    errors.append(f"session {sid} msg {i}: GTUBE accepted")
                else:
                    ok += 1
            except smtplib.SMTPDataError as e:
                text = e.smtp_error.decode("utf-8", "replace")
                reply = f"{e.smtp_code} {text}"
                if spam and reply.startswith(refusal_prefix):
                    refused += 1
                    texts.add(reply)
                else:
                    bad += 1
                    errors.append(f"session {sid} msg {i}: {reply}")
        smtp.quit()
    except (OSError, smtplib.SMTPException) as e:
        errors.append(f"session {sid}: {type(e).__name__}: {e}")
    result[sid] = (ok, refused, bad, texts, errors)


def cmd_load(host, port, sessions, messages, spam_every, refusal_prefix):
    port, sessions, messages, spam_every = int(port), int(sessions), int(messages), int(spam_every)
    result = {}
    started = time.monotonic()
    threads = [
        threading.Thread(
            target=session,
            args=(host, port, sid, messages, spam_every, refusal_prefix, result),
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
    texts = sorted(set().union(*(r[3] for r in result.values())) if result else set())
    errors = [e for r in result.values() for e in r[4]]
    if len(result) != sessions:
        errors.append(f"{sessions - len(result)} sessions did not finish")
    summary = {
        "sessions": sessions,
        "messages": sessions * messages,
        "accepted": accepted,
        "refused": refused,
        "unexpected": bad,
        "refusal_texts": texts,
        "seconds": round(elapsed, 2),
        "errors": errors[:10],
    }
    print(json.dumps(summary))
    want_refused = sessions * (messages // spam_every if spam_every else 0)
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


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    cmd, args = argv[1], argv[2:]
    if cmd == "count":
        return cmd_count(*args) or 0
    if cmd == "event":
        return cmd_event(*args)
    if cmd == "big":
        return cmd_big(*args)
    if cmd == "load":
        return cmd_load(*args)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
