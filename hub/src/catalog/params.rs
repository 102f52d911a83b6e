//! `GET /ai-market/v2/search` parameters, parsed at the edge into [`SearchParams`].
//!
//! | parameter        | accepted                                              | default |
//! |------------------|-------------------------------------------------------|---------|
//! | `intent`         | any text up to [`MAX_INTENT_CHARS`] characters          | `""` (browse) |
//! | `budget`         | a number ≥ 0: maximum **routed** price, USD             | none    |
//! | `max_latency_ms` | a number ≥ 0 (fractions are cut)                       | none    |
//! | `min_trust`      | a number in `[0, 1]`                                   | none    |
//! | `hub`            | `any`, `local` (this hub's own capabilities: none), or an http(s) URL, reduced to its origin | `any` |
//! | `category`       | text up to [`MAX_CATEGORY_CHARS`] characters            | none    |
//! | `limit`          | an integer ≥ 0; above [`MAX_LIMIT`] it is clamped to it; 0 returns only `total` | [`DEFAULT_LIMIT`] |
//! | `offset`         | an integer in `0..=`[`MAX_OFFSET`]                     | 0       |
//! | `fields`         | `compact` (no `input_schema`) or `full`                 | `full`  |
//!
//! An empty value counts as absent (`budget=` is no budget). A parameter given twice, a
//! value that does not parse (`budget=abc`, `limit=-1`, `limit=2.5`), an unknown `hub` or
//! `fields` form and an over-long intent are refused with 400. Unknown parameters are
//! ignored, so clients that send extra hints keep working.

use crate::store::normalize_origin;

/// Page size when `limit` is absent.
pub const DEFAULT_LIMIT: usize = 20;
/// Largest page; larger `limit`s are clamped.
pub const MAX_LIMIT: usize = 100;
/// Deepest `offset` accepted (paging deeper than this is a crawl, not a search).
pub const MAX_OFFSET: usize = 10_000;
/// Longest `intent`, in characters.
pub const MAX_INTENT_CHARS: usize = 1_000;
/// Longest `category`, in characters.
pub const MAX_CATEGORY_CHARS: usize = 200;

/// Which hubs' capabilities to search.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum HubFilter {
    /// Every hub (`hub=any` or absent).
    #[default]
    Any,
    /// Capabilities owned by this origin.
    Origin(String),
}

/// A validated search request.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchParams {
    /// The intent as sent (trimmed); empty browses the catalog.
    pub intent: String,
    /// Maximum routed price, USD.
    pub budget: Option<f64>,
    /// Maximum p50 latency, ms.
    pub max_latency_ms: Option<u64>,
    /// Minimum trust score.
    pub min_trust: Option<f64>,
    /// Owning hub.
    pub hub: HubFilter,
    /// Category.
    pub category: Option<String>,
    /// Page size (already clamped to [`MAX_LIMIT`]).
    pub limit: usize,
    /// Results skipped.
    pub offset: usize,
    /// Leave `input_schema` out of matches.
    pub compact: bool,
}

impl Default for SearchParams {
    fn default() -> Self {
        Self {
            intent: String::new(),
            budget: None,
            max_latency_ms: None,
            min_trust: None,
            hub: HubFilter::Any,
            category: None,
            limit: DEFAULT_LIMIT,
            offset: 0,
            compact: false,
        }
    }
}

