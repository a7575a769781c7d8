//! RFC 6455 conformance: the Autobahn TestSuite (cases 1–7, 9, 10) against the server's echo
//! route. Needs `../shared/tools/autobahn/run.sh setup` to have run (`.ci/run` does it); on a
//! bare machine the test says so and skips, unless URINGCAST_REQUIRE_EXTERNAL=1 (CI).

mod common;

use std::path::PathBuf;
use std::process::Command;

fn autobahn_tool() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("URINGCAST_AUTOBAHN") {
        return Some(PathBuf::from(p));
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/tools/autobahn/run.sh");
    p.exists().then_some(p)
}

fn skip(why: &str) {
    if std::env::var("URINGCAST_REQUIRE_EXTERNAL").as_deref() == Ok("1") {
        panic!("Autobahn conformance test cannot run: {why}");
    }
    eprintln!("SKIPPED autobahn: {why}");
}

#[test]
fn autobahn_echo_conformance() {
    let Some(tool) = autobahn_tool() else {
        return skip("run.sh not found (set URINGCAST_AUTOBAHN)");
    };
    // Group 9 sends messages up to 16 MiB, one of them in 65,536 fragments.
    let server = common::Server::start(&[
        "--echo-path",
        "/echo",
        "--ws-message-bytes-max",
        "20MiB",
        "--workers",
        "2",
    ]);
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("autobahn");
    let status = Command::new("bash")
        .arg(&tool)
        .args([
            "run",
            "--strict",
            "--url",
            &server.ws_url("/echo"),
            "--name",
            "uringcast",
            "--out",
        ])
        .arg(&out)
        .args(
            std::env::var("URINGCAST_AUTOBAHN_ARGS")
                .iter()
                .flat_map(|a| a.split_whitespace()),
        )
        .status()
        .expect("run the Autobahn tool");
    match status.code() {
        Some(0) => {}
        Some(2) => skip("Autobahn setup has not run (run.sh setup)"),
        _ => panic!(
            "Autobahn conformance failures: see {}/reports/index.html",
            out.display()
        ),
    }
}
