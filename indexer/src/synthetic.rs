//! Deterministic synthetic catalogs for benchmarks, tests and the relevance set.
//!
//! Capabilities are instances of 96 hand-written task templates
//! (`indexer/relevance/templates.json`: translation, OCR, weather, finance, crypto, legal,
//! code, images, audio, video, geo, health, NLP, web, messaging, travel, …), some with Russian
//! and Chinese descriptions. The same seed always yields the same catalog, on every platform:
//! the generator uses its own SplitMix64, not a crate whose stream could change.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::json;

use crate::model::IndexedCapability;

/// One task template.
#[derive(Debug, Clone, Deserialize)]
pub struct Template {
    /// Base capability id; instances use `{id}@v{n}` or `{id}.{variant}@v{n}`.
    pub id: String,
    /// Declared categories.
    pub categories: Vec<String>,
    /// Name variants.
    pub names: Vec<String>,
    /// English descriptions.
    pub en: Vec<String>,
    /// Russian descriptions.
    #[serde(default)]
    pub ru: Vec<String>,
    /// Chinese descriptions.
    #[serde(default)]
    pub zh: Vec<String>,
    /// Input properties: name → description.
    pub schema: BTreeMap<String, String>,
}

/// The committed templates.
pub fn templates() -> &'static [Template] {
    static TEMPLATES: OnceLock<Vec<Template>> = OnceLock::new();
    TEMPLATES.get_or_init(|| {
        serde_json::from_str(include_str!("../relevance/templates.json"))
            .expect("templates.json is committed and checked by tests")
    })
}

/// The template id of a generated capability id (`translate.text.pro@v2` → `translate.text`).
pub fn template_id(capability_id: &str) -> &str {
    let base = capability_id.split('@').next().unwrap_or(capability_id);
    match base.rsplit_once('.') {
        Some((head, tail)) if VARIANTS.contains(&tail) => head,
        _ => base,
    }
}

/// SplitMix64: tiny, fast, and stable forever.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A random element (`items` non-empty).
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const VENDORS: &[&str] = &[
    "acme", "nimbus", "vertex", "orbit", "quanta", "lumen", "zenith", "pioneer", "atlas", "cobalt",
    "helix", "nova", "polaris", "summit", "tundra", "vega", "willow", "yonder", "sigma", "delta",
    "kestrel", "maple", "onyx", "raven",
];

const VARIANTS: &[&str] = &["pro", "lite", "fast", "batch", "eu", "plus"];

const FILLERS: &[&str] = &[
    "Low latency, runs in three regions.",
    "Batch requests supported.",
    "GDPR compliant; data is deleted after processing.",
    "Returns structured JSON.",
    "Pay per call, no subscription.",
    "Enterprise SLA with 99.9% uptime.",
    "Streaming responses available.",
    "Backed by a fine-tuned model updated monthly.",
    "Free tier for testing.",
    "Rate limited to 50 requests per second.",
];

fn schema_of(template: &Template) -> serde_json::Value {
    let properties: serde_json::Map<String, serde_json::Value> = template
        .schema
        .iter()
        .map(|(name, description)| {
            (
                name.clone(),
                json!({"type": "string", "description": description}),
            )
        })
        .collect();
    let required: Vec<&String> = template.schema.keys().take(1).collect();
    json!({"type": "object", "properties": properties, "required": required})
}

