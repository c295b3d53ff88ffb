//! Synthetic, realistic event sets (`convoscope generate`), written through the same Parquet
//! writer the collector uses. The same seed gives the same data, byte for byte.
//!
//! What it simulates: four campaigns (marketing, utility, authentication) across seven
//! locales and countries; an experiment `spring_cta` with three variants at weights 50/25/25
//! where `emoji` truly converts better; failures with real Meta error codes; read receipts
//! that sometimes arrive without a delivered one; quick-reply answers; conversions, some
//! after the attribution window; support conversations with bot replies, handoffs, agent
//! replies, resolutions, reopenings and CSAT.

use chrono::{NaiveDate, TimeZone, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::Result;
use crate::event::Event;
use crate::pii::PiiKey;
use crate::store::Storage;

/// Events buffered before a write: bounds memory near 1 GB at 10 million events.
const CHUNK_EVENTS: usize = 1_000_000;
const DAY_US: i64 = 86_400_000_000;
const SEC_US: i64 = 1_000_000;

/// What to generate.
#[derive(Debug, Clone)]
pub struct Spec {
    pub events: usize,
    pub days: u32,
    pub seed: u64,
    /// First day of the data (fixed, so a seed means the same data on any day).
    pub start: NaiveDate,
}

/// What was written.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Summary {
    pub events: usize,
    pub sends: usize,
    pub conversations: usize,
    pub files: usize,
}

struct Locale {
    locale: &'static str,
    country_code: &'static str,
    weight: u32,
}

const LOCALES: &[Locale] = &[
    Locale { locale: "en_US", country_code: "1", weight: 25 },
    Locale { locale: "pt_BR", country_code: "55", weight: 20 },
    Locale { locale: "en_IN", country_code: "91", weight: 18 },
    Locale { locale: "es_MX", country_code: "52", weight: 12 },
    Locale { locale: "id_ID", country_code: "62", weight: 10 },
    Locale { locale: "en_GB", country_code: "44", weight: 10 },
    Locale { locale: "de_DE", country_code: "49", weight: 5 },
];

struct Campaign {
    name: &'static str,
    templates: &'static [&'static str],
    category: &'static str,
    weight: u32,
    read_rate: f64,
    reply_rate: f64,
}

const CAMPAIGNS: &[Campaign] = &[
    Campaign {
        name: "spring_sale",
        templates: &["spring_promo_control", "spring_promo_bold", "spring_promo_emoji"],
        category: "marketing",
        weight: 45,
        read_rate: 0.55,
        reply_rate: 0.08,
    },
    Campaign {
        name: "order_updates",
        templates: &["shipping_update"],
        category: "utility",
        weight: 30,
        read_rate: 0.82,
        reply_rate: 0.03,
    },
    Campaign {
        name: "login_otp",
        templates: &["otp_code"],
        category: "authentication",
        weight: 15,
        read_rate: 0.9,
        reply_rate: 0.0,
    },
    Campaign {
        name: "winback",
        templates: &["winback_offer"],
        category: "marketing",
        weight: 10,
        read_rate: 0.4,
        reply_rate: 0.05,
    },
];

/// The experiment on `spring_sale`: variant, weight, true conversion rate.
const VARIANTS: &[(&str, u32, f64)] = &[("control", 50, 0.040), ("bold", 25, 0.045), ("emoji", 25, 0.065)];

/// Real Meta error codes with their titles and relative frequency.
const FAILURES: &[(i32, &str, u32)] = &[
    (131026, "Message undeliverable", 40),
    (131049, "This message was not delivered to maintain healthy ecosystem engagement.", 25),
    (131050, "User stopped marketing messages from you", 10),
    (131047, "Re-engagement message", 10),
    (130472, "User's number is part of an experiment", 8),
    (131000, "Something went wrong", 7),
];

const QUEUES: &[&str] = &["billing", "orders", "tech"];

/// Meta's pricing type of a message: some utility messages land in a customer service window
/// the contact opened (free), some marketing messages answer a click-to-WhatsApp ad (a free
/// entry point), the rest are charged.
fn pricing_type(category: &str, message_id: &str) -> &'static str {
    let bucket = xxhash_rust::xxh3::xxh3_64(message_id.as_bytes()) % 100;
    match category {
        "utility" if bucket < 30 => "free_customer_service",
        "marketing" if bucket < 6 => "free_entry_point",
        _ => "regular",
    }
}

fn pick<'a, T>(rng: &mut ChaCha8Rng, items: &'a [T], weight: impl Fn(&T) -> u32) -> &'a T {
    let total: u32 = items.iter().map(&weight).sum();
    let mut x = rng.random_range(0..total.max(1));
    for it in items {
        let w = weight(it);
        if x < w {
            return it;
        }
        x -= w;
    }
    &items[items.len() - 1]
}

