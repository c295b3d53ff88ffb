//! The experiment report's kept table (rows per exposed contact, which compaction writes): the
//! report reads it while it covers the store, with the answers computing gives, and computes
//! again as soon as a file it does not cover lands, an erasure or retention removes events, or
//! a run filters by campaign.

use convoscope::analytics::Analytics;
use convoscope::analytics::reports::{Breakdown, Computed as Report, Coverage, Kept, Metric, Params};
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

/// The one table file of the current build.
fn table_file(dir: &std::path::Path) -> std::path::PathBuf {
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(EXPERIMENT_CONTACTS_DIR).join("manifest.json")).unwrap())
            .unwrap();
    dir.join(EXPERIMENT_CONTACTS_DIR).join(m["build"].as_str().unwrap()).join("contacts.parquet")
}

/// Rewrites the table `file` without its rows of `variant`; returns the file as it was.
fn drop_variant(file: &std::path::Path, variant: &str) -> Vec<u8> {
    let original = std::fs::read(file).unwrap();
    let reader =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(file).unwrap());
    let rows: Vec<arrow::array::RecordBatch> = reader.unwrap().build().unwrap().map(|b| b.unwrap()).collect();
    let all = arrow::compute::concat_batches(&rows[0].schema(), &rows).unwrap();
    let of = arrow::compute::cast(all.column_by_name("variant").unwrap(), &arrow::datatypes::DataType::Utf8).unwrap();
    let keep = arrow::compute::kernels::cmp::neq(&of, &arrow::array::StringArray::new_scalar(variant)).unwrap();
    let without = arrow::compute::filter_record_batch(&all, &keep).unwrap();
    let mut buf = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, without.schema(), None).unwrap();
    w.write(&without).unwrap();
    w.close().unwrap();
    std::fs::write(file, &buf).unwrap();
    original
}

/// The exposures of `variant` in the goal's rows.
fn exposures_of(r: &Report, variant: &str) -> i64 {
    let col = |name: &str| r.columns.iter().position(|c| c == name).unwrap();
    let (v, e, m) = (col("variant"), col("exposures"), col("metric"));
    r.rows.iter().filter(|row| row[v] == variant && row[m] == "converted").map(|row| row[e].as_i64().unwrap_or(0)).sum()
}

