//! Which payment rail a routed call travels on, and the headers that rail puts on the
//! upstream request (shared/docs/PAYMENT-RAILS.md).
//!
//! | rail | when | upstream carries | buyer's hub channel |
//! |---|---|---|---|
//! | [`Rail::SellerDirect`] | the buyer sent `X-Payment` / `PAYMENT-SIGNATURE` | the buyer's payment headers verbatim | untouched (or the routing fee, with `seller_direct_fee = channel`) |
//! | [`Rail::HubPays`] | a priced call with `X-Payment-Channel` | the hub's credential at the provider and/or its admission signature | the routed price is held, captured on success |
//! | [`Rail::HubX402`] | `X-Payment` / `PAYMENT-SIGNATURE` is an x402 exact payment whose `payTo` is this hub's wallet | as [`Rail::HubPays`] | untouched: the authorization is verified before the call and settled on-chain after it succeeded |
//! | [`Rail::Unpaid`] | anything else | the admission signature when the call is free | untouched |
//!
//! Every call also names the buyer with an opaque, stable `X-AIMarket-Buyer` id, so a
//! provider's per-client limits see buyers rather than this hub's one address.

use aimarket_protocol::signing::{HubRequestClaims, KeyPair, hub_request_nonce};
use alloy_primitives::Address;
use sha2::{Digest, Sha256};

use super::forward::{OutgoingHeaders, names};
use super::request::BuyerHeaders;
use crate::limits::ClientId;
use crate::payments::x402::is_payment_to_hub;
use crate::settings::{SellerDirectFee, SellsFor};

/// How one routed call is paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rail {
    /// The buyer pays the provider directly; the hub forwards the payment headers.
    SellerDirect,
    /// The buyer paid this hub (a hold on its channel); the hub pays or vouches upstream.
    HubPays,
    /// The buyer paid this hub with an x402 exact authorization to its wallet; the hub
    /// pays or vouches upstream as on [`Rail::HubPays`].
    HubX402,
    /// Nobody paid: a free capability, or a priced one whose 402 is relayed to the buyer.
    Unpaid,
}

impl Rail {
    /// The rail of a call whose routed price is `routed_micros`, at a hub whose wallet (if
    /// it has one) is `hub_wallet`.
    pub fn choose(headers: &BuyerHeaders, routed_micros: i64, hub_wallet: Option<Address>) -> Self {
        if hub_x402_payment(headers, hub_wallet).is_some() {
            Self::HubX402
        } else if headers.pays_provider() {
            Self::SellerDirect
        } else if headers.channel_id.is_some() && routed_micros > 0 {
            Self::HubPays
        } else {
            Self::Unpaid
        }
    }

    /// Wire spelling (routing receipts, answers, logs).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SellerDirect => "seller_direct",
            Self::HubPays => "hub_channel",
            Self::HubX402 => "x402",
            Self::Unpaid => "none",
        }
    }

    /// Whether the buyer paid this hub, which pays the provider (a channel hold or an x402
    /// authorization to the hub).
    pub fn hub_paid(self) -> bool {
        matches!(self, Self::HubPays | Self::HubX402)
    }
}

/// The buyer's payment header that pays this hub's wallet `hub_wallet` with x402 exact
/// (`X-Payment` first, then `PAYMENT-SIGNATURE`); `None` when neither does, or the hub has
/// no wallet: such headers are the provider's, passed through seller-direct.
pub fn hub_x402_payment(headers: &BuyerHeaders, hub_wallet: Option<Address>) -> Option<&str> {
    let hub = hub_wallet?;
    [&headers.x_payment, &headers.payment_signature]
        .into_iter()
        .flatten()
        .map(String::as_str)
        .find(|h| is_payment_to_hub(h, hub))
}

/// The rail settings of this hub.
#[derive(Debug, Clone)]
pub struct RailPolicy {
    /// Peers this hub is the seller of record for.
    pub sells_for: SellsFor,
    /// Sign admitted calls to every peer.
    pub sign_all_peers: bool,
    /// The routing-fee policy on the seller-direct rail.
    pub seller_direct_fee: SellerDirectFee,
}