/// A parameter the hub refuses (400 with the protocol error body).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid search parameter `{param}`: {reason}")]
pub struct ParamError {
    /// The parameter's name.
    pub param: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl crate::error_code::ErrorCode for ParamError {
    /// 400 naming the parameter.
    fn wire_code(&self) -> crate::error_code::Code {
        crate::error_code::Code::BadRequest
    }

    fn decorate(&self, api: crate::error_code::ApiError) -> crate::error_code::ApiError {
        api.with_field("param", self.param)
    }
}

fn invalid(param: &'static str, reason: impl Into<String>) -> ParamError {
    ParamError {
        param,
        reason: reason.into(),
    }
}

/// The known parameters, in one place so duplicates are detected uniformly.
const KNOWN: [&str; 9] = [
    "intent",
    "budget",
    "max_latency_ms",
    "min_trust",
    "hub",
    "category",
    "limit",
    "offset",
    "fields",
];

impl SearchParams {
    /// Parses a raw query string (`a=1&b=2`, percent-encoded). `local_origin` is this hub's
    /// origin, what `hub=local` means.
    pub fn parse(query: &str, local_origin: &str) -> Result<Self, ParamError> {
        let mut raw: [Option<String>; KNOWN.len()] = Default::default();
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let Some(slot) = KNOWN.iter().position(|k| *k == name) else {
                continue;
            };
            if raw[slot].is_some() {
                return Err(invalid(KNOWN[slot], "given more than once"));
            }
            raw[slot] = Some(value.into_owned());
        }
        // Empty values count as absent.
        let [
            intent,
            budget,
            latency,
            trust,
            hub,
            category,
            limit,
            offset,
            fields,
        ] = raw.map(|v| v.filter(|s| !s.trim().is_empty()));

        let intent = intent.map(|s| s.trim().to_owned()).unwrap_or_default();
        if intent.chars().count() > MAX_INTENT_CHARS {
            return Err(invalid(
                "intent",
                format!("longer than {MAX_INTENT_CHARS} characters"),
            ));
        }
        let category = category.map(|s| s.trim().to_owned());
        if category
            .as_ref()
            .is_some_and(|c| c.chars().count() > MAX_CATEGORY_CHARS)
        {
            return Err(invalid(
                "category",
                format!("longer than {MAX_CATEGORY_CHARS} characters"),
            ));
        }
        let min_trust = trust.map(|v| non_negative("min_trust", &v)).transpose()?;
        if min_trust.is_some_and(|t| t > 1.0) {
            return Err(invalid("min_trust", "must be between 0 and 1"));
        }
        let limit = match limit {
            None => DEFAULT_LIMIT,
            Some(v) => count("limit", &v)?.min(MAX_LIMIT),
        };
        let offset = match offset {
            None => 0,
            Some(v) => count("offset", &v)?,
        };
        if offset > MAX_OFFSET {
            return Err(invalid("offset", format!("must be at most {MAX_OFFSET}")));
        }
        Ok(Self {
            intent,
            budget: budget.map(|v| non_negative("budget", &v)).transpose()?,
            // Whole milliseconds: a fraction cannot change which integer latencies pass.
            max_latency_ms: latency
                .map(|v| non_negative("max_latency_ms", &v).map(|ms| ms.floor() as u64))
                .transpose()?,
            min_trust,
            hub: hub
                .map(|v| hub_filter(&v, local_origin))
                .transpose()?
                .unwrap_or_default(),
            category,
            limit,
            offset,
            compact: match fields.as_deref().map(str::trim) {
                None | Some("full") => false,
                Some("compact") => true,
                Some(other) => {
                    return Err(invalid(
                        "fields",
                        format!("unknown value {other:?} (expected compact or full)"),
                    ));
                }
            },
        })
    }
}

/// A finite number ≥ 0.
fn non_negative(param: &'static str, value: &str) -> Result<f64, ParamError> {
    let number: f64 = value
        .trim()
        .parse()
        .map_err(|_| invalid(param, format!("{value:?} is not a number")))?;
    if !number.is_finite() || number < 0.0 {
        return Err(invalid(
            param,
            format!("{value:?} must be a finite number ≥ 0"),
        ));
    }
    Ok(number)
}

