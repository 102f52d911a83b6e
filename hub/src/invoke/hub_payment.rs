//! The hub's own way to pay for a call: its channel rail, offered in every 402 an invoke
//! answers, next to whatever the provider asks.
//!
//! A relayed provider 402 keeps the provider's body byte for byte (its `payment_ways` name
//! the provider's own channel endpoint and list price, and the body may be signed), so the
//! hub's option travels in headers:
//!
//! | header | value |
//! |---|---|
//! | `X-AIMarket-Hub-Payment` | compact JSON of [`HubPaymentOption`] |
//! | `X-AIMarket-Hub-Channel-Open` | the URL that opens a channel at this hub |
//! | `X-AIMarket-Hub-Needed-Usd` | the routed price this hub debits, USD |
//! | `X-AIMarket-Hub-Needed-Base-Units` | the same in micro-USD (6 decimals, USDC base units) |
//! | `X-AIMarket-Routing-Fee` | the routing fee, basis points |
//!
//! A 402 the hub writes itself (a channel it does not know, or one that is closed, expired
//! or too low) carries the same headers and the same object in its body as `hub_payment`,
//! and as `payment_ways[0]` in the shape providers use.
//!
//! [`HubPaymentOption::for_offer`] is the one place the option is built: a new rail the hub
//! can pay on (for example passing the buyer's payment through to the seller) is added
//! there.

use serde::Serialize;
use serde_json::Value;

use super::resolve::Offer;
use super::{InvokeResult, Invoker};
use crate::payments::usd_to_micros;

/// Header names (lower-case, as [`InvokeResult`] keeps them).
pub mod names {
    /// Compact JSON of the whole option.
    pub const HUB_PAYMENT: &str = "x-aimarket-hub-payment";
    /// The channel-open URL at this hub.
    pub const HUB_CHANNEL_OPEN: &str = "x-aimarket-hub-channel-open";
    /// The routed price, USD.
    pub const HUB_NEEDED_USD: &str = "x-aimarket-hub-needed-usd";
    /// The routed price in micro-USD (6 decimals).
    pub const HUB_NEEDED_BASE_UNITS: &str = "x-aimarket-hub-needed-base-units";
}

/// Decimals of [`HubPaymentOption::needed_base_units`] (micro-USD, the USDC base unit).
pub const BASE_UNIT_DECIMALS: u32 = 6;

/// How to pay this hub for one call of one capability.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HubPaymentOption {
    /// Always `"channel"`: a prepaid channel at this hub.
    pub rail: &'static str,
    /// This hub's public URL.
    pub hub: String,
    /// `POST` here with `{"deposit_usd": …}` to open a channel.
    pub open: String,
    /// The header that names the channel on the invoke.
    pub header: &'static str,
    /// The header that carries the channel secret.
    pub secret_header: &'static str,
    /// What this hub debits for the call (the routed price), USD.
    pub needed: f64,
    /// The same, in micro-USD as a decimal string (no float rounding).
    pub needed_base_units: String,
    /// Decimals of `needed_base_units`.
    pub decimals: u32,
    /// The provider's list price, USD.
    pub list_price_usd: f64,
    /// This hub's routing fee, basis points.
    pub routing_fee_bps: u32,
    /// The fee part of `needed`, USD.
    pub routing_fee_usd: f64,
    /// The rails this hub pays the provider on for the buyer (`channel`, `api_key`,
    /// `hub_request_signature`); empty
    /// when it cannot pay this provider, and a channel-funded call would fail.
    pub hub_pays_provider_via: Vec<&'static str>,
    /// Whether paying this hub works for this call now: channels can be opened here and the
    /// hub can pay the provider.
    pub available: bool,
    /// The capability the price is for.
    pub product_id: String,
    /// The capability the price is for.
    pub capability_id: String,
    /// The channel kinds this hub opens: `custodial` (a deposit to the hub, or demo) and/or
    /// `escrow` (non-custodial, on the escrow contract; each paid call then carries a
    /// `payment_authorization`).
    pub channel_kinds: Vec<&'static str>,
    /// How to pay through the escrow (contract, chain id, this hub's address, token, EIP-712
    /// domain and type), when this hub takes escrow channels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub escrow: Option<Value>,
}

impl HubPaymentOption {
    /// The option for `offer`, from the invoker's settings (fee, credentials) and whether
    /// this hub can open channels at all.
    pub fn for_offer(
        invoker: &Invoker,
        public_url: &crate::settings::PublicUrl,
        channels_open: bool,
        offer: &Offer,
    ) -> Self {
        let micros = usd_to_micros(offer.routed_price_usd).unwrap_or(0);
        let fee_micros = micros - usd_to_micros(offer.price_usd).unwrap_or(micros);
        let mut hub_pays_provider_via = invoker.pay.rails_for(&offer.peer_url);
        // A provider that takes this hub's admission signature needs no credential.
        if invoker.rails.signs(
            super::rails::Rail::HubPays,
            false,
            &offer.peer_url,
            &offer.peer_url,
        ) {
            hub_pays_provider_via.push("hub_request_signature");
        }
        Self {
            rail: "channel",
            hub: public_url.as_str().to_owned(),
            open: public_url.join("/ai-market/v2/channel/open"),
            header: "X-Payment-Channel",
            secret_header: "X-Payment-Channel-Secret",
            needed: offer.routed_price_usd,
            needed_base_units: micros.to_string(),
            decimals: BASE_UNIT_DECIMALS,
            list_price_usd: offer.price_usd,
            routing_fee_bps: invoker.routing_fee_bps,
            routing_fee_usd: crate::payments::micros_to_usd(fee_micros.max(0)),
            available: channels_open && !hub_pays_provider_via.is_empty(),
            hub_pays_provider_via,
            product_id: offer.product_id.clone(),
            capability_id: offer.capability_id.clone(),
            channel_kinds: if channels_open {
                vec!["custodial"]
            } else {
                Vec::new()
            },
            escrow: None,
        }
    }

