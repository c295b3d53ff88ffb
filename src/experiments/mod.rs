//! Experiment definitions (`experiments.toml`) and deterministic assignment.
//!
//! ```toml
//! [[experiment]]
//! name = "spring_cta"
//! status = "running"            # draft | running | stopped
//! salt = "spring-2026"
//! campaign = "spring_sale"
//!
//! [[experiment.variant]]
//! name = "control"
//! weight = 50
//! control = true
//! template = "spring_promo_control"
//! language = "en_US"
//! category = "marketing"
//! body = ["{{name}}", "SPRING20"]   # body parameters; {{placeholders}} come from the send
//! ```
//!
//! Assignment hashes `salt:contact_key` into buckets laid out by weight, so a contact gets the
//! same variant across restarts and machines, and changing one experiment's salt reshuffles
//! only that experiment.
//!
//! The send path attaches the experiment, variant and campaign to every message it sends as
//! callback data ([`callback_data`], [`button_payload`]); providers echo it in their receipts
//! and quick-reply payloads, and ingest reads it back ([`parse_callback_data`]), so receipts
//! and replies join back to the variant. Writer and reader of that format live here, together.

mod analysis;

use std::path::Path;

use serde::{Deserialize, Serialize};

pub use self::analysis::{Analysis, Correction, Guardrail, Metric, MetricSettings};
use crate::error::{Error, Result};

/// Buckets assignment hashes into; weights are scaled onto them.
const BUCKETS: u64 = 10_000;

/// All experiments of a file.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Experiments {
    #[serde(default, rename = "experiment")]
    pub experiments: Vec<Experiment>,
    /// How the metrics are computed, for every experiment of the file.
    #[serde(default)]
    pub metrics: MetricSettings,
}

/// One experiment.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    pub name: String,
    #[serde(default = "default_status")]
    pub status: Status,
    pub salt: String,
    /// Campaign recorded on its sends.
    #[serde(default)]
    pub campaign: Option<String>,
    /// The tenant it belongs to: that tenant's tokens see it and send it; without one it is
    /// the operator's alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(rename = "variant")]
    pub variants: Vec<Variant>,
    /// Its goals, guardrails and decision rules ([`Analysis`]).
    #[serde(default)]
    pub analysis: Analysis,
}

/// Lifecycle of an experiment; only running ones send.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Draft,
    Running,
    Stopped,
}

fn default_status() -> Status {
    Status::Draft
}

/// One arm: its share of contacts and the template it sends.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    pub name: String,
    pub weight: f64,
    #[serde(default)]
    pub control: bool,
    pub template: String,
    #[serde(default = "default_language")]
    pub language: String,
    #[serde(default = "default_category")]
    pub category: String,
    /// Body text parameters, in template order; `{{key}}` is filled from the send's params.
    #[serde(default)]
    pub body: Vec<String>,
    /// Quick-reply button payloads, by button index.
    #[serde(default)]
    pub buttons: Vec<String>,
    /// Twilio's Content template (`HX…`) of this variant, which a send through Twilio names
    /// instead of `template`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_sid: Option<String>,
}

fn default_language() -> String {
    "en_US".into()
}

fn default_category() -> String {
    "marketing".into()
}

impl Experiments {
    /// Loads and validates a file; errors name the file, the experiment and the field.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        Self::parse(&text, &path.display().to_string())
    }

    /// The definitions in `path`, or none when the file does not exist.
    pub fn load_if_present(path: &Path) -> Result<Self> {
        if path.exists() { Self::load(path) } else { Ok(Self::default()) }
    }

    /// Parses and validates TOML text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self> {
        let ex: Experiments = toml::from_str(text).map_err(|e| Error::Config(format!("{origin}: {}", e.message())))?;
        ex.metrics.validate().map_err(|why| Error::Config(format!("{origin}: {why}")))?;
        let mut seen = std::collections::HashSet::new();
        for e in &ex.experiments {
            let at =
                |field: &str, why: &str| Error::Config(format!("{origin}: experiment {:?}: {field}: {why}", e.name));
            if e.name.trim().is_empty() {
                return Err(Error::Config(format!("{origin}: an experiment has an empty name")));
            }
            if !seen.insert(e.name.clone()) {
                return Err(at("name", "defined twice"));
            }
            if e.salt.trim().is_empty() {
                return Err(at("salt", "must not be empty"));
            }
            if e.variants.len() < 2 {
                return Err(at("variant", "needs at least two variants"));
            }
            let mut names = std::collections::HashSet::new();
            for v in &e.variants {
                if !names.insert(v.name.as_str()) {
                    return Err(at(&format!("variant {:?}", v.name), "defined twice"));
                }
                if !(v.weight.is_finite() && v.weight > 0.0) {
                    return Err(at(&format!("variant {:?}.weight", v.name), "must be a positive number"));
                }
                if v.template.trim().is_empty() {
                    return Err(at(&format!("variant {:?}.template", v.name), "must not be empty"));
                }
                if !["marketing", "utility", "authentication", "service"].contains(&v.category.as_str()) {
                    return Err(at(
                        &format!("variant {:?}.category", v.name),
                        "must be marketing, utility, authentication or service",
                    ));
                }
            }
            if e.variants.iter().filter(|v| v.control).count() > 1 {
                return Err(at("variant.control", "only one variant may be the control"));
            }
            e.analysis.validate().map_err(|why| Error::Config(format!("{origin}: experiment {:?}: {why}", e.name)))?;
        }
        Ok(ex)
    }

    /// The experiment of that name.
    pub fn get(&self, name: &str) -> Option<&Experiment> {
        self.experiments.iter().find(|e| e.name == name)
    }
}

