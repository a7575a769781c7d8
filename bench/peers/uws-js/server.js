// uWebSockets.js peer for uringcast-bench: `/echo` WebSocket echo, `/ws?topic=T` WebSocket
// subscriber (uWS pub/sub: ws.subscribe + app.publish), `/sse?topic=T` SSE subscriber
// (writeHeader + write, never end), `POST /publish?topic=T` sends the body as it is to both.
// Usage: node server.js PORT   (listens on 127.0.0.1:PORT)
"use strict";
const uWS = require("uWebSockets.js");

const port = Number(process.argv[2] || 9004);
const sseByTopic = new Map(); // topic -> Set of HttpResponse
const SSE_PREFIX = Buffer.from("data: ");
const SSE_SUFFIX = Buffer.from("\n\n");
const wsOptions = {
  compression: uWS.DISABLED,
  maxPayloadLength: 16 * 1024 * 1024,
  maxBackpressure: 64 * 1024 * 1024,
  idleTimeout: 120,
};

const app = uWS.App();
app.ws("/echo", {
  ...wsOptions,
  message: (ws, message, isBinary) => {
    ws.send(message, isBinary);
  },
});
app.ws("/ws", {
  ...wsOptions,
  upgrade: (res, req, context) => {
    res.upgrade(
      { topic: req.getQuery("topic") || "" },
      req.getHeader("sec-websocket-key"),
      req.getHeader("sec-websocket-protocol"),
      req.getHeader("sec-websocket-extensions"),
      context,
    );
  },
  open: (ws) => {
    ws.subscribe(ws.getUserData().topic);
  },
});
app.get("/sse", (res, req) => {
  const topic = req.getQuery("topic") || "";
  let set = sseByTopic.get(topic);
  if (!set) sseByTopic.set(topic, (set = new Set()));
  set.add(res);
  res.onAborted(() => set.delete(res));
  res.cork(() => {
    res.writeHeader("Content-Type", "text/event-stream");
    res.writeHeader("Cache-Control", "no-cache");
    // A first comment sends the response head at once.
    res.write(": ok\n\n");
  });
});
app.post("/publish", (res, req) => {
  const topic = req.getQuery("topic") || "";
  const chunks = [];
  let aborted = false;
  res.onAborted(() => {
    aborted = true;
  });
  res.onData((chunk, isLast) => {
    // uWS reuses the chunk's memory after the callback: copy it.
    chunks.push(Buffer.from(chunk.slice(0)));
    if (!isLast) return;
    const body = Buffer.concat(chunks);
    app.publish(topic, body, false);
    const set = sseByTopic.get(topic);
    if (set && set.size) {
      const event = Buffer.concat([SSE_PREFIX, body, SSE_SUFFIX]);
      for (const r of set) r.cork(() => r.write(event));
    }
    if (!aborted) res.cork(() => res.end('{"ok":true}'));
  });
});
app.any("/*", (res) => {
  res.writeStatus("404 Not Found").end("not found");
});
app.listen("127.0.0.1", port, (token) => {
  if (!token) {
    console.error("uws-js: cannot listen on " + port);
    process.exit(1);
  }
  console.log("uws-js listening on " + port);
});