/// Writes a synthetic data set to storage.
pub async fn generate(storage: &Storage, spec: &Spec) -> Result<Summary> {
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let pii = PiiKey::from_secret(&format!("convoscope-generator-{}", spec.seed));
    let start_us = Utc.from_utc_datetime(&spec.start.and_hms_opt(0, 0, 0).unwrap_or_default()).timestamp_micros();
    let days = spec.days.max(1) as i64;
    // Average events per send is about 4.5; a contact gets a handful of messages over the span.
    let contacts = (spec.events / 12).max(50);
    let mut g = Gen { buf: Vec::new(), seq: 0, seed: spec.seed, written: Summary::default(), chunk: 0 };
    g.lifecycle(start_us, days);
    while g.written.events + g.buf.len() < spec.events {
        let at = start_us + rng.random_range(0..days * DAY_US);
        let contact_no = rng.random_range(0..contacts);
        let loc = pick(&mut rng, LOCALES, |l| l.weight);
        let phone = format!("{}{:09}", loc.country_code, 100_000_000 + contact_no);
        let Some((contact_key, country)) = pii.contact(&phone) else { continue };
        let country = country.map(str::to_string);
        if rng.random_bool(0.12) {
            g.conversation(&mut rng, at, &contact_key, &country);
        } else {
            g.send(&mut rng, at, &contact_key, &country, loc);
        }
        if g.buf.len() >= CHUNK_EVENTS {
            g.flush(storage).await?;
        }
    }
    g.flush(storage).await?;
    Ok(g.written)
}

struct Gen {
    buf: Vec<Event>,
    seq: u64,
    seed: u64,
    written: Summary,
    chunk: u32,
}

impl Gen {
    fn event(&mut self, event_type: &str, at: i64) -> Event {
        self.seq += 1;
        let mut e = Event::new(format!("gen-{}-{}", self.seed, self.seq), event_type, at, at + 2 * SEC_US, "generator");
        e.account_id = Some("100200300400500".into());
        e.phone_number_id = Some("600700800900111".into());
        e
    }

    /// What Meta tells a business about its templates and its number over the span, the same
    /// for every seed: every template approved in every language on the first day (and one
    /// rejected, never sent); `winback_offer` falling to YELLOW quality at a third of the span,
    /// paused (FIRST_PAUSE) at half and reinstated three hours later; the number's messaging
    /// limit raised at a quarter, its quality flagged at half and cleared two days on; an
    /// account alert at a third.
    fn lifecycle(&mut self, start: i64, days: i64) {
        let day = |d: i64| start + d.min(days - 1).max(0) * DAY_US;
        let template = |g: &mut Gen, at: i64, name: &str, locale: &str, attrs: serde_json::Value| {
            let mut e = g.event("template.status", at);
            e.template = Some(name.into());
            e.locale = Some(locale.into());
            e.attributes = Some(attrs.to_string());
            g.buf.push(e);
        };
        let status = |event: &str| serde_json::json!({"field": "message_template_status_update", "event": event});
        for camp in CAMPAIGNS {
            for name in camp.templates {
                for loc in LOCALES {
                    template(self, day(0) + 3_600 * SEC_US, name, loc.locale, status("APPROVED"));
                }
            }
        }
        template(
            self,
            day(0) + 7_200 * SEC_US,
            "spring_promo_v2",
            "en_US",
            serde_json::json!({"field": "message_template_status_update", "event": "REJECTED",
                "reason": "INVALID_FORMAT", "rejection_reason": "INVALID_FORMAT",
                "rejection_recommendation": "Remove the variable at the start of the body."}),
        );
        for loc in LOCALES {
            let quality = serde_json::json!({"field": "message_template_quality_update",
                "previous_quality_score": "GREEN", "new_quality_score": "YELLOW"});
            template(self, day(days / 3) + 10 * 3_600 * SEC_US, "winback_offer", loc.locale, quality);
            let mut paused = status("PAUSED");
            paused["pause"] = "FIRST_PAUSE".into();
            paused["reason"] = "LOW_QUALITY".into();
            template(self, day(days / 2) + 9 * 3_600 * SEC_US, "winback_offer", loc.locale, paused);
            template(self, day(days / 2) + 12 * 3_600 * SEC_US, "winback_offer", loc.locale, status("REINSTATED"));
        }
        let account = |g: &mut Gen, at: i64, kind: &str, attrs: serde_json::Value| {
            let mut e = g.event(kind, at);
            e.attributes = Some(attrs.to_string());
            g.buf.push(e);
        };
        let quality = |event: &str, old: &str, new: &str| {
            serde_json::json!({"field": "phone_number_quality_update", "event": event, "old_limit": old,
                "current_limit": new})
        };
        account(self, day(0) + 1_800 * SEC_US, "account.phone_quality", quality("ONBOARDING", "TIER_250", "TIER_1K"));
        account(
            self,
            day(days / 4) + 8 * 3_600 * SEC_US,
            "account.phone_quality",
            quality("UPGRADE", "TIER_1K", "TIER_10K"),
        );
        account(
            self,
            day(days / 3) + 15 * 3_600 * SEC_US,
            "account.alert",
            serde_json::json!({"field": "account_alerts", "alert_severity": "WARNING", "alert_status": "ACTIVE",
                "alert_type": "INCREASED_BLOCK_RATE", "alert_description": "More people than usual block your number."}),
        );
        account(
            self,
            day(days / 2) + 6 * 3_600 * SEC_US,
            "account.phone_quality",
            quality("FLAGGED", "TIER_10K", "TIER_10K"),
        );
        account(
            self,
            day(days / 2 + 2) + 6 * 3_600 * SEC_US,
            "account.phone_quality",
            quality("UNFLAGGED", "TIER_10K", "TIER_10K"),
        );
    }

