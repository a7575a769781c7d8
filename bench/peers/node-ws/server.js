// Node `ws` peer for uringcast-bench: `/echo` WebSocket echo, `/ws?topic=T` WebSocket
// subscriber, `/sse?topic=T` SSE subscriber (node:http response kept open),
// `POST /publish?topic=T` sends the body as it is to every subscriber of T.
// Usage: node server.js PORT   (listens on 127.0.0.1:PORT)
"use strict";
const http = require("node:http");
const { WebSocketServer } = require("ws");

const port = Number(process.argv[2] || 9005);
const topics = new Map(); // topic -> { ws: Set<WebSocket>, sse: Set<ServerResponse> }
function subscribers(topic) {
  let t = topics.get(topic);
  if (!t) topics.set(topic, (t = { ws: new Set(), sse: new Set() }));
  return t;
}

const wss = new WebSocketServer({
  noServer: true,
  perMessageDeflate: false,
  maxPayload: 16 * 1024 * 1024,
});

const server = http.createServer((req, res) => {
  const url = new URL(req.url, "http://localhost");
  const topic = url.searchParams.get("topic") || "";
  if (url.pathname === "/sse" && req.method === "GET") {
    const set = subscribers(topic).sse;
    // A first comment sends the response head at once.
    res.writeHead(200, { "Content-Type": "text/event-stream", "Cache-Control": "no-cache" });
    res.write(": ok\n\n");
    set.add(res);
    res.on("close", () => set.delete(res));
  } else if (url.pathname === "/publish" && req.method === "POST") {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      const t = topics.get(topic);
      if (t) {
        // A Buffer sent with binary: false goes out as a text frame without re-encoding.
        for (const ws of t.ws) ws.send(body, { binary: false });
        if (t.sse.size) {
          const event = Buffer.concat([Buffer.from("data: "), body, Buffer.from("\n\n")]);
          for (const r of t.sse) r.write(event);
        }
      }
      res.writeHead(200, { "Content-Type": "application/json" });
      res.end('{"ok":true}');
    });
  } else {
    res.writeHead(404).end("not found");
  }
});

server.on("upgrade", (req, socket, head) => {
  const url = new URL(req.url, "http://localhost");
  if (url.pathname !== "/echo" && url.pathname !== "/ws") {
    socket.destroy();
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => {
    if (url.pathname === "/echo") {
      ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
      return;
    }
    const set = subscribers(url.searchParams.get("topic") || "").ws;
    set.add(ws);
    ws.on("close", () => set.delete(ws));
  });
});

// SSE streams stay idle between deliveries: no socket timeout.
server.keepAliveTimeout = 0;
server.listen(port, "127.0.0.1", () => console.log("node-ws listening on " + port));
