#!/usr/bin/env python3
"""Writes fixtures/providers/<provider>/<case>.json: signed webhook requests built from the
providers' documented example payloads, with the rows each must store (the known answers).

    scripts/make_provider_fixtures.py

The raw bodies also seed the fuzz targets (fixtures/fuzz/meta/, fixtures/fuzz/twilio/: for
Twilio the query, a newline, then the form).

Each fixture holds the request exactly as a provider sends it (`path` with its query,
`content_type`, `headers` with the signature, `body` as the exact bytes signed) and `rows`: per
stored event, the columns it must have (`attributes` compared as JSON, `occurred_at_us` in
microseconds), found by `event_id` where given, else by `event_type`; the request stores
exactly these rows. The secrets are the
integration test's (tests/it/providers.rs); the answers are written here by hand from each
provider's documentation, not produced by convoscope. Rerun after changing a body: the
signatures follow.
"""

import base64
import hashlib
import hmac
import json
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

ROOT = Path(__file__).resolve().parents[1] / "fixtures" / "providers"
META_SECRET = "fixture-meta-app-secret"
DIALOG360_SECRET = "fixture-360dialog-secret"
TWILIO_TOKEN = "fixture-twilio-auth-token"
GUPSHUP_TOKEN = "fixture-gupshup-token"
PUBLIC_URL = "https://hooks.example.com"
WABA = "102290129340398"
PNID = "106540352242922"
ENTRY_TIME = 1767254400  # 2026-01-01T08:00:00Z


def micros(secs):
    return int(round(secs * 1_000_000))


def meta_body(field, value, time=ENTRY_TIME):
    entry = {"id": WABA, "changes": [{"value": value, "field": field}]}
    if time is not None:
        entry["time"] = time
    return json.dumps({"object": "whatsapp_business_account", "entry": [entry]}, separators=(",", ":"))


def hmac_hex(secret, body):
    return hmac.new(secret.encode(), body.encode(), hashlib.sha256).hexdigest()


def twilio_sig(url, body):
    pairs = sorted(parse_qsl(body, keep_blank_values=True))
    payload = url + "".join(k + v for k, v in pairs)
    return base64.b64encode(hmac.new(TWILIO_TOKEN.encode(), payload.encode(), hashlib.sha1).digest()).decode()


FUZZ = ROOT.parent / "fuzz"


def write(provider, name, path, content_type, headers, body, rows, about):
    d = ROOT / provider
    d.mkdir(parents=True, exist_ok=True)
    # The raw body seeds the fuzz target of its parser (Meta's reads 360dialog's and Gupshup's).
    target = "twilio" if provider == "twilio" else "meta"
    seed = body if target == "meta" else (path.partition("?")[2] + "\n" + body)
    (FUZZ / target).mkdir(parents=True, exist_ok=True)
    (FUZZ / target / f"{provider}-{name}").write_text(seed)
    doc = {"about": about, "path": path, "content_type": content_type, "headers": headers, "body": body, "rows": rows}
    (d / f"{name}.json").write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")


def meta(name, field, value, rows, about, time=ENTRY_TIME):
    body = meta_body(field, value, time)
    write("meta", name, "/webhooks/meta", "application/json",
          {"x-hub-signature-256": "sha256=" + hmac_hex(META_SECRET, body)}, body, rows, about)


