// A minimal receiver of Signpost's status notifications, for a practice
// system (the Node.js twin of ../python/receiver.py; read that for the
// why).
//
// It verifies each request's Standard Webhooks signature with the official
// `standardwebhooks` library (401 otherwise), notices a gap in the event
// numbers and recovers the missing events from Subscription/{id}/$events,
// and handles each event once. State is in memory; a real receiver keeps it
// in its database.
//
// Environment: SIGNPOST_WEBHOOK_SECRET (whsec_...), SIGNPOST_TOKEN (bearer),
// SIGNPOST_FHIR_BASE (e.g. http://127.0.0.1:8080/fhir), PORT (default 9200).
// Run: npm ci && node receiver.mjs

import http from "node:http";
import { Webhook, WebhookVerificationError } from "standardwebhooks";

const webhook = new Webhook(process.env.SIGNPOST_WEBHOOK_SECRET);
const token = process.env.SIGNPOST_TOKEN;
const fhirBase = process.env.SIGNPOST_FHIR_BASE.replace(/\/+$/, "");
const port = Number(process.env.PORT ?? "9200");

// Event numbers handled so far, per subscription.
const handled = new Map();

const say = (line) => process.stdout.write(`${line}\n`);

// Signpost's references are relative unless it has public_base_url.
const absolute = (reference) =>
  /^https?:\/\//.test(reference) ? reference : `${fhirBase}/${reference}`;

function eventsOf(bundle) {
  const [status, ...rest] = bundle.entry;
  const tasks = new Map(
    rest
      .filter((e) => e.resource?.resourceType === "Task")
      .map((e) => [`Task/${e.resource.id}`, e.resource]),
  );
  let subscription = null;
  const events = [];
  for (const parameter of status.resource.parameter) {
    if (parameter.name === "subscription") {
      subscription = parameter.valueReference.reference;
    } else if (parameter.name === "notification-event") {
      const parts = Object.fromEntries(parameter.part.map((p) => [p.name, p]));
      const number = Number(parts["event-number"].valueString);
      const focus = parts.focus?.valueReference?.reference ?? "";
      const key = focus.includes("Task/") ? `Task/${focus.split("Task/").pop()}` : focus;
      events.push({ number, focus: key, task: tasks.get(key) ?? null });
    }
  }
  return { subscription, events };
}

async function recover(subscription, first, last) {
  const query = new URLSearchParams({ eventsSinceNumber: first, eventsUntilNumber: last });
  const answer = await fetch(`${absolute(subscription)}/$events?${query}`, {
    headers: { Authorization: `Bearer ${token}`, Accept: "application/fhir+json" },
  });
  if (!answer.ok) throw new Error(`$events answered ${answer.status}`);
  return eventsOf(await answer.json()).events;
}

function handle(subscription, { number, focus, task }, how) {
  const seen = handled.get(subscription);
  if (seen.has(number)) return; // a redelivery (delivery is at least once)
  seen.add(number);
  say(`${how} event ${number}: ${focus} ${task ? task.status : "(no longer held)"}`);
}

async function onNotification(bundle) {
  const { subscription, events } = eventsOf(bundle);
  if (!handled.has(subscription)) handled.set(subscription, new Set());
  const seen = handled.get(subscription);
  for (const event of events) {
    const missing = [];
    for (let n = 1; n < event.number; n++) if (!seen.has(n)) missing.push(n);
    if (missing.length > 0) {
      const [first, last] = [missing[0], missing[missing.length - 1]];
      say(`gap: events ${first}..${last} missed; recovering with $events`);
      for (const got of await recover(subscription, first, last)) {
        handle(subscription, got, "recovered");
      }
    }
    handle(subscription, event, "received");
  }
}

// One request at a time, so events are handled in order.
let queue = Promise.resolve();

const server = http.createServer((request, response) => {
  const chunks = [];
  request.on("data", (chunk) => chunks.push(chunk));
  request.on("end", () => {
    queue = queue.then(async () => {
      const body = Buffer.concat(chunks).toString("utf8");
      try {
        webhook.verify(body, request.headers);
      } catch (e) {
        if (!(e instanceof WebhookVerificationError)) throw e;
        say("refused: the signature does not verify");
        response.writeHead(401).end();
        return;
      }
      try {
        await onNotification(JSON.parse(body));
        response.writeHead(200).end();
      } catch (e) {
        say(`failed: ${e.message}`);
        response.writeHead(500).end(); // Signpost retries
      }
    });
  });
});

server.listen(port, "127.0.0.1", () => {
  say(`listening on 127.0.0.1:${server.address().port}`);
});
