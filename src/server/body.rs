//! A request body being read, for the routes that take one (`publish`, `tickets`): a
//! `proto::http1::BodyDecoder` plus the bytes so far, bounded by the limits it was made with.
//! Never here: what the body means, answers, I/O.

use crate::proto::http1::{BodyDecoder, BodyEvent, BodyKind, HttpError, HttpLimits};
use crate::proto::Progress;

/// A body in progress. `data.len() <= limits.body_bytes_max` (the decoder refuses more).
pub(super) struct BodyReader {
    decoder: BodyDecoder,
    data: Vec<u8>,
}

/// The outcome of one [`BodyReader::read`].
pub(super) enum Read {
    /// `consumed` bytes taken; `more` says whether another call may progress without new
    /// input.
    Partial {
        consumed: usize,
        more: bool,
    },
    /// The body is complete after `consumed` bytes; take it with [`BodyReader::into_data`].
    Complete {
        consumed: usize,
    },
    Failed(HttpError),
}

impl BodyReader {
    /// A reader for a body of `kind`; refuses a declared length over the limit (413) before
    /// any of it is read.
    pub fn new(kind: BodyKind, limits: &HttpLimits) -> Result<BodyReader, HttpError> {
        Ok(BodyReader {
            decoder: BodyDecoder::new(kind, limits)?,
            data: Vec::new(),
        })
    }

    pub fn read(&mut self, input: &[u8]) -> Read {
        match self.decoder.decode(input) {
            Ok(Progress {
                consumed,
                event: Some(BodyEvent::Data(d)),
            }) => {
                self.data.extend_from_slice(d);
                // A Content-Length body is complete with its last byte: finish now rather
                // than wait for an `End` that needs another (possibly never coming) read.
                let ended = matches!(
                    self.decoder.decode(&[]),
                    Ok(Progress {
                        event: Some(BodyEvent::End),
                        ..
                    })
                );
                if ended {
                    Read::Complete { consumed }
                } else {
                    Read::Partial {
                        consumed,
                        more: true,
                    }
                }
            }
            Ok(Progress {
                consumed,
                event: Some(BodyEvent::End),
            }) => Read::Complete { consumed },
            Ok(Progress {
                consumed,
                event: None,
            }) => Read::Partial {
                consumed,
                more: false,
            },
            Err(e) => Read::Failed(e),
        }
    }

    pub fn into_data(self) -> Vec<u8> {
        self.data
    }
}
