//! Experiments as a marketer runs them: a guardrail that stops a harmful variant in the send
//! path, and the plan of an experiment's sample over the API and the command line.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::*;

const SEND: &str = "send-token-4242";

const GUARDED: &str = r#"
[[experiment]]
name = "guarded"
status = "running"
salt = "g1"
campaign = "autumn"

[experiment.analysis]
goals = ["converted"]
guardrails = [{ metric = "opted_out", margin = 0.0 }]
auto_stop = true

[[experiment.variant]]
name = "control"
weight = 50
control = true
template = "autumn_control"
category = "utility"

[[experiment.variant]]
name = "risky"
weight = 50
template = "autumn_risky"
category = "utility"
"#;

async fn post_events(s: &TestServer, lines: Vec<Value>) {
    let body: String = lines.iter().map(|l| l.to_string() + "\n").collect();
    let v = post_events_at(&s.client, &s.url(""), body).await;
    assert_eq!(v["rejected"], json!([]), "{v}");
}

async fn send(s: &TestServer, to: &str) -> Value {
    let body = json!({"experiment": "guarded", "to": to});
    let r = s.client.post(s.url("/v1/send")).bearer_auth(SEND).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 200, "send to {to}");
    r.json().await.unwrap()
}

/// 200 contacts through the real send path and the sandbox; two in five of the risky
/// variant's opt out after its message. The always-valid test on the opt-out guardrail shows
/// harm, the watcher stops the variant, new contacts of it get the control (outside the
/// experiment), and the report and the page say so.
#[tokio::test]
async fn a_guardrail_showing_harm_stops_its_variant_and_the_page_says_so() {
    let dir = test_dir();
    let defs = dir.path().join("experiments.toml");
    std::fs::write(&defs, GUARDED).unwrap();
    let mut cfg = config(dir.path());
    cfg.tokens.push(format!("send:{SEND}"));
    cfg.experiments = defs;
    cfg.send_rate_per_sec = 1000.0;
    cfg.auto_stop_check_secs = 1;
    let (s, _sb) = with_sandbox(cfg, "600700800900222", 5).await;

    let numbers: Vec<String> = (0..200).map(|i| format!("1555020{i:04}")).collect();
    let mut risky = Vec::new();
    for n in &numbers {
        let r = send(&s, n).await;
        assert_eq!(r["reassigned_from"], Value::Null);
        if r["variant"] == "risky" {
            risky.push(n.clone());
        }
    }
    assert!((70..130).contains(&risky.len()), "{} of 200 in risky", risky.len());
    let now = chrono::Utc::now().to_rfc3339();
    let opt_outs: Vec<Value> = risky
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 5 < 2)
        .map(|(_, n)| json!({"event_id": format!("out-{n}"), "event_type": "consent.opt_out", "occurred_at": now, "contact": n}))
        .collect();
    post_events(&s, opt_outs).await;
    s.flush().await;

    // New contacts until one assigned to risky comes back with the control instead.
    let mut k = 0;
    let stopped = eventually(
        async || {
            k += 1;
            let r = send(&s, &format!("1555030{k:04}")).await;
            r["reassigned_from"] == "risky" && r["variant"] == "control"
        },
        Duration::from_secs(60),
    )
    .await;
    assert!(stopped, "the risky variant was not stopped");
    s.flush().await;

    let recorded = s
        .query("SELECT experiment, variant, attributes FROM events WHERE event_type = 'experiment.variant_stopped'")
        .await;
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!((&recorded[0][0], &recorded[0][1]), (&json!("guarded"), &json!("risky")));
    assert!(recorded[0][2].as_str().unwrap().contains("opted_out"), "{recorded:?}");
    // The reassigned sends are not the experiment's exposures.
    let outside = s
        .query("SELECT COUNT(*) FROM events WHERE event_type = 'send.accepted' AND experiment IS NULL AND attributes LIKE '%reassigned_from%'")
        .await;
    assert!(outside[0][0].as_i64().unwrap() >= 1, "{outside:?}");

    let (code, report) = s.get_as(READ, "/v1/reports/experiment?format=json").await;
    assert_eq!(code, 200, "{report}");
    let rows = report["rows"].as_array().unwrap();
    let row = |metric: &str, variant: &str| {
        rows.iter().find(|r| r["metric"] == metric && r["variant"] == variant && r["slice"].is_null()).unwrap().clone()
    };
    let guard = row("opted_out", "risky");
    assert_eq!(guard["role"], "guardrail");
    assert_eq!(guard["always_valid_harm"], true, "{guard}");
    assert!(guard["always_valid_low"].as_f64().unwrap() > 0.0, "{guard}");
    assert_eq!(guard["decision"], "stop: harm", "{guard}");
    assert!(!guard["stopped_at"].is_null(), "{guard}");
    // The stopped arm takes no new contacts, so the split is checked without it (one arm
    // left: nothing to check), rather than flagged as a mismatch as the others grow.
    assert_eq!(guard["srm_p_value"], Value::Null, "{guard}");
    // The exposures are the 200 first sends' (and any before the stop), not the reassigned.
    let exposed: u64 = ["control", "risky"].iter().map(|v| row("converted", v)["exposures"].as_u64().unwrap()).sum();
    assert!(exposed >= 200 && exposed < 200 + k as u64, "{exposed} exposed after {k} more sends");

    let page = s
        .client
        .get(s.url("/v1/reports/experiment?format=html"))
        .bearer_auth(READ)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("stop: harm") && page.contains("<svg"), "the page shows the decision and its chart");
    s.stop().await;
}

