//! `POST /tickets`: trade a token (a JWT or the publish key, in `Authorization: Bearer`) for a
//! single-use, short-lived ticket, which a browser puts in a URL (`?ticket=` on `/sse`, `/ws`
//! and `/poll`: `EventSource` and `WebSocket` cannot send headers) instead of a long-lived token
//! that would stay in logs and history. Body: empty, `{}`, or `{"topics":[...]}` to narrow
//! the ticket's scope. Answer: `200 {"ticket":"...","expires_in":S}`.
//!
//! What a ticket carries and the table that holds it are `auth`'s; this file is the exchange.

use serde::Deserialize;

use super::auth::{Accept, AuthError, Clock, Credential, Grant, PATTERNS_MAX};
use super::body::BodyReader;
use super::out::{Out, JSON};
use crate::engine::Handler;
use crate::hub::TOPIC_BYTES_MAX;
use crate::proto::http1::{HttpLimits, RequestHead};

/// Largest request body: `PATTERNS_MAX` quoted patterns of a topic's length and a comma each,
/// plus the object around them.
const TICKET_BODY_BYTES_MAX: u64 = (PATTERNS_MAX * (TOPIC_BYTES_MAX + 4) + 64) as u64;

/// A ticket request whose body is still arriving; the token was checked already.
pub(super) struct PendingTicket {
    body: BodyReader,
    grant: Grant,
    close: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TicketRequest {
    #[serde(default)]
    topics: Option<Vec<String>>,
}

/// `POST /tickets` head: authenticate, then read the body. `None` once answered.
pub(super) fn begin<H: Handler>(
    out: &mut Out<'_, '_, H>,
    head: &RequestHead,
) -> Option<Box<PendingTicket>> {
    let clock = Clock::read(out.now_ms());
    // A ticket cannot buy a ticket, and the cookie is not read: only the header.
    let credential = Credential::of(head, Accept::Header, None);
    let grant = match out.shared.auth.authenticate(credential, clock) {
        Ok(Some(g)) => g,
        Ok(None) => {
            out.deny(&AuthError::Missing);
            return None;
        }
        Err(e) => {
            out.deny(&e);
            return None;
        }
    };
    let limits = HttpLimits {
        body_bytes_max: TICKET_BODY_BYTES_MAX,
        ..out.shared.http_limits.clone()
    };
    let body = out.begin_body(head, &limits)?;
    let close = !head.keep_alive();
    let mut slot = Some(Box::new(PendingTicket { body, grant, close }));
    // A request without a body (or an empty one) is answered now.
    body_step(out, &mut slot, &[]);
    slot
}

/// Feed body bytes to the pending request; answers and empties `slot` when it is complete.
pub(super) fn body_step<H: Handler>(
    out: &mut Out<'_, '_, H>,
    slot: &mut Option<Box<PendingTicket>>,
    input: &[u8],
) -> (usize, bool) {
    out.read_body(slot, input, |p| &mut p.body, finish)
}

fn finish<H: Handler>(out: &mut Out<'_, '_, H>, p: PendingTicket) {
    let data = p.body.into_data();
    let topics = if data.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        match serde_json::from_slice::<TicketRequest>(&data) {
            Ok(r) => r.topics,
            Err(e) => {
                let text = format!("body must be empty or {{\"topics\":[...]}}: {e}\n");
                return out.refuse(400, &text);
            }
        }
    };
    let now_ms = out.now_ms();
    match out
        .shared
        .auth
        .issue_ticket(&p.grant, topics.as_deref(), now_ms)
    {
        Ok((ticket, life_ms)) => {
            let body = serde_json::json!({
                "ticket": ticket,
                "expires_in": life_ms.div_ceil(1000),
            })
            .to_string();
            let fields = [JSON[0], ("Cache-Control", "no-store")];
            out.respond(200, &fields, body.as_bytes(), p.close);
        }
        Err(e) => out.deny(&e),
    }
}
