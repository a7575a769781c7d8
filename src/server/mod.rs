//! Server glue (being written): routes, config, metrics, the serve command.
