//! The wire format of Meta's webhooks: the serde structs their JSON is read into, before
//! normalisation (the parent module) turns them into events. Only the fields convoscope reads
//! are declared; serde skips the rest.

use serde::Deserialize;
use serde_json::Value;

use crate::ingest::UnixTime;

#[derive(Deserialize)]
#[serde(bound = "V: Deserialize<'de> + Default")]
pub(super) struct Envelope<V> {
    #[serde(default)]
    pub(super) object: Option<String>,
    pub(super) entry: Vec<Entry<V>>,
    /// Gupshup's app: the account of the changes whose entry names none (its `enqueued`).
    #[serde(default)]
    pub(super) gs_app_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(bound = "V: Deserialize<'de> + Default")]
pub(super) struct Entry<V> {
    #[serde(default)]
    pub(super) id: Option<String>,
    #[serde(default)]
    pub(super) time: UnixTime,
    #[serde(default)]
    pub(super) changes: Vec<Change<V>>,
}

/// One change. Meta sends `value` before `field`, so the type of `value` cannot be chosen from
/// `field` while reading: [`super::parse`] reads it either as the messages shape straight away
/// (the common case) or as a JSON tree to be read again once `field` is known.
#[derive(Deserialize)]
#[serde(bound = "V: Deserialize<'de> + Default")]
pub(super) struct Change<V> {
    #[serde(default)]
    pub(super) field: String,
    #[serde(default)]
    pub(super) value: V,
}

