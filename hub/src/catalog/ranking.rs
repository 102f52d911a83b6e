//! One ranking formula: the `quality` plugin's.
//!
//! The index retrieves; the plugin chain ranks. For a text intent the index orders matches
//! by BM25 alone ([`QualityRanker::relevance_factor`] is 1), and the chain
//! (by default the `quality` plugin) turns BM25 and the quality signals into the reported
//! score. For an empty intent (browse) there is no BM25, so the index orders the catalog by
//! the same plugin's formula at full relevance ([`QualityRanker::quality`]): the plugin's
//! order and the index's agree, and quality is never counted twice.
//!
//! The chain sees candidates in *blocks* of [`RANK_BLOCK`] consecutive index results (block
//! 0 = the best [`RANK_BLOCK`] by BM25, block 1 the next, …) and reorders each block on its
//! own. A page is a slice of the concatenated reranked blocks, so pages never overlap or skip
//! a result whatever `offset` and `limit` a client combines. See `search.rs`.

use std::sync::Arc;

use aimarket_indexer::{QualitySignals, Ranker};
use aimarket_plugins::builtin::quality::{self, Quality, QualitySettings};
use aimarket_plugins::{Candidate, PluginError, PluginSettings, RegistryConfig};
use serde_json::Value;

/// Candidates per rank block (see the module docs).
pub const RANK_BLOCK: usize = 20;

/// The index's ranking policy, derived from the configured `quality` plugin.
pub struct QualityRanker {
    quality: Quality,
    /// A candidate whose numbers are overwritten per document (strings are shared `Arc`s).
    template: Candidate,
}

impl std::fmt::Debug for QualityRanker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QualityRanker").finish_non_exhaustive()
    }
}

impl QualityRanker {
    /// The ranker for `chain`: the settings of its `quality` entry, or the plugin's defaults
    /// when the chain has none (browse order still needs a formula).
    pub fn from_chain(chain: &RegistryConfig) -> Result<Self, PluginError> {
        let settings = match chain.plugins.iter().find(|p| p.name == quality::NAME) {
            Some(entry) => PluginSettings::new(quality::NAME, entry.settings.clone())
                .parse::<QualitySettings>()?,
            None => QualitySettings::default(),
        };
        let quality = Quality::new(settings)
            .map_err(|(field, message)| PluginError::settings(quality::NAME, &field, message))?;
        let empty: Arc<str> = Arc::from("");
        let template = Candidate {
            key: empty.clone(),
            product_id: empty.clone(),
            capability_id: empty.clone(),
            origin: empty.clone(),
            source_hub_name: empty,
            via: None,
            bm25: 0.0,
            score: 0.0,
            price_usd: 0.0,
            routed_price_usd: 0.0,
            p50_latency_ms: 0,
            trust_score: 0.0,
            success_rate: 0.0,
            tool: Arc::new(Value::Null),
        };
        Ok(Self { quality, template })
    }
}

impl Ranker for QualityRanker {
    /// The plugin's score of a document at full relevance (browse order).
    fn quality(&self, s: &QualitySignals) -> f32 {
        let mut c = self.template.clone();
        c.routed_price_usd = s.routed_price_usd;
        c.p50_latency_ms = s.p50_latency_ms;
        c.trust_score = s.trust_score;
        c.success_rate = s.success_rate;
        // max_bm25 = 0 means "browsing": relevance counts as 1 for every candidate.
        self.quality.score(&c, 0.0) as f32
    }

    /// Text search retrieves by BM25 alone; quality is the chain's job.
    fn relevance_factor(&self, _quality: f32) -> f32 {
        1.0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use aimarket_plugins::PluginConfig;
    use serde_json::json;

    fn signals(trust: f64, p50: u64) -> QualitySignals {
        QualitySignals {
            trust_score: trust,
            success_rate: 0.9,
            p50_latency_ms: p50,
            routed_price_usd: 0.01,
        }
    }

    #[test]
    fn browse_quality_is_the_plugin_score_and_text_is_bm25() {
        let ranker = QualityRanker::from_chain(&RegistryConfig::default_chain()).unwrap();
        let plugin = Quality::new(QualitySettings::default()).unwrap();
        let mut c = ranker.template.clone();
        c.trust_score = 0.8;
        c.success_rate = 0.9;
        c.p50_latency_ms = 300;
        c.routed_price_usd = 0.01;
        let expected = plugin.score(&c, 0.0) as f32;
        assert!((ranker.quality(&signals(0.8, 300)) - expected).abs() < 1e-6);
        assert!(ranker.quality(&signals(0.9, 100)) > ranker.quality(&signals(0.2, 5000)));
        assert_eq!(ranker.relevance_factor(0.1), 1.0);
    }

    #[test]
    fn weights_come_from_the_configured_quality_entry() {
        let chain = RegistryConfig {
            plugins: vec![PluginConfig::named("quality").with_settings(json!({
                "weights": {"relevance": 0, "trust": 0, "success_rate": 0, "latency": 1, "price": 0}
            }))],
        };
        let ranker = QualityRanker::from_chain(&chain).unwrap();
        // Latency alone: trust no longer matters.
        let fast_untrusted = ranker.quality(&signals(0.0, 10));
        let slow_trusted = ranker.quality(&signals(1.0, 5000));
        assert!(fast_untrusted > slow_trusted);

        let bad = RegistryConfig {
            plugins: vec![
                PluginConfig::named("quality").with_settings(json!({"weights": {"trust": -1}})),
            ],
        };
        assert!(QualityRanker::from_chain(&bad).is_err());
        // No quality entry: the defaults.
        assert!(QualityRanker::from_chain(&RegistryConfig::default()).is_ok());
    }
}