/// An event of the generated experiment's campaign on 2026-01-03 at `hour`.
fn event(id: &str, kind: &str, hour: u32) -> convoscope::event::Event {
    let at = chrono::NaiveDate::from_ymd_opt(2026, 1, 3).unwrap().and_hms_opt(hour, 0, 0).unwrap().and_utc();
    convoscope::event::Event::new(id.into(), kind, at.timestamp_micros(), 0, "api")
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
    assert_eq!(a.experiment_table().await.unwrap(), Coverage::No);
    same("computed over the rollups", &reports(&a).await, &computed);

    let Kept::Built { contacts, events_files } = a.keep_experiment_contacts().await.unwrap() else { panic!("a build") };
    assert!(contacts > 1000, "{contacts} exposed contacts");
    assert_eq!(events_files, storage.list_event_files().await.unwrap().len());
    assert_eq!(a.experiment_table().await.unwrap(), Coverage::Whole);
    assert_eq!(a.keep_experiment_contacts().await.unwrap(), Kept::Current { contacts });
    same("from the kept table", &reports(&a).await, &computed);
    // Analytics reading the events alone never reads it.
    assert_eq!(events.experiment_table().await.unwrap(), Coverage::No);

    // The report reads the table: with its rows of one variant gone, that variant has no
    // exposures left.
    let table = table_file(dir.path());
    let original = drop_variant(&table, "bold");
    assert!(exposures_of(&computed[0], "bold") > 0);
    assert_eq!(exposures_of(&a.report("experiment", &Params::default()).await.unwrap(), "bold"), 0);
    // A campaign filter changes which send is a contact's first: computed, not read (the
    // variant the table lacks is there).
    let campaign = Params::parse(None, None, Some("spring_sale"), None).unwrap();
    same(
        "a campaign's",
        &[a.report("experiment", &campaign).await.unwrap()],
        &[events.report("experiment", &campaign).await.unwrap()],
    );
    // A tenant's session neither reads nor builds it: the table holds every tenant's contacts.
    let tenant = convoscope::config::Tenant {
        name: "gen".into(),
        account_ids: vec!["100200300400500".into()],
        phone_number_ids: Vec::new(),
        retention_days: None,
    };
    let theirs = a.clone().for_tenant(Some(std::sync::Arc::new(tenant)));
    assert_eq!(theirs.experiment_table().await.unwrap(), Coverage::No);
    assert_eq!(theirs.keep_experiment_contacts().await.unwrap(), Kept::NotKept);
    std::fs::write(&table, &original).unwrap();

    // Files the table does not cover: a late exposure of a new contact; a receipt without its
    // contact for a message of the experiment and a conversion of that message's contact. The
    // report reads the table for every other contact and computes these contacts' rows.
    let mut late = event("late-1", "message.sent", 10);
    late.message_id = Some("late-m1".into());
    late.contact_key = Some("late-contact".into());
    late.campaign = Some("spring_sale".into());
    late.template = Some("spring_promo_control".into());
    late.experiment = Some("spring_cta".into());
    late.variant = Some("control".into());
    storage.write_events(vec![late], "late").await.unwrap();
    use arrow::array::AsArray;
    let (_, sent) = a
        .query(
            "SELECT message_id, contact_key FROM events WHERE event_type = 'message.sent' \
             AND experiment = 'spring_cta' AND variant = 'bold' ORDER BY occurred_at LIMIT 1",
        )
        .await
        .unwrap();
    let (message, contact) = (
        sent[0].column(0).as_string_view().value(0).to_string(),
        sent[0].column(1).as_string_view().value(0).to_string(),
    );
    let mut read = event("late-2", "message.read", 11);
    read.message_id = Some(message);
    let mut conversion = event("late-3", "conversion", 12);
    conversion.contact_key = Some(contact);
    conversion.revenue_micros = Some(25_000_000);
    storage.write_events(vec![read, conversion], "later").await.unwrap();
    assert_eq!(a.experiment_table().await.unwrap(), Coverage::Behind { files: 2 });
    let now = reports(&events).await;
    assert_eq!(exposures(&now[0]), exposures(&computed[0]) + 1);
    same("with newer files", &reports(&a).await, &now);
    // Read beside them: the table's rows of one variant gone, that variant keeps only the
    // contact the newer files touched.
    let original = drop_variant(&table, "bold");
    assert_eq!(exposures_of(&a.report("experiment", &Params::default()).await.unwrap(), "bold"), 1);
    std::fs::write(&table, &original).unwrap();
    assert!(matches!(a.keep_experiment_contacts().await.unwrap(), Kept::Built { .. }));
    assert_eq!(a.experiment_table().await.unwrap(), Coverage::Whole);
    same("from the table built again", &reports(&a).await, &now);
    assert_eq!(
        kept_files(dir.path()).iter().filter(|f| f.extension().is_some_and(|e| e == "parquet")).count(),
        2,
        "the build replaced stays until the next, for a report still reading it"
    );

    // Other settings (a longer attribution window) make another table.
    let longer = Analytics::new(storage.clone(), 3).unwrap().with_experiments(a.experiments.as_ref().clone());
    assert_eq!(longer.experiment_table().await.unwrap(), Coverage::No);

    // Retention and erasure remove events the table was computed from: it goes with them.
    let mut lease = convoscope::maintenance::Lease::new(storage.clone(), "test");
    let tombstones = convoscope::store::tombstones::Tombstones::default();
    let stone = convoscope::store::tombstones::Tombstone::new("late-contact".into(), None);
    convoscope::maintenance::erase(&storage, &tombstones, stone, &mut lease).await.unwrap();
    assert!(kept_files(dir.path()).is_empty(), "{:?}", kept_files(dir.path()));
    assert_eq!(a.experiment_table().await.unwrap(), Coverage::No);
    same("after the erasure", &reports(&a).await, &reports(&events).await);
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
    let covered = eventually(
        async || a.experiment_table().await.is_ok_and(|c| c == Coverage::Whole),
        std::time::Duration::from_secs(60),
    )
    .await;
    assert!(covered, "no round kept the table: {:?}", kept_files(dir.path()));
    let (status, api) = s.get_as(READ, "/v1/reports/experiment?format=json").await;
    assert_eq!(status, 200, "{api}");
    let computed = a.clone().without_rollups().report("experiment", &Params::default()).await.unwrap();
    let computed = computed.to_json();
    let (x, y) = (sorted_rows(&api), sorted_rows(&computed));
    assert!(!x.is_empty());
    assert!(x.len() == y.len() && x.iter().zip(&y).all(|(p, q)| rows_equal(p, q)), "{api}\nvs {computed}");
    s.stop().await;
}
