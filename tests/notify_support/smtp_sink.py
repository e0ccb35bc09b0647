"""A real SMTP receiver for the notification tests: Python's smtpd server
on 127.0.0.1:PORT, printing one JSON line per received message
(envelope sender, recipients, data) and "ready" once listening."""
import json
import sys
import warnings

warnings.simplefilter("ignore", DeprecationWarning)
import asyncore  # noqa: E402  (Python <= 3.11)
import smtpd  # noqa: E402


class Sink(smtpd.SMTPServer):
    def process_message(self, peer, mailfrom, rcpttos, data, **kwargs):
        if isinstance(data, bytes):
            data = data.decode("utf-8", "replace")
        print(json.dumps({"from": mailfrom, "to": rcpttos, "data": data}), flush=True)


port = int(sys.argv[1])
Sink(("127.0.0.1", port), None, decode_data=False)
print("ready", flush=True)
asyncore.loop(timeout=0.2)