impl RailPolicy {
    /// Whether an admitted call to `peer_url` (posted to `target_url`) carries this hub's
    /// `aimarket-hub-request/v1` signature. Only calls the hub admitted are signed: it took
    /// the buyer's payment, or the capability is free. A call the buyer pays seller-direct,
    /// or an unpaid call to a priced capability, is never vouched for.
    pub fn signs(&self, rail: Rail, free: bool, peer_url: &str, target_url: &str) -> bool {
        let admitted = match rail {
            Rail::HubPays | Rail::HubX402 => true,
            Rail::Unpaid => free,
            Rail::SellerDirect => false,
        };
        admitted
            && (self.sign_all_peers
                || self.sells_for.covers(peer_url)
                || self.sells_for.covers(target_url))
    }
}

/// The opaque, stable id of a buyer toward providers: a keyed digest of how this hub
/// identifies the caller, never a secret and never the raw key, channel or address.
pub fn buyer_id(key: &KeyPair, client: &ClientId) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"aimarket-buyer/v1\n");
    // Keyed with the hub's secret seed: ids cannot be linked back to a channel or address
    // by anyone else, yet stay the same for one buyer across calls and restarts.
    hasher.update(key.seed());
    hasher.update(b"\n");
    hasher.update(client.as_str().as_bytes());
    let digest = hasher.finalize();
    format!("b_{}", hex::encode(&digest[..16]))
}

/// Adds the buyer's own payment headers, verbatim (seller-direct). `X-Payment` is sent
/// once: header names are case-insensitive, so `X-PAYMENT` is the same header.
pub fn apply_buyer_payment(headers: &mut OutgoingHeaders, buyer: &BuyerHeaders) {
    for (name, value) in [
        (names::X_PAYMENT, &buyer.x_payment),
        (names::PAYMENT_SIGNATURE, &buyer.payment_signature),
        (names::X_PAYMENT_NONCE, &buyer.x_payment_nonce),
        (names::X_PAYMENT_SECRET, &buyer.x_payment_secret),
    ] {
        if let Some(value) = value {
            headers.set(name, value);
        }
    }
}

