//! `convoscope demo` run as a person runs it, as a child process in a folder of its own: the
//! same command twice gives the same numbers, its sender keeps to the send rate, its page of
//! files works from disk, and `report` afterwards says where the demo's data is.

use serde_json::Value;

use crate::common::*;

const SENDS: usize = 300;

/// Runs `convoscope ARGS` in `dir` without a configured store: (exit ok, stdout, stderr).
async fn run_in(dir: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_convoscope"))
        .args(args)
        .current_dir(dir)
        .env("CONVOSCOPE_LOG", "warn")
        .env_remove("CONVOSCOPE_STORAGE")
        .kill_on_drop(true)
        .output()
        .await
        .expect("run convoscope");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn rows(dir: &std::path::Path, report: &str, columns: &[&str]) -> Vec<Vec<Value>> {
    let text = std::fs::read_to_string(dir.join(format!("demo-out/{report}.json"))).expect("report file");
    let v: Value = serde_json::from_str(&text).expect("report JSON");
    v["rows"].as_array().expect("rows").iter().map(|r| columns.iter().map(|c| r[*c].clone()).collect()).collect()
}

#[tokio::test]
async fn the_demo_gives_the_same_numbers_twice_within_the_send_rate() {
    let dir = test_dir();
    let sends = SENDS.to_string();
    let mut runs = Vec::new();
    for name in ["first", "second"] {
        let at = dir.path().join(name);
        std::fs::create_dir_all(&at).unwrap();
        let (ok, stdout, stderr) = run_in(&at, &["demo", "--exit", "--sends", &sends]).await;
        assert!(ok, "{stdout}\n{stderr}");
        // A stopped server's address and token are of no use to anyone.
        assert!(!stdout.contains("report page:") && !stdout.contains("read token"), "{stdout}");
        // The sender paces itself to the send path's rate: few refusals, not several a send.
        let refused: usize = stdout
            .split(" refused over the send rate")
            .next()
            .and_then(|s| s.rsplit('(').next())
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no count of refusals in {stdout}"));
        assert!(refused < SENDS / 10, "{refused} refusals for {SENDS} sends");
        runs.push(at);
    }

    let funnel = ["campaign", "template", "sent", "delivered", "read", "replied"];
    let cost = ["campaign", "category", "messages", "conversions", "revenue", "messaging_cost"];
    let experiment = ["metric", "variant", "exposures", "conversions"];
    for (report, columns) in [("funnel", &funnel[..]), ("cost", &cost[..]), ("experiment", &experiment[..])] {
        let (a, b) = (rows(&runs[0], report, columns), rows(&runs[1], report, columns));
        assert!(!a.is_empty(), "{report} has rows");
        // Money is a float sum, whose last digits follow the order the threads add in.
        assert!(
            rows_equal(&serde_json::json!(a), &serde_json::json!(b)),
            "{report} differs between two runs of the same command: {a:?} against {b:?}"
        );
    }
    // Every message is priced: its category comes with its statuses.
    let categories = rows(&runs[0], "pricing", &["category"]);
    assert!(categories.iter().all(|c| c[0] == "marketing"), "{categories:?}");

    // The page of files links to the files beside it.
    let out = runs[0].join("demo-out");
    let index = std::fs::read_to_string(out.join("index.html")).unwrap();
    let links: Vec<&str> = index.split("href=\"").skip(1).filter_map(|s| s.split('"').next()).collect();
    assert!(links.len() >= 15 * 3, "{} links", links.len());
    for link in links {
        assert!(!link.starts_with('/') && out.join(link).is_file(), "{link} is not a file beside index.html");
    }

    // `report` with nothing configured finds no events in ./data and says where the demo's are.
    let (ok, stdout, stderr) = run_in(&runs[0], &["report", "funnel"]).await;
    assert!(ok, "{stderr}");
    assert!(stdout.contains("(0 rows)"), "{stdout}");
    assert!(stderr.contains("the demo's data is in") && stderr.contains("demo-out/data"), "{stderr}");
}
