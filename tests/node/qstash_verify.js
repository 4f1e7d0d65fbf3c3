// The official TypeScript receiver as a long-lived oracle: one JSON case per input line
// ({signature, body, url, current, next, tolerance}), one verdict per output line.
const { Receiver } = require("@upstash/qstash");
const lines = require("readline").createInterface({ input: process.stdin });
const queue = [];
let busy = false;

async function drain() {
  if (busy) return;
  busy = true;
  while (queue.length) {
    const c = JSON.parse(queue.shift());
    const receiver = new Receiver({ currentSigningKey: c.current, nextSigningKey: c.next });
    let verdict;
    try {
      await receiver.verify({ signature: c.signature, body: c.body, url: c.url,
                              clockTolerance: c.tolerance });
      verdict = { ok: true };
    } catch (error) {
      verdict = { ok: false, crash: error.name !== "SignatureError", error: String(error.message).slice(0, 200) };
    }
    process.stdout.write(JSON.stringify(verdict) + "\n");
  }
  busy = false;
}
lines.on("line", (line) => { queue.push(line); drain(); });
