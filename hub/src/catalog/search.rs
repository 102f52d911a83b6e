//! Running a search: the index retrieves and filters, the plugin chain ranks, the page is cut.
//!
//! Ranking works on blocks of [`RANK_BLOCK`] index results (see `ranking.rs`): the index is
//! asked for the blocks the requested page touches (usually one), each block goes through
//! `Registry::rank` on its own, and the page is the slice `offset .. offset + limit` of the
//! reranked blocks laid end to end. A plugin that drops candidates leaves its block shorter,
//! so such a page can hold fewer than `limit` matches; `total` and `has_more` always count
//! what the index matched.

use std::sync::Arc;

use aimarket_indexer::{MatchType, SearchHit, SearchQuery};
use aimarket_plugins::{Candidate, PluginContext, Registry, SearchQueryView};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};
use tracing::Instrument as _;

use super::params::{HubFilter, SearchParams};
use super::ranking::RANK_BLOCK;
use super::{Catalog, CatalogError};

/// A ranked page.
#[derive(Debug)]
pub struct SearchOutcome {
    /// The intent as received.
    pub query: String,
    /// The page, best first.
    pub matches: Vec<Candidate>,
    /// Index matches of the query and filters.
    pub total: usize,
    /// The requested offset.
    pub offset: usize,
    /// The effective page size.
    pub limit: usize,
    /// Whether the index matched more past this page.
    pub has_more: bool,
    /// Distinct owning hubs in the index.
    pub hubs_searched: usize,
    /// How the index matched (`lexical`, `fuzzy`, `browse`).
    pub match_type: MatchType,
    /// This hub's routing fee, reported on every match.
    pub routing_fee_bps: u32,
    /// Leave `input_schema` out of the matches.
    pub compact: bool,
    /// Time in the index query (metrics; not serialised).
    pub index_time: std::time::Duration,
    /// Time in the plugins' rank hooks (metrics; not serialised).
    pub plugin_time: std::time::Duration,
}

fn match_type_str(m: MatchType) -> &'static str {
    match m {
        MatchType::Lexical => "lexical",
        MatchType::Fuzzy => "fuzzy",
        MatchType::Browse => "browse",
    }
}

/// What plugins see of a candidate's tool: `name`, `description` and (unless the request
/// was compact) `input_schema`. The response reads those three back from it.
fn candidate(hit: SearchHit, compact: bool) -> Candidate {
    let c = hit.capability;
    let mut tool = Map::with_capacity(3);
    tool.insert("name".into(), Value::String(c.name));
    tool.insert("description".into(), Value::String(c.description));
    if !compact {
        tool.insert("input_schema".into(), c.input_schema);
    }
    Candidate {
        key: format!("{}|{}|{}", c.origin, c.product_id, c.capability_id).into(),
        product_id: c.product_id.into(),
        capability_id: c.capability_id.into(),
        origin: c.origin.into(),
        source_hub_name: c.source_hub_name.into(),
        via: c.via.map(Into::into),
        bm25: hit.relevance as f32,
        // The index's own score: BM25 for a text intent, the quality formula when browsing.
        score: hit.score,
        price_usd: c.price_usd,
        routed_price_usd: c.routed_price_usd,
        p50_latency_ms: c.p50_latency_ms,
        trust_score: c.trust_score,
        success_rate: c.success_rate,
        tool: Arc::new(Value::Object(tool)),
    }
}

/// The `min_trust` a search applies: the client's, but never below the hub's floor (a
/// capability below the floor is one this hub does not recommend, whoever asks). Compared
/// at the precision scores are stored with, so a peer exactly at the floor is kept.
fn effective_min_trust(requested: Option<f64>, floor: f64) -> Option<f64> {
    let floor = (floor > 0.0).then(|| crate::reputation::round_score(floor) - 1e-9);
    match (requested, floor) {
        (Some(r), Some(f)) => Some(r.max(f)),
        (r, f) => r.or(f),
    }
}

