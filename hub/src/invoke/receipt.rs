//! The hub's own client receipt for a routed call (spec §6.4: "client receipt — from routing
//! hub, includes routing fee"), returned as `routing_receipt` next to the provider's
//! untouched `receipt`.
//!
//! It is signed with the v1 canonical (§7.3.3), so it carries none of the nine v2 field
//! names (a v1 signature would leave them unsigned). `payment_rail` and
//! `routing_fee_policy` state how the call was paid and whether the fee was waived; like
//! `list_price_usd` they travel outside the v1 canonical. `price_usd` is what the buyer paid this
//! hub for the call: the routed price for a channel-funded call, 0 when the buyer paid the
//! provider directly or the capability is free.

use aimarket_protocol::ProtocolError;
use aimarket_protocol::signing::{KeyPair, ReceiptVersion, sign_receipt};
use chrono::{SecondsFormat, Utc};
use serde_json::{Value, json};

/// A fresh receipt nonce (`rcpt_` + 128 random bits, hex).
pub fn new_nonce() -> String {
    format!("rcpt_{}", uuid::Uuid::new_v4().simple())
}

/// What a routing receipt states.
#[derive(Debug, Clone)]
pub struct RoutingReceipt<'a> {
    /// Receipt nonce (also the hold id of a channel-funded call).
    pub nonce: &'a str,
    /// Product id.
    pub product_id: &'a str,
    /// Capability id.
    pub capability_id: &'a str,
    /// What the buyer paid this hub, USD.
    pub price_usd: f64,
    /// The provider's list price, USD.
    pub list_price_usd: f64,
    /// This hub's fee.
    pub routing_fee_bps: u32,
    /// Hub-side latency of the call, ms.
    pub latency_ms: u64,
    /// The capability's origin.
    pub source_hub: &'a str,
    /// This hub's public URL.
    pub routing_hub: &'a str,
    /// How the call was paid (`hub_channel`, `seller_direct`, `none`).
    pub payment_rail: &'a str,
    /// The routing-fee policy applied on the seller-direct rail (`waived`, `channel`).
    pub routing_fee_policy: Option<&'a str>,
}

impl RoutingReceipt<'_> {
    /// Builds and signs the receipt (always a successful call: failed calls are not billed
    /// and get no routing receipt).
    pub fn sign(&self, key: &KeyPair) -> Result<Value, ProtocolError> {
        self.sign_with_extensions(key, None)
    }

    /// [`RoutingReceipt::sign`] with the plugins' receipt extensions placed under
    /// `plugin_extensions` before signing. The v1 canonical binds a fixed set of fields, so
    /// the extensions travel with the signed receipt (and are stored with it) without being
    /// covered by the signature.
    pub fn sign_with_extensions(
        &self,
        key: &KeyPair,
        plugin_extensions: Option<Value>,
    ) -> Result<Value, ProtocolError> {
        let mut receipt = json!({
            "nonce": self.nonce,
            "product_id": self.product_id,
            "capability_id": self.capability_id,
            "price_usd": self.price_usd,
            "list_price_usd": self.list_price_usd,
            "routing_fee_bps": self.routing_fee_bps,
            "timestamp": Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
            "success": true,
            "latency_ms": self.latency_ms,
            "source_hub": self.source_hub,
            "routing_hub": self.routing_hub,
            "payment_rail": self.payment_rail,
        });
        if let (Some(policy), Some(obj)) = (self.routing_fee_policy, receipt.as_object_mut()) {
            obj.insert("routing_fee_policy".into(), policy.into());
        }
        if let (Some(extensions), Some(obj)) = (plugin_extensions, receipt.as_object_mut()) {
            obj.insert("plugin_extensions".into(), extensions);
        }
        sign_receipt(&mut receipt, key, ReceiptVersion::V1)?;
        Ok(receipt)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use aimarket_protocol::signing::verify_receipt;

    #[test]
    fn verifies_with_the_hub_key_and_has_no_unsigned_fields() {
        let key = KeyPair::from_seed(&[9u8; 32]);
        let nonce = new_nonce();
        let r = RoutingReceipt {
            nonce: &nonce,
            product_id: "p",
            capability_id: "c@v1",
            price_usd: 0.00404,
            list_price_usd: 0.004,
            routing_fee_bps: 100,
            latency_ms: 12,
            source_hub: "https://origin.example",
            routing_hub: "https://hub.example",
            payment_rail: "hub_channel",
            routing_fee_policy: None,
        }
        .sign(&key)
        .unwrap();
        let check = verify_receipt(&r, &key.public_key()).unwrap();
        assert!(check.unsigned_fields.is_empty());
        assert!(nonce.starts_with("rcpt_") && nonce.len() == 37);
        let mut tampered = r.clone();
        tampered["price_usd"] = json!(0.004);
        assert!(verify_receipt(&tampered, &key.public_key()).is_err());
    }
}