    fn send(&mut self, rng: &mut ChaCha8Rng, at: i64, contact: &str, country: &Option<String>, loc: &Locale) {
        let camp = pick(rng, CAMPAIGNS, |c| c.weight);
        let (template, experiment, variant, conv_rate) = if camp.name == "spring_sale" {
            // Assignment by contact, as the send path does, so a contact stays in one variant.
            let bucket = (xxhash_rust::xxh3::xxh3_64(format!("spring_cta:{contact}").as_bytes()) % 100) as u32;
            let (mut acc, mut chosen) = (0, &VARIANTS[0]);
            for v in VARIANTS {
                acc += v.1;
                if bucket < acc {
                    chosen = v;
                    break;
                }
            }
            let idx = VARIANTS.iter().position(|v| v.0 == chosen.0).unwrap_or(0);
            (camp.templates[idx], Some("spring_cta"), Some(chosen.0), chosen.2)
        } else {
            (camp.templates[0], None, None, if camp.category == "marketing" { 0.025 } else { 0.01 })
        };
        self.written.sends += 1;
        let message_id = format!("wamid.GEN{}x{}", self.seed, self.seq);
        let base = |g: &mut Gen, t: &str, when: i64| {
            let mut e = g.event(t, when);
            e.message_id = Some(message_id.clone());
            e.contact_key = Some(contact.to_string());
            e.country = country.clone();
            e.campaign = Some(camp.name.into());
            e.experiment = experiment.map(str::to_string);
            e.variant = variant.map(str::to_string);
            e
        };
        let mut acc = base(self, "send.accepted", at);
        acc.template = Some(template.into());
        acc.locale = Some(loc.locale.into());
        acc.category = Some(camp.category.into());
        acc.content_type = Some("template".into());
        acc.source = "sender".into();
        self.buf.push(acc);
        let sent_at = at + rng.random_range(1..4) * SEC_US;
        let e = base(self, "message.sent", sent_at);
        self.buf.push(e);
        if rng.random_bool(0.04) {
            let (code, title, _) = *pick(rng, FAILURES, |f| f.2);
            let mut f = base(self, "message.failed", sent_at + rng.random_range(1..30) * SEC_US);
            f.error_code = Some(code);
            f.error_title = Some(title.into());
            self.buf.push(f);
            return;
        }
        if !rng.random_bool(0.93) {
            return;
        }
        // Delivery in seconds, occasionally minutes (phone offline).
        let delay = if rng.random_bool(0.9) { rng.random_range(1..20) } else { rng.random_range(60..7200) };
        let delivered_at = sent_at + delay * SEC_US;
        let read = rng.random_bool(camp.read_rate);
        // Meta may skip the delivered webhook when delivery and read happen together.
        let skip_delivered = read && rng.random_bool(0.08);
        // Meta's pricing on the first receipt (the read, when Meta skipped the delivered): the
        // type, and billable only when it is regular. Chosen by a hash of the message, not the
        // random stream, so every other draw of a seed is unchanged by it.
        let pricing_type = pricing_type(camp.category, &message_id);
        let priced = |e: &mut Event| {
            e.billable = Some(pricing_type == "regular");
            e.category = Some(camp.category.into());
            e.attributes = Some(serde_json::json!({"pricing_model": "PMP", "pricing_type": pricing_type}).to_string());
        };
        if !skip_delivered {
            let mut d = base(self, "message.delivered", delivered_at);
            priced(&mut d);
            self.buf.push(d);
        }
        if !read {
            return;
        }
        let read_at = delivered_at + rng.random_range(5..6 * 3600) * SEC_US;
        let mut e = base(self, "message.read", read_at);
        if skip_delivered {
            priced(&mut e);
        }
        self.buf.push(e);
        if rng.random_bool(camp.reply_rate) {
            let mut r = base(self, "interaction.reply", read_at + rng.random_range(5..600) * SEC_US);
            r.reply_to = r.message_id.take();
            r.message_id = Some(format!("wamid.GENIN{}x{}", self.seed, self.seq));
            r.content_type = Some("button".into());
            let (id, title) = if rng.random_bool(0.8) { ("interested", "Interested") } else { ("not_now", "Not now") };
            r.interaction_id = Some(id.into());
            r.interaction_title = Some(title.into());
            r.actor = Some("customer".into());
            self.buf.push(r);
        }
        // A marketing message's link followed, as the brand's site reports it.
        if camp.category == "marketing" && rng.random_bool(0.12) {
            let l = base(self, "link.click", read_at + rng.random_range(5..900) * SEC_US);
            self.buf.push(l);
        }
        if rng.random_bool(conv_rate / camp.read_rate) {
            // Mostly inside the 7-day window, some after it.
            let after = if rng.random_bool(0.9) {
                rng.random_range(600..6 * 86_400)
            } else {
                rng.random_range(8 * 86_400..12 * 86_400)
            };
            let mut c = base(self, "conversion", read_at + after * SEC_US);
            c.message_id = None;
            c.revenue_micros = Some(rng.random_range(5..120) * 1_000_000);
            c.currency = Some("USD".into());
            self.buf.push(c);
        }
    }

