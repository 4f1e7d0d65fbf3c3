// The soketi oracle: for each input line [secret, jsonText], parse the JSON as soketi holds
// the payload, then do exactly what soketi's webhook sender does: JSON.stringify(payload) and
// createHmac('sha256', secret).update(data).digest('hex'). Writes [stringified as base64 UTF-8,
// signature] per line. One process serves every case.
const crypto = require("crypto");
const lines = require("readline").createInterface({ input: process.stdin });
lines.on("line", (line) => {
  const [secret, text] = JSON.parse(line);
  const data = JSON.stringify(JSON.parse(text));
  const signature = crypto.createHmac("sha256", secret).update(data).digest("hex");
  process.stdout.write(JSON.stringify([Buffer.from(data, "utf8").toString("base64"), signature]) + "\n");
});
