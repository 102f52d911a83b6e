//! Python-compatible canonical JSON.
//!
//! The protocol signs SHA-256 digests of `json.dumps(value, sort_keys=True,
//! ensure_ascii=False)` in two separator styles, and writes numbers inside its pipe-joined
//! canonicals the way Python's `str()` prints them. This module reproduces both byte for
//! byte from a parsed [`serde_json::Value`]:
//!
//! * keys sorted explicitly by code point (= UTF-8 byte order), so the result does not
//!   depend on whether some crate in the graph enabled `serde_json/preserve_order`;
//! * separators `", "`/`": "` ([`Style::Python`]) or `","`/`":"` ([`Style::Compact`]);
//! * floats in CPython `repr` layout (`1e-05`, `1e+16`, `1.0`), digits from ryu, which
//!   agrees with CPython on round-half-even ties where `format!("{:e}")` does not;
//! * strings escaped exactly like `ensure_ascii=False` (serde_json already matches).
//!
//! Signed values must always be canonicalised from the parsed `Value`, never from a typed
//! struct (which would drop unknown fields and reorder known ones).

use std::io::{self, Write};

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::{Value, ser::Formatter};
use sha2::{Digest, Sha256};

use crate::error::ProtocolError;

/// Which separators `json.dumps` was called with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Style {
    /// Python's default separators: `", "` between members and `": "` after a key.
    Python,
    /// `separators=(",", ":")`.
    Compact,
}

impl Style {
    fn item_sep(self) -> &'static [u8] {
        match self {
            Style::Python => b", ",
            Style::Compact => b",",
        }
    }

    fn key_sep(self) -> &'static [u8] {
        match self {
            Style::Python => b": ",
            Style::Compact => b":",
        }
    }
}

/// serde_json formatter that only changes separators and float layout; string escaping is
/// left to serde_json, whose output already equals Python's with `ensure_ascii=False`.
struct PyFormatter(Style);

impl Formatter for PyFormatter {
    fn begin_array_value<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(self.0.item_sep())
        }
    }

    fn begin_object_key<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(self.0.item_sep())
        }
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(self.0.key_sep())
    }

    fn write_f64<W: ?Sized + Write>(&mut self, w: &mut W, v: f64) -> io::Result<()> {
        // A `Value` cannot hold NaN or infinities, so this is always a finite double.
        w.write_all(py_float_repr(v).as_bytes())
    }
}

/// Python `float.__repr__` (which is also `str()` for floats) of `v`.
///
/// The shortest round-trip digits come from ryu; the layout follows CPython: scientific
/// notation when the decimal exponent is below -4 or at least 16, the exponent signed and
/// at least two digits, and fixed notation always carrying a fractional part (`1.0`).
/// Non-finite values print as Python does (`nan`, `inf`, `-inf`); the canonical writers
/// never pass them.
pub fn py_float_repr(v: f64) -> String {
    if v.is_nan() {
        return "nan".to_owned();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    let mut buf = ryu::Buffer::new();
    let s = buf.format_finite(v); // "1e16", "1e-7", "123.0", "0.3", "-0.0", ...
    let (neg, s) = s.strip_prefix('-').map_or((false, s), |r| (true, r));
    let (mant, exp) = match s.split_once('e') {
        Some((m, e)) => (m, e.parse::<i32>().expect("ryu writes a decimal exponent")),
        None => (s, 0),
    };
    let (int_part, frac) = mant.split_once('.').unwrap_or((mant, ""));
    let all = [int_part, frac].concat();
    let stripped = all.trim_start_matches('0');
    let lead = all.len() - stripped.len();
    let digits = stripped.trim_end_matches('0');
    let mut out = String::with_capacity(26);
    if neg {
        out.push('-');
    }
    if digits.is_empty() {
        out.push_str("0.0");
        return out;
    }
    // The value is 0.DIGITS × 10^point. Lengths are < 30, so the casts cannot truncate.
    let point = int_part.len() as i32 + exp - lead as i32;
    let exp10 = point - 1;
    if !(-4..16).contains(&exp10) {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let sign = if exp10 < 0 { '-' } else { '+' };
        out.push_str(&format!("e{sign}{:02}", exp10.unsigned_abs()));
    } else if point > 0 {
        let p = point as usize;
        if digits.len() <= p {
            out.push_str(digits);
            out.extend(std::iter::repeat_n('0', p - digits.len()));
            out.push_str(".0");
        } else {
            out.push_str(&digits[..p]);
            out.push('.');
            out.push_str(&digits[p..]);
        }
    } else {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', point.unsigned_abs() as usize));
        out.push_str(digits);
    }
    out
}

/// Python `str()` of a parsed JSON value, as the pipe-joined canonicals of spec §7.3 embed
/// it: `0.4`→`0.4`, `1.0`→`1.0`, `0.00005`→`5e-05`, `3`→`3`, `true`→`True`, `null`→`None`,
/// strings verbatim.
///
/// Arrays and objects have no Python-compatible rendering here (Python would print its
/// dict repr in document order, which a parsed map no longer has); they render as compact
/// canonical JSON, and the signing code refuses them before ever calling this.
pub fn py_str(v: &Value) -> String {
    match v {
        Value::Null => "None".to_owned(),
        Value::Bool(true) => "True".to_owned(),
        Value::Bool(false) => "False".to_owned(),
        Value::Number(n) => {
            if n.is_f64() {
                py_float_repr(n.as_f64().expect("an f64 number has an f64 value"))
            } else {
                n.to_string()
            }
        }
        Value::String(s) => s.clone(),
        Value::Array(_) | Value::Object(_) => to_canonical_string(v, Style::Compact),
    }
}

/// Serialises a `Value` with object keys in code-point (= UTF-8 byte) order, whatever the
/// iteration order of `serde_json::Map` happens to be.
struct Sorted<'a>(&'a Value);

