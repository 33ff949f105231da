//! Opens `report.html` in a real headless Chromium (Debian's `/usr/bin/chromium`): the
//! rendered DOM must hold the tables and the plots' SVG, and a 1280×2000 screenshot must show
//! text and, below the score tables, the plots' colours (not a blank page).
//!
//! Without Chromium the test fails: install it with `apt-get install -y chromium`
//! (`tools/test.sh` does).

mod common;

use std::collections::BTreeSet;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{decode_png, synthetic_run};
use longctx_report::{write_report, ReportOptions};

const CHROMIUM: &str = "/usr/bin/chromium";
const TIMEOUT: Duration = Duration::from_mins(1);

/// Runs headless Chromium on `url` with `extra` arguments; returns its stdout. The process
/// group is killed after [`TIMEOUT`].
fn chromium(url: &str, extra: &[String]) -> String {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: install Debian's chromium (`apt-get install -y chromium`) to run the browser test"
    );
    let profile = tempfile::tempdir().unwrap();
    let out = tempfile::NamedTempFile::new().unwrap();
    let mut command = Command::new(CHROMIUM);
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(out.reopen().unwrap())
        .stderr(Stdio::null())
        // A group of its own, so that a timeout kills chromium's helper processes too.
        .process_group(0);
    let mut child = command.spawn().unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > TIMEOUT {
            let _ = Command::new("kill").arg("-KILL").arg(format!("-{}", child.id())).status();
            let _ = child.wait();
            panic!("chromium did not finish within {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "chromium failed: {status}");
    fs_err::read_to_string(out.path()).unwrap()
}

/// Takes a 1280×2000 screenshot of `url`; returns the decoded pixels.
fn screenshot(url: &str, file: &Path) -> Vec<[u8; 3]> {
    chromium(url, &[format!("--screenshot={}", file.display()), "--window-size=1280,2000".into()]);
    // To look at it: LONGCTX_REPORT_KEEP=<dir> cargo test -p longctx-report --test browser
    if let Ok(dir) = std::env::var("LONGCTX_REPORT_KEEP") {
        let report = file.parent().unwrap().join("report");
        for f in fs_err::read_dir(report.join("plots")).unwrap() {
            let f = f.unwrap().path();
            fs_err::copy(&f, Path::new(&dir).join(f.file_name().unwrap())).unwrap();
        }
        for f in ["report.md", "report.html"] {
            fs_err::copy(report.join(f), Path::new(&dir).join(f)).unwrap();
        }
        fs_err::copy(file, Path::new(&dir).join(file.file_name().unwrap())).unwrap();
    }
    let (w, h, pixels) = decode_png(&fs_err::read(file).unwrap());
    assert_eq!((w, h), (1280, 2000));
    pixels
}

#[test]
fn report_renders_in_chromium() {
    let run = tempfile::tempdir().unwrap();
    synthetic_run(run.path());
    let paths = write_report(run.path(), &ReportOptions::default()).unwrap();
    let url = format!("file://{}", paths.html.display());

    let dom = chromium(&url, &["--dump-dom".into()]);
    for needle in [
        "<h1>longctx report: quickstart</h1>",
        "<h2>Scores relative to full</h2>",
        "<h2>Scores by length bucket</h2>",
        "<h2>Failed samples</h2>",
        "<td class=\"label\">passage_retrieval_zh</td>",
        "<figure id=\"plot-sweep-rag\"",
        "<figure id=\"plot-cost-per-query\"",
    ] {
        assert!(dom.contains(needle), "rendered DOM lacks {needle}");
    }
    assert_eq!(dom.matches("<table>").count(), 6);
    assert_eq!(dom.matches("<svg ").count(), 4);
    assert!(dom.matches("<rect ").count() > 40, "bars missing from the SVG plots");

    // The first screen: header, score tables (dark text on light backgrounds) and the first
    // plots, which follow the score tables (the series' colours).
    let shot = run.path().join("screenshot.png");
    let pixels = screenshot(&url, &shot);
    let non_white = pixels.iter().filter(|p| **p != [255, 255, 255]).count();
    assert!(non_white > pixels.len() / 10, "blank page: {non_white} non-white pixels");
    let dark = pixels.iter().filter(|p| p.iter().all(|c| *c < 80)).count();
    assert!(dark > 5_000, "no text: {dark} dark pixels");
    let plot_area = &pixels[pixels.len() / 2..];
    let colours: BTreeSet<[u8; 3]> = plot_area.iter().copied().collect();
    assert!(colours.len() > 100, "{} distinct colours in the plot area", colours.len());
    let blue = plot_area.iter().filter(|p| **p == [31, 119, 180]).count();
    assert!(blue > 1_000, "{blue} pixels of the first series' blue in the plot area");
}
