//! The computations behind the image capabilities of "Pixel Forge".

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{Args, int, opt_int, opt_num, opt_text, round, text};

type Out = Result<Value, String>;
/// `(r, g, b)` of `#rgb` / `#rrggbb` (the `#` is optional).
fn parse_color(input: &str) -> Result<(u8, u8, u8), String> {
    let hex = input.trim().trim_start_matches('#');
    let expanded: String = match hex.len() {
        3 => hex.chars().flat_map(|c| [c, c]).collect(),
        6 => hex.to_owned(),
        _ => return Err(format!("`{input}` is not a hex colour like #ff8800")),
    };
    let channel = |i: usize| {
        u8::from_str_radix(&expanded[i..i + 2], 16)
            .map_err(|_| format!("`{input}` is not a hex colour like #ff8800"))
    };
    Ok((channel(0)?, channel(2)?, channel(4)?))
}

fn hex(r: u8, g: u8, b: u8) -> String {
    format!("#{r:02x}{g:02x}{b:02x}")
}

fn color_arg(args: &Args, key: &str, default: &str) -> Result<(u8, u8, u8), String> {
    parse_color(opt_text(args, key, default))
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn dimension(args: &Args, key: &str) -> Result<i64, String> {
    let v = int(args, key)?;
    if (1..=4096).contains(&v) {
        Ok(v)
    } else {
        Err(format!("`{key}` must be between 1 and 4096"))
    }
}

pub fn placeholder_svg(args: &Args) -> Out {
    let (w, h) = (dimension(args, "width")?, dimension(args, "height")?);
    let caption = match args.get("text").and_then(Value::as_str) {
        Some(t) => t.to_owned(),
        None => format!("{w}×{h}"),
    };
    let (br, bg, bb) = color_arg(args, "background", "#cccccc")?;
    let (fr, fg, fb) = color_arg(args, "foreground", "#333333")?;
    let font = (w.min(h) / 5).max(8);
    let svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\">\
         <rect width=\"100%\" height=\"100%\" fill=\"{}\"/>\
         <text x=\"50%\" y=\"50%\" dominant-baseline=\"middle\" text-anchor=\"middle\" \
         font-family=\"sans-serif\" font-size=\"{font}\" fill=\"{}\">{}</text></svg>",
        hex(br, bg, bb),
        hex(fr, fg, fb),
        xml_escape(&caption)
    );
    Ok(json!({"bytes": svg.len(), "svg": svg, "mime_type": "image/svg+xml"}))
}

pub fn identicon(args: &Args) -> Out {
    let digest: [u8; 32] = Sha256::digest(text(args, "seed")?.as_bytes()).into();
    let size = opt_int(args, "size", 250, 16, 1024)?;
    let color = hex(digest[0], digest[1], digest[2]);
    let cell = size as f64 / 5.0;
    let mut grid = Vec::with_capacity(5);
    let mut rects = String::new();
    for row in 0..5 {
        let mut line = String::with_capacity(5);
        for col in 0..5 {
            // Mirror columns 3 and 4 onto 1 and 0, so the avatar is symmetric.
            let source = if col > 2 { 4 - col } else { col };
            let on = digest[3 + row * 3 + source].is_multiple_of(2);
            line.push(if on { '#' } else { '.' });
            if on {
                rects.push_str(&format!(
                    "<rect x=\"{:.2}\" y=\"{:.2}\" width=\"{cell:.2}\" height=\"{cell:.2}\" fill=\"{color}\"/>",
                    col as f64 * cell,
                    row as f64 * cell
                ));
            }
        }
        grid.push(line);
    }
    let svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{size}\" height=\"{size}\">\
         <rect width=\"100%\" height=\"100%\" fill=\"#f0f0f0\"/>{rects}</svg>"
    );
    Ok(json!({"svg": svg, "grid": grid, "color": color}))
}

