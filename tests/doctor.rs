//! `uringcast doctor` against the real machine and the real engine: its ring arithmetic must
//! give the capacity the engine reports when it starts those rings, and the same number `serve`
//! prints for the same flags; the CLI prints a table or JSON, exits 0, and a bad flag exits 2.

use std::process::Command;
use uringcast::server::config::Config;
use uringcast::server::doctor::{diagnose, probe_rings, ring_layout, Facts};
use uringcast::server::serve::engine_config;

fn doctor(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_uringcast"))
        .arg("doctor")
        .args(args)
        .output()
        .expect("run uringcast doctor")
}

fn cpus() -> u64 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u64)
}

fn nofile_soft() -> u64 {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `rl` is a valid, writable rlimit for the duration of the call.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) }, 0);
    rl.rlim_cur
}

/// The layout the doctor reports (the engine's rule, `EngineConfig::ring_layout`) has the
/// capacity of the engine started for real, for several shapes, including ones where the
/// backlog clamp and the spare-slot rule bite (tiny tables).
#[test]
fn layout_matches_the_engine_started_for_real() {
    let shapes = [
        (1, 1_000, 64),
        (2, 45_000, 0),
        (3, 200_000, 5_000),
        (2, 10, 16),
    ];
    for (workers, connections_max, files_per_ring) in shapes {
        let config = Config {
            workers,
            connections_max,
            files_per_ring,
            ..Config::default()
        };
        let engine = match probe_rings(&config) {
            Ok(c) => c,
            Err(e) if e.contains("io_uring") => {
                eprintln!("SKIPPED doctor layout test: {e}");
                return;
            }
            Err(e) => panic!("engine did not start for {workers}/{connections_max}: {e}"),
        };
        let mine = ring_layout(&engine_config(&config), nofile_soft(), cpus());
        assert_eq!(
            mine.capacity(),
            engine,
            "workers {workers}, connections_max {connections_max}, files_per_ring \
             {files_per_ring}: doctor {mine:?} vs engine {engine}"
        );
        assert!(
            engine >= connections_max as u64,
            "capacity below the target"
        );
    }
}

#[test]
fn json_reports_this_box_and_the_capacity_serve_prints() {
    let flags = ["--workers", "2", "--connections-max", "45000"];
    let out = doctor(&[&["--json"][..], &flags[..]].concat());
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("doctor prints JSON");
    assert_eq!(v["facts"]["nofile_soft"].as_u64(), Some(nofile_soft()));
    let probe = &v["facts"]["probe"];
    if probe.get("Err").is_some() {
        eprintln!("SKIPPED serve comparison: {probe}");
        return;
    }
    let probed = probe["Ok"].as_u64().expect("probe result");
    assert_eq!(v["layout"]["workers"].as_u64(), Some(2));
    let rows = v["bounds"].as_array().expect("bounds");
    let tables = rows
        .iter()
        .find(|b| b["name"] == "file tables")
        .expect("file tables row");
    assert_eq!(tables["connections"].as_u64(), Some(probed));
    let limits = rows.iter().filter(|b| b["status"] == "limit").count();
    assert_eq!(limits, 1, "exactly one bottleneck row: {rows:?}");
    let capacity = v["capacity"].as_u64().unwrap();
    assert!(capacity <= probed);

    // `serve` with the same flags prints the same ring capacity.
    let line = serve_first_line(&flags);
    assert!(
        line.contains(&format!("(capacity {probed} connections)")),
        "serve said {line:?}, doctor probed {probed}"
    );
}

/// Start `serve` on port 0 with `flags`, return its first stdout line, kill it.
fn serve_first_line(flags: &[&str]) -> String {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_uringcast"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(flags)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn serve");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(std::time::Duration::from_secs(20));
    let _ = child.kill();
    let _ = child.wait();
    line.expect("serve printed its listening line within 20 s")
}

#[test]
fn text_names_the_bottleneck_and_every_fix() {
    let out = doctor(&["--no-probe", "--connections-max", "1000000"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    let verdict = text
        .lines()
        .find(|l| l.starts_with("capacity now: "))
        .unwrap_or_else(|| panic!("no verdict in:\n{text}"));
    assert!(verdict.contains("bottleneck: "), "{verdict}");
    for name in [
        "io_uring",
        "file tables",
        "RLIMIT_NOFILE",
        "fs.file-max",
        "memory",
        "net.ipv4.tcp_mem",
        "net.core.somaxconn",
        "ephemeral ports",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(name)),
            "{name} row missing:\n{text}"
        );
    }
    assert_eq!(
        text.matches("fix: ").count(),
        text.lines().filter(|l| l.contains("  fix: ")).count()
    );
    // The same facts through the library give the same verdict.
    let config = Config {
        connections_max: 1_000_000,
        ..Config::default()
    };
    let d = diagnose(&config, &Facts::read(&config, false));
    assert!(
        verdict.contains(&format!("bottleneck: {}", d.bottleneck)),
        "{verdict}"
    );
}

#[test]
fn bad_flag_exits_2_naming_it() {
    let out = doctor(&["--connections-max", "many"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--connections-max"), "{err}");
}
