//! Ranking: text relevance times a quality factor.
//!
//! The default ([`DefaultRanker`]):
//!
//! ```text
//! quality = 0.35·trust + 0.25·success + 0.20 / (1 + p50_ms / 1000) + 0.20 / (1 + 20·routed_price_usd)
//! final   = relevance × (0.6 + 0.4·quality)          (text search)
//! final   = quality                                  (browse: empty intent)
//! ```
//!
//! `relevance` is the text score: field-weighted BM25 of tantivy term queries combined per
//! query word (best field plus a tie-breaker share), plus phrase, prefix, synonym and typo
//! leaves (see `src/query.rs`). Trust and success are clamped to [0, 1] and
//! non-finite inputs count as 0, so quality is always in [0, 1] and the factor in [0.6, 1.0]:
//! quality reorders matches of similar relevance but cannot lift a weak text match above a
//! strong one. Ties are broken by the capability key, ascending, so results are deterministic.
//!
//! The reputation/plugins work can replace the policy with another [`Ranker`] through
//! [`crate::Index::set_ranker`]; quality and the relevance factor are precomputed per document
//! at each reader reload, so both must be pure functions of their inputs.

/// The per-document inputs of the quality factor, read from fast fields.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QualitySignals {
    /// Trust score, nominally [0, 1].
    pub trust_score: f64,
    /// Success rate, nominally [0, 1].
    pub success_rate: f64,
    /// Median latency in milliseconds.
    pub p50_latency_ms: u64,
    /// Routed price in USD.
    pub routed_price_usd: f64,
}

/// A ranking policy.
pub trait Ranker: Send + Sync + 'static {
    /// Quality of one document in [0, 1].
    fn quality(&self, signals: &QualitySignals) -> f32;

    /// Multiplier applied to the text relevance (BM25, ≥ 0) of a document of this quality:
    /// final = relevance × factor. Precomputed per document, like `quality`.
    fn relevance_factor(&self, quality: f32) -> f32 {
        0.6 + 0.4 * quality
    }
}

/// The documented default policy (module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultRanker;

fn unit(x: f64) -> f64 {
    if x.is_finite() {
        x.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

impl Ranker for DefaultRanker {
    fn quality(&self, s: &QualitySignals) -> f32 {
        let price = if s.routed_price_usd.is_finite() {
            s.routed_price_usd.max(0.0)
        } else {
            0.0
        };
        let latency = 1.0 / (1.0 + s.p50_latency_ms as f64 / 1000.0);
        let cheapness = 1.0 / (1.0 + 20.0 * price);
        let q = 0.35 * unit(s.trust_score)
            + 0.25 * unit(s.success_rate)
            + 0.20 * latency
            + 0.20 * cheapness;
        q.clamp(0.0, 1.0) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signals(trust: f64, success: f64, p50: u64, price: f64) -> QualitySignals {
        QualitySignals {
            trust_score: trust,
            success_rate: success,
            p50_latency_ms: p50,
            routed_price_usd: price,
        }
    }

    #[test]
    fn default_formula() {
        let r = DefaultRanker;
        let q = r.quality(&signals(1.0, 1.0, 0, 0.0));
        assert!((q - 1.0).abs() < 1e-6);
        let q = r.quality(&signals(0.5, 0.5, 1000, 0.05));
        let expected = 0.35 * 0.5 + 0.25 * 0.5 + 0.2 * 0.5 + 0.2 * 0.5;
        assert!((f64::from(q) - expected).abs() < 1e-6);
        assert!((r.relevance_factor(1.0) - 1.0).abs() < 1e-6);
        assert!((r.relevance_factor(0.0) - 0.6).abs() < 1e-6);
    }

    #[test]
    fn hostile_inputs_stay_in_range() {
        let r = DefaultRanker;
        for s in [
            signals(f64::NAN, f64::INFINITY, u64::MAX, f64::NEG_INFINITY),
            signals(7.0, -3.0, 0, -1.0),
        ] {
            let q = r.quality(&s);
            assert!((0.0..=1.0).contains(&q), "{q}");
        }
    }
}