/// A change's value, read into the shape its `field` names; statuses borrow their text from
/// the body (or from its JSON tree).
pub(super) enum Typed<'a> {
    Messages(MessagesValue<'a>),
    Template(Box<TemplateUpdate>),
    Preferences(UserPreferences<'a>),
    Echoes(Echoes),
    Automatic(AutomaticEvents),
    /// A field about the business account or number (`account_update`, `account_alerts`,
    /// ...): stored whole as the attributes of an `account.*` event.
    Account(&'static str, &'a Value),
    Ignored,
}

/// Statuses, the busiest part of the busiest webhook, borrow their text (`&str`), so the
/// strings they are normalised from and then dropped are never allocated. A status whose text
/// has escapes cannot borrow from the body: the typed reading then defers to the tree reading,
/// whose strings are unescaped already. Messages keep owned strings: their text often has
/// escapes, and most of it moves into the event as it is.
#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct MessagesValue<'a> {
    #[serde(borrow)]
    pub(super) metadata: Metadata<'a>,
    #[serde(borrow)]
    pub(super) statuses: Vec<Status<'a>>,
    pub(super) messages: Vec<Message>,
    /// Errors of the app, account or number rather than of one message (130429 throughput).
    pub(super) errors: Vec<ErrorObj>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct Metadata<'a> {
    pub(super) phone_number_id: Option<&'a str>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct Status<'a> {
    pub(super) id: &'a str,
    pub(super) status: &'a str,
    pub(super) timestamp: UnixTime,
    pub(super) recipient_id: Option<&'a str>,
    /// The business-scoped user id, where the person has no phone number in the webhook.
    pub(super) recipient_user_id: Option<&'a str>,
    pub(super) biz_opaque_callback_data: Option<&'a str>,
    /// Gupshup's own id of the message, beside Meta's.
    pub(super) gs_id: Option<&'a str>,
    /// Gupshup's own failures put their code (a number or a string) and reason on the status.
    pub(super) code: Option<Value>,
    pub(super) reason: Option<String>,
    #[serde(borrow)]
    pub(super) pricing: Option<Pricing<'a>>,
    pub(super) errors: Vec<ErrorObj>,
    #[serde(borrow)]
    pub(super) conversation: Option<Conversation<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct Pricing<'a> {
    pub(super) billable: Option<bool>,
    pub(super) pricing_model: Option<&'a str>,
    #[serde(rename = "type")]
    pub(super) kind: Option<&'a str>,
    pub(super) category: Option<&'a str>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct Conversation<'a> {
    pub(super) id: Option<&'a str>,
    #[serde(borrow)]
    pub(super) origin: Option<Origin<'a>>,
    pub(super) expiration_timestamp: UnixTime,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct Origin<'a> {
    #[serde(rename = "type")]
    pub(super) kind: Option<&'a str>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct ErrorObj {
    pub(super) code: Option<i64>,
    pub(super) title: Option<String>,
    pub(super) error_data: Option<ErrorData>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct ErrorData {
    pub(super) details: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct Message {
    pub(super) from: Option<String>,
    /// The business-scoped user id, where `from` is empty.
    pub(super) from_user_id: Option<String>,
    pub(super) id: String,
    pub(super) timestamp: UnixTime,
    #[serde(rename = "type")]
    pub(super) kind: String,
    pub(super) context: Option<Context>,
    pub(super) text: Option<Text>,
    pub(super) button: Option<ButtonReply>,
    pub(super) interactive: Option<Interactive>,
    pub(super) reaction: Option<Reaction>,
    pub(super) referral: Option<Referral>,
    pub(super) order: Option<Order>,
    pub(super) system: Option<System>,
    pub(super) edit: Option<Edit>,
    pub(super) revoke: Option<Edit>,
    pub(super) errors: Vec<ErrorObj>,
}

/// A click-to-WhatsApp ad's referral: the ad and the click id, not the ad's text or media.
#[derive(Deserialize, Default, serde::Serialize)]
#[serde(default)]
pub(super) struct Referral {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) ctwa_clid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) source_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) source_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) source_url: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct Order {
    pub(super) product_items: Vec<OrderItem>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct OrderItem {
    pub(super) quantity: Option<f64>,
    pub(super) item_price: Option<f64>,
    pub(super) currency: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct System {
    #[serde(rename = "type")]
    pub(super) kind: Option<String>,
}

/// An edit or a deletion (`revoke`) names the customer's message it changes.
#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct Edit {
    pub(super) original_message_id: Option<String>,
    pub(super) message_id: Option<String>,
    pub(super) id: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct Context {
    pub(super) id: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct Text {
    pub(super) body: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct ButtonReply {
    pub(super) payload: Option<String>,
    pub(super) text: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct Interactive {
    #[serde(rename = "type")]
    pub(super) kind: String,
    pub(super) button_reply: Option<Choice>,
    pub(super) list_reply: Option<Choice>,
    pub(super) nfm_reply: Option<FlowReply>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct Choice {
    pub(super) id: Option<String>,
    pub(super) title: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct FlowReply {
    pub(super) name: Option<String>,
    /// A JSON object as a string: the Flow's answers, whose values can be personal data.
    pub(super) response_json: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct Reaction {
    pub(super) message_id: Option<String>,
    /// Empty when the customer removed their reaction.
    pub(super) emoji: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct TemplateUpdate {
    pub(super) event: Option<String>,
    pub(super) message_template_id: Option<Value>,
    pub(super) message_template_name: Option<String>,
    pub(super) message_template_language: Option<String>,
    pub(super) message_template_category: Option<String>,
    pub(super) reason: Option<String>,
    pub(super) new_quality_score: Option<String>,
    pub(super) previous_quality_score: Option<String>,
    pub(super) new_category: Option<String>,
    pub(super) previous_category: Option<String>,
    pub(super) correct_category: Option<String>,
    pub(super) category_update_timestamp: UnixTime,
    pub(super) rejection_info: Option<RejectionInfo>,
    pub(super) other_info: Option<OtherInfo>,
    pub(super) disable_info: Option<DisableInfo>,
    pub(super) message_template_element: Option<String>,
    pub(super) message_template_title: Option<String>,
    pub(super) message_template_footer: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct RejectionInfo {
    pub(super) reason: Option<String>,
    pub(super) recommendation: Option<String>,
}

/// A pause or its end: `title` is FIRST_PAUSE, SECOND_PAUSE, RATE_LIMITING_PAUSE, UNPAUSE or
/// DISABLED.
#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct OtherInfo {
    pub(super) title: Option<String>,
    pub(super) description: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct DisableInfo {
    pub(super) disable_date: UnixTime,
}

/// `smb_message_echoes`: what the business sent from the WhatsApp Business app on a number it
/// also uses through the API (coexistence).
#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct Echoes {
    pub(super) metadata: OwnedMetadata,
    pub(super) message_echoes: Vec<Echo>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct OwnedMetadata {
    pub(super) phone_number_id: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct Echo {
    pub(super) to: Option<String>,
    pub(super) to_user_id: Option<String>,
    pub(super) id: String,
    pub(super) timestamp: UnixTime,
    #[serde(rename = "type")]
    pub(super) kind: String,
    pub(super) context: Option<Context>,
}

/// `automatic_events`: what Meta saw the customer do after a click-to-WhatsApp ad.
#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct AutomaticEvents {
    pub(super) metadata: OwnedMetadata,
    pub(super) automatic_events: Vec<AutomaticEvent>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct AutomaticEvent {
    /// The message (wamid) of the thread the event belongs to.
    pub(super) id: Option<String>,
    pub(super) event_name: Option<String>,
    pub(super) timestamp: UnixTime,
    pub(super) ctwa_clid: Option<String>,
    pub(super) from: Option<String>,
    pub(super) custom_data: Option<CustomData>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct CustomData {
    pub(super) currency: Option<String>,
    pub(super) value: Option<f64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct UserPreferences<'a> {
    #[serde(borrow)]
    pub(super) metadata: Metadata<'a>,
    pub(super) user_preferences: Vec<UserPreference>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct UserPreference {
    pub(super) wa_id: Option<String>,
    pub(super) category: Option<String>,
    pub(super) value: Option<String>,
    pub(super) timestamp: UnixTime,
}
