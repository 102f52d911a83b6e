//! The tantivy schema and the mapping from [`IndexedCapability`] to a document.

use tantivy::TantivyDocument;
use tantivy::schema::{
    FAST, Field, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing, TextOptions,
};

use crate::analysis::{SURFACE_ANALYZER, TEXT_ANALYZER};
use crate::model::IndexedCapability;

/// Bumped whenever the schema, analyzers or stored payload change: an index written with
/// another format is wiped and rebuilt from the store.
pub(crate) const FORMAT_VERSION: u32 = 3;

/// Field names that matter outside this module (fast-field readers use names).
pub(crate) const KEY: &str = "key";
pub(crate) const HUB: &str = "hub";
pub(crate) const TRUST: &str = "trust_score";
pub(crate) const SUCCESS: &str = "success_rate";
pub(crate) const P50: &str = "p50_latency_ms";
pub(crate) const ROUTED: &str = "routed_price_usd";

/// Bounds on what the schema walker reads from an `input_schema`.
const SCHEMA_MAX_DEPTH: usize = 4;
const SCHEMA_MAX_PROPERTIES: usize = 64;
/// Upper bound for any one text field, in bytes (cut at a char boundary).
const MAX_FIELD_BYTES: usize = 8 * 1024;

/// Handles to every field.
#[derive(Debug, Clone)]
pub(crate) struct Fields {
    pub schema: Schema,
    pub key: Field,
    pub hub: Field,
    pub category: Field,
    /// capability_id split into words, and the name (same weight, so one field: fewer
    /// posting lists to merge per query word).
    pub title: Field,
    pub description: Field,
    /// product id, input-schema property names/descriptions, peer name, categories.
    pub extra: Field,
    /// Unstemmed words of the id and name, for prefix and typo matching.
    pub title_surface: Field,
    /// Unstemmed words of the description, for prefix and typo matching.
    pub body_surface: Field,
    pub price: Field,
    pub routed: Field,
    pub p50: Field,
    pub trust: Field,
    pub success: Field,
    /// The capability as JSON (what a hit returns), so search never needs the store.
    pub payload: Field,
}

impl Fields {
    pub fn new() -> Self {
        let mut b = Schema::builder();
        let with_positions = TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(TEXT_ANALYZER)
                .set_index_option(IndexRecordOption::WithFreqsAndPositions),
        );
        let freqs_only = TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(TEXT_ANALYZER)
                .set_index_option(IndexRecordOption::WithFreqs),
        );
        let surface = TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(SURFACE_ANALYZER)
                .set_index_option(IndexRecordOption::Basic),
        );
        let key = b.add_text_field(KEY, STRING | FAST);
        let hub = b.add_text_field(HUB, STRING | FAST);
        let category = b.add_text_field("category", STRING);
        let title = b.add_text_field("title", with_positions.clone());
        let description = b.add_text_field("description", with_positions);
        let extra = b.add_text_field("extra", freqs_only);
        let title_surface = b.add_text_field("title_surface", surface.clone());
        let body_surface = b.add_text_field("body_surface", surface);
        let price = b.add_f64_field("price_usd", FAST);
        let routed = b.add_f64_field(ROUTED, FAST);
        let p50 = b.add_u64_field(P50, FAST);
        let trust = b.add_f64_field(TRUST, FAST);
        let success = b.add_f64_field(SUCCESS, FAST);
        // A stored string, not bytes: tantivy's doc store reads bytes values one byte at a
        // time, strings in bulk (hit loading was 12% of a search).
        let payload = b.add_text_field("payload", STORED);
        Fields {
            schema: b.build(),
            key,
            hub,
            category,
            title,
            description,
            extra,
            title_surface,
            body_surface,
            price,
            routed,
            p50,
            trust,
            success,
            payload,
        }
    }

    /// The stemmed text fields, in the order of [`crate::query::FIELD_BITS`].
    pub fn text_fields(&self) -> [Field; 3] {
        [self.title, self.description, self.extra]
    }

    /// Builds the tantivy document for one capability.
    pub fn document(&self, cap: &IndexedCapability) -> Result<TantivyDocument, serde_json::Error> {
        let mut doc = TantivyDocument::new();
        doc.add_text(self.key, &cap.key);
        doc.add_text(self.hub, &cap.origin);
        for category in &cap.categories {
            doc.add_text(self.category, normalize_category(category));
        }
        doc.add_text(self.title, bounded(&cap.capability_id));
        doc.add_text(self.title, bounded(&cap.name));
        doc.add_text(self.description, bounded(&cap.description));
        doc.add_text(self.title_surface, bounded(&cap.capability_id));
        doc.add_text(self.title_surface, bounded(&cap.name));
        doc.add_text(self.body_surface, bounded(&cap.description));
        let mut extra = String::new();
        extra.push_str(&cap.product_id);
        extra.push('\n');
        extra.push_str(&cap.source_hub_name);
        for category in &cap.categories {
            extra.push('\n');
            extra.push_str(category);
        }
        schema_text(&cap.input_schema, 0, &mut 0, &mut extra);
        doc.add_text(self.extra, bounded(&extra));
        doc.add_f64(self.price, finite(cap.price_usd));
        doc.add_f64(self.routed, finite(cap.routed_price_usd));
        doc.add_u64(self.p50, cap.p50_latency_ms);
        doc.add_f64(self.trust, finite(cap.trust_score));
        doc.add_f64(self.success, finite(cap.success_rate));
        doc.add_text(self.payload, serde_json::to_string(cap)?);
        Ok(doc)
    }
}