    /// This option with the ledger's channel kinds and escrow terms.
    pub fn with_ledger(mut self, ledger: &crate::payments::Ledger) -> Self {
        self.channel_kinds = ledger.channel_kinds();
        self.escrow = ledger.escrow_terms();
        self.available = !self.channel_kinds.is_empty() && !self.hub_pays_provider_via.is_empty();
        self
    }

    /// The option as JSON (the body's `hub_payment`).
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// The option in the `payment_ways` entry shape providers use, for the hub's own 402s.
    pub fn as_payment_way(&self) -> Value {
        serde_json::json!({
            "rail": self.rail,
            "channel_kinds": self.channel_kinds,
            "header": self.header,
            "secret_header": self.secret_header,
            "open": self.open,
            "needed": self.needed,
            "needed_base_units": self.needed_base_units,
            "decimals": self.decimals,
            "hub": self.hub,
        })
    }

    /// The response headers that carry the option (names from [`names`]).
    pub fn headers(&self) -> Vec<(String, String)> {
        vec![
            (names::HUB_PAYMENT.to_owned(), self.to_json().to_string()),
            (names::HUB_CHANNEL_OPEN.to_owned(), self.open.clone()),
            (names::HUB_NEEDED_USD.to_owned(), self.needed.to_string()),
            (
                names::HUB_NEEDED_BASE_UNITS.to_owned(),
                self.needed_base_units.clone(),
            ),
        ]
    }

    /// Adds the option's headers to a 402 answer (and nothing to any other), and lists them
    /// in `Access-Control-Expose-Headers` so browser clients can read them. The body is not
    /// touched: a relayed provider body stays byte for byte what the provider sent.
    pub fn attach(&self, result: &mut InvokeResult) {
        if result.status != 402 {
            return;
        }
        let fee = super::forward::names::ROUTING_FEE;
        if result.header(fee).is_none() {
            result
                .headers
                .push((fee.to_owned(), self.routing_fee_bps.to_string()));
        }
        result.headers.extend(self.headers());
        let ours = [
            names::HUB_PAYMENT,
            names::HUB_CHANNEL_OPEN,
            names::HUB_NEEDED_USD,
            names::HUB_NEEDED_BASE_UNITS,
            fee,
        ];
        let expose = "access-control-expose-headers";
        match result.headers.iter_mut().find(|(k, _)| k == expose) {
            Some((_, value)) => {
                for name in ours {
                    if !value.split(',').any(|v| v.trim() == name) {
                        value.push_str(", ");
                        value.push_str(name);
                    }
                }
            }
            None => result.headers.push((expose.to_owned(), ours.join(", "))),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use bytes::Bytes;

    fn option() -> HubPaymentOption {
        let settings = crate::settings::Settings {
            demo_payments: true,
            ..crate::settings::Settings::default()
        };
        let url: crate::settings::PublicUrl = "http://127.0.0.1:9083".parse().unwrap();
        let invoker = Invoker::new(&settings, url.as_str());
        let offer = Offer {
            price_usd: 0.002,
            routed_price_usd: 0.00202,
            ..crate::invoke::resolve::test_offer("http://127.0.0.1:7001", None)
        };
        HubPaymentOption::for_offer(&invoker, &url, true, &offer)
    }

    #[test]
    fn prices_in_usd_and_base_units() {
        let o = option();
        assert_eq!(o.open, "http://127.0.0.1:9083/ai-market/v2/channel/open");
        assert_eq!(o.needed, 0.00202);
        assert_eq!(o.needed_base_units, "2020");
        assert_eq!(o.routing_fee_usd, 0.00002);
        assert_eq!(o.hub_pays_provider_via, ["channel"]);
        assert!(o.available);
        let way = o.as_payment_way();
        assert_eq!(way["open"], o.open);
        assert_eq!(way["needed"], 0.00202);
    }

    #[test]
    fn attach_adds_headers_to_402_only_and_keeps_the_body() {
        let o = option();
        let body = Bytes::from_static(br#"{"error":"payment_required","needed":0.002}"#);
        let mut ok = InvokeResult {
            status: 200,
            headers: Vec::new(),
            body: body.clone(),
        };
        o.attach(&mut ok);
        assert!(ok.headers.is_empty());
        let mut relayed = InvokeResult {
            status: 402,
            headers: vec![
                ("x-aimarket-routing-fee".into(), "100".into()),
                (
                    "access-control-expose-headers".into(),
                    "x-aimarket-routing-fee, x-payment-required".into(),
                ),
            ],
            body: body.clone(),
        };
        o.attach(&mut relayed);
        assert_eq!(relayed.body, body);
        let json: Value =
            serde_json::from_str(relayed.header(names::HUB_PAYMENT).unwrap()).unwrap();
        assert_eq!(json["needed_base_units"], "2020");
        assert_eq!(json["open"], o.open);
        assert_eq!(relayed.header(names::HUB_NEEDED_USD), Some("0.00202"));
        assert_eq!(relayed.header(names::HUB_NEEDED_BASE_UNITS), Some("2020"));
        let fees = relayed
            .headers
            .iter()
            .filter(|(k, _)| k == "x-aimarket-routing-fee")
            .count();
        assert_eq!(fees, 1);
        let exposed = relayed.header("access-control-expose-headers").unwrap();
        assert!(exposed.contains("x-payment-required"));
        assert!(exposed.contains(names::HUB_PAYMENT));
    }
}
