// How the official TypeScript SDK and Node read a callback's base64 fields: one JSON string
// (the base64 text) per input line, one JSON answer per output line:
//   atob: the bytes JavaScript's atob (WHATWG forgiving-base64) decodes, as hex, or null when
//         it refuses the text;
//   sdk: @upstash/qstash's exported decodeBase64 (atob + TextDecoder): the body as text;
//   latin1: atob's result used as text, the naive decoding QStash's docs show, which garbles
//           non-ASCII (qstash-js#88).
const { decodeBase64 } = require("@upstash/qstash");
const lines = require("readline").createInterface({ input: process.stdin });
lines.on("line", (line) => {
  const text = JSON.parse(line);
  let binary = null;
  try {
    binary = atob(text);
  } catch (error) {
    binary = null;
  }
  const answer = {
    atob: binary === null ? null : Buffer.from(binary, "latin1").toString("hex"),
    sdk: binary === null ? null : decodeBase64(text),
    latin1: binary,
  };
  process.stdout.write(JSON.stringify(answer) + "\n");
});
