//! Routes: a request head is matched once, here, into a [`Route`]; nothing else in the server
//! compares paths or methods. Never here: I/O, hub access, responses.

/// The built-in paths. `echo_path` must not collide with any of them (checked by the config).
pub const BUILTIN_PATHS: [&str; 5] = ["/sse", "/ws", "/publish", "/healthz", "/metrics"];

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `GET /sse`: an SSE stream.
    Sse,
    /// `GET /ws`: a WebSocket subscriber/publisher session.
    Ws,
    /// `GET <echo_path>`: a WebSocket echo session (conformance tests, echo benchmark).
    Echo,
    /// `POST /publish`.
    Publish,
    /// `GET /healthz`.
    Healthz,
    /// `GET /metrics`.
    Metrics,
    /// A known path with the wrong method: 405 with this `Allow`.
    MethodNotAllowed { allow: &'static str },
    /// 404.
    NotFound,
}

impl Route {
    /// Match `method` and `path` (without the query). `echo_path` is the configured echo route.
    pub fn of(method: &str, path: &str, echo_path: Option<&str>) -> Route {
        let (route, allow) = match path {
            "/sse" => (Route::Sse, "GET"),
            "/ws" => (Route::Ws, "GET"),
            "/publish" => (Route::Publish, "POST"),
            "/healthz" => (Route::Healthz, "GET"),
            "/metrics" => (Route::Metrics, "GET"),
            _ if echo_path == Some(path) => (Route::Echo, "GET"),
            _ => return Route::NotFound,
        };
        if method == allow {
            route
        } else {
            Route::MethodNotAllowed { allow }
        }
    }

    /// Whether the route reads a request body. Any other request that announces one is
    /// answered and the connection closed, so the unread body can never be taken for the next
    /// request.
    pub fn reads_body(self) -> bool {
        self == Route::Publish
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
            ("GET", "/echo", Route::Echo),
            ("POST", "/publish", Route::Publish),
            ("GET", "/healthz", Route::Healthz),
            ("GET", "/metrics", Route::Metrics),
            ("GET", "/publish", Route::MethodNotAllowed { allow: "POST" }),
            ("POST", "/sse", Route::MethodNotAllowed { allow: "GET" }),
            ("POST", "/echo", Route::MethodNotAllowed { allow: "GET" }),
            ("GET", "/nope", Route::NotFound),
            ("GET", "/sse/", Route::NotFound),
        ] {
            assert_eq!(Route::of(method, path, echo), want, "{method} {path}");
        }
        assert_eq!(Route::of("GET", "/echo", None), Route::NotFound);
        for p in BUILTIN_PATHS {
            assert_ne!(Route::of("GET", p, None), Route::NotFound, "{p}");
        }
    }
}