fn titled(vendor: &str) -> String {
    let mut chars = vendor.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// Signals and prices drawn for one instance: (price, p50 ms, trust, success).
fn draw_signals(rng: &mut Rng) -> (f64, u64, f64, f64) {
    let price = (rng.unit() * rng.unit() * 0.2 * 1e6).round() / 1e6;
    let p50 = 40 + (rng.unit() * rng.unit() * 4000.0) as u64;
    let trust = ((0.2 + 0.8 * rng.unit()) * 100.0).round() / 100.0;
    let success = ((0.5 + 0.5 * rng.unit()) * 100.0).round() / 100.0;
    (price, p50, trust.min(1.0), success.min(1.0))
}

/// Routed price with a 100 bps fee, micro-dollar rounded like the hub does.
pub fn routed(price: f64) -> f64 {
    ((price * 1e6).round() * 1.01).round() / 1e6
}

#[allow(clippy::too_many_arguments)]
fn build(
    template: &Template,
    hub: usize,
    product_id: String,
    capability_id: String,
    name: String,
    description: String,
    rng: &mut Rng,
) -> IndexedCapability {
    let origin = format!("https://hub-{hub}.example.net");
    let (price, p50, trust, success) = draw_signals(rng);
    IndexedCapability {
        key: IndexedCapability::make_key(&origin, &product_id, &capability_id),
        source_hub_name: format!("Example Hub {hub}"),
        via: None,
        origin,
        product_id,
        capability_id,
        name,
        description,
        input_schema: schema_of(template),
        categories: template.categories.clone(),
        price_usd: price,
        routed_price_usd: routed(price),
        p50_latency_ms: p50,
        trust_score: trust,
        success_rate: success,
    }
}

/// The small catalog the relevance set is labelled against: every template three or four
/// times (different hubs and vendors, each name and description variant, and its Russian and
/// Chinese descriptions when it has them).
pub fn relevance_catalog() -> Vec<IndexedCapability> {
    let mut rng = Rng::new(0x5EED_0001);
    let mut out = Vec::new();
    for (t, template) in templates().iter().enumerate() {
        let mut descriptions: Vec<&String> = template.en.iter().take(2).collect();
        descriptions.extend(template.ru.first());
        descriptions.extend(template.zh.first());
        for (i, description) in descriptions.into_iter().enumerate() {
            let vendor = VENDORS[(t * 5 + i * 7) % VENDORS.len()];
            let name = template.names[i % template.names.len()].clone();
            let slug = template.id.replace('.', "-");
            out.push(build(
                template,
                (t + i) % 7,
                format!("{vendor}-{slug}"),
                format!("{}@v{}", template.id, i + 1),
                name,
                description.clone(),
                &mut rng,
            ));
        }
    }
    out
}

/// A catalog of `n` capabilities drawn from the templates, generated lazily (a million fit
/// in a stream without holding them all). Hubs: `n / 500` clamped to 3..=2000.
pub fn catalog(n: usize, seed: u64) -> impl Iterator<Item = IndexedCapability> {
    let mut rng = Rng::new(seed);
    let hubs = (n / 500).clamp(3, 2000);
    (0..n).map(move |i| {
        let template = rng.pick(templates());
        let vendor = *rng.pick(VENDORS);
        let version = 1 + rng.below(3);
        let variant = (rng.below(3) == 0).then(|| *rng.pick(VARIANTS));
        let capability_id = match variant {
            Some(v) => format!("{}.{v}@v{version}", template.id),
            None => format!("{}@v{version}", template.id),
        };
        let mut name = rng.pick(&template.names).clone();
        if rng.below(2) == 0 {
            name = format!("{} {name}", titled(vendor));
        }
        if let Some(v) = variant {
            name.push(' ');
            name.push_str(&titled(v));
        }
        let roll = rng.below(100);
        let mut description = if roll < 10 && !template.ru.is_empty() {
            rng.pick(&template.ru).clone()
        } else if roll < 18 && !template.zh.is_empty() {
            rng.pick(&template.zh).clone()
        } else {
            rng.pick(&template.en).clone()
        };
        for _ in 0..rng.below(3) {
            description.push(' ');
            let filler: &&str = rng.pick(FILLERS);
            description.push_str(filler);
        }
        let hub = rng.below(hubs);
        let product_id = format!("{vendor}-{}-{i}", template.id.replace('.', "-"));
        build(
            template,
            hub,
            product_id,
            capability_id,
            name,
            description,
            &mut rng,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_parse_and_are_unique() {
        let all = templates();
        assert!(all.len() >= 90);
        let mut ids: Vec<&str> = all.iter().map(|t| t.id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), all.len());
        for t in all {
            assert!(
                !t.names.is_empty() && !t.en.is_empty() && !t.schema.is_empty(),
                "{}",
                t.id
            );
            assert_eq!(template_id(&format!("{}.pro@v2", t.id)), t.id);
            assert_eq!(template_id(&format!("{}@v1", t.id)), t.id);
        }
    }

    #[test]
    fn catalogs_are_deterministic_and_keys_unique() {
        let a: Vec<_> = catalog(500, 7).collect();
        let b: Vec<_> = catalog(500, 7).collect();
        assert_eq!(a, b);
        let mut keys: Vec<&str> = a.iter().map(|c| c.key.as_str()).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), 500);
        let rel = relevance_catalog();
        assert_eq!(rel, relevance_catalog());
        let mut keys: Vec<&str> = rel.iter().map(|c| c.key.as_str()).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), rel.len());
    }

    #[test]
    fn routed_price_is_micro_dollar_rounded() {
        assert_eq!(routed(0.004), 0.00404);
        assert_eq!(routed(0.0), 0.0);
    }
}
