//! Headless Chromium for the browser tests: find it, open a page from a file, kill it on drop.

use std::process::{Child, Command, Stdio};

/// Chromium's path, if installed; otherwise a skip message (a failure with
/// URINGCAST_REQUIRE_EXTERNAL=1).
pub fn find() -> Option<&'static str> {
    let found = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    if found.is_none() {
        let why = "chromium not installed (Debian package chromium)";
        if std::env::var("URINGCAST_REQUIRE_EXTERNAL").as_deref() == Ok("1") {
            panic!("browser test cannot run: {why}, and URINGCAST_REQUIRE_EXTERNAL=1");
        }
        eprintln!("SKIPPED browser: {why}");
    }
    found
}

/// A browser process, killed (and reaped) when dropped so a failing test never leaks it.
pub struct Browser(Child);

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Headless, no sandbox (root), and none of the background connections that this machine's
/// closed network would refuse.
pub const FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
];

/// Write `html` to a file and open it in headless Chromium with `?query`.
pub fn open_page(chromium: &str, name: &str, html: &str, query: &str) -> Browser {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("browser-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let page = dir.join("page.html");
    std::fs::write(&page, html).unwrap();
    let profile = dir.join("profile");
    Browser(
        Command::new(chromium)
            .args(FLAGS)
            .arg("--allow-file-access-from-files")
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(format!("file://{}?{query}", page.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromium"),
    )
}