impl Serialize for Sorted<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Object(m) => {
                let mut entries: Vec<_> = m.iter().collect();
                entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
                let mut map = s.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    map.serialize_entry(k, &Sorted(v))?;
                }
                map.end()
            }
            Value::Array(a) => {
                let mut seq = s.serialize_seq(Some(a.len()))?;
                for v in a {
                    seq.serialize_element(&Sorted(v))?;
                }
                seq.end()
            }
            other => other.serialize(s),
        }
    }
}

/// `json.dumps(v, sort_keys=True, ensure_ascii=False, separators=...)` as UTF-8 bytes.
pub fn to_canonical_vec(v: &Value, style: Style) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, PyFormatter(style));
    Sorted(v)
        .serialize(&mut ser)
        .expect("serialising a Value into a Vec cannot fail");
    out
}

/// [`to_canonical_vec`] as a `String`.
pub fn to_canonical_string(v: &Value, style: Style) -> String {
    String::from_utf8(to_canonical_vec(v, style)).expect("serde_json writes UTF-8")
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Lowercase hex SHA-256 of the canonical form of `v` in `style`.
pub fn digest_hex(v: &Value, style: Style) -> String {
    sha256_hex(&to_canonical_vec(v, style))
}

/// Parses JSON bytes into a `Value`, turning serde_json's "number out of range" (a literal
/// such as `1e400`, which Python would read as infinity) into [`ProtocolError::NonFinite`]
/// so providers get the precise reason. `NaN`/`Infinity` literals are not JSON and fail as
/// [`ProtocolError::InvalidJson`].
pub fn parse(bytes: &[u8]) -> Result<Value, ProtocolError> {
    serde_json::from_slice(bytes).map_err(|e| {
        if e.to_string().starts_with("number out of range") {
            ProtocolError::NonFinite
        } else {
            ProtocolError::InvalidJson(e.to_string())
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn float_repr_matches_cpython_layout() {
        let cases = [
            (0.4, "0.4"),
            (1.0, "1.0"),
            (-0.0, "-0.0"),
            (0.0, "0.0"),
            (5e-05, "5e-05"),
            (0.0001, "0.0001"),
            (0.00015, "0.00015"),
            (1e-07, "1e-07"),
            (1e16, "1e+16"),
            (9999999999999998.0, "9999999999999998.0"),
            (1e22, "1e+22"),
            (123456789.125, "123456789.125"),
            (1658206780088562.2, "1658206780088562.2"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (-1.5e-5, "-1.5e-05"),
            (100.0, "100.0"),
            (f64::NAN, "nan"),
            (f64::NEG_INFINITY, "-inf"),
        ];
        for (v, want) in cases {
            assert_eq!(py_float_repr(v), want, "{v:?}");
        }
    }

    #[test]
    fn py_str_renders_scalars_like_python() {
        let v: Value =
            serde_json::from_str(r#"[0.4, 1.0, 5e-05, 3, true, false, null, "s", -7]"#).unwrap();
        let got: Vec<_> = v.as_array().unwrap().iter().map(py_str).collect();
        assert_eq!(
            got,
            [
                "0.4", "1.0", "5e-05", "3", "True", "False", "None", "s", "-7"
            ]
        );
    }

    #[test]
    fn both_styles_sort_keys_and_keep_int_float_distinction() {
        let v = json!({"b": [1, 1.0, {"z": null, "a": "é"}], "a": true});
        assert_eq!(
            to_canonical_string(&v, Style::Python),
            r#"{"a": true, "b": [1, 1.0, {"a": "é", "z": null}]}"#
        );
        assert_eq!(
            to_canonical_string(&v, Style::Compact),
            r#"{"a":true,"b":[1,1.0,{"a":"é","z":null}]}"#
        );
    }

    #[test]
    fn digest_is_sha256_of_canonical_bytes() {
        assert_eq!(
            digest_hex(&json!({}), Style::Compact),
            "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
    }

    #[test]
    fn parse_reports_out_of_range_as_non_finite() {
        assert_eq!(parse(b"{\"a\": 1e400}"), Err(ProtocolError::NonFinite));
        assert_eq!(parse(b"[-1e999]"), Err(ProtocolError::NonFinite));
        assert!(matches!(parse(b"NaN"), Err(ProtocolError::InvalidJson(_))));
        assert!(matches!(parse(b"{"), Err(ProtocolError::InvalidJson(_))));
        assert_eq!(parse(b"[1.5]").unwrap(), json!([1.5]));
    }
}