    fn conversation(&mut self, rng: &mut ChaCha8Rng, at: i64, contact: &str, country: &Option<String>) {
        self.written.conversations += 1;
        let id = format!("conv-{}-{}", self.seed, self.seq);
        let queue = QUEUES[rng.random_range(0..QUEUES.len())];
        let base = |g: &mut Gen, t: &str, when: i64| {
            let mut e = g.event(t, when);
            e.conversation_id = Some(id.clone());
            e.contact_key = Some(contact.to_string());
            e.country = country.clone();
            e.queue = Some(queue.into());
            e.source = "api".into();
            e
        };
        let e = base(self, "conversation.opened", at);
        self.buf.push(e);
        let mut m = base(self, "message.inbound", at + SEC_US);
        m.actor = Some("customer".into());
        m.content_type = Some("text".into());
        self.buf.push(m);
        let mut t = at + rng.random_range(2..30) * SEC_US;
        let mut b = base(self, "conversation.bot_reply", t);
        b.actor = Some("bot".into());
        self.buf.push(b);
        if rng.random_bool(0.35) {
            t += rng.random_range(30..600) * SEC_US;
            let e = base(self, "conversation.handoff", t);
            self.buf.push(e);
            t += rng.random_range(30..3600) * SEC_US;
            let mut a = base(self, "conversation.agent_reply", t);
            a.actor = Some("agent".into());
            a.agent_key = Some(format!("agent-{}", rng.random_range(1..12)));
            self.buf.push(a);
        }
        if !rng.random_bool(0.9) {
            return;
        }
        t += rng.random_range(60..7200) * SEC_US;
        let e = base(self, "conversation.resolved", t);
        self.buf.push(e);
        if rng.random_bool(0.08) {
            let e = base(self, "conversation.reopened", t + rng.random_range(3600..10 * 86_400) * SEC_US);
            self.buf.push(e);
        }
        if rng.random_bool(0.4) {
            let mut c = base(self, "csat.submitted", t + rng.random_range(30..3600) * SEC_US);
            c.csat_score = Some(*[5, 5, 4, 4, 4, 3, 2, 1].get(rng.random_range(0..8)).unwrap_or(&4));
            self.buf.push(c);
        }
    }

    async fn flush(&mut self, storage: &Storage) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let events = std::mem::take(&mut self.buf);
        self.written.events += events.len();
        let written = storage.write_events(events, &format!("gen-{}-{:05}", self.seed, self.chunk)).await?;
        self.written.files += written.len();
        self.chunk += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;

    #[tokio::test]
    async fn same_seed_same_data() {
        let spec = Spec { events: 3000, days: 5, seed: 7, start: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap() };
        let a = Storage::open("memory://").unwrap();
        let b = Storage::open("memory://").unwrap();
        let sa = generate(&a, &spec).await.unwrap();
        let sb = generate(&b, &spec).await.unwrap();
        assert_eq!(sa, sb);
        assert!(sa.events >= 3000 && sa.sends > 300 && sa.conversations > 30, "{sa:?}");
        let fa = a.list_event_files().await.unwrap();
        let fb = b.list_event_files().await.unwrap();
        assert_eq!(fa.len(), fb.len());
        for ((_, ma), (_, mb)) in fa.iter().zip(&fb) {
            let x = a.store.get(&ma.location).await.unwrap().bytes().await.unwrap();
            let y = b.store.get(&mb.location).await.unwrap().bytes().await.unwrap();
            assert_eq!(x, y, "{}", ma.location);
        }
    }
}
