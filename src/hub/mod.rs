//! Hub (being written): topics, fan-out, replay history, slow-consumer policy.
