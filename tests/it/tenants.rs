//! Two tenants in one store: a tenant's token reads, lists, writes and sends only its own, by
//! every door (`/v1/query` and its escapes, every report, the page, `/v1/experiments`,
//! `/v1/events`, `/v1/send`), and an attempt past its tenant is a 403, never an answer.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray};
use convoscope::analytics::Analytics;
use convoscope::analytics::reports::{Params, names};
use convoscope::config::{Config, Tenant};
use convoscope::store::Storage;
use object_store::ObjectStoreExt;
use serde_json::{Value, json};

use crate::common::*;

const ACME_READ: &str = "acme-read-token";
const ACME_INGEST: &str = "acme-ingest-token";
const ACME_SEND: &str = "acme-send-token";
const GLOBEX_READ: &str = "globex-read-token";
/// Globex's ids and the prefix of its campaigns and templates: none may show in an answer to
/// Acme's token.
const GLOBEX_ACCOUNT: &str = "globex-waba-777";
const GLOBEX_PHONE: &str = "globex-phone-888";
const GLOBEX_MARK: &str = "globex";

fn tenants() -> Vec<Tenant> {
    vec![
        Tenant {
            name: "acme".into(),
            account_ids: vec!["acme-waba-111".into()],
            phone_number_ids: vec!["acme-phone-222".into()],
            retention_days: None,
        },
        Tenant {
            name: "globex".into(),
            account_ids: vec![GLOBEX_ACCOUNT.into()],
            phone_number_ids: vec![GLOBEX_PHONE.into()],
            retention_days: None,
        },
    ]
}

/// Whose a generated row is: by its contact, else its message, else itself (so a contact's
/// events are one tenant's, as they would be).
fn is_globex(contact: Option<&str>, message: Option<&str>, event_id: &str) -> bool {
    let key = contact.or(message).unwrap_or(event_id);
    convoscope::ids::key(key) % 2 == 0
}

/// Generated events split between the tenants: the store of both (`both`) and the store of
/// Acme's rows alone (`acme_only`), each file rewritten with its tenant's ids, and Globex's
/// campaigns and templates prefixed with its mark.
async fn two_tenants(both: &Storage, acme_only: &Storage) -> (usize, usize) {
    let (mut acme_rows, mut globex_rows) = (0, 0);
    for (j, batch) in generated_batches(20_000, 7, 7).await.into_iter().enumerate() {
        let col = |n: &str| batch.column_by_name(n).unwrap().as_string::<i32>().clone();
        let (contact, message, id) = (col("contact_key"), col("message_id"), col("event_id"));
        let text = |a: &StringArray, r: usize| a.is_valid(r).then(|| a.value(r).to_string());
        let globex: Vec<bool> = (0..batch.num_rows())
            .map(|r| is_globex(text(&contact, r).as_deref(), text(&message, r).as_deref(), id.value(r)))
            .collect();
        let owned = |acme: &str, globex_id: &str| -> ArrayRef {
            Arc::new(StringArray::from_iter_values(globex.iter().map(|g| if *g { globex_id } else { acme })))
        };
        let marked = |name: &str| -> ArrayRef {
            let c = col(name);
            Arc::new(StringArray::from_iter(
                (0..batch.num_rows())
                    .map(|r| text(&c, r).map(|v| if globex[r] { format!("{GLOBEX_MARK}_{v}") } else { v })),
            ))
        };
        let mut columns = batch.columns().to_vec();
        let schema = batch.schema();
        for (n, field) in schema.fields().iter().enumerate() {
            match field.name().as_str() {
                "account_id" => columns[n] = owned("acme-waba-111", GLOBEX_ACCOUNT),
                "phone_number_id" => columns[n] = owned("acme-phone-222", GLOBEX_PHONE),
                "campaign" | "template" => columns[n] = marked(field.name()),
                _ => {}
            }
        }
        let rewritten = RecordBatch::try_new(schema.clone(), columns).unwrap();
        let keep = arrow::array::BooleanArray::from(globex.iter().map(|g| !g).collect::<Vec<_>>());
        let acme = arrow::compute::filter_record_batch(&rewritten, &keep).unwrap();
        acme_rows += acme.num_rows();
        globex_rows += rewritten.num_rows() - acme.num_rows();
        both.write_batches(vec![rewritten], &format!("gen-{j}")).await.unwrap();
        acme_only.write_batches(vec![acme], &format!("gen-{j}")).await.unwrap();
    }
    (acme_rows, globex_rows)
}