pub fn bar_chart(args: &Args) -> Out {
    let values = super::numbers(args, "values")?;
    if values.is_empty() || values.len() > 50 || values.iter().any(|v| *v < 0.0) {
        return Err("`values` must hold 1 to 50 non-negative numbers".into());
    }
    let labels: Vec<&str> = args
        .get("labels")
        .and_then(Value::as_array)
        .map(|l| l.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let title = opt_text(args, "title", "");
    let (width, height, top, bottom) = (600.0, 400.0, 40.0, 30.0);
    let max = values
        .iter()
        .copied()
        .fold(0.0f64, f64::max)
        .max(f64::MIN_POSITIVE);
    let slot = width / values.len() as f64;
    let mut body = String::new();
    for (i, v) in values.iter().enumerate() {
        let bar = v / max * (height - top - bottom);
        let x = i as f64 * slot + slot * 0.1;
        body.push_str(&format!(
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bar:.1}\" fill=\"#3366cc\"/>",
            height - bottom - bar,
            slot * 0.8
        ));
        if let Some(label) = labels.get(i) {
            body.push_str(&format!(
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"12\">{}</text>",
                x + slot * 0.4,
                height - 10.0,
                xml_escape(label)
            ));
        }
    }
    let svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\">\
         <text x=\"300\" y=\"24\" text-anchor=\"middle\" font-size=\"18\">{}</text>{body}</svg>",
        xml_escape(title)
    );
    Ok(json!({"svg": svg, "bars": values.len()}))
}

/// The 3×5 digit font, rows top to bottom.
#[rustfmt::skip]
const DIGIT_FONT: [[&str; 5]; 10] = [
    ["###", "#.#", "#.#", "#.#", "###"], [".#.", "##.", ".#.", ".#.", "###"],
    ["###", "..#", "###", "#..", "###"], ["###", "..#", "###", "..#", "###"],
    ["#.#", "#.#", "###", "..#", "..#"], ["###", "#..", "###", "..#", "###"],
    ["###", "#..", "###", "#.#", "###"], ["###", "..#", "..#", "..#", "..#"],
    ["###", "#.#", "###", "#.#", "###"], ["###", "#.#", "###", "..#", "###"],
];

pub fn digit_bitmap(args: &Args) -> Out {
    let t = text(args, "text")?;
    if t.is_empty() || t.len() > 64 || !t.chars().all(|c| c.is_ascii_digit() || c == ' ') {
        return Err("`text` must be 1 to 64 digits and spaces".into());
    }
    let mut rows = vec![String::new(); 5];
    for (i, c) in t.chars().enumerate() {
        for (r, row) in rows.iter_mut().enumerate() {
            if i > 0 {
                row.push('.');
            }
            match c.to_digit(10) {
                Some(d) => row.push_str(DIGIT_FONT[d as usize][r]),
                None => row.push_str("..."),
            }
        }
    }
    Ok(json!({"width": rows[0].len(), "rows": rows}))
}

pub fn bitmap_digits(args: &Args) -> Out {
    let rows: Vec<Vec<bool>> = args
        .get("rows")
        .and_then(Value::as_array)
        .filter(|r| r.len() == 5)
        .ok_or("`rows` must be an array of exactly five strings")?
        .iter()
        .map(|r| {
            r.as_str()
                .map(|s| {
                    s.chars()
                        .map(|c| matches!(c, '#' | 'X' | 'x' | '█' | '1'))
                        .collect()
                })
                .ok_or_else(|| "`rows` must contain strings".to_owned())
        })
        .collect::<Result<_, _>>()?;
    let width = rows.iter().map(Vec::len).max().unwrap_or(0);
    let ink = |col: usize| rows.iter().any(|r| r.get(col).copied().unwrap_or(false));
    let (mut out, mut unrecognized, mut col, mut gap) = (String::new(), 0, 0, 0);
    while col < width {
        if !ink(col) {
            gap += 1;
            col += 1;
            continue;
        }
        // A blank stretch wider than the one-column separator is a space.
        if !out.is_empty() && gap >= 3 {
            out.push(' ');
        }
        gap = 0;
        let start = col;
        while col < width && ink(col) {
            col += 1;
        }
        let glyph: Vec<String> = rows
            .iter()
            .map(|r| {
                (start..col)
                    .map(|c| {
                        if r.get(c).copied().unwrap_or(false) {
                            '#'
                        } else {
                            '.'
                        }
                    })
                    .collect()
            })
            .collect();
        match DIGIT_FONT
            .iter()
            .position(|g| g.iter().zip(&glyph).all(|(a, b)| a == b))
        {
            Some(d) => out.push(char::from(b'0' + d as u8)),
            None => {
                unrecognized += 1;
                out.push('?');
            }
        }
    }
    Ok(json!({"text": out, "unrecognized": unrecognized}))
}

