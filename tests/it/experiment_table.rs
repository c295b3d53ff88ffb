//! The experiment report's kept table (rows per exposed contact, which compaction writes): the
//! report reads it while it covers the store, with the answers computing gives, and computes
//! again as soon as a file it does not cover lands, an erasure or retention removes events, or
//! a run filters by campaign.

use convoscope::analytics::Analytics;
use convoscope::analytics::reports::{Breakdown, Computed as Report, Kept, Metric, Params};
use convoscope::store::{EXPERIMENT_CONTACTS_DIR, Storage};

use crate::common::*;

/// Experiments naming every metric of the menu as a goal or guardrail, so every column the
/// table keeps is read.
const DEFINITIONS: &str = r#"
[[experiment]]
name = "spring_cta"
salt = "s"
[experiment.analysis]
goals = ["converted", "revenue"]
guardrails = [{ metric = "opted_out", margin = 0.0 }, { metric = "failed", margin = 0.0 },
              { metric = "blocked", margin = 0.0 }, { metric = "cost", margin = 0.0 },
              { metric = "read", margin = 0.0 }, { metric = "replied", margin = 0.0 },
              { metric = "revenue_per_delivered", margin = 0.0 }]
[[experiment.variant]]
name = "control"
weight = 50
control = true
template = "spring_promo_control"
[[experiment.variant]]
name = "bold"
weight = 25
template = "spring_promo_bold"
[[experiment.variant]]
name = "emoji"
weight = 25
template = "spring_promo_emoji"
"#;

/// The runs compared: ranges, one experiment, every breakdown, a metric asked for.
fn runs() -> Vec<Params> {
    let mut runs = vec![
        Params::default(),
        Params::parse(Some("2026-01-02"), Some("2026-01-04"), None, None).unwrap(),
        Params::parse(None, Some("2026-01-03"), None, None).unwrap(),
        Params::parse(None, None, None, Some("spring_cta")).unwrap(),
        Params { metric: Some(Metric::Replied), ..Params::default() },
    ];
    for by in [Breakdown::Country, Breakdown::Locale, Breakdown::Template] {
        runs.push(Params { by: Some(by), ..Params::default() });
    }
    runs
}

async fn reports(a: &Analytics) -> Vec<Report> {
    let mut out = Vec::new();
    for p in runs() {
        out.push(a.report("experiment", &p).await.unwrap());
    }
    out
}

/// Each run's report the same ([`crate::reports::same`]).
fn same(what: &str, a: &[Report], b: &[Report]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        crate::reports::same(&format!("{what} {:?}", x.params), x, y);
    }
}

/// Exposed contacts, from the goal's rows (each metric's rows repeat them).
fn exposures(r: &Report) -> i64 {
    let col = |name: &str| r.columns.iter().position(|c| c == name).unwrap();
    let (i, m) = (col("exposures"), col("metric"));
    r.rows.iter().filter(|row| row[m] == "converted").map(|row| row[i].as_i64().unwrap_or(0)).sum()
}

fn kept_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    all_files(&dir.join(EXPERIMENT_CONTACTS_DIR))
}