#[tokio::test]
async fn plan_over_the_api_and_the_command_line() {
    let dir = test_dir();
    let defs = dir.path().join("experiments.toml");
    std::fs::write(&defs, GUARDED).unwrap();
    let mut cfg = config(dir.path());
    cfg.experiments = defs.clone();
    let s = TestServer::start(cfg).await;
    let (code, plan) = s.get_as(READ, "/v1/experiments/guarded/plan?baseline=0.10&mde=0.01&rate=1000").await;
    assert_eq!(code, 200, "{plan}");
    assert_eq!(plan["arms"], json!(["control", "risky"]));
    let per_arm: Vec<u64> = plan["per_arm"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    assert_eq!(per_arm[0], per_arm[1]);
    assert!(plan["power_at_size"].as_f64().unwrap() >= 0.8);
    assert_eq!(plan["days_at_rate"], json!((plan["total"].as_f64().unwrap() / 1000.0 * 10.0).ceil() / 10.0));
    let (code, bad) = s.get_as(READ, "/v1/experiments/guarded/plan?baseline=2&mde=0.01").await;
    assert_eq!(code, 400, "{bad}");
    assert!(bad["message"].as_str().unwrap().contains("baseline"), "{bad}");
    let (code, _) = s.get_as(READ, "/v1/experiments/nope/plan?baseline=0.1&mde=0.01").await;
    assert_eq!(code, 404);
    s.stop().await;

    let csv = dir.path().join("recipients.csv");
    std::fs::write(&csv, "to,name\n".to_string() + &(0..5000).map(|i| format!("1555{i:07},x\n")).collect::<String>())
        .unwrap();
    let (ok, out, err) = convoscope(
        &[
            "plan",
            "--baseline",
            "0.10",
            "--mde",
            "0.01",
            "--experiment",
            "guarded",
            "--recipients",
            csv.to_str().unwrap(),
            "--format",
            "json",
        ],
        &[("CONVOSCOPE_EXPERIMENTS".into(), defs.display().to_string())],
    )
    .await;
    assert!(ok, "{err}");
    let cli: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(cli["per_arm"], plan["per_arm"], "the command and the API plan alike");
    assert_eq!(cli["at_size"], json!(5000));
    assert!(cli["power_at_size"].as_f64().unwrap() < 0.5, "5,000 recipients are too few for 0.01: {cli}");
}

/// `--by country` on generated data: the slices are the largest countries and `other`, each
/// variant's slices add up to its whole, every slice has its own SRM and decision, and the
/// first goal's slice-against-rest test is there.
#[tokio::test]
async fn a_breakdown_by_country_adds_up_to_the_whole() {
    use convoscope::analytics::Analytics;
    use convoscope::analytics::reports::{Breakdown, Params};
    use convoscope::store::Storage;
    let storage = Storage::open("memory://").unwrap();
    let spec = convoscope::generate::Spec {
        events: 80_000,
        days: 10,
        seed: 7,
        start: chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
    };
    convoscope::generate::generate(&storage, &spec).await.unwrap();
    let a = Analytics::new(storage, 7).unwrap();
    let by = Params { by: Some(Breakdown::Country), ..Params::default() };
    let r = a.report("experiment", &by).await.unwrap();
    let col = |n: &str| r.columns.iter().position(|c| c == n).unwrap();
    let (iv, im, is, ix, isrm, isp, idec) = (
        col("variant"),
        col("metric"),
        col("slice"),
        col("exposures"),
        col("slice_srm_p_value"),
        col("slice_p_value"),
        col("decision"),
    );
    let goal: Vec<&Vec<Value>> = r.rows.iter().filter(|row| row[im] == "converted").collect();
    let whole: Vec<&&Vec<Value>> = goal.iter().filter(|row| row[is].is_null()).collect();
    let slices: Vec<&&Vec<Value>> = goal.iter().filter(|row| !row[is].is_null()).collect();
    assert!(!whole.is_empty() && !slices.is_empty());
    let names: std::collections::BTreeSet<&str> = slices.iter().map(|row| row[is].as_str().unwrap()).collect();
    assert!(names.len() >= 2 && names.len() <= 21, "{names:?}");
    for w in &whole {
        let variant = &w[iv];
        let sum: u64 = slices.iter().filter(|row| &row[iv] == variant).map(|row| row[ix].as_u64().unwrap()).sum();
        assert_eq!(sum, w[ix].as_u64().unwrap(), "{variant}: the slices add up to the whole");
    }
    for s in &slices {
        assert!(s[isrm].is_number(), "every slice has its SRM: {s:?}");
        if s[idec].is_string() {
            let p = s[isp].as_f64().expect("a compared slice has its slice-against-rest p");
            assert!((0.0..=1.0).contains(&p));
        }
    }
    // Without --by there are no slice rows; with an unknown breakdown, a clear error.
    let plain = a.report("experiment", &Params::default()).await.unwrap();
    assert!(plain.rows.iter().all(|row| row[is].is_null()));
    assert!(Breakdown::parse("city").unwrap_err().to_string().contains("country, locale, template, variant, category"));
}
