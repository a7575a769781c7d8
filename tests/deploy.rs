//! The container files in the repository: the seccomp profile lets io_uring through and is
//! otherwise a deny-by-default profile, and the Dockerfile's build stage copies every path
//! cargo reads for the workspace (a forgotten directory fails only at `docker build`, which CI
//! cannot run: no container registry is reachable there).

use std::path::Path;

fn repo(path: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn seccomp_profile_allows_io_uring_and_denies_by_default() {
    let p: serde_json::Value =
        serde_json::from_str(&repo("deploy/seccomp-io_uring.json")).expect("profile JSON");
    assert_eq!(p["defaultAction"], "SCMP_ACT_ERRNO");
    let rules = p["syscalls"].as_array().unwrap();
    let allowed = |name: &str| {
        rules.iter().any(|r| {
            r["action"] == "SCMP_ACT_ALLOW"
                && r.get("includes")
                    .is_none_or(|i| i.as_object().unwrap().is_empty())
                && r["names"].as_array().unwrap().iter().any(|n| n == name)
        })
    };
    for name in ["io_uring_setup", "io_uring_enter", "io_uring_register"] {
        assert!(allowed(name), "{name} allowed unconditionally");
    }
    // What the server needs besides io_uring (sockets are made by io_uring ops or by these).
    for name in [
        "socket",
        "bind",
        "listen",
        "setsockopt",
        "eventfd2",
        "mmap",
        "futex",
    ] {
        assert!(allowed(name), "{name}");
    }
    assert!(p["archMap"].as_array().is_some_and(|a| !a.is_empty()));
}

#[test]
fn dockerfile_copies_every_path_the_workspace_declares() {
    let dockerfile = repo("Dockerfile");
    let copies: Vec<&str> = dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("COPY "))
        .filter(|l| !l.starts_with("--from"))
        .flat_map(|l| l.split_whitespace())
        .collect();
    let manifest: toml::Value = repo("Cargo.toml").parse().unwrap();
    let mut needed: Vec<String> = vec!["Cargo.toml".into(), "Cargo.lock".into(), "src".into()];
    for m in manifest["workspace"]["members"].as_array().unwrap() {
        let m = m.as_str().unwrap();
        if m != "." {
            needed.push(m.to_owned());
        }
    }
    for b in manifest["bench"].as_array().into_iter().flatten() {
        let path = b.get("path").and_then(|p| p.as_str()).unwrap_or("benches");
        needed.push(path.split('/').next().unwrap().to_owned());
    }
    for n in needed {
        assert!(
            copies.contains(&n.as_str()),
            "the Dockerfile does not COPY {n}"
        );
    }
    let ignore = repo(".dockerignore");
    for kept in ["src", "bench", "benches", "Cargo.lock"] {
        assert!(!ignore.lines().any(|l| l.trim() == kept), "{kept} ignored");
    }
}
