#!/usr/bin/env node
// Submits one task to a LoopDeployment's queue and waits for its result
// record or its dead letter, following docs/wire-format.md.
//
//   NATS_URL=nats://127.0.0.1:4222 LOOP_STREAM=LOOP_shop_mail LOOP_SUBJECT_PREFIX=loops.shop.mail \
//     node producer.js --kind email --payload '{"to":"a@example.com"}' [--id ID] [--priority P] [--timeout 30s]
//
// The stream is spec.queue.nats.stream of the LoopDeployment <ns>/<name>,
// default LOOP_<ns>_<name>; the subject prefix is loops.<ns>.<name>.
// It prints "submitted <id> …", then "result <json>" and exits 0, or
// "failed <json>" and exits 1; 2 for bad arguments, 3 on timeout.
"use strict";

const crypto = require("node:crypto");
const { connect, headers } = require("nats");

function usage(msg) {
  process.stderr.write(`producer: ${msg}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const o = {
    url: process.env.NATS_URL || "nats://127.0.0.1:4222",
    stream: process.env.LOOP_STREAM,
    prefix: process.env.LOOP_SUBJECT_PREFIX,
    priority: "default",
    payload: "",
    timeoutMs: 30000,
  };
  const flags = { "--nats-url": "url", "--stream": "stream", "--subject-prefix": "prefix", "--kind": "kind",
    "--priority": "priority", "--id": "id", "--payload": "payload", "--timeout": "timeout" };
  for (let i = 0; i < argv.length; i += 2) {
    const key = flags[argv[i]];
    if (!key || i + 1 >= argv.length) usage(`unknown flag or missing value: ${argv[i]}`);
    o[key] = argv[i + 1];
  }
  if (o.timeout !== undefined) {
    const m = /^(\d+)(ms|s)$/.exec(o.timeout);
    if (!m) usage(`--timeout ${o.timeout}: want a number with ms or s`);
    o.timeoutMs = Number(m[1]) * (m[2] === "s" ? 1000 : 1);
  }
  if (!o.kind) usage("--kind is required");
  if (!o.stream || !o.prefix) usage("--stream and --subject-prefix (or LOOP_STREAM and LOOP_SUBJECT_PREFIX) are required");
  if (!/^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/.test(o.priority)) usage(`--priority ${o.priority}: want lower case letters, digits and '-'`);
  o.id = o.id || "t-" + crypto.randomBytes(12).toString("hex");
  return o;
}

// token is the subject token of a task id: unpadded base64url.
const token = (id) => Buffer.from(id, "utf8").toString("base64url");

// lastFor returns the last message of subject in stream, or null.
async function lastFor(jsm, stream, subject) {
  try {
    return await jsm.streams.getMessage(stream, { last_by_subj: subject });
  } catch (err) {
    if (err.api_error && err.api_error.err_code === 10037) return null; // no message found
    throw err;
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const nc = await connect({ servers: o.url, name: "loop-node-producer" });
  try {
    const js = nc.jetstream();
    const h = headers();
    h.set("Loop-Kind", o.kind);
    h.set("Loop-Task-Id", o.id);
    // msgID sets Nats-Msg-Id: the stream drops a resubmission within its
    // duplicate window; expect.streamName makes a wrong stream an error.
    const ack = await js.publish(`${o.prefix}.tasks.${o.priority}`, Buffer.from(o.payload, "utf8"), {
      headers: h, msgID: o.id, expect: { streamName: o.stream },
    });
    console.log(`submitted ${o.id} as sequence ${ack.seq}${ack.duplicate ? " (duplicate: the queue already had it)" : ""}`);

    const jsm = await nc.jetstreamManager();
    const resultSubject = `${o.prefix}.results.${token(o.id)}`;
    const deadSubject = `${o.prefix}.dead.${token(o.id)}`;
    const deadline = Date.now() + o.timeoutMs;
    for (let pause = 50; Date.now() < deadline; pause = Math.min(pause * 2, 500)) {
      const r = await lastFor(jsm, `${o.stream}_RESULTS`, resultSubject);
      if (r) {
        console.log("result " + JSON.stringify({
          id: r.header.get("Loop-Task-Id"), kind: r.header.get("Loop-Kind"), priority: r.header.get("Loop-Priority"),
          attempts: Number(r.header.get("Loop-Attempts")), duration: r.header.get("Loop-Duration"),
          worker: r.header.get("Loop-Worker"), finished: r.time.toISOString(),
        }));
        return 0;
      }
      const d = await lastFor(jsm, `${o.stream}_DEAD`, deadSubject);
      if (d) {
        console.log("failed " + JSON.stringify({
          id: d.header.get("Loop-Task-Id"), kind: d.header.get("Loop-Kind"), error: d.header.get("Loop-Error"),
          attempts: Number(d.header.get("Loop-Attempts")), failedAt: d.header.get("Loop-Failed-At"),
        }));
        return 1;
      }
      await sleep(pause);
    }
    process.stderr.write(`producer: no result for task ${o.id} after ${o.timeoutMs} ms\n`);
    return 3;
  } finally {
    await nc.drain();
  }
}

main().then((code) => process.exit(code), (err) => {
  process.stderr.write(`producer: ${err.message}\n`);
  process.exit(1);
});
