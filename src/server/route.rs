//! Routes: a request head is matched once, here, into a [`Route`]; nothing else in the server
//! compares paths or methods. Never here: I/O, hub access, responses.

/// The built-in paths. `echo_path` must not collide with any of them (checked by the config).
pub const BUILTIN_PATHS: [&str; 10] = [
    "/sse",
    "/ws",
    "/poll",
    "/publish",
    "/tickets",
    "/healthz",
    "/metrics",
    "/topics",
    "/",
    "/status/events",
];

/// Paths under this prefix name a topic: `GET /topics/{name}`.
pub const TOPIC_PREFIX: &str = "/topics/";

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `GET /sse`: an SSE stream.
    Sse,
    /// `GET /poll`: a long poll.
    Poll,
    /// `GET /ws`: a WebSocket subscriber/publisher session.
    Ws,
    /// `GET <echo_path>`: a WebSocket echo session (conformance tests, echo benchmark).
    Echo,
    /// `POST /publish`.
    Publish,
    /// `POST /tickets`: trade a token for a single-use ticket.
    Tickets,
    /// `OPTIONS` on a route browsers call across origins: a CORS preflight, answered with
    /// these methods.
    Preflight { methods: &'static str },
    /// `GET /healthz`.
    Healthz,
    /// `GET /metrics`.
    Metrics,
    /// `GET /topics`: topics with subscriber counts, a page at a time.
    Topics,
    /// `GET /topics/{name}`: one topic (the name is the rest of the path).
    Topic,
    /// `GET /`: the status page.
    Status,
    /// `GET /status/events`: an SSE stream of the `$stats` system topic.
    StatusEvents,
    /// A known path with the wrong method: 405 with this `Allow`.
    MethodNotAllowed { allow: &'static str },
    /// 404.
    NotFound,
}

impl Route {
    /// Match `method` and `path` (without the query). `echo_path` is the configured echo route.
    pub fn of(method: &str, path: &str, echo_path: Option<&str>) -> Route {
        // (route, its method, what `Allow` lists: OPTIONS too where a preflight is answered)
        let (route, method_of_route, allow) = match path {
            "/sse" => (Route::Sse, "GET", "GET, OPTIONS"),
            "/ws" => (Route::Ws, "GET", "GET"),
            "/poll" => (Route::Poll, "GET", "GET, OPTIONS"),
            "/publish" => (Route::Publish, "POST", "POST, OPTIONS"),
            "/tickets" => (Route::Tickets, "POST", "POST, OPTIONS"),
            "/healthz" => (Route::Healthz, "GET", "GET"),
            "/metrics" => (Route::Metrics, "GET", "GET"),
            "/topics" => (Route::Topics, "GET", "GET"),
            "/" => (Route::Status, "GET", "GET"),
            "/status/events" => (Route::StatusEvents, "GET", "GET"),
            _ if path.starts_with(TOPIC_PREFIX) => (Route::Topic, "GET", "GET"),
            _ if echo_path == Some(path) => (Route::Echo, "GET", "GET"),
            _ => return Route::NotFound,
        };
        if method == method_of_route {
            route
        } else if method == "OPTIONS" && allow.ends_with("OPTIONS") {
            Route::Preflight { methods: allow }
        } else {
            Route::MethodNotAllowed { allow }
        }
    }

    /// Whether the route reads a request body. Any other request that announces one is
    /// answered and the connection closed, so the unread body can never be taken for the next
    /// request.
    pub fn reads_body(self) -> bool {
        matches!(self, Route::Publish | Route::Tickets)
    }

    /// Routes for the operator, answered like `/metrics`: to loopback peers, to the admin
    /// key, and to anyone on the `admin_listen` address.
    pub fn is_admin(self) -> bool {
        matches!(
            self,
            Route::Metrics | Route::Topics | Route::Topic | Route::Status | Route::StatusEvents
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let echo = Some("/echo");
        for (method, path, want) in [
            ("GET", "/sse", Route::Sse),
            ("GET", "/ws", Route::Ws),
            ("GET", "/poll", Route::Poll),
            ("GET", "/echo", Route::Echo),
            ("POST", "/publish", Route::Publish),
            ("POST", "/tickets", Route::Tickets),
            ("GET", "/healthz", Route::Healthz),
            ("GET", "/metrics", Route::Metrics),
            ("GET", "/topics", Route::Topics),
            ("GET", "/topics/news", Route::Topic),
            ("GET", "/topics/", Route::Topic),
            ("GET", "/", Route::Status),
            ("GET", "/status/events", Route::StatusEvents),
            ("GET", "/nope", Route::NotFound),
            ("GET", "/sse/", Route::NotFound),
        ] {
            assert_eq!(Route::of(method, path, echo), want, "{method} {path}");
        }
        // OPTIONS on a route browsers call across origins: a preflight allowing these methods.
        for (path, methods) in [
            ("/poll", "GET, OPTIONS"),
            ("/publish", "POST, OPTIONS"),
            ("/sse", "GET, OPTIONS"),
        ] {
            let want = Route::Preflight { methods };
            assert_eq!(Route::of("OPTIONS", path, echo), want, "{path}");
        }
        // A known path with the wrong method: 405 with this `Allow`.
        for (method, path, allow) in [
            ("OPTIONS", "/ws", "GET"),
            ("POST", "/topics", "GET"),
            ("GET", "/publish", "POST, OPTIONS"),
            ("POST", "/sse", "GET, OPTIONS"),
            ("POST", "/echo", "GET"),
        ] {
            let want = Route::MethodNotAllowed { allow };
            assert_eq!(Route::of(method, path, echo), want, "{method} {path}");
        }
        assert_eq!(Route::of("GET", "/echo", None), Route::NotFound);
        for p in BUILTIN_PATHS {
            assert_ne!(Route::of("GET", p, None), Route::NotFound, "{p}");
        }
    }
}
