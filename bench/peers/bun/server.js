// Bun peer for uringcast-bench: `/echo` WebSocket echo, `/ws?topic=T` WebSocket subscriber
// (Bun's built-in pub/sub: ws.subscribe + server.publish), `/sse?topic=T` SSE subscriber
// (a direct ReadableStream kept open), `POST /publish?topic=T` sends the body as it is to both.
// Usage: bun server.js PORT   (listens on 127.0.0.1:PORT)
const port = Number(process.argv[2] || 9003);
const sseByTopic = new Map(); // topic -> Set of direct-stream controllers
const encoder = new TextEncoder();

const server = Bun.serve({
  hostname: "127.0.0.1",
  port,
  idleTimeout: 0, // SSE streams are idle between deliveries
  async fetch(req, server) {
    const url = new URL(req.url);
    const topic = url.searchParams.get("topic") || "";
    switch (url.pathname) {
      case "/echo":
      case "/ws":
        if (server.upgrade(req, { data: { echo: url.pathname === "/echo", topic } })) return;
        return new Response("upgrade required", { status: 426 });
      case "/sse": {
        const stream = new ReadableStream({
          type: "direct",
          pull(controller) {
            let set = sseByTopic.get(topic);
            if (!set) sseByTopic.set(topic, (set = new Set()));
            set.add(controller);
            // A first comment flushes the response head at once.
            controller.write(": ok\n\n");
            controller.flush();
            // Keep the stream open until the client goes away.
            return new Promise((resolve) => {
              req.signal.addEventListener("abort", () => {
                set.delete(controller);
                resolve();
              });
            });
          },
        });
        return new Response(stream, {
          headers: { "Content-Type": "text/event-stream", "Cache-Control": "no-cache" },
        });
      }
      case "/publish": {
        if (req.method !== "POST") return new Response("POST only", { status: 405 });
        const body = await req.text();
        server.publish(topic, body);
        const set = sseByTopic.get(topic);
        if (set && set.size) {
          const event = encoder.encode("data: " + body + "\n\n");
          for (const c of set) {
            c.write(event);
            c.flush();
          }
        }
        return new Response('{"ok":true}');
      }
    }
    return new Response("not found", { status: 404 });
  },
  websocket: {
    idleTimeout: 120,
    maxPayloadLength: 16 * 1024 * 1024,
    backpressureLimit: 64 * 1024 * 1024,
    perMessageDeflate: false,
    open(ws) {
      if (!ws.data.echo) ws.subscribe(ws.data.topic);
    },
    message(ws, m) {
      if (ws.data.echo) ws.send(m);
    },
  },
});
console.log("bun " + Bun.version + " listening on " + server.port);