fn rgb_to_hsl(r: u8, g: u8, b: u8) -> (f64, f64, f64) {
    let (r, g, b) = (
        f64::from(r) / 255.0,
        f64::from(g) / 255.0,
        f64::from(b) / 255.0,
    );
    let (max, min) = (r.max(g).max(b), r.min(g).min(b));
    let l = (max + min) / 2.0;
    if max == min {
        return (0.0, 0.0, l);
    }
    let d = max - min;
    let s = if l > 0.5 {
        d / (2.0 - max - min)
    } else {
        d / (max + min)
    };
    let h = if max == r {
        (g - b) / d + if g < b { 6.0 } else { 0.0 }
    } else if max == g {
        (b - r) / d + 2.0
    } else {
        (r - g) / d + 4.0
    };
    (h * 60.0, s, l)
}

fn hsl_to_hex(h: f64, s: f64, l: f64) -> String {
    let c = (1.0 - (2.0 * l - 1.0).abs()) * s;
    let hp = (h.rem_euclid(360.0)) / 60.0;
    let x = c * (1.0 - (hp % 2.0 - 1.0).abs());
    let (r, g, b) = match hp as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = l - c / 2.0;
    let to = |v: f64| ((v + m) * 255.0).round().clamp(0.0, 255.0) as u8;
    hex(to(r), to(g), to(b))
}

pub fn color_convert(args: &Args) -> Out {
    let (r, g, b) = parse_color(text(args, "color")?)?;
    let (h, s, l) = rgb_to_hsl(r, g, b);
    Ok(json!({"hex": hex(r, g, b), "rgb": {"r": r, "g": g, "b": b},
        "hsl": {"h": round(h, 1), "s": round(s * 100.0, 1), "l": round(l * 100.0, 1)}}))
}

pub fn palette(args: &Args) -> Out {
    let (r, g, b) = parse_color(text(args, "color")?)?;
    let (h, s, l) = rgb_to_hsl(r, g, b);
    let scheme = opt_text(args, "scheme", "triadic");
    let colors: Vec<String> = match scheme {
        "complementary" => vec![hsl_to_hex(h, s, l), hsl_to_hex(h + 180.0, s, l)],
        "triadic" => [0.0, 120.0, 240.0]
            .iter()
            .map(|d| hsl_to_hex(h + d, s, l))
            .collect(),
        "analogous" => [-30.0, 0.0, 30.0]
            .iter()
            .map(|d| hsl_to_hex(h + d, s, l))
            .collect(),
        "monochrome" => [0.2, 0.35, 0.5, 0.65, 0.8]
            .iter()
            .map(|nl| hsl_to_hex(h, s, *nl))
            .collect(),
        other => return Err(format!("unknown scheme `{other}`")),
    };
    Ok(json!({"colors": colors, "scheme": scheme}))
}

fn luminance((r, g, b): (u8, u8, u8)) -> f64 {
    let lin = |c: u8| {
        let c = f64::from(c) / 255.0;
        if c <= 0.039_28 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        }
    };
    0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b)
}

pub fn contrast_ratio(args: &Args) -> Out {
    let a = luminance(parse_color(text(args, "foreground")?)?);
    let b = luminance(parse_color(text(args, "background")?)?);
    let ratio = round((a.max(b) + 0.05) / (a.min(b) + 0.05), 2);
    Ok(
        json!({"ratio": ratio, "aa_normal": ratio >= 4.5, "aa_large": ratio >= 3.0, "aaa_normal": ratio >= 7.0}),
    )
}