fn tenant_config(dir: &std::path::Path) -> Config {
    let mut cfg = config(dir);
    cfg.tenants = tenants();
    cfg.tokens.extend([
        format!("read:{ACME_READ}@acme"),
        format!("ingest:{ACME_INGEST}@acme"),
        format!("send:{ACME_SEND}@acme"),
        format!("read:{GLOBEX_READ}@globex"),
    ]);
    let experiments = dir.join("experiments.toml");
    let variants = r#"
[[experiment.variant]]
name = "control"
weight = 50
control = true
template = "spring_promo_control"
language = "en_US"
category = "marketing"
body = []

[[experiment.variant]]
name = "emoji"
weight = 50
template = "spring_promo_emoji"
language = "en_US"
category = "marketing"
body = []
"#;
    let text = format!(
        "[[experiment]]\nname = \"acme_spring\"\nstatus = \"running\"\nsalt = \"a\"\ntenant = \"acme\"\n{variants}\n\
         [[experiment]]\nname = \"globex_spring\"\nstatus = \"running\"\nsalt = \"g\"\ntenant = \"globex\"\n{variants}"
    );
    std::fs::write(&experiments, text).unwrap();
    cfg.experiments = experiments;
    cfg
}

#[tokio::test]
async fn a_tenants_token_reads_only_its_tenants_rows_by_every_door() {
    let dir = test_dir();
    let both = Storage::open(&format!("file://{}", dir.path().join("store").display())).unwrap();
    let acme_only = Storage::open(&format!("file://{}", dir.path().join("acme-only").display())).unwrap();
    let (acme_rows, globex_rows) = two_tenants(&both, &acme_only).await;
    assert!(acme_rows > 5_000 && globex_rows > 5_000, "{acme_rows} {globex_rows}");
    let mut cfg = tenant_config(dir.path());
    // Low enough that a cross join of the tenant's events meets it.
    cfg.max_unkeyed_join_rows = 1_000_000;
    let s = TestServer::start(cfg).await;

    // The operator sees both; each tenant its own.
    let count = |token: &'static str| {
        let s = &s;
        async move { s.sql_as(token, "SELECT COUNT(*) FROM events").await }
    };
    assert_eq!(count(READ).await.1["rows"], json!([[acme_rows + globex_rows]]));
    assert_eq!(count(ACME_READ).await.1["rows"], json!([[acme_rows]]));
    assert_eq!(count(GLOBEX_READ).await.1["rows"], json!([[globex_rows]]));

    // Every statement either is refused or answers with Acme's rows alone: no Globex id,
    // campaign or template in any answer, and every count Acme's.
    let answers_only_acme = [
        "SELECT account_id, phone_number_id, campaign, template FROM events",
        "SELECT * FROM events WHERE account_id = 'globex-waba-777' OR phone_number_id = 'globex-phone-888'",
        "SELECT campaign, template FROM messages",
        "SELECT campaign, template FROM message_facts",
        "SELECT * FROM conversation_facts LIMIT 50",
        "SELECT experiment, variant, campaign FROM exposures",
        "SELECT experiment, variant, campaign FROM exposure_facts",
        "SELECT * FROM contact_events",
        "SELECT * FROM contact_event_facts",
        "WITH x AS (SELECT * FROM events) SELECT account_id, campaign FROM x",
        "WITH events AS (SELECT * FROM events WHERE true) SELECT DISTINCT account_id FROM events",
        "SELECT campaign FROM events UNION ALL SELECT campaign FROM messages UNION SELECT campaign FROM message_facts",
        "SELECT e.account_id, m.template FROM messages m JOIN events e ON id_key(e.message_id) = m.message_key",
        "SELECT account_id FROM events WHERE event_id IN (SELECT event_id FROM events WHERE account_id LIKE 'glo%')",
        "SELECT (SELECT MAX(account_id) FROM events) AS a, (SELECT MAX(phone_number_id) FROM events) AS p",
        "SELECT DISTINCT account_id FROM datafusion.public.events",
        "SELECT DISTINCT account_id FROM public.events",
        "/* events of everyone */ SeLeCt DiStInCt AcCoUnT_iD fRoM EvEnTs -- all of them",
        "SELECT DISTINCT \"account_id\" FROM \"events\"",
        "SELECT category, country, price FROM rate_card",
    ];
    for sql in answers_only_acme {
        let (status, v) = s.sql_as(ACME_READ, sql).await;
        assert_eq!(status, 200, "{sql}: {v}");
        let text = v.to_string();
        assert!(
            !text.contains(GLOBEX_MARK) && !text.contains(GLOBEX_ACCOUNT) && !text.contains(GLOBEX_PHONE),
            "{sql} answered with Globex's rows: {}",
            &text[..text.len().min(400)]
        );
    }
    for sql in [
        "SELECT COUNT(*) FROM events",
        "SELECT COUNT(*) FROM (SELECT * FROM events UNION ALL SELECT * FROM events WHERE false)",
        "WITH e AS MATERIALIZED (SELECT event_id FROM events) SELECT COUNT(*) FROM e",
        "SELECT COUNT(*) FROM datafusion.public.events",
    ] {
        let (status, v) = s.sql_as(ACME_READ, sql).await;
        assert_eq!((status, &v["rows"]), (200, &json!([[acme_rows]])), "{sql}: {v}");
    }
    let refused = [
        "SELECT * FROM information_schema.tables",
        "SELECT * FROM information_schema.columns",
        "SELECT * FROM datafusion.information_schema.views",
        "SHOW TABLES",
        "SELECT * FROM audit",
        "SELECT * FROM 'store/events/'",
        "SELECT * FROM read_parquet('store/events/')",
        "SELECT * FROM \"convoscope://store/events/\"",
        "SELECT * FROM convoscope_materialized_0",
        "SELECT * FROM other_catalog.public.events",
        "SELECT * FROM events_raw",
        "EXPLAIN SELECT * FROM events",
        "EXPLAIN ANALYZE SELECT COUNT(*) FROM events",
        "explain verbose select * from events",
    ];
    for sql in refused {
        let (status, v) = s.sql_as(ACME_READ, sql).await;
        assert_eq!(status, 403, "{sql} must be refused as outside the tenant: {v}");
    }
    // Expressions that fail on a value: wherever the optimizer evaluates them, they meet
    // Acme's values or nulls, so an error names no Globex value and no answer depends on one.
    for sql in [
        "SELECT count(*) FROM events WHERE CASE WHEN phone_number_id = 'globex-phone-888' THEN CAST(campaign AS INT) = 0 ELSE true END",
        "SELECT count(*) FROM events WHERE CASE WHEN campaign LIKE 'globex%' THEN CAST(template AS INT) = 0 ELSE true END",
        "SELECT count(*) FROM events WHERE 1 / (CASE WHEN campaign LIKE 'globex%' THEN 0 ELSE 1 END) = 1",
        "SELECT count(*) FROM messages WHERE CASE WHEN template LIKE 'globex%' THEN CAST(template AS INT) = 0 ELSE true END",
        "SELECT count(*) FROM events WHERE CAST(campaign AS INT) = 0",
    ] {
        let (status, v) = s.sql_as(ACME_READ, sql).await;
        let text = v.to_string();
        assert!(!text.contains(GLOBEX_MARK) && !text.contains(GLOBEX_PHONE), "{sql}: {status} {text}");
        if status == 200 && sql.contains("globex") && sql.contains("FROM events") {
            assert_eq!(v["rows"], json!([[acme_rows]]), "{sql}");
        }
    }
    // The join guard refuses without telling how many rows the store holds.
    let (status, v) = s.sql_as(ACME_READ, "SELECT count(*) FROM events a CROSS JOIN events b").await;
    assert_eq!(status, 422, "{v}");
    assert!(!v["message"].as_str().unwrap_or("").contains("rows with"), "{v}");

    // Statements nobody may run are refused as for everyone (400), still never answered.
    for sql in [
        "CREATE VIEW everyone AS SELECT * FROM events",
        "COPY (SELECT * FROM events) TO '/tmp/everyone.parquet'",
        "SET datafusion.catalog.information_schema = true",
        "INSERT INTO events SELECT * FROM events",
        "DROP TABLE events",
    ] {
        let (status, v) = s.sql_as(ACME_READ, sql).await;
        assert!(status == 400 || status == 403, "{sql}: {status} {v}");
        assert!(v.get("rows").is_none(), "{sql} answered: {v}");
    }

    // Every report for Acme's token equals the report over a store of Acme's rows alone.
    let alone = Analytics::new(acme_only, 7).unwrap().with_experiments(
        convoscope::experiments::Experiments::load_if_present(&dir.path().join("experiments.toml")).unwrap(),
    );
    for name in names() {
        let expected = alone.report(name, &Params::default()).await.unwrap().to_json();
        let r = s.client.get(s.url(&format!("/v1/reports/{name}"))).bearer_auth(ACME_READ).send().await.unwrap();
        assert_eq!(r.status(), 200, "{name}");
        let got: Value = r.json().await.unwrap();
        let (g, e) = (sorted_rows(&got), sorted_rows(&expected));
        assert!(!e.is_empty() || name == "experiment", "{name} has no rows over Acme's data");
        assert!(rows_equal(&json!(g), &json!(e)), "{name}: tenant {g:?}\nalone {e:?}");
        assert!(!got.to_string().contains(GLOBEX_MARK), "{name}");
    }

    // Where the rollups do not cover the store, a tenant's reports read its events: the same.
    let rollup = both.list_rollup_files().await.unwrap().into_iter().next().expect("a rollup file").1.location;
    both.store.delete(&rollup).await.unwrap();
    for name in ["funnel", "cost", "experiment", "sla"] {
        let expected = alone.report(name, &Params::default()).await.unwrap().to_json();
        let r = s
            .client
            .get(s.url(&format!("/v1/reports/{name}?to=2026-12-31")))
            .bearer_auth(ACME_READ)
            .send()
            .await
            .unwrap();
        let got: Value = r.json().await.unwrap();
        assert!(rows_equal(&json!(sorted_rows(&got)), &json!(sorted_rows(&expected))), "{name} from the events");
    }

    // The page: a session from Acme's token shows Acme's reports only.
    let page_for = |token: &'static str| {
        let s = &s;
        async move {
            let c = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
            let login = c.post(s.url("/login")).form(&[("token", token)]).send().await.unwrap();
            let cookie = login.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
            let page = c.get(s.url("/")).header("cookie", cookie).send().await.unwrap();
            assert_eq!(page.status(), 200);
            page.text().await.unwrap()
        }
    };
    let html = page_for(ACME_READ).await;
    assert!(html.contains("spring_sale") && !html.contains(GLOBEX_MARK), "the page shows Acme's campaigns only");
    assert!(page_for(READ).await.contains(GLOBEX_MARK), "and the operator's shows both");

    // Experiments: each tenant lists its own.
    let listed = |token: &'static str| {
        let s = &s;
        async move {
            let v: Value =
                s.client.get(s.url("/v1/experiments")).bearer_auth(token).send().await.unwrap().json().await.unwrap();
            let names: Vec<String> =
                v["experiment"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap().to_string()).collect();
            names
        }
    };
    assert_eq!(listed(ACME_READ).await, ["acme_spring"]);
    assert_eq!(listed(READ).await, ["acme_spring", "globex_spring"]);

    // Operator-only doors.
    let flush = s.client.post(s.url("/v1/admin/flush")).bearer_auth(ACME_READ).send().await.unwrap();
    assert_eq!(flush.status(), 403);
    s.stop().await;
}

