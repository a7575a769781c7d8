//! The command line: `uringcast serve [--config FILE] [--<key> VALUE ...]`,
//! `uringcast doctor [--json] [--no-probe] [serve flags]`, `uringcast example-config`. Flags are
//! generated from the config key table, so every key is a flag (`heartbeat_interval` is
//! `--heartbeat-interval`).

use super::config::{Config, ConfigError, Source};
use clap::{Arg, ArgAction, Command};

fn serve_command() -> Command {
    config_args(Command::new("serve").about("Run the push hub (SSE and WebSocket on io_uring)"))
}

/// `doctor` takes every `serve` flag, so it judges exactly the server those flags would start.
fn doctor_command() -> Command {
    config_args(Command::new("doctor").about(
        "Print the capacity of this box, what bounds it and each fix (takes the serve flags)",
    ))
    .arg(
        Arg::new("json")
            .long("json")
            .action(ArgAction::SetTrue)
            .help("Print JSON for scripts"),
    )
    .arg(
        Arg::new("no_probe")
            .long("no-probe")
            .action(ArgAction::SetTrue)
            .help("Do not set up the rings to verify io_uring and the capacity"),
    )
}

fn config_args(cmd: Command) -> Command {
    let defaults = Config::default();
    let mut serve = cmd.arg(
        Arg::new("config")
            .long("config")
            .value_name("FILE")
            .help("TOML config file (see uringcast.example.toml)"),
    );
    for (key, help) in Config::KEYS {
        let default = defaults.get(key).unwrap_or_default();
        let default = if default.is_empty() {
            "none".to_owned()
        } else {
            default
        };
        serve = serve.arg(
            Arg::new(*key)
                .long(key.replace('_', "-"))
                .value_name("VALUE")
                .action(ArgAction::Set)
                .help(format!("{} [default: {default}]", help.trim())),
        );
    }
    serve
}

pub fn command() -> Command {
    Command::new("uringcast")
        .about("SSE and WebSocket push hub on io_uring")
        .version(env!("CARGO_PKG_VERSION"))
        .subcommand_required(true)
        .subcommand(serve_command())
        .subcommand(doctor_command())
        .subcommand(
            Command::new("example-config").about("Print a config file with every key and default"),
        )
}

/// Build the config for `serve` (or `doctor`) from its parsed arguments and the environment.
pub fn config_from(
    matches: &clap::ArgMatches,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let mut config = Config::default();
    if let Some(path) = matches.get_one::<String>("config") {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        config.apply_toml(&text, path)?;
    }
    config.apply_env(env)?;
    for (key, _) in Config::KEYS {
        if let Some(value) = matches.get_one::<String>(key) {
            config.set(key, value, Source::Flag)?;
        }
    }
    config.validate()?;
    // The JWT key file is read and parsed now, so a bad one stops the start with its key's name.
    super::auth::Auth::from_config(&config)?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_a_flag_and_flags_beat_env() {
        let m = command()
            .try_get_matches_from([
                "uringcast",
                "serve",
                "--heartbeat-interval",
                "1s",
                "--workers",
                "2",
                "--echo-path",
                "/echo",
            ])
            .unwrap();
        let (_, serve) = m.subcommand().unwrap();
        let env = [("URINGCAST_WORKERS".to_owned(), "5".to_owned())];
        let c = config_from(serve, env).unwrap();
        assert_eq!(c.workers, 2);
        assert_eq!(c.heartbeat_interval.0, 1_000);
        assert_eq!(c.echo_path.as_deref(), Some("/echo"));
        for (key, _) in Config::KEYS {
            let flag = format!("--{}", key.replace('_', "-"));
            assert!(
                serve_command()
                    .get_arguments()
                    .any(|a| a.get_long() == Some(&flag[2..])),
                "{flag} missing"
            );
        }
    }

    #[test]
    fn bad_flag_value_names_the_flag() {
        let m = command()
            .try_get_matches_from(["uringcast", "serve", "--pong-timeout", "fast"])
            .unwrap();
        let (_, serve) = m.subcommand().unwrap();
        let err = config_from(serve, []).unwrap_err().to_string();
        assert!(err.contains("--pong-timeout"), "{err}");
    }
}
