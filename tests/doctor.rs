//! `uringcast doctor` against the real machine and the real engine: its ring arithmetic must
//! give the capacity the engine reports when it starts those rings, and the same number `serve`
//! prints for the same flags; the CLI prints a table or JSON, exits 0, and a bad flag exits 2.

use std::process::Command;
use uringcast::server::config::Config;
use uringcast::server::doctor::{diagnose, probe_rings, ring_layout, Facts};

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
        let mine = ring_layout(&config.engine_config(), nofile_soft(), cpus());
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

/// Run `uringcast ARGS` under a seccomp filter that answers `io_uring_setup` with `errno` and
/// allows everything else: what Docker >= 25 does to a container with its default profile.
fn under_io_uring_filter(args: &[&str], errno: i32) -> std::process::Output {
    use std::os::unix::process::CommandExt;
    #[cfg(target_arch = "x86_64")]
    const AUDIT_ARCH: u32 = 0xC000_003E;
    #[cfg(target_arch = "aarch64")]
    const AUDIT_ARCH: u32 = 0xC000_00B7;
    const IO_URING_SETUP: u32 = 425; // the same number on every architecture
    const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    const RET_ALLOW: u32 = 0x7fff_0000;
    const RET_ERRNO: u32 = 0x0005_0000;
    let op = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    // struct seccomp_data { int nr; __u32 arch; ... }: nr at 0, arch at 4.
    let filter = [
        op(LD_W_ABS, 0, 0, 4),
        op(JEQ_K, 0, 3, AUDIT_ARCH), // another ABI: allow
        op(LD_W_ABS, 0, 0, 0),
        op(JEQ_K, 0, 1, IO_URING_SETUP),
        op(RET_K, 0, 0, RET_ERRNO | errno as u32),
        op(RET_K, 0, 0, RET_ALLOW),
    ];
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_uringcast"));
    cmd.args(args);
    // SAFETY: the closure runs in the forked child before exec and calls only prctl(2),
    // which is async-signal-safe; `filter` was allocated before the fork and outlives the
    // call (the closure owns it).
    unsafe {
        cmd.pre_exec(move || {
            let prog = libc::sock_fprog {
                len: filter.len() as u16,
                filter: filter.as_ptr() as *mut libc::sock_filter,
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER as libc::c_ulong,
                    &prog as *const libc::sock_fprog,
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.output().expect("run uringcast under the filter")
}

/// A seccomp filter that blocks io_uring (EPERM, as Docker's default profile answers, or
/// ENOSYS) is named as such by the doctor, with the profile in deploy/ as the fix; `serve`
/// refuses to start with the engine's message.
#[test]
fn doctor_names_a_seccomp_block_and_the_profile_that_fixes_it() {
    if !cfg!(any(target_arch = "x86_64", target_arch = "aarch64")) {
        return eprintln!("SKIPPED: the test's filter knows x86_64 and aarch64 only");
    }
    if probe_rings(&Config::default()).is_err() {
        return eprintln!("SKIPPED: io_uring does not work here even without a filter");
    }
    for (errno, word) in [(libc::EPERM, "EPERM"), (libc::ENOSYS, "ENOSYS")] {
        let out = under_io_uring_filter(&["doctor", "--json", "--connections-max", "1000"], errno);
        assert!(out.status.success(), "{out:?}");
        let d: serde_json::Value = serde_json::from_slice(&out.stdout).expect("doctor JSON");
        assert_eq!(d["bottleneck"], "io_uring", "{d:#}");
        assert_eq!(d["capacity"], 0);
        let row = &d["bounds"][0];
        let value = row["value"].as_str().unwrap();
        assert!(
            value.contains(&format!("io_uring_setup: {word} under a seccomp filter")),
            "{value}"
        );
        let fix = row["fix"].as_str().unwrap();
        assert!(fix.contains("deploy/seccomp-io_uring.json"), "{fix}");
    }
    let out = under_io_uring_filter(
        &["serve", "--listen", "127.0.0.1:0", "--publish-open", "true"],
        libc::EPERM,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("io_uring is denied"), "{err}");
    // Without the filter, the same doctor finds io_uring fine.
    let out = doctor(&["--json", "--connections-max", "1000"]);
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(d["bounds"][0]["status"], "ok", "{d:#}");
}
