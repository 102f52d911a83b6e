//! Typed setting values, parsed once at the edge so the rest of the hub never re-checks them.
//!
//! Each type's `FromStr` error is a short human reason; the caller (settings loading) adds the
//! setting's name and the offending value to it.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use serde::Deserialize;
use url::Url;

/// Lets serde build each value type from its string form through `FromStr`
/// (`#[serde(try_from = "String")]`), so the TOML layer and the env/flag layers share one parser.
macro_rules! try_from_string {
    ($($ty:ty),+) => {$(
        impl TryFrom<String> for $ty {
            type Error = String;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                s.parse()
            }
        }
    )+};
}

try_from_string!(Secret, PublicUrl, Seed, DatabaseUrl, RedisUrl);

/// A secret string (admin token). Its `Debug` never shows the value, so a `Settings` dump or
/// an error chain cannot leak it into logs.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Secret(String);

impl Secret {
    /// The secret itself. Call sites are easy to grep for.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl FromStr for Secret {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().is_empty() {
            return Err("must not be empty or blank".into());
        }
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Parses an absolute `http`/`https` URL with a host, no credentials and no fragment.
fn parse_http_url(s: &str) -> Result<Url, String> {
    let url = Url::parse(s.trim()).map_err(|e| format!("not a valid URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "scheme must be http or https, not `{}`",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("URL has no host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("URL must not contain credentials".into());
    }
    if url.fragment().is_some() {
        return Err("URL must not contain a fragment".into());
    }
    Ok(url)
}

/// The public base URL of this hub (what peers and clients use to reach it), without a
/// trailing slash, so `join("/ai-market/mcp")` never produces `//`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct PublicUrl(String);

impl PublicUrl {
    /// The base URL as a string, e.g. `https://hub.example.com` (no trailing slash).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `self` followed by `path` (which must start with `/`).
    pub fn join(&self, path: &str) -> String {
        debug_assert!(path.starts_with('/'), "path must be absolute: {path}");
        format!("{}{path}", self.0)
    }
}

impl FromStr for PublicUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let url = parse_http_url(s)?;
        if url.query().is_some() {
            return Err("public URL must not contain a query".into());
        }
        Ok(Self(url.as_str().trim_end_matches('/').to_owned()))
    }
}

impl fmt::Display for PublicUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for PublicUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicUrl({})", self.0)
    }
}

/// An operator seed: a peer URL (its origin or its well-known URL), optionally pinned to the
/// base64 Ed25519 key the peer must sign with. Written `URL` or `URL=PUBKEY`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Seed {
    /// Where the crawler starts. Came from the operator, so private addresses are allowed.
    pub url: Url,
    /// Base64 (standard, padded) 32-byte Ed25519 public key, when pinned by the operator.
    pub pinned_key: Option<String>,
}

/// Whether `s` is a standard-base64 encoding of exactly 32 bytes (an Ed25519 public key).
fn is_key_b64(s: &str) -> bool {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .is_ok_and(|bytes| bytes.len() == 32)
}

impl FromStr for Seed {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        // A padded base64 key ends with `=`, so split at the last `=` that is followed by
        // something other than padding. Seed URLs therefore cannot carry `=` themselves
        // (they are origins or well-known URLs, which never need a query).
        let unpadded = s.trim_end_matches('=');
        let (url_part, pinned_key) = match unpadded.rfind('=') {
            Some(i) => {
                let key = &s[i + 1..];
                if !is_key_b64(key) {
                    return Err(format!(
                        "pinned key `{key}` is not a base64 32-byte Ed25519 public key"
                    ));
                }
                (&s[..i], Some(key.to_owned()))
            }
            None => (s, None),
        };
        let url = parse_http_url(url_part)?;
        if url.query().is_some() {
            return Err("seed URL must not contain a query".into());
        }
        Ok(Self { url, pinned_key })
    }
}

impl fmt::Display for Seed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.pinned_key {
            Some(key) => write!(f, "{}={key}", self.url),
            None => write!(f, "{}", self.url),
        }
    }
}

impl fmt::Debug for Seed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Seed({self})")
    }
}

/// Which SQL engine the catalog store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseBackend {
    /// Embedded SQLite file (the default; no setup).
    Sqlite,
    /// PostgreSQL (selected by a `postgres://` URL), for multi-replica deployments.
    Postgres,
}

impl DatabaseBackend {
    /// Lower-case name as shown by the health endpoint.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

/// Removes the password from a URL-ish string, for messages and `Debug`.
pub(crate) fn redact_password(s: &str) -> String {
    match Url::parse(s) {
        Ok(mut url) if url.password().is_some() => {
            // Cannot fail: the URL already has a password, so it can hold one.
            let _ = url.set_password(Some("<redacted>"));
            url.to_string()
        }
        Ok(_) => s.to_owned(),
        Err(_) => "<unparseable URL>".to_owned(),
    }
}

/// The database: a `postgres://` / `postgresql://` URL as configured, or the embedded SQLite
/// file (built by [`DatabaseUrl::sqlite_file`], never parsed). `Debug` and `Display` hide any
/// password.
///
/// `DATABASE_URL` does not accept `sqlite:` URLs: the store opens the SQLite file at
/// `<data dir>/hub.db` and nowhere else, so that the data dir alone says where the database
/// is (one source of truth; move it with `--data-dir`).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct DatabaseUrl {
    url: String,
    backend: DatabaseBackend,
}

impl DatabaseUrl {
    /// The embedded default: a SQLite file at `path`, created when missing.
    pub fn sqlite_file(path: &std::path::Path) -> Self {
        Self {
            url: format!("sqlite://{}?mode=rwc", path.display()),
            backend: DatabaseBackend::Sqlite,
        }
    }