def main():
    at = micros(ENTRY_TIME)
    # --- Meta: the account fields (webhooks reference, examples as documented) -------------
    violation = {"event": "ACCOUNT_VIOLATION", "violation_info": {"violation_type": "ADULT"}}
    meta("account_update", "account_update", violation, [
        {"event_type": "account.update", "source": "meta", "account_id": WABA, "occurred_at_us": at,
         "attributes": dict(violation, field="account_update")}],
        "account_update, ACCOUNT_VIOLATION (Meta's example)")
    tier = {"volume_tier_info": {"tier_update_time": 1743451903, "pricing_category": "UTILITY",
                                 "tier": "25000001:50000000", "effective_month": "2025-11", "region": "INDIA"},
            "event": "VOLUME_BASED_PRICING_TIER_UPDATE"}
    meta("account_update_tier", "account_update", tier, [
        {"event_type": "account.update", "account_id": WABA, "attributes": dict(tier, field="account_update")}],
        "account_update, VOLUME_BASED_PRICING_TIER_UPDATE (Meta's example)")
    alert = {"entity_type": "BUSINESS", "entity_id": "506914307656634",
             "alert_info": {"alert_severity": "WARNING", "alert_status": "ACTIVE",
                            "alert_type": "INCREASED_CAPABILITIES_ELIGIBILITY_DEFERRED",
                            "alert_description": "Limits cannot be increased for your business."}}
    meta("account_alerts", "account_alerts", alert, [
        {"event_type": "account.alert", "account_id": WABA, "attributes": dict(alert, field="account_alerts")}],
        "account_alerts (Meta's example)")
    quality = {"display_phone_number": "15550783881", "event": "THROUGHPUT_UPGRADE", "current_limit": "TIER_UNLIMITED"}
    meta("phone_number_quality_update", "phone_number_quality_update", quality, [
        {"event_type": "account.phone_quality", "account_id": WABA,
         "attributes": {"event": "THROUGHPUT_UPGRADE", "current_limit": "TIER_UNLIMITED",
                        "field": "phone_number_quality_update"}}],
        "phone_number_quality_update (Meta's example); the display number is not stored")
    capability = {"max_daily_conversations_per_business": 2000, "max_phone_numbers_per_waba": 25}
    meta("business_capability_update", "business_capability_update", capability, [
        {"event_type": "account.capability", "account_id": WABA,
         "attributes": dict(capability, field="business_capability_update")}],
        "business_capability_update (Meta's example)")
    # --- Meta: templates ----------------------------------------------------------------------
    rejected = {"event": "REJECTED", "message_template_id": 1689556908129835, "message_template_name": "abandoned_cart",
                "message_template_language": "en", "reason": "INVALID_FORMAT", "message_template_category": "MARKETING",
                "rejection_info": {"reason": "Your template has parameters placed next to each other.",
                                   "recommendation": "Separate parameters with descriptive text."}}
    meta("template_rejected", "message_template_status_update", rejected, [
        {"event_type": "template.status", "template": "abandoned_cart", "locale": "en", "category": "marketing",
         "attributes": {"field": "message_template_status_update", "template_id": "1689556908129835",
                        "event": "REJECTED", "reason": "INVALID_FORMAT",
                        "rejection_reason": "Your template has parameters placed next to each other.",
                        "rejection_recommendation": "Separate parameters with descriptive text."}}],
        "message_template_status_update, REJECTED with rejection_info (Meta's example)")
    paused = {"event": "PAUSED", "message_template_id": 1689556908129832, "message_template_name": "order_confirmation",
              "message_template_language": "en-US", "reason": "NONE",
              "other_info": {"title": "SECOND_PAUSE", "description": "Your template has been paused for 6 hours."}}
    meta("template_paused", "message_template_status_update", paused, [
        {"event_type": "template.status", "template": "order_confirmation",
         "attributes": {"field": "message_template_status_update", "template_id": "1689556908129832",
                        "event": "PAUSED", "reason": "NONE", "pause": "SECOND_PAUSE",
                        "pause_description": "Your template has been paused for 6 hours."}}],
        "message_template_status_update, PAUSED with other_info (fields as documented)")
    impending = {"message_template_id": 278077987957091, "message_template_name": "welcome_template",
                 "message_template_language": "en-US", "new_category": "UTILITY", "correct_category": "MARKETING",
                 "category_update_timestamp": 1746169200}
    meta("template_category_impending", "template_category_update", impending, [
        {"event_type": "template.status", "template": "welcome_template", "category": "utility",
         "attributes": {"field": "template_category_update", "template_id": "278077987957091",
                        "new_category": "UTILITY", "correct_category": "MARKETING",
                        "category_update_at": 1746169200}}],
        "template_category_update, impending (Meta's example)")
    components = {"message_template_id": 1315502779341834, "message_template_name": "order_confirmation",
                  "message_template_language": "en_US", "message_template_title": "Your order is confirmed!",
                  "message_template_element": "Thank you for your order, {{1}}! Your order number is {{2}}.",
                  "message_template_footer": "Lucky Shrub: the Succulent Specialists!"}
    meta("template_components", "message_template_components_update", components, [
        {"event_type": "template.status", "template": "order_confirmation", "locale": "en_US",
         "attributes": {"field": "message_template_components_update", "template_id": "1315502779341834",
                        "title": "Your order is confirmed!",
                        "element": "Thank you for your order, {{1}}! Your order number is {{2}}.",
                        "footer": "Lucky Shrub: the Succulent Specialists!"}}],
        "message_template_components_update (Meta's example, buttons left out)")
    # --- Meta: ads, echoes, errors, new message types ----------------------------------------
    purchase = {"messaging_product": "whatsapp", "metadata": {"display_phone_number": "15550783881", "phone_number_id": PNID},
                "automatic_events": [{"id": "wamid.HBgLMTIwNjY3NzQ3OTgVAgARGBIwRkU4NDI5Nzk3RjZDMzE2RUMA",
                                      "event_name": "Purchase", "timestamp": 1749069131, "ctwa_clid": "Afc3nYt4TTydumlF",
                                      "custom_data": {"currency": "USD", "value": 25000}}]}
    meta("automatic_events", "automatic_events", purchase, [
        {"event_type": "conversion", "phone_number_id": PNID, "occurred_at_us": micros(1749069131),
         "message_id": "wamid.HBgLMTIwNjY3NzQ3OTgVAgARGBIwRkU4NDI5Nzk3RjZDMzE2RUMA",
         "revenue_micros": 25000000000, "currency": "USD",
         "attributes": {"ctwa_clid": "Afc3nYt4TTydumlF", "event_name": "Purchase"}}],
        "automatic_events, Purchase (Meta's example; no entry time, as documented)", time=None)
    echo = {"messaging_product": "whatsapp", "metadata": {"display_phone_number": "15550783881", "phone_number_id": PNID},
            "message_echoes": [{"from": "15550783881", "to": "16505551234",
                                "id": "wamid.HBgLMTY0NjcwNDM1OTUVAgARGBIyNDlBOEI5QUQ4NDc0N0FCNjMA",
                                "timestamp": "1739321024", "type": "text",
                                "text": {"body": "Here's the info you requested! https://www.meta.com/quest/quest-3/"}}]}
    meta("smb_message_echoes", "smb_message_echoes", echo, [
        {"event_type": "conversation.agent_reply", "actor": "agent", "agent_key": "whatsapp_business_app",
         "country": "US", "content_type": "text", "occurred_at_us": micros(1739321024),
         "message_id": "wamid.HBgLMTY0NjcwNDM1OTUVAgARGBIyNDlBOEI5QUQ4NDc0N0FCNjMA", "attributes": None}],
        "smb_message_echoes (Meta's example): an agent reply from the Business app", time=None)
    errors = {"messaging_product": "whatsapp", "metadata": {"display_phone_number": "15550783881", "phone_number_id": PNID},
              "statuses": [{"id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJERkZFQkY3NzY1NzEzQzcyRTMA", "status": "failed",
                            "timestamp": "1767254390", "recipient_id": "16505551234",
                            "errors": [{"code": 131047, "title": "Re-engagement message",
                                        "message": "Re-engagement message",
                                        "error_data": {"details": "Message failed to send because more than 24 hours have passed since the customer last replied to this number."},
                                        "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"}]}],
              "errors": [{"code": 130429, "title": "Rate limit hit", "message": "Rate limit hit",
                          "error_data": {"details": "Cloud API message throughput has been reached."},
                          "href": "/docs/whatsapp/cloud-api/support/error-codes/"}]}
    meta("messages_errors", "messages", errors, [
        {"event_type": "message.failed", "error_code": 131047, "error_title": "Re-engagement message", "country": "US",
         "attributes": {"error_details": "Message failed to send because more than 24 hours have passed since the customer last replied to this number."}},
        {"event_type": "account.error", "phone_number_id": PNID, "error_code": 130429, "error_title": "Rate limit hit",
         "attributes": {"error_details": "Cloud API message throughput has been reached."}}],
        "messages: a status error's details and a value-level error (130429), as documented")
    contacts = [{"profile": {"name": "Sheena Nelson"}, "wa_id": "16505551234"}]
    kinds = {"messaging_product": "whatsapp", "metadata": {"display_phone_number": "15550783881", "phone_number_id": PNID},
             "contacts": contacts, "messages": [
                 {"from": "16505551234", "id": "wamid.EDIT2", "timestamp": "1767254300", "type": "edit",
                  "edit": {"original_message_id": "wamid.EDIT1", "message": {"type": "text", "text": {"body": "Sorry, I meant Tuesday"}}}},
                 {"from": "16505551234", "id": "wamid.REVOKE2", "timestamp": "1767254301", "type": "revoke",
                  "revoke": {"original_message_id": "wamid.REVOKE1"}},
                 {"from": "16505551234", "id": "wamid.SYSTEM1", "timestamp": "1767254302", "type": "system",
                  "system": {"body": "User Sheena Nelson changed from 16505551234 to 16505559999",
                             "wa_id": "16505559999", "type": "user_changed_number"}},
                 {"from": "16505551234", "id": "wamid.ORDER1", "timestamp": "1767254303", "type": "order",
                  "order": {"catalog_id": "194836987003835", "text": "Please deliver after 6pm",
                            "product_items": [{"product_retailer_id": "di9ozbzfi4", "quantity": 2, "item_price": 30, "currency": "USD"},
                                              {"product_retailer_id": "nqryix03ez", "quantity": 1, "item_price": 25, "currency": "USD"}]}},
                 {"from": "16505551234", "id": "wamid.FLOW1", "timestamp": "1767254304", "type": "interactive",
                  "context": {"from": "15550783881", "id": "wamid.FLOWSENT"},
                  "interactive": {"type": "nfm_reply", "nfm_reply": {"name": "flow", "body": "Sent",
                                  "response_json": "{\"flow_token\": \"signup-7\", \"email\": \"sheena@example.com\", \"plan\": \"annual\"}"}}},
                 {"from": "16505551234", "id": "wamid.AD1", "timestamp": "1767254305", "type": "text",
                  "text": {"body": "Is this still available?"},
                  "referral": {"source_url": "https://fb.me/3cr4Wqqkv", "source_id": "120226305854810726",
                               "source_type": "ad", "headline": "Spring sale", "body": "Everything 20% off",
                               "media_type": "image", "image_url": "https://example.com/ad.jpg",
                               "ctwa_clid": "ARAkLkA8rmlFeiCktEJQ-QTwRiyYHAFDLMNDBH0CD3qpjd0HR4irJ6LEkR7JwFF4XvnO2E4Nx0-eM-GABDLOPaOdRMv-_zfUQ2a"}},
                 {"from": "16505551234", "id": "wamid.REACT1", "timestamp": "1767254306", "type": "reaction",
                  "reaction": {"message_id": "wamid.AD1SENT"}}]}
    meta("messages_new_types", "messages", kinds, [
        {"event_type": "message.edited", "event_id": "meta:wamid.EDIT2:edited", "actor": "customer", "country": "US",
         "attributes": {"original_message_id": "wamid.EDIT1"}},
        {"event_type": "message.revoked", "event_id": "meta:wamid.REVOKE2:revoked",
         "attributes": {"original_message_id": "wamid.REVOKE1"}},
        {"event_type": "message.system", "event_id": "meta:wamid.SYSTEM1:system",
         "attributes": {"system_type": "user_changed_number"}},
        {"event_type": "message.inbound", "event_id": "meta:wamid.ORDER1:inbound", "content_type": "order",
         "revenue_micros": 85000000, "currency": "USD", "attributes": {"order_items": 3.0}},
        {"event_type": "interaction.reply", "event_id": "meta:wamid.FLOW1:reply", "interaction_id": "flow",
         "reply_to": "wamid.FLOWSENT",
         "attributes": {"flow_fields": ["email", "plan"], "flow_token": "signup-7", "interactive_type": "nfm_reply"}},
        {"event_type": "message.inbound", "event_id": "meta:wamid.AD1:inbound", "content_type": "text",
         "attributes": {"referral": {"ctwa_clid": "ARAkLkA8rmlFeiCktEJQ-QTwRiyYHAFDLMNDBH0CD3qpjd0HR4irJ6LEkR7JwFF4XvnO2E4Nx0-eM-GABDLOPaOdRMv-_zfUQ2a",
                                     "source_id": "120226305854810726", "source_type": "ad",
                                     "source_url": "https://fb.me/3cr4Wqqkv"}}},
        {"event_type": "interaction.reaction", "event_id": "meta:wamid.REACT1:reaction", "reply_to": "wamid.AD1SENT",
         "attributes": {"removed": True}}],
        "messages: edit, revoke and system (coexistence and notices), an order, a Flow reply, a click-to-WhatsApp "
        "referral and a removed reaction, shaped as Meta documents them")
    # --- 360dialog: Meta's JSON, its own signature ------------------------------------------
    d360 = {"messaging_product": "whatsapp", "metadata": {"display_phone_number": "15550783881", "phone_number_id": PNID},
            "statuses": [{"id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI3MTE5MDc2NzU2QTRGQjM0QjEA", "status": "delivered",
                          "timestamp": "1767254395", "recipient_id": "447700900123",
                          "biz_opaque_callback_data": "exp=spring_cta;variant=bold;campaign=spring_sale",
                          "conversation": {"id": "6ceb9d929c0d0c5c1e3bd22ea3a3fb9a", "origin": {"type": "marketing"}},
                          "pricing": {"billable": True, "pricing_model": "PMP", "type": "regular", "category": "marketing_lite"}}]}
    body = meta_body("messages", d360)
    write("360dialog", "status_delivered", "/webhooks/360dialog", "application/json",
          {"x-360dialog-signature": hmac_hex(DIALOG360_SECRET, body)}, body, [
              {"event_id": "meta:wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI3MTE5MDc2NzU2QTRGQjM0QjEA:delivered",
               "event_type": "message.delivered", "source": "360dialog", "account_id": WABA, "phone_number_id": PNID,
               "experiment": "spring_cta", "variant": "bold", "campaign": "spring_sale", "country": "GB",
               "category": "marketing_lite", "billable": True,
               "attributes": {"callback_data": "exp=spring_cta;variant=bold;campaign=spring_sale",
                              "conversation_origin": "marketing", "meta_conversation_id": "6ceb9d929c0d0c5c1e3bd22ea3a3fb9a",
                              "pricing_model": "PMP", "pricing_type": "regular"}}],
          "360dialog relays Meta's status JSON and signs it with its own secret (bare hex)")
    # --- Gupshup v3 ------------------------------------------------------------------------------
    gs = {"entry": [{"changes": [{"field": "messages", "value": {"messaging_product": "whatsapp", "statuses": [
        {"gs_id": "2baff204-c39a-4121-90b5-f53f26d522b3", "id": "wamid.HBgMOTE5MTYzODA1ODczFQIAERgSNkZCMThGMEEwQzJDOUFGQjFBAA==",
         "recipient_id": "919163805873", "status": "enqueued", "timestamp": 1710941393420}]}}]}],
          "gs_app_id": "82ed52f4-30c0-4f12-81b4-e7ad07bd41de", "object": "whatsapp_business_account"}
    write("gupshup", "status_enqueued", f"/webhooks/gupshup?token={GUPSHUP_TOKEN}", "application/json", {},
          json.dumps(gs, separators=(",", ":")), [
              {"event_id": "meta:wamid.HBgMOTE5MTYzODA1ODczFQIAERgSNkZCMThGMEEwQzJDOUFGQjFBAA==:enqueued",
               "event_type": "message.other", "source": "gupshup", "account_id": "82ed52f4-30c0-4f12-81b4-e7ad07bd41de",
               "occurred_at_us": 1710941393420000, "country": "IN",
               "attributes": {"gs_id": "2baff204-c39a-4121-90b5-f53f26d522b3", "raw_status": "enqueued"}}],
          "Gupshup v3 enqueued (its events page): no entry id, a millisecond timestamp")
    gs_sent = {"entry": [{"changes": [{"field": "messages", "value": {"messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "919163805800", "phone_number_id": "158072934066266"},
        "statuses": [{"conversation": {"expiration_timestamp": "1710936120", "id": "3dabdf65abaf1cbbf85217d232cce91f",
                                       "origin": {"type": "service"}},
                      "gs_id": "7daeb742-f2dc-4c09-90e0-d879d20f7b98", "id": "wamid.HBgMOTE5MTYzODA1ODczFQIAERgSMDQ4Rj",
                      "pricing": {"billable": True, "category": "marketing", "pricing_model": "PMP", "type": "regular"},
                      "recipient_id": "919163805873", "status": "sent", "timestamp": "1710930461"},
                     {"errors": [{"code": 131047, "title": "Message failed to send because more than 24 hours have passed since the customer last replied to this number."}],
                      "gs_id": "91f58e90-f5ba-4cfc-9ca7-e4ab965b9449", "id": "wamid.HBgMOTE3OTgwODkwOTc4FQIAERgSNERF",
                      "recipient_id": "917980890978", "status": "failed", "timestamp": "1710941507"}]}}],
        "id": "112535025189792"}], "gs_app_id": "82ed52f4-30c0-4f12-81b4-e7ad07bd41de", "object": "whatsapp_business_account"}
    write("gupshup", "status_sent_failed", f"/webhooks/gupshup?token={GUPSHUP_TOKEN}", "application/json", {},
          json.dumps(gs_sent, separators=(",", ":")), [
              {"event_id": "meta:wamid.HBgMOTE5MTYzODA1ODczFQIAERgSMDQ4Rj:sent", "event_type": "message.sent",
               "source": "gupshup", "account_id": "112535025189792", "phone_number_id": "158072934066266",
               "occurred_at_us": micros(1710930461), "billable": True, "category": "marketing",
               "attributes": {"conversation_expiration": 1710936120, "conversation_origin": "service",
                              "gs_id": "7daeb742-f2dc-4c09-90e0-d879d20f7b98",
                              "meta_conversation_id": "3dabdf65abaf1cbbf85217d232cce91f",
                              "pricing_model": "PMP", "pricing_type": "regular"}},
              {"event_id": "meta:wamid.HBgMOTE3OTgwODkwOTc4FQIAERgSNERF:failed", "event_type": "message.failed",
               "error_code": 131047, "attributes": {"gs_id": "91f58e90-f5ba-4cfc-9ca7-e4ab965b9449"}}],
          "Gupshup v3 sent (per-message pricing) and failed, from its events pages")
    # --- Twilio ------------------------------------------------------------------------------
    def twilio(name, query, params, rows, about):
        path = "/webhooks/twilio" + (("?" + query) if query else "")
        body = urlencode(params)
        write("twilio", name, path, "application/x-www-form-urlencoded",
              {"x-twilio-signature": twilio_sig(PUBLIC_URL + path, body)}, body, rows, about)
    cb = "exp=spring_cta;variant=emoji;campaign=spring_sale"
    twilio("status_undelivered", urlencode({"cb": cb}), [
        ("MessageSid", "SMeb94a2f5c1f64e0b9c1c2a4f5e6d7c8b"), ("SmsSid", "SMeb94a2f5c1f64e0b9c1c2a4f5e6d7c8b"),
        ("MessageStatus", "undelivered"), ("SmsStatus", "undelivered"), ("AccountSid", "AC4c78a1b2c3d4e5f60718293a4b5c6d7e"),
        ("From", "whatsapp:+14155238886"), ("To", "whatsapp:+16505550123"), ("ChannelToAddress", "+1650555XXXX"),
        ("ChannelPrefix", "whatsapp"), ("ChannelInstallSid", "XEcc20d939f803ee381f2442185d0d5dc5"),
        ("StructuredMessage", "false"), ("ApiVersion", "2010-04-01"), ("ErrorCode", "63016"), ("EventType", "UNDELIVERED")], [
        {"event_id": "twilio:SMeb94a2f5c1f64e0b9c1c2a4f5e6d7c8b:undelivered", "event_type": "message.failed",
         "source": "twilio", "account_id": "AC4c78a1b2c3d4e5f60718293a4b5c6d7e", "phone_number_id": None,
         "experiment": "spring_cta", "variant": "emoji", "campaign": "spring_sale", "country": "US",
         "error_code": 63016, "error_title": "Outside messaging window. For WhatsApp, use a Message Template instead",
         "attributes": {"callback_data": cb}}],
        "Twilio status callback, undelivered with 63016 (its documented parameters), callback data in the URL")
    twilio("status_read", urlencode({"cb": cb}), [
        ("MessageSid", "SMeb94a2f5c1f64e0b9c1c2a4f5e6d7c8c"), ("MessageStatus", "read"), ("SmsStatus", "read"),
        ("AccountSid", "AC4c78a1b2c3d4e5f60718293a4b5c6d7e"), ("MessagingServiceSid", "MG1a2b3c4d5e6f708192a3b4c5d6e7f809"),
        ("From", "whatsapp:+14155238886"), ("To", "whatsapp:+447700900123"), ("ChannelPrefix", "whatsapp"),
        ("ApiVersion", "2010-04-01"), ("EventType", "READ")], [
        {"event_id": "twilio:SMeb94a2f5c1f64e0b9c1c2a4f5e6d7c8c:read", "event_type": "message.read",
         "phone_number_id": "MG1a2b3c4d5e6f708192a3b4c5d6e7f809", "variant": "emoji", "country": "GB",
         "error_code": None}],
        "Twilio status callback, read, sent through a Messaging Service")
    twilio("inbound_tap", "", [
        ("SmsMessageSid", "SM8824cd1f1d6a3b1e2f3a4b5c6d7e8f90"), ("NumMedia", "0"), ("ProfileName", "teknisee"),
        ("MessageType", "button"), ("SmsSid", "SM8824cd1f1d6a3b1e2f3a4b5c6d7e8f90"), ("WaId", "6285176810035"),
        ("SmsStatus", "received"), ("Body", "Konfirmasi pesanan"), ("ButtonText", "Konfirmasi pesanan"),
        ("To", "whatsapp:+14155238886"), ("ButtonPayload", "exp=spring_cta;variant=emoji;choice=interested"),
        ("NumSegments", "1"), ("ReferralNumMedia", "0"), ("MessageSid", "SM8824cd1f1d6a3b1e2f3a4b5c6d7e8f90"),
        ("AccountSid", "ACef1234567890abcdef1234567890abcd"), ("From", "whatsapp:+6285176810035"),
        ("OriginalRepliedMessageSid", "MM5cc4ef1234567890abcdef1234567890"),
        ("OriginalRepliedMessageSender", "whatsapp:+14155238886"), ("Forwarded", "false"), ("ApiVersion", "2010-04-01")], [
        {"event_id": "twilio:SM8824cd1f1d6a3b1e2f3a4b5c6d7e8f90:reply", "event_type": "interaction.reply",
         "actor": "customer", "content_type": "button", "reply_to": "MM5cc4ef1234567890abcdef1234567890",
         "interaction_id": "exp=spring_cta;variant=emoji;choice=interested", "interaction_title": "Konfirmasi pesanan",
         "experiment": "spring_cta", "variant": "emoji", "country": "ID", "attributes": None}],
        "Twilio inbound quick-reply tap (a captured callback's parameters); the profile name and body are not kept")
    twilio("inbound_referral", "", [
        ("MessageSid", "SM11aa22bb33cc44dd55ee66ff77889900"), ("AccountSid", "ACef1234567890abcdef1234567890abcd"),
        ("From", "whatsapp:+5511987654321"), ("To", "whatsapp:+14155238886"), ("WaId", "5511987654321"),
        ("ProfileName", "Joana Silva"), ("Body", "Quero saber mais"), ("MessageType", "text"), ("NumMedia", "0"),
        ("ReferralSourceId", "120226305854810726"), ("ReferralSourceType", "ad"),
        ("ReferralSourceUrl", "https://fb.me/3cr4Wqqkv"), ("ReferralHeadline", "Promo de primavera"),
        ("ReferralBody", "Tudo com 20% off"), ("ReferralCtwaClid", "ARAkLkA8rmlFeiCktEJQ"), ("ReferralNumMedia", "0"),
        ("SmsStatus", "received"), ("ApiVersion", "2010-04-01")], [
        {"event_id": "twilio:SM11aa22bb33cc44dd55ee66ff77889900:inbound", "event_type": "message.inbound",
         "content_type": "text", "country": "BR",
         "attributes": {"referral": {"ctwa_clid": "ARAkLkA8rmlFeiCktEJQ", "source_id": "120226305854810726",
                                     "source_type": "ad", "source_url": "https://fb.me/3cr4Wqqkv"}}}],
        "Twilio inbound message from a click-to-WhatsApp ad (Referral* parameters)")


if __name__ == "__main__":
    main()