impl Experiment {
    /// The control: the variant marked so, else the one named `control`, else the first.
    pub fn control(&self) -> &Variant {
        self.variants
            .iter()
            .find(|v| v.control)
            .or_else(|| self.variants.iter().find(|v| v.name == "control"))
            .unwrap_or(&self.variants[0])
    }

    /// The variants, the control first (the order a plan reads the weights in).
    pub fn control_first(&self) -> Vec<&Variant> {
        let control = self.control();
        std::iter::once(control).chain(self.variants.iter().filter(|v| v.name != control.name)).collect()
    }

    /// The variant a contact is assigned to, the same on every run and machine.
    pub fn assign(&self, contact_key: &str) -> &Variant {
        let h = xxhash_rust::xxh3::xxh3_64(format!("{}:{contact_key}", self.salt).as_bytes());
        let bucket = (h % BUCKETS) as f64 / BUCKETS as f64;
        let total: f64 = self.variants.iter().map(|v| v.weight).sum();
        let mut acc = 0.0;
        for v in &self.variants {
            acc += v.weight / total;
            if bucket < acc {
                return v;
            }
        }
        &self.variants[self.variants.len() - 1]
    }

    /// Weight of a variant (0 when unknown).
    pub fn weight_of(&self, variant: &str) -> f64 {
        self.variants.iter().find(|v| v.name == variant).map(|v| v.weight).unwrap_or(0.0)
    }
}

/// The callback data the send path attaches to a message of `experiment`'s `variant`:
/// `exp=<experiment>;variant=<variant>[;campaign=<campaign>]`.
pub fn callback_data(experiment: &str, variant: &str, campaign: Option<&str>) -> String {
    match campaign {
        Some(c) => format!("exp={experiment};variant={variant};campaign={c}"),
        None => format!("exp={experiment};variant={variant}"),
    }
}

/// The payload of a quick-reply button of `experiment`'s `variant`, which a reply echoes:
/// `exp=<experiment>;variant=<variant>;choice=<button>`.
pub fn button_payload(experiment: &str, variant: &str, choice: &str) -> String {
    format!("exp={experiment};variant={variant};choice={choice}")
}

/// The query parameter that carries the callback data in a status callback URL, for a provider
/// with no callback data of its own (Twilio): the send path writes it, ingest and the sandbox
/// read it.
pub const CALLBACK_QUERY_PARAM: &str = "cb";

/// Parses `callback data` a sender attached (`exp=42;variant=B;campaign=spring`), into
/// experiment, variant and campaign. Unknown keys are ignored; `None` for each absent one.
pub fn parse_callback_data(s: &str) -> (Option<String>, Option<String>, Option<String>) {
    let (mut exp, mut var, mut camp) = (None, None, None);
    for part in s.split([';', '&', ',']) {
        let Some((k, v)) = part.split_once('=') else { continue };
        let v = v.trim();
        if v.is_empty() {
            continue;
        }
        match k.trim() {
            "exp" | "experiment" => exp = Some(v.to_string()),
            "variant" | "var" => var = Some(v.to_string()),
            "campaign" | "camp" => camp = Some(v.to_string()),
            _ => {}
        }
    }
    (exp, var, camp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_data_forms() {
        assert_eq!(
            parse_callback_data(&callback_data("spring", "B", Some("c1"))),
            (Some("spring".into()), Some("B".into()), Some("c1".into()))
        );
        assert_eq!(
            parse_callback_data(&button_payload("spring", "B", "Yes")),
            (Some("spring".into()), Some("B".into()), None)
        );
        assert_eq!(parse_callback_data("exp=42;variant=B;assign=000017"), (Some("42".into()), Some("B".into()), None));
        assert_eq!(
            parse_callback_data("experiment=spring&variant=control&campaign=c1"),
            (Some("spring".into()), Some("control".into()), Some("c1".into()))
        );
        assert_eq!(parse_callback_data("garbage"), (None, None, None));
    }

    const FILE: &str = r#"
[[experiment]]
name = "spring_cta"
status = "running"
salt = "s1"
[[experiment.variant]]
name = "a"
weight = 50
template = "t_a"
[[experiment.variant]]
name = "b"
weight = 30
control = true
template = "t_b"
[[experiment.variant]]
name = "c"
weight = 20
template = "t_c"
"#;

    #[test]
    fn assignment_is_stable_and_follows_the_weights() {
        let ex = Experiments::parse(FILE, "x.toml").unwrap();
        let e = ex.get("spring_cta").unwrap();
        assert_eq!(e.control().name, "b");
        let n = 100_000;
        let mut counts = [0u64; 3];
        for i in 0..n {
            let key = format!("{:032x}", i as u128 * 0x9E37_79B9_7F4A_7C15);
            let v = e.assign(&key);
            assert_eq!(v, e.assign(&key));
            counts[e.variants.iter().position(|x| x.name == v.name).unwrap()] += 1;
        }
        let p = crate::analytics::stats::srm_p_value(&counts, &[50.0, 30.0, 20.0]).unwrap();
        assert!(p > 0.001, "split {counts:?} p = {p}");
    }

    #[test]
    fn errors_name_file_experiment_and_field() {
        let bad = FILE.replace("weight = 30", "weight = -1");
        let e = Experiments::parse(&bad, "exp.toml").unwrap_err().to_string();
        assert!(e.contains("exp.toml") && e.contains("spring_cta") && e.contains("\"b\".weight"), "{e}");
        let bad = FILE.replace("salt = \"s1\"", "salt = \"\"");
        assert!(Experiments::parse(&bad, "f").unwrap_err().to_string().contains("salt"));
        let bad = FILE.replace("template = \"t_c\"", "template = \"t_c\"\ncolour = 1");
        assert!(Experiments::parse(&bad, "f").unwrap_err().to_string().contains("colour"));
    }
}