impl Catalog {
    /// Runs `params` through the index and the `rank` chain of `plugins`.
    pub async fn search(
        &self,
        params: &SearchParams,
        plugins: &Registry,
        ctx: &mut PluginContext,
    ) -> Result<SearchOutcome, CatalogError> {
        let index = self.index()?;
        let SearchParams { limit, offset, .. } = *params;
        let hub = match &params.hub {
            HubFilter::Any => None,
            HubFilter::Origin(origin) => Some(origin.clone()),
        };
        let (first_block, blocks) = if limit == 0 {
            (0, 0)
        } else {
            let first = offset / RANK_BLOCK;
            (first, (offset + limit - 1) / RANK_BLOCK - first + 1)
        };
        let min_trust = effective_min_trust(params.min_trust, self.min_trust_score);
        let query = SearchQuery {
            intent: params.intent.clone(),
            budget: params.budget,
            max_latency_ms: params.max_latency_ms,
            min_trust,
            hub: hub.clone(),
            category: params.category.clone(),
            limit: blocks * RANK_BLOCK,
            offset: first_block * RANK_BLOCK,
            compact: params.compact,
        };
        // A tantivy search is a few hundred microseconds of CPU: cheaper inline than a hop
        // to the blocking pool.
        let index_started = std::time::Instant::now();
        let page = crate::telemetry::span!("search.index", candidates = tracing::field::Empty)
            .in_scope(|| {
                let page = index.search(&query)?;
                tracing::Span::current().record("candidates", page.total);
                Ok::<_, CatalogError>(page)
            })?;
        let index_time = index_started.elapsed();
        let mut plugin_time = std::time::Duration::ZERO;
        self.stats.searches.incr();
        let match_type = match page.matches.first() {
            Some(hit) => hit.match_type,
            None if params.intent.is_empty() => MatchType::Browse,
            None => MatchType::Lexical,
        };
        let view = SearchQueryView {
            intent: params.intent.clone(),
            budget_usd: params.budget,
            max_latency_ms: params.max_latency_ms,
            min_trust,
            hub,
            category: params.category.clone(),
            limit: u32::try_from(limit).unwrap_or(u32::MAX),
            offset: u32::try_from(offset).unwrap_or(u32::MAX),
        };
        let mut hits = page.matches.into_iter();
        let mut matches = Vec::with_capacity(limit);
        for block in first_block..first_block + blocks {
            let mut ranked: Vec<Candidate> = hits
                .by_ref()
                .take(RANK_BLOCK)
                .map(|hit| candidate(hit, params.compact))
                .collect();
            if ranked.is_empty() {
                break;
            }
            let ranking = std::time::Instant::now();
            plugins
                .rank(ctx, &view, &mut ranked)
                .instrument(crate::telemetry::span!("search.plugins", block))
                .await?;
            plugin_time += ranking.elapsed();
            let start = block * RANK_BLOCK;
            let from = offset.saturating_sub(start).min(ranked.len());
            let to = (offset + limit - start).min(ranked.len());
            matches.extend(ranked.drain(from..to.max(from)));
        }
        Ok(SearchOutcome {
            query: params.intent.clone(),
            matches,
            total: page.total,
            offset,
            limit,
            has_more: offset.saturating_add(limit) < page.total,
            hubs_searched: page.hubs,
            match_type,
            routing_fee_bps: self.routing_fee_bps,
            compact: params.compact,
            index_time,
            plugin_time,
        })
    }
}

/// A finite number for the wire (JSON has no NaN; `serde_json` would write `null`).
fn finite(x: f64) -> f64 {
    if x.is_finite() { x } else { 0.0 }
}

/// The `tool` string field `key`, or `""` (strings are never null on the wire).
fn tool_str<'a>(tool: &'a Value, key: &str) -> &'a str {
    tool.get(key).and_then(Value::as_str).unwrap_or("")
}

/// One match on the wire: the fields of CLIENTS.md's search rows, numbers as JSON numbers.
struct WireMatch<'a> {
    c: &'a Candidate,
    outcome: &'a SearchOutcome,
}

impl Serialize for WireMatch<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let c = self.c;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("product_id", &*c.product_id)?;
        m.serialize_entry("capability_id", &*c.capability_id)?;
        m.serialize_entry("name", tool_str(&c.tool, "name"))?;
        m.serialize_entry("description", tool_str(&c.tool, "description"))?;
        m.serialize_entry("source_hub", &*c.origin)?;
        m.serialize_entry("source_hub_name", &*c.source_hub_name)?;
        m.serialize_entry("score", &finite(c.score))?;
        m.serialize_entry("price_per_call_usd", &finite(c.price_usd))?;
        m.serialize_entry("routed_price_usd", &finite(c.routed_price_usd))?;
        m.serialize_entry("routing_fee_bps", &self.outcome.routing_fee_bps)?;
        m.serialize_entry("trust_score", &finite(c.trust_score))?;
        m.serialize_entry("p50_latency_ms", &c.p50_latency_ms)?;
        m.serialize_entry("success_rate_30d", &finite(c.success_rate))?;
        m.serialize_entry("match_type", match_type_str(self.outcome.match_type))?;
        if !self.outcome.compact {
            match c.tool.get("input_schema") {
                Some(schema @ Value::Object(_)) => m.serialize_entry("input_schema", schema)?,
                _ => m.serialize_entry("input_schema", &Map::new())?,
            }
        }
        m.end()
    }
}

impl Serialize for SearchOutcome {
    /// The response body: `{query, matches, total, offset, limit, has_more,
    /// total_hubs_searched, protocol_version}`.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Matches<'a>(&'a SearchOutcome);
        impl Serialize for Matches<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_seq(
                    self.0
                        .matches
                        .iter()
                        .map(|c| WireMatch { c, outcome: self.0 }),
                )
            }
        }
        let mut m = s.serialize_map(Some(8))?;
        m.serialize_entry("query", &self.query)?;
        m.serialize_entry("matches", &Matches(self))?;
        m.serialize_entry("total", &self.total)?;
        m.serialize_entry("offset", &self.offset)?;
        m.serialize_entry("limit", &self.limit)?;
        m.serialize_entry("has_more", &self.has_more)?;
        m.serialize_entry("total_hubs_searched", &self.hubs_searched)?;
        m.serialize_entry("protocol_version", "v2")?;
        m.end()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::effective_min_trust;

    #[test]
    fn the_floor_raises_min_trust_never_lowers_it() {
        let floor = |r| effective_min_trust(r, 0.3).unwrap();
        assert!((floor(None) - 0.3).abs() < 1e-6);
        assert!((floor(Some(0.1)) - 0.3).abs() < 1e-6);
        assert_eq!(floor(Some(0.8)), 0.8);
        // A peer stored at exactly the floor passes it.
        assert!(floor(None) <= 0.3);
        assert_eq!(effective_min_trust(None, 0.0), None);
        assert_eq!(effective_min_trust(Some(0.4), 0.0), Some(0.4));
    }
}
