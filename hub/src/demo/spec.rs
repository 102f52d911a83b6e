//! What a demo factory serves: [`FactorySpec`] (name, key, address, catalog) and
//! [`CapabilitySpec`] (one capability with its schemas, price and computation).

use std::net::{Ipv4Addr, SocketAddr};

use aimarket_protocol::signing::KeyPair;
use serde_json::{Map, Value, json};

/// A capability's computation: the validated input object in, the result object (or a
/// message saying what is wrong with the input) out. Pure and deterministic.
pub type Op = fn(&Map<String, Value>) -> Result<Value, String>;

/// One capability a demo factory offers.
#[derive(Debug, Clone)]
pub struct CapabilitySpec {
    /// Product id (groups capabilities).
    pub product_id: &'static str,
    /// Capability id, `name@vN`.
    pub capability_id: &'static str,
    /// Display name.
    pub name: &'static str,
    /// What it does (searchable text).
    pub description: &'static str,
    /// Category (searchable, filterable).
    pub category: &'static str,
    /// JSON Schema of the input (an object schema; properties carry descriptions).
    pub input_schema: Value,
    /// JSON Schema of the result.
    pub output_schema: Value,
    /// Price per call in USD; `0` is free.
    pub price_usd: f64,
    /// Declared median latency.
    pub p50_latency_ms: u64,
    /// Declared 30-day success rate.
    pub success_rate: f64,
    /// A valid input, used by the demo walkthrough and the tests.
    pub example: Value,
    /// The computation.
    pub op: Op,
}

impl CapabilitySpec {
    /// A free capability with a typical latency; chain the setters for the rest.
    pub fn new(
        product_id: &'static str,
        capability_id: &'static str,
        name: &'static str,
        category: &'static str,
        description: &'static str,
        op: Op,
    ) -> Self {
        Self {
            product_id,
            capability_id,
            name,
            description,
            category,
            input_schema: json!({"type": "object", "properties": {}}),
            output_schema: json!({"type": "object"}),
            price_usd: 0.0,
            p50_latency_ms: 20,
            success_rate: 0.999,
            example: json!({}),
            op,
        }
    }

    /// Sets the input schema.
    pub fn input(mut self, schema: Value) -> Self {
        self.input_schema = schema;
        self
    }

    /// Sets the output schema.
    pub fn output(mut self, schema: Value) -> Self {
        self.output_schema = schema;
        self
    }

    /// Sets the price per call.
    pub fn price(mut self, usd: f64) -> Self {
        self.price_usd = usd;
        self
    }

    /// Sets the declared median latency and success rate.
    pub fn quality(mut self, p50_latency_ms: u64, success_rate: f64) -> Self {
        self.p50_latency_ms = p50_latency_ms;
        self.success_rate = success_rate;
        self
    }

    /// Sets the example input.
    pub fn example(mut self, input: Value) -> Self {
        self.example = input;
        self
    }

    /// Whether calls must be paid.
    pub fn is_priced(&self) -> bool {
        self.price_usd > 0.0
    }

    /// The manifest tool entry (spec §3.1) for a factory at `base_url` signing with `key_b64`.
    pub fn tool_json(&self, key_b64: &str) -> Value {
        json!({
            "name": format!("{}.{}", self.product_id, self.capability_id),
            "display_name": self.name,
            "product_id": self.product_id,
            "capability_id": self.capability_id,
            "description": self.description,
            "category": self.category,
            "input_schema": self.input_schema,
            "output_schema": self.output_schema,
            "price_per_call_usd": self.price_usd,
            "p50_latency_ms": self.p50_latency_ms,
            "success_rate_30d": self.success_rate,
            "provider_pubkey": key_b64,
        })
    }
}

/// A demo factory to start: who it is, where it listens, what it sells.
#[derive(Debug, Clone)]
pub struct FactorySpec {
    /// Human-readable name (well-known `name`).
    pub name: String,
    /// One-line description (well-known `description`).
    pub description: String,
    /// Signing key; `None` generates a fresh one at start.
    pub key: Option<KeyPair>,
    /// Address to bind; port 0 picks a free port. Loopback by default.
    pub listen: SocketAddr,
    /// The catalog.
    pub capabilities: Vec<CapabilitySpec>,
}

impl FactorySpec {
    /// A factory on a free loopback port with a fresh key.
    pub fn new(
        name: impl Into<String>,
        description: impl Into<String>,
        capabilities: Vec<CapabilitySpec>,
    ) -> Self {
        Self {
            name: name.into(),
            description: description.into(),
            key: None,
            listen: SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 0),
            capabilities,
        }
    }

    /// "Polyglot Works": translation, text transforms and text analysis.
    pub fn polyglot_works() -> Self {
        Self::new(
            "Polyglot Works",
            "Translation, text transformation and text analysis (demo factory).",
            super::catalogs::polyglot::capabilities(),
        )
    }

    /// "Atlas Data": geography, simulated weather, finance and calculation.
    pub fn atlas_data() -> Self {
        Self::new(
            "Atlas Data",
            "Geography, simulated weather, finance formulas and calculators (demo factory).",
            super::catalogs::atlas::capabilities(),
        )
    }

    /// "Pixel Forge": images (SVG, colours, headers), OCR of bitmap fonts, audio.
    pub fn pixel_forge() -> Self {
        Self::new(
            "Pixel Forge",
            "Image generation and inspection, bitmap OCR and audio utilities (demo factory).",
            super::catalogs::pixel::capabilities(),
        )
    }

    /// The three built-in factories.
    pub fn built_in() -> Vec<Self> {
        vec![
            Self::polyglot_works(),
            Self::atlas_data(),
            Self::pixel_forge(),
        ]
    }

    /// Uses this signing key instead of a fresh one.
    pub fn with_key(mut self, key: KeyPair) -> Self {
        self.key = Some(key);
        self
    }

    /// Binds this address instead of a free loopback port.
    pub fn listening_on(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// The capability `(product_id, capability_id)`, if offered.
    pub fn capability(&self, product_id: &str, capability_id: &str) -> Option<&CapabilitySpec> {
        self.capabilities
            .iter()
            .find(|c| c.product_id == product_id && c.capability_id == capability_id)
    }
}