#[tokio::test]
async fn the_kept_table_gives_what_computing_gives_while_it_covers_the_store() {
    let dir = test_dir();
    let storage = Storage::open(&format!("file://{}", dir.path().display())).unwrap();
    let spec = convoscope::generate::Spec {
        events: 60_000,
        days: 6,
        seed: 11,
        start: chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
    };
    convoscope::generate::generate(&storage, &spec).await.unwrap();
    let defs = convoscope::experiments::Experiments::parse(DEFINITIONS, "test.toml").unwrap();
    let a = Analytics::new(storage.clone(), 2).unwrap().with_experiments(defs);
    // The reference: every run computed from the events.
    let events = a.clone().without_rollups();
    let computed = reports(&events).await;
    assert!(!a.experiment_table_covers().await.unwrap());
    same("computed over the rollups", &reports(&a).await, &computed);

    let Kept::Built { contacts, events_files } = a.keep_experiment_contacts().await.unwrap() else { panic!("a build") };
    assert!(contacts > 1000, "{contacts} exposed contacts");
    assert_eq!(events_files, storage.list_event_files().await.unwrap().len());
    assert!(a.experiment_table_covers().await.unwrap());
    assert_eq!(a.keep_experiment_contacts().await.unwrap(), Kept::Current { contacts });
    same("from the kept table", &reports(&a).await, &computed);
    // A tenant's session, or analytics reading the events alone, never reads it.
    assert!(!events.experiment_table_covers().await.unwrap());

    // The report reads the table: with its rows of one variant gone, that variant has no
    // exposures left.
    let tables: Vec<_> =
        kept_files(dir.path()).into_iter().filter(|f| f.extension().is_some_and(|e| e == "parquet")).collect();
    assert_eq!(tables.len(), 1, "{tables:?}");
    let table = &tables[0];
    let original = std::fs::read(table).unwrap();
    let file = std::fs::File::open(table).unwrap();
    let rows: Vec<arrow::array::RecordBatch> =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap()
            .map(|b| b.unwrap())
            .collect();
    let all = arrow::compute::concat_batches(&rows[0].schema(), &rows).unwrap();
    let variant =
        arrow::compute::cast(all.column_by_name("variant").unwrap(), &arrow::datatypes::DataType::Utf8).unwrap();
    let keep = arrow::compute::kernels::cmp::neq(&variant, &arrow::array::StringArray::new_scalar("bold")).unwrap();
    let without = arrow::compute::filter_record_batch(&all, &keep).unwrap();
    let mut buf = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, without.schema(), None).unwrap();
    w.write(&without).unwrap();
    w.close().unwrap();
    std::fs::write(table, &buf).unwrap();
    let tampered = a.report("experiment", &Params::default()).await.unwrap();
    let bold = |r: &Report| {
        let (v, e) = (
            r.columns.iter().position(|c| c == "variant").unwrap(),
            r.columns.iter().position(|c| c == "exposures").unwrap(),
        );
        r.rows.iter().filter(|row| row[v] == "bold").map(|row| row[e].as_i64().unwrap_or(0)).sum::<i64>()
    };
    assert!(bold(&computed[0]) > 0);
    assert_eq!(bold(&tampered), 0, "the report read the table");
    std::fs::write(table, &original).unwrap();
    // A campaign filter changes which send is a contact's first: computed, not read.
    let campaign = Params::parse(None, None, Some("spring_sale"), None).unwrap();
    same(
        "a campaign's",
        &[a.report("experiment", &campaign).await.unwrap()],
        &[events.report("experiment", &campaign).await.unwrap()],
    );

    // A file the table does not cover: a late exposure of a new contact. The report computes
    // (the new contact counts) until the table is built again.
    let at = chrono::NaiveDate::from_ymd_opt(2026, 1, 3).unwrap().and_hms_opt(10, 0, 0).unwrap().and_utc();
    let mut e = convoscope::event::Event::new("late-1".into(), "message.sent", at.timestamp_micros(), 0, "api");
    e.message_id = Some("late-m1".into());
    e.contact_key = Some("late-contact".into());
    e.campaign = Some("spring_sale".into());
    e.template = Some("spring_promo_control".into());
    e.experiment = Some("spring_cta".into());
    e.variant = Some("control".into());
    storage.write_events(vec![e], "late").await.unwrap();
    assert!(!a.experiment_table_covers().await.unwrap());
    let now = reports(&events).await;
    assert_eq!(exposures(&now[0]), exposures(&computed[0]) + 1);
    same("after a new file", &reports(&a).await, &now);
    assert!(matches!(a.keep_experiment_contacts().await.unwrap(), Kept::Built { .. }));
    same("from the table built again", &reports(&a).await, &now);
    assert_eq!(
        kept_files(dir.path()).iter().filter(|f| f.extension().is_some_and(|e| e == "parquet")).count(),
        2,
        "the build replaced stays until the next, for a report still reading it"
    );

    // Other settings (a longer attribution window) make another table.
    let longer = Analytics::new(storage.clone(), 3).unwrap().with_experiments(a.experiments.as_ref().clone());
    assert!(!longer.experiment_table_covers().await.unwrap());

    // Retention and erasure remove events the table was computed from: it goes with them.
    let mut lease = convoscope::maintenance::Lease::new(storage.clone(), "test");
    let tombstones = convoscope::store::tombstones::Tombstones::default();
    let stone = convoscope::store::tombstones::Tombstone::new("late-contact".into(), None);
    convoscope::maintenance::erase(&storage, &tombstones, stone, &mut lease).await.unwrap();
    assert!(kept_files(dir.path()).is_empty(), "{:?}", kept_files(dir.path()));
    assert!(!a.experiment_table_covers().await.unwrap());
    same("after the erasure", &reports(&a).await, &computed);
    assert!(matches!(a.keep_experiment_contacts().await.unwrap(), Kept::Built { .. }));
    let policy = convoscope::maintenance::Policy {
        keep_days: 30,
        consent_days: 30,
        audit_days: 30,
        tenants: Vec::new(),
        min_days: 1,
    };
    let today = chrono::NaiveDate::from_ymd_opt(2026, 2, 3).unwrap();
    let removed = convoscope::maintenance::retention(&storage, &policy, today, &mut lease).await.unwrap();
    assert!(!removed.deleted.is_empty());
    assert!(kept_files(dir.path()).is_empty());
}

/// `serve`'s compaction round keeps the table as its last step: events posted and flushed are
/// covered within a few rounds, and `/v1/reports/experiment` gives what computing gives.
#[tokio::test]
async fn serves_round_keeps_the_table_of_what_it_stored() {
    let dir = test_dir();
    let mut cfg = config(dir.path());
    cfg.compact_every_secs = 1;
    let storage = Storage::open(&cfg.storage).unwrap();
    let s = TestServer::start(cfg).await;
    let ndjson = std::fs::read_to_string(fixture("reports/events.ndjson")).unwrap();
    let r = s.client.post(s.url("/v1/events")).bearer_auth(INGEST).body(ndjson).send().await.unwrap();
    assert_eq!(r.status(), 200);
    s.flush().await;
    let a = Analytics::new(storage, 7).unwrap();
    let covered =
        eventually(async || a.experiment_table_covers().await.unwrap_or(false), std::time::Duration::from_secs(60))
            .await;
    assert!(covered, "no round kept the table: {:?}", kept_files(dir.path()));
    let api: serde_json::Value = s
        .client
        .get(s.url("/v1/reports/experiment?format=json"))
        .bearer_auth(READ)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let computed = a.clone().without_rollups().report("experiment", &Params::default()).await.unwrap();
    let computed = computed.to_json();
    let (x, y) = (sorted_rows(&api), sorted_rows(&computed));
    assert!(!x.is_empty());
    assert!(x.len() == y.len() && x.iter().zip(&y).all(|(p, q)| rows_equal(p, q)), "{api}\nvs {computed}");
    s.stop().await;
}