/// Adds the five admission-signature headers for a call of `capability_id` with `input`
/// posted to `target_url`. A URL that cannot be normalised (never the case for a routed
/// target) leaves the call unsigned, with a warning.
pub fn apply_signature(
    headers: &mut OutgoingHeaders,
    key: &KeyPair,
    hub_url: &str,
    target_url: &str,
    capability_id: &str,
    input: &serde_json::Value,
) -> bool {
    let now = chrono::Utc::now().timestamp();
    match HubRequestClaims::new(
        hub_url,
        target_url,
        capability_id,
        input,
        now,
        &hub_request_nonce(),
    ) {
        Ok(claims) => {
            for (name, value) in claims.sign(key) {
                headers.set(name, &value);
            }
            true
        }
        Err(e) => {
            tracing::warn!(target_url, error = %e, "cannot sign the hub request");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use aimarket_protocol::signing::verify_hub_request;
    use std::time::Duration;

    fn headers(x_payment: bool, channel: bool) -> BuyerHeaders {
        BuyerHeaders {
            x_payment: x_payment.then(|| "0xabc".to_owned()),
            channel_id: channel.then(|| "ch_1".to_owned()),
            ..BuyerHeaders::default()
        }
    }

    #[test]
    fn the_buyers_own_payment_wins_over_a_channel() {
        let hub = Some(Address::repeat_byte(7));
        assert_eq!(
            Rail::choose(&headers(true, true), 100, hub),
            Rail::SellerDirect
        );
        assert_eq!(Rail::choose(&headers(false, true), 100, hub), Rail::HubPays);
        assert_eq!(Rail::choose(&headers(false, true), 0, hub), Rail::Unpaid);
        assert_eq!(
            Rail::choose(&headers(false, false), 100, None),
            Rail::Unpaid
        );
    }

    #[test]
    fn an_x402_payment_to_the_hub_wallet_is_the_hubs_rail() {
        use crate::payments::chain::WalletKey;
        use crate::payments::x402::{TokenDomain, sign_exact_authorization};
        let buyer = WalletKey::from_hex(&"11".repeat(32)).unwrap();
        let hub = Address::repeat_byte(7);
        let domain = TokenDomain {
            name: "USD Coin".into(),
            version: "2".into(),
            chain_id: 31337,
            token: Address::repeat_byte(9),
        };
        let pay = |to| {
            sign_exact_authorization(&buyer, &domain, "anvil", to, 5, Duration::from_secs(60))
                .unwrap()
                .to_header()
        };
        let to_hub = BuyerHeaders {
            payment_signature: Some(pay(hub)),
            ..BuyerHeaders::default()
        };
        assert_eq!(Rail::choose(&to_hub, 5, Some(hub)), Rail::HubX402);
        // A hub without a wallet cannot take it: it goes to the provider untouched.
        assert_eq!(Rail::choose(&to_hub, 5, None), Rail::SellerDirect);
        let to_provider = BuyerHeaders {
            x_payment: Some(pay(Address::repeat_byte(8))),
            channel_id: Some("ch_1".into()),
            ..BuyerHeaders::default()
        };
        assert_eq!(Rail::choose(&to_provider, 5, Some(hub)), Rail::SellerDirect);
        assert!(Rail::HubX402.hub_paid() && !Rail::SellerDirect.hub_paid());
    }

    #[test]
    fn only_admitted_calls_to_sold_peers_are_signed() {
        let policy = RailPolicy {
            sells_for: "http://127.0.0.1:9301".parse().unwrap(),
            sign_all_peers: false,
            seller_direct_fee: SellerDirectFee::Waived,
        };
        let (peer, target) = (
            "http://127.0.0.1:9301",
            "http://127.0.0.1:9301/ai-market/v2/invoke",
        );
        assert!(policy.signs(Rail::HubPays, false, peer, target));
        assert!(policy.signs(Rail::Unpaid, true, peer, target));
        assert!(!policy.signs(Rail::Unpaid, false, peer, target));
        assert!(!policy.signs(Rail::SellerDirect, true, peer, target));
        assert!(!policy.signs(
            Rail::HubPays,
            false,
            "http://127.0.0.1:9302",
            "http://127.0.0.1:9302/ai-market/v2/invoke"
        ));
        let all = RailPolicy {
            sign_all_peers: true,
            sells_for: SellsFor::default(),
            ..policy
        };
        assert!(all.signs(
            Rail::HubPays,
            false,
            "http://x.example",
            "http://x.example/i"
        ));
    }

    #[test]
    fn buyer_ids_are_stable_opaque_and_keyed() {
        let key = KeyPair::from_seed(&[1u8; 32]);
        let other = KeyPair::from_seed(&[2u8; 32]);
        let a = ClientId::named("ch_secretless");
        let id = buyer_id(&key, &a);
        assert_eq!(id, buyer_id(&key, &a));
        assert_ne!(id, buyer_id(&key, &ClientId::named("ch_other")));
        assert_ne!(id, buyer_id(&other, &a));
        assert!(!id.contains("ch_secretless"));
        assert_eq!(id.len(), 34);
    }

    #[test]
    fn signed_headers_verify_for_the_target() {
        let key = KeyPair::from_seed(&[3u8; 32]);
        let mut h = OutgoingHeaders::new(0, "http://hub", "tp", "rid");
        let input = serde_json::json!({"n": 8});
        let target = "http://127.0.0.1:9301/ai-market/v2/invoke";
        assert!(apply_signature(
            &mut h,
            &key,
            "http://127.0.0.1:9083/",
            target,
            "lattice.sobol@v1",
            &input
        ));
        let map = h.into_map();
        let get = |n: &str| map.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
        assert_eq!(
            get("x-aimarket-hub-signer").unwrap(),
            "http://127.0.0.1:9083"
        );
        let now = chrono::Utc::now().timestamp();
        verify_hub_request(
            get,
            target,
            "lattice.sobol@v1",
            &input,
            &key.public_key(),
            now,
        )
        .unwrap();
    }
}
