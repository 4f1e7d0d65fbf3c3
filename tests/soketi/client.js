// A pusher-js client: joins a presence channel and a private channel (authorized locally with
// the app secret, as an auth endpoint would), sends a client event, then leaves. Each step
// makes soketi send a webhook: member_added, channel_occupied, client_event, member_removed,
// channel_vacated.
const crypto = require("crypto");
const Pusher = require("pusher-js");
const [key, secret, port] = process.argv.slice(2);

const sign = (text) => crypto.createHmac("sha256", secret).update(text).digest("hex");
const pusher = new Pusher(key, {
  cluster: "local", wsHost: "127.0.0.1", wsPort: Number(port), forceTLS: false,
  enabledTransports: ["ws"], disableStats: true,
  channelAuthorization: {
    customHandler: ({ socketId, channelName }, callback) => {
      if (channelName.startsWith("presence-")) {
        const channelData = JSON.stringify({ user_id: 7, user_info: { name: "Zo\u00eb \ud83d\udc4b" } });
        callback(null, { auth: `${key}:${sign(`${socketId}:${channelName}:${channelData}`)}`,
                         channel_data: channelData });
      } else {
        callback(null, { auth: `${key}:${sign(`${socketId}:${channelName}`)}` });
      }
    },
  },
});
const wait = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const subscribed = (channel) => new Promise((resolve, reject) => {
  channel.bind("pusher:subscription_succeeded", resolve);
  channel.bind("pusher:subscription_error", reject);
});

(async () => {
  const presence = pusher.subscribe("presence-room-7");
  const room = pusher.subscribe("private-room");
  await Promise.all([subscribed(presence), subscribed(room)]);
  room.trigger("client-typing", { text: "h\u00e9llo \u2028 \ud83d\udc4b", ratio: 1e-7, n: 0.000025 });
  await wait(1500);
  pusher.unsubscribe("presence-room-7");
  pusher.unsubscribe("private-room");
  await wait(1500);
  pusher.disconnect();
  process.exit(0);
})().catch((error) => { console.error(error); process.exit(1); });
