//! Stopping a variant a guardrail shows harming, for experiments with `auto_stop = true`.
//!
//! Every `auto_stop_check_secs`, the experiment report runs for each such running experiment;
//! a variant whose guardrail's always-valid interval lies wholly beyond its margin on the side
//! of harm (the report's `always_valid_harm`) is stopped in the send path, which from then on
//! gives its contacts the control ([`crate::send::Sender::stop_variant`]), and an
//! `experiment.variant_stopped` event records when and why, which the report and the page show.
//! The always-valid test may be read at every check without inflating false alarms; a variant
//! whose experiment fails its sample-ratio check is left alone, as no figure of it can be
//! trusted. At start the variants stopped before (by this collector or another) are read back
//! from the store.

use std::sync::{Arc, Weak};
use std::time::Duration;

use serde_json::Value;

use super::App;
use crate::analytics::reports::{Params, Report};
use crate::event::Event;

/// Restores the variants stopped before, then (when an experiment has `auto_stop`) watches
/// until the service is gone. A stop outlives turning `auto_stop` off: the variant stays
/// stopped, as the report says, until the experiment is replaced.
pub(super) async fn watch(app: Weak<App>, every: Duration) {
    match app.upgrade() {
        Some(app) => {
            restore(&app).await;
            if !app.analytics.experiments.experiments.iter().any(|e| e.analysis.auto_stop) {
                return;
            }
        }
        None => return,
    }
    loop {
        tokio::time::sleep(every).await;
        let Some(app) = app.upgrade() else { return };
        check(&app).await;
    }
}

/// The variants stopped before, back into the send path.
async fn restore(app: &App) {
    let Some(sender) = &app.sender else { return };
    let sql = "SELECT DISTINCT experiment, variant FROM events \
               WHERE event_type = 'experiment.variant_stopped' AND experiment IS NOT NULL AND variant IS NOT NULL";
    match app.analytics.query(sql).await {
        Ok((_, batches)) => {
            for row in crate::analytics::format::rows(&batches).unwrap_or_default() {
                if let (Some(e), Some(v)) = (row[0].as_str(), row[1].as_str()) {
                    sender.stop_variant(e, v);
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not read the stopped variants; the next check finds them again"),
    }
}

/// One check of every experiment that asks for it.
pub(super) async fn check(app: &Arc<App>) {
    let Some(sender) = &app.sender else { return };
    let watched: Vec<String> = app
        .analytics
        .experiments
        .experiments
        .iter()
        .filter(|e| e.analysis.auto_stop && e.status == crate::experiments::Status::Running)
        .map(|e| e.name.clone())
        .collect();
    for name in watched {
        let params = Params { experiment: Some(name.clone()), ..Params::default() };
        let report = match app.analytics.run(Report::Experiment, &params).await {
            Ok(r) => r,
            Err(e) => {
                app.metrics.error("auto_stop");
                tracing::warn!(experiment = %name, error = %e, "could not check the guardrails");
                continue;
            }
        };
        let col = |c: &str| report.columns.iter().position(|x| x == c);
        let (Some(iv), Some(irole), Some(iharm), Some(isrm), Some(islice), Some(im), Some(iwhy)) = (
            col("variant"),
            col("role"),
            col("always_valid_harm"),
            col("srm_flag"),
            col("slice"),
            col("metric"),
            col("decision_reason"),
        ) else {
            continue;
        };
        for row in &report.rows {
            let harmful = row[irole] == "guardrail" && row[iharm] == Value::Bool(true);
            if !harmful || row[isrm] == Value::Bool(true) || !row[islice].is_null() {
                continue;
            }
            let variant = row[iv].as_str().unwrap_or_default();
            if !sender.stop_variant(&name, variant) {
                continue;
            }
            tracing::warn!(experiment = %name, variant, metric = %row[im], "a guardrail shows harm: variant stopped");
            let now = crate::event::now_micros();
            let mut e =
                Event::new(format!("autostop:{name}:{variant}"), "experiment.variant_stopped", now, now, "sender");
            e.experiment = Some(name.clone());
            e.variant = Some(variant.to_string());
            e.attributes = Some(serde_json::json!({"metric": row[im], "reason": row[iwhy]}).to_string());
            if let Err(err) = app.store("sender", vec![e]).await {
                // Unrecorded, the stop would not survive a restart nor show in the report:
                // undone here, and the next check stops and records it again.
                sender.unstop_variant(&name, variant);
                app.metrics.error("auto_stop");
                tracing::error!(error = %err, "a stopped variant could not be recorded; the next check retries");
            }
        }
    }
}
