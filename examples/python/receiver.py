#!/usr/bin/env python3
"""A minimal receiver of Signpost's status notifications, for a practice system.

Signpost sends every change of a referral's Task to the referrer's
`callback_url` as a FHIR Subscriptions (R4 backport) notification: a
`history` Bundle whose first entry is the subscription status, numbering
the event (`event-number`, from 1 for each referrer), then the Task. Each
request is signed with Standard Webhooks (`webhook-id`, `webhook-timestamp`,
`webhook-signature`), with the referrer's `whsec_` secret.

This receiver
  1. verifies the signature with the official `standardwebhooks` library
     (anything else is answered 401 and ignored);
  2. notices a gap in the event numbers (an event it never got, say while
     it was down and Signpost gave up retrying) and recovers the missing
     events from `Subscription/{id}/$events`, with its bearer token;
  3. handles each event once, in number order, and answers 200.

A real receiver keeps what it has seen in its database; this one keeps it in
memory, so after a restart it recovers everything from event 1.

Environment:
  SIGNPOST_WEBHOOK_SECRET  the referrer's signing secret (whsec_...)
  SIGNPOST_TOKEN           the referrer's bearer token (signpost tokens create)
  SIGNPOST_FHIR_BASE       Signpost's FHIR base URL, e.g. http://127.0.0.1:8080/fhir
  PORT                     where to listen on 127.0.0.1 (default 9200)

Run:  pip install -r requirements.txt && python3 receiver.py
"""

import json
import os
import sys
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

WEBHOOK = Webhook(os.environ["SIGNPOST_WEBHOOK_SECRET"])
TOKEN = os.environ["SIGNPOST_TOKEN"]
FHIR_BASE = os.environ["SIGNPOST_FHIR_BASE"].rstrip("/")
PORT = int(os.environ.get("PORT", "9200"))

# Event numbers handled so far, per subscription.
handled = {}


def say(line):
    print(line, flush=True)


def absolute(reference):
    """A reference from a notification, as a URL (Signpost's are relative
    unless it is configured with public_base_url)."""
    if reference.startswith(("http://", "https://")):
        return reference
    return f"{FHIR_BASE}/{reference}"


def events_of(bundle):
    """(subscription, [(event number, focus reference, Task or None)])."""
    status = bundle["entry"][0]["resource"]
    tasks = {
        f"Task/{e['resource']['id']}": e["resource"]
        for e in bundle["entry"][1:]
        if e.get("resource", {}).get("resourceType") == "Task"
    }
    subscription, events = None, []
    for parameter in status["parameter"]:
        if parameter["name"] == "subscription":
            subscription = parameter["valueReference"]["reference"]
        elif parameter["name"] == "notification-event":
            parts = {p["name"]: p for p in parameter["part"]}
            number = int(parts["event-number"]["valueString"])
            focus = parts.get("focus", {}).get("valueReference", {}).get("reference", "")
            key = "Task/" + focus.rsplit("Task/", 1)[-1] if "Task/" in focus else focus
            events.append((number, key, tasks.get(key)))
    return subscription, events


def recover(subscription, first, last):
    """Fetch events first..last (inclusive) with $events."""
    query = urllib.parse.urlencode({"eventsSinceNumber": first, "eventsUntilNumber": last})
    request = urllib.request.Request(
        f"{absolute(subscription)}/$events?{query}",
        headers={"Authorization": f"Bearer {TOKEN}", "Accept": "application/fhir+json"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return events_of(json.load(answer))[1]


def handle(subscription, number, focus, task, how):
    seen = handled.setdefault(subscription, set())
    if number in seen:
        return  # a redelivery (delivery is at least once)
    seen.add(number)
    status = task["status"] if task else "(no longer held)"
    say(f"{how} event {number}: {focus} {status}")


def on_notification(bundle):
    subscription, events = events_of(bundle)
    seen = handled.setdefault(subscription, set())
    for number, focus, task in events:
        missing = [n for n in range(1, number) if n not in seen]
        if missing:
            say(f"gap: events {missing[0]}..{missing[-1]} missed; recovering with $events")
            for got in recover(subscription, missing[0], missing[-1]):
                handle(subscription, *got, "recovered")
        handle(subscription, number, focus, task, "received")


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        try:
            WEBHOOK.verify(body, dict(self.headers))
        except WebhookVerificationError:
            say("refused: the signature does not verify")
            self.send_response(401)
            self.end_headers()
            return
        on_notification(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass  # one line per event is printed instead


if __name__ == "__main__":
    server = HTTPServer(("127.0.0.1", PORT), Receiver)
    say(f"listening on 127.0.0.1:{server.server_address[1]}")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        sys.exit(0)