/// A non-negative integer.
fn count(param: &'static str, value: &str) -> Result<usize, ParamError> {
    let value = value.trim();
    if value.starts_with('-') {
        return Err(invalid(param, format!("{value:?} must not be negative")));
    }
    value
        .parse::<u64>()
        .map_err(|_| invalid(param, format!("{value:?} is not a non-negative integer")))
        // Anything beyond usize is clamped or refused by the range checks that follow.
        .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
}

/// `any`, `local` or an http(s) URL reduced to its origin.
fn hub_filter(value: &str, local_origin: &str) -> Result<HubFilter, ParamError> {
    let value = value.trim();
    if value.eq_ignore_ascii_case("any") {
        return Ok(HubFilter::Any);
    }
    if value.eq_ignore_ascii_case("local") {
        return Ok(HubFilter::Origin(local_origin.to_owned()));
    }
    normalize_origin(value).map(HubFilter::Origin).map_err(|_| {
        invalid(
            "hub",
            format!("{value:?} is not `any`, `local` or an http(s) URL"),
        )
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const LOCAL: &str = "http://hub.test:9083";

    fn parse(q: &str) -> Result<SearchParams, ParamError> {
        SearchParams::parse(q, LOCAL)
    }

    #[test]
    fn defaults_and_a_full_request() {
        assert_eq!(parse("").unwrap(), SearchParams::default());
        let p = parse(
            "intent=translate+to+5%20languages&budget=3.00&max_latency_ms=15000.7&min_trust=0.5\
             &hub=HTTPS://Hub2.Example.com:443/x&category=nlp&limit=7&offset=14&fields=compact&q=x",
        )
        .unwrap();
        assert_eq!(p.intent, "translate to 5 languages");
        assert_eq!(p.budget, Some(3.0));
        assert_eq!(p.max_latency_ms, Some(15000));
        assert_eq!(p.min_trust, Some(0.5));
        assert_eq!(p.hub, HubFilter::Origin("https://hub2.example.com".into()));
        assert_eq!(p.category.as_deref(), Some("nlp"));
        assert_eq!((p.limit, p.offset, p.compact), (7, 14, true));
    }

    #[test]
    fn hub_forms_and_limits() {
        assert_eq!(parse("hub=ANY").unwrap().hub, HubFilter::Any);
        assert_eq!(
            parse("hub=local").unwrap().hub,
            HubFilter::Origin(LOCAL.into())
        );
        assert_eq!(parse("limit=1000").unwrap().limit, MAX_LIMIT);
        assert_eq!(parse("limit=0").unwrap().limit, 0);
        assert_eq!(parse("budget=&limit=").unwrap(), SearchParams::default());
        assert!(!parse("fields=full").unwrap().compact);
    }

    #[test]
    fn bad_values_name_the_parameter() {
        let cases = [
            ("budget=abc", "budget"),
            ("budget=-1", "budget"),
            ("budget=NaN", "budget"),
            ("budget=inf", "budget"),
            ("max_latency_ms=fast", "max_latency_ms"),
            ("min_trust=1.5", "min_trust"),
            ("min_trust=-0.1", "min_trust"),
            ("limit=-1", "limit"),
            ("limit=2.5", "limit"),
            ("limit=ten", "limit"),
            ("offset=-3", "offset"),
            ("offset=10001", "offset"),
            ("hub=ftp://x.example", "hub"),
            ("hub=nowhere", "hub"),
            ("fields=tiny", "fields"),
            ("limit=5&limit=6", "limit"),
        ];
        for (query, param) in cases {
            assert_eq!(parse(query).unwrap_err().param, param, "{query}");
        }
        let long = format!("intent={}", "é".repeat(MAX_INTENT_CHARS + 1));
        assert_eq!(parse(&long).unwrap_err().param, "intent");
        let exact = format!("intent={}", "é".repeat(MAX_INTENT_CHARS));
        assert!(parse(&exact).is_ok());
        let category = format!("category={}", "c".repeat(MAX_CATEGORY_CHARS + 1));
        assert_eq!(parse(&category).unwrap_err().param, "category");
    }
}