/// Non-finite numbers would poison range filters; they are indexed as 0.
fn finite(x: f64) -> f64 {
    if x.is_finite() { x } else { 0.0 }
}

/// Category terms are matched case-insensitively and without surrounding spaces.
pub(crate) fn normalize_category(category: &str) -> String {
    category.trim().to_lowercase()
}

fn bounded(text: &str) -> &str {
    if text.len() <= MAX_FIELD_BYTES {
        return text;
    }
    let mut end = MAX_FIELD_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Appends property names, titles and descriptions of a JSON schema, walking nested
/// `properties` and array `items`, bounded in depth, property count and size.
fn schema_text(schema: &serde_json::Value, depth: usize, seen: &mut usize, out: &mut String) {
    if depth > SCHEMA_MAX_DEPTH || out.len() > MAX_FIELD_BYTES {
        return;
    }
    let Some(object) = schema.as_object() else {
        return;
    };
    for key in ["title", "description"] {
        if let Some(text) = object.get(key).and_then(|v| v.as_str()) {
            out.push('\n');
            out.push_str(text);
        }
    }
    if let Some(properties) = object.get("properties").and_then(|v| v.as_object()) {
        for (name, property) in properties {
            if *seen >= SCHEMA_MAX_PROPERTIES {
                return;
            }
            *seen += 1;
            out.push('\n');
            out.push_str(name);
            schema_text(property, depth + 1, seen, out);
        }
    }
    if let Some(items) = object.get("items") {
        schema_text(items, depth + 1, seen, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn schema_walker_reads_nested_names_and_descriptions() {
        let schema = json!({
            "type": "object",
            "properties": {
                "targetLanguage": {"type": "string", "description": "ISO code of the output"},
                "options": {"type": "object", "properties": {
                    "formality": {"type": "string", "title": "Tone"}
                }},
                "segments": {"type": "array", "items": {"type": "object", "properties": {
                    "speakerLabel": {"type": "string"}
                }}}
            }
        });
        let mut out = String::new();
        schema_text(&schema, 0, &mut 0, &mut out);
        for needle in [
            "targetLanguage",
            "ISO code",
            "formality",
            "Tone",
            "speakerLabel",
        ] {
            assert!(out.contains(needle), "{needle} missing from {out:?}");
        }
    }

    #[test]
    fn schema_walker_is_bounded() {
        // Deep nesting and 10,000 properties must not recurse or grow without bound.
        let mut deep = json!({"type": "string"});
        for i in 0..500 {
            deep = json!({"properties": {format!("p{i}"): deep}});
        }
        let mut out = String::new();
        schema_text(&deep, 0, &mut 0, &mut out);
        assert!(out.matches('\n').count() <= SCHEMA_MAX_DEPTH + 1);

        let wide: serde_json::Map<String, serde_json::Value> = (0..10_000)
            .map(|i| (format!("field{i}"), json!({})))
            .collect();
        let mut out = String::new();
        schema_text(&json!({"properties": wide}), 0, &mut 0, &mut out);
        assert_eq!(out.matches('\n').count(), SCHEMA_MAX_PROPERTIES);
    }

    #[test]
    fn bounded_cuts_at_char_boundary() {
        let text = "я".repeat(MAX_FIELD_BYTES);
        let cut = bounded(&text);
        assert!(cut.len() <= MAX_FIELD_BYTES);
        assert!(cut.chars().all(|c| c == 'я'));
    }
}
