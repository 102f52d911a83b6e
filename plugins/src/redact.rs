//! Secret redaction for `GET /ai-market/v2/plugins`.

use serde_json::Value;

/// Replacement text for a secret.
pub const REDACTED: &str = "***";

const SECRET_WORDS: [&str; 5] = ["token", "secret", "key", "password", "authorization"];

/// True when a settings key (or query parameter name) names a secret.
pub fn is_secret_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    SECRET_WORDS.iter().any(|w| lower.contains(w))
}

/// A copy of `value` with secrets replaced by `"***"`: the value of every object key that
/// contains token/secret/key/password/authorization (case-insensitive), and, inside URL
/// strings, the user-info part and secret-named query parameters.
pub fn redact(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = if is_secret_name(k) {
                        Value::String(REDACTED.into())
                    } else {
                        redact(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redact).collect()),
        Value::String(s) if s.contains("://") => Value::String(redact_url(s)),
        other => other.clone(),
    }
}

/// `https://user:pw@host/p?token=x&a=1` → `https://***@host/p?token=***&a=1`.
fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let authority_start = scheme_end + 3;
    let authority_end = url[authority_start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| authority_start + i);
    let mut out = String::with_capacity(url.len());
    out.push_str(&url[..authority_start]);
    let authority = &url[authority_start..authority_end];
    match authority.rfind('@') {
        Some(at) => {
            out.push_str(REDACTED);
            out.push_str(&authority[at..]);
        }
        None => out.push_str(authority),
    }
    let rest = &url[authority_end..];
    let (before_fragment, fragment) = rest.split_at(rest.find('#').unwrap_or(rest.len()));
    match before_fragment.split_once('?') {
        Some((path, query)) => {
            out.push_str(path);
            out.push('?');
            let pairs: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((name, _)) if is_secret_name(name) => format!("{name}={REDACTED}"),
                    _ => pair.to_owned(),
                })
                .collect();
            out.push_str(&pairs.join("&"));
        }
        None => out.push_str(before_fragment),
    }
    out.push_str(fragment);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secret_keys_are_redacted_recursively() {
        let v = json!({
            "url": "https://hook.example/rank",
            "headers": {"Authorization": "Bearer abc", "x-trace": "1"},
            "api_key": 42,
            "nested": [{"client_secret": {"deep": true}, "weight": 0.5}],
            "Password": "p",
            "access_token": null,
        });
        assert_eq!(
            redact(&v),
            json!({
                "url": "https://hook.example/rank",
                "headers": {"Authorization": "***", "x-trace": "1"},
                "api_key": "***",
                "nested": [{"client_secret": "***", "weight": 0.5}],
                "Password": "***",
                "access_token": "***",
            })
        );
    }

    #[test]
    fn urls_lose_userinfo_and_secret_params() {
        assert_eq!(
            redact_url("https://u:pw@hook.example:8080/p?token=abc&a=1#f"),
            "https://***@hook.example:8080/p?token=***&a=1#f"
        );
        assert_eq!(
            redact_url("http://127.0.0.1:9/x?apiKey=1"),
            "http://127.0.0.1:9/x?apiKey=***"
        );
        assert_eq!(redact_url("http://h/p"), "http://h/p");
        assert_eq!(redact(&json!("not a url")), json!("not a url"));
    }
}