    /// The engine the URL selects.
    pub fn backend(&self) -> DatabaseBackend {
        self.backend
    }

    /// The full URL including any password: for the connection pool only.
    pub fn expose(&self) -> &str {
        &self.url
    }
}

impl FromStr for DatabaseUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let backend = if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            Url::parse(s).map_err(|e| format!("not a valid URL ({e})"))?;
            DatabaseBackend::Postgres
        } else if s.starts_with("sqlite:") {
            return Err(format!(
                "sqlite: URLs are not accepted; leave it unset for the embedded SQLite file \
                 <data dir>/{} (move it with --data-dir)",
                crate::store::SQLITE_FILE
            ));
        } else {
            return Err("must start with postgres:// or postgresql://".into());
        };
        Ok(Self {
            url: s.to_owned(),
            backend,
        })
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_password(&self.url))
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

/// A Redis URL (`redis://`, `rediss://` or `unix://`). `Debug` and `Display` hide any password.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct RedisUrl(String);

impl RedisUrl {
    /// The full URL including any password: for the Redis client only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl FromStr for RedisUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let url = Url::parse(s.trim()).map_err(|e| format!("not a valid URL ({e})"))?;
        if !matches!(url.scheme(), "redis" | "rediss" | "unix" | "redis+unix") {
            return Err(format!(
                "scheme must be redis, rediss or unix, not `{}`",
                url.scheme()
            ));
        }
        Ok(Self(s.trim().to_owned()))
    }
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_password(&self.0))
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisUrl({self})")
    }
}

/// Parses the boolean spellings operators use in env files: `1/0`, `true/false`, `yes/no`,
/// `on/off` (any case).
pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err("expected a boolean (true/false, 1/0, yes/no, on/off)".into()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const KEY: &str = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";

    #[test]
    fn seed_without_key() {
        let seed: Seed = "https://hub.example.com".parse().unwrap();
        assert_eq!(seed.url.as_str(), "https://hub.example.com/");
        assert_eq!(seed.pinned_key, None);
    }

    #[test]
    fn seed_with_padded_key_splits_at_the_right_equals_sign() {
        let seed: Seed = format!("http://127.0.0.1:9000={KEY}").parse().unwrap();
        assert_eq!(seed.url.as_str(), "http://127.0.0.1:9000/");
        assert_eq!(seed.pinned_key.as_deref(), Some(KEY));
        assert_eq!(seed.to_string(), format!("http://127.0.0.1:9000/={KEY}"));
    }

    #[test]
    fn seed_with_well_known_path_and_key() {
        let s = format!("https://h.example/.well-known/ai-market.json={KEY}");
        let seed: Seed = s.parse().unwrap();
        assert_eq!(seed.url.path(), "/.well-known/ai-market.json");
        assert!(seed.pinned_key.is_some());
    }

    #[test]
    fn seed_rejections_say_why() {
        let e = "https://h.example=notakey".parse::<Seed>().unwrap_err();
        assert!(e.contains("notakey"), "{e}");
        assert!(
            "ftp://h.example"
                .parse::<Seed>()
                .unwrap_err()
                .contains("scheme")
        );
        assert!("not a url".parse::<Seed>().is_err());
        assert!("https://user:pw@h.example".parse::<Seed>().is_err());
    }

    #[test]
    fn public_url_drops_trailing_slash() {
        let u: PublicUrl = "https://hub.example.com/".parse().unwrap();
        assert_eq!(u.as_str(), "https://hub.example.com");
        assert_eq!(
            u.join("/ai-market/mcp"),
            "https://hub.example.com/ai-market/mcp"
        );
        let u: PublicUrl = "https://hub.example.com/prefix/".parse().unwrap();
        assert_eq!(u.join("/x"), "https://hub.example.com/prefix/x");
        assert!("https://hub.example.com/?q=1".parse::<PublicUrl>().is_err());
        assert!("hub.example.com".parse::<PublicUrl>().is_err());
    }

    #[test]
    fn database_url_selects_backend_and_hides_password() {
        let pg: DatabaseUrl = "postgres://u:hunter2@db/x".parse().unwrap();
        assert_eq!(pg.backend(), DatabaseBackend::Postgres);
        assert!(!format!("{pg:?} {pg}").contains("hunter2"));
        assert_eq!(pg.expose(), "postgres://u:hunter2@db/x");
        let lite = DatabaseUrl::sqlite_file(std::path::Path::new("data/hub.db"));
        assert_eq!(lite.backend(), DatabaseBackend::Sqlite);
        let refused = "sqlite://data/hub.db".parse::<DatabaseUrl>().unwrap_err();
        assert!(refused.contains("data dir"), "{refused}");
        assert!("mysql://db/x".parse::<DatabaseUrl>().is_err());
        assert!("sqlite:".parse::<DatabaseUrl>().is_err());
    }

    #[test]
    fn redis_url_hides_password() {
        let r: RedisUrl = "redis://:s3cret@127.0.0.1:6379".parse().unwrap();
        assert!(!format!("{r:?} {r}").contains("s3cret"));
        assert!("http://127.0.0.1".parse::<RedisUrl>().is_err());
    }

    #[test]
    fn secret_debug_is_redacted() {
        let s: Secret = "tok-123".parse().unwrap();
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
        assert!("  ".parse::<Secret>().is_err());
    }

    #[test]
    fn bools() {
        for t in ["1", "true", "TRUE", "yes", "on"] {
            assert!(parse_bool(t).unwrap());
        }
        for f in ["0", "false", "No", "off"] {
            assert!(!parse_bool(f).unwrap());
        }
        assert!(parse_bool("maybe").is_err());
    }
}