#[tokio::test]
async fn a_tenants_events_are_stamped_and_its_sends_stay_its_own() {
    let dir = test_dir();
    let s = TestServer::start(tenant_config(dir.path())).await;
    let post = |token: &'static str, body: Value| {
        let s = &s;
        async move {
            let r = s.client.post(s.url("/v1/events")).bearer_auth(token).json(&body).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let ev = |id: &str| json!({"event_id": id, "event_type": "conversion", "occurred_at": "2026-01-02T00:00:00Z", "campaign": "acme_c"});
    let (status, v) = post(ACME_INGEST, json!([ev("acme-1")])).await;
    assert_eq!((status, &v["accepted"]), (200, &json!(1)), "{v}");
    let mut claims_globex = ev("acme-2");
    claims_globex["phone_number_id"] = json!(GLOBEX_PHONE);
    let (status, v) = post(ACME_INGEST, json!([ev("acme-3"), claims_globex])).await;
    assert_eq!(status, 403, "{v}");
    assert!(v.to_string().contains(GLOBEX_PHONE));
    s.flush().await;
    let rows = s.query("SELECT event_id, account_id, phone_number_id FROM events ORDER BY event_id").await;
    assert_eq!(
        rows,
        vec![vec![json!("acme:acme-1"), json!("acme-waba-111"), json!("acme-phone-222")]],
        "stamped; nothing of the refused request stored"
    );
    let (_, globex_view) = s.sql_as(GLOBEX_READ, "SELECT COUNT(*) FROM events").await;
    assert_eq!(globex_view["rows"], json!([[0]]));

    // Sends: another tenant's experiment is refused; so is Acme's own while the send path's
    // number is not Acme's (no provider here: the tenant check comes first).
    let send = |experiment: &str| {
        let s = &s;
        let body = json!({"experiment": experiment, "to": "+15550100001"});
        async move { s.client.post(s.url("/v1/send")).bearer_auth(ACME_SEND).json(&body).send().await.unwrap() }
    };
    let r = send("globex_spring").await;
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("is not tenant"));
    let r = send("acme_spring").await;
    assert_eq!(r.status(), 403, "the send path has no number of Acme's");
    s.stop().await;
}

#[tokio::test]
async fn a_tenant_sends_through_its_own_number_and_its_sends_are_its_rows() {
    let dir = test_dir();
    let mut cfg = tenant_config(dir.path());
    cfg.provider = Some("meta".into());
    cfg.meta_phone_number_id = Some("acme-phone-222".into());
    cfg.require_opt_in = vec![];
    let (s, _sandbox) = with_sandbox(cfg, "acme-phone-222", 3).await;
    let r = s
        .client
        .post(s.url("/v1/send"))
        .bearer_auth(ACME_SEND)
        .json(&json!({"experiment": "acme_spring", "to": "+15550100001"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    s.flush().await;
    let (_, v) = s.sql_as(ACME_READ, "SELECT COUNT(*) FROM events WHERE event_type = 'send.accepted'").await;
    assert_eq!(v["rows"], json!([[1]]), "the send is Acme's row");
    let (_, v) = s.sql_as(GLOBEX_READ, "SELECT COUNT(*) FROM events").await;
    assert_eq!(v["rows"], json!([[0]]));
    s.stop().await;
}