pub fn fit_dimensions(args: &Args) -> Out {
    let [w, h, mw, mh] = ["width", "height", "max_width", "max_height"].map(|k| {
        int(args, k).and_then(|v| {
            if v >= 1 {
                Ok(v as f64)
            } else {
                Err(format!("`{k}` must be positive"))
            }
        })
    });
    let (w, h, mw, mh) = (w?, h?, mw?, mh?);
    let scale = (mw / w).min(mh / h);
    Ok(
        json!({"width": (w * scale).round().max(1.0) as u64, "height": (h * scale).round().max(1.0) as u64, "scale": round(scale, 6)}),
    )
}

pub(crate) fn decode(args: &Args, key: &str) -> Result<Vec<u8>, String> {
    let data = text(args, key)?;
    B64.decode(data.trim())
        .map_err(|e| format!("`{key}` is not valid base64: {e}"))
}

fn be16(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from(u16::from_be_bytes([
        *b.get(at)?,
        *b.get(at + 1)?,
    ])))
}

pub(crate) fn le16(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from(u16::from_le_bytes([
        *b.get(at)?,
        *b.get(at + 1)?,
    ])))
}

pub(crate) fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn jpeg_size(b: &[u8]) -> Option<(u64, u64)> {
    let mut at = 2;
    // Segments are bounded by the data length; each step moves forward.
    while at + 9 < b.len() {
        if b[at] != 0xFF {
            return None;
        }
        let marker = b[at + 1];
        let len = usize::try_from(be16(b, at + 2)?).ok()?;
        if (0xC0..=0xCF).contains(&marker) && !matches!(marker, 0xC4 | 0xC8 | 0xCC) {
            return Some((be16(b, at + 7)?, be16(b, at + 5)?));
        }
        at += 2 + len.max(2);
    }
    None
}

pub fn inspect(args: &Args) -> Out {
    let b = decode(args, "data_base64")?;
    let (format, size) = if b.starts_with(b"\x89PNG\r\n\x1a\n") {
        let w = b
            .get(16..20)
            .map(|s| u64::from(u32::from_be_bytes([s[0], s[1], s[2], s[3]])));
        let h = b
            .get(20..24)
            .map(|s| u64::from(u32::from_be_bytes([s[0], s[1], s[2], s[3]])));
        ("png", w.zip(h))
    } else if b.starts_with(b"GIF87a") || b.starts_with(b"GIF89a") {
        ("gif", le16(&b, 6).zip(le16(&b, 8)))
    } else if b.starts_with(&[0xFF, 0xD8]) {
        ("jpeg", jpeg_size(&b))
    } else if b.starts_with(b"BM") {
        let w = le32(&b, 18).map(|v| u64::from((v as i32).unsigned_abs()));
        let h = le32(&b, 22).map(|v| u64::from((v as i32).unsigned_abs()));
        ("bmp", w.zip(h))
    } else {
        return Err("not a PNG, GIF, JPEG or BMP file".into());
    };
    let (width, height) = size.ok_or_else(|| format!("the {format} header is truncated"))?;
    Ok(json!({"format": format, "width": width, "height": height, "bytes": b.len()}))
}

pub fn data_uri(args: &Args) -> Out {
    let bytes = decode(args, "data_base64")?;
    let mime = text(args, "mime_type")?;
    let valid_mime = mime.split_once('/').is_some_and(|(a, b)| {
        !a.is_empty()
            && !b.is_empty()
            && mime
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "/.+-".contains(c))
    });
    if !valid_mime {
        return Err(format!("`{mime}` is not a MIME type"));
    }
    Ok(
        json!({"data_uri": format!("data:{mime};base64,{}", B64.encode(&bytes)), "bytes": bytes.len()}),
    )
}

pub fn blend_colors(args: &Args) -> Out {
    let (a, b) = (
        parse_color(text(args, "color_a")?)?,
        parse_color(text(args, "color_b")?)?,
    );
    let t = opt_num(args, "ratio", 0.5)?;
    if !(0.0..=1.0).contains(&t) {
        return Err("`ratio` must be between 0 and 1".into());
    }
    let mix = |x: u8, y: u8| (f64::from(x) * (1.0 - t) + f64::from(y) * t).round() as u8;
    Ok(json!({"hex": hex(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))}))
}
