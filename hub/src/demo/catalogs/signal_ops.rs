//! The computations behind the OCR and audio capabilities of "Pixel Forge": text in SVG,
//! check digits, WAV files, notes and timings.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use super::image_ops::{decode, le16, le32};
use super::translate_ops::morse_of;
use super::{Args, num, opt_int, opt_num, opt_text, round, text};

type Out = Result<Value, String>;

fn decode_entities(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// Text content with nested tags removed.
fn strip_tags(s: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in s.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

pub fn svg_text(args: &Args) -> Out {
    let svg = text(args, "svg")?;
    let mut texts = Vec::new();
    let mut rest = svg;
    // Each iteration consumes at least one `<text` opening, so the loop is bounded.
    while let Some(open) = rest.find("<text") {
        let after = &rest[open + 5..];
        if !after.starts_with(['>', ' ', '\n', '\t', '\r']) {
            rest = after;
            continue;
        }
        let Some(start) = after.find('>') else { break };
        let body = &after[start + 1..];
        let end = body.find("</text>").unwrap_or(body.len());
        let content = decode_entities(strip_tags(&body[..end]).trim());
        if !content.is_empty() {
            texts.push(content);
        }
        rest = &body[end..];
    }
    Ok(json!({"text": texts.join("\n"), "texts": texts}))
}

fn digits_of(s: &str) -> Vec<u32> {
    s.chars().filter_map(|c| c.to_digit(10)).collect()
}

pub fn ean13(args: &Args) -> Out {
    let code = text(args, "code")?;
    let digits = digits_of(code);
    if !(12..=13).contains(&digits.len()) || digits.len() != code.len() {
        return Err("`code` must be 12 or 13 digits".into());
    }
    let sum: u32 = digits[..12]
        .iter()
        .enumerate()
        .map(|(i, d)| if i % 2 == 0 { *d } else { d * 3 })
        .sum();
    let check = (10 - sum % 10) % 10;
    let full: String = code[..12].to_owned() + &check.to_string();
    let valid = digits.len() == 12 || digits[12] == check;
    Ok(json!({"check_digit": check, "valid": valid, "full_code": full}))
}

pub fn mrz_check_digit(args: &Args) -> Out {
    const WEIGHTS: [u32; 3] = [7, 3, 1];
    let mut sum = 0;
    for (i, c) in text(args, "field")?.chars().enumerate() {
        let value = match c {
            '0'..='9' => c as u32 - '0' as u32,
            'A'..='Z' => c as u32 - 'A' as u32 + 10,
            '<' => 0,
            other => return Err(format!("`{other}` is not an MRZ character (0-9, A-Z, <)")),
        };
        sum += value * WEIGHTS[i % 3];
    }
    Ok(json!({"check_digit": sum % 10}))
}

fn luhn_sum(digits: &[u32], double_first_from_right: bool) -> u32 {
    digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            if (i % 2 == 0) == double_first_from_right {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                *d
            }
        })
        .sum()
}

pub fn luhn(args: &Args) -> Out {
    let number = text(args, "number")?;
    if !number.chars().all(|c| c.is_ascii_digit() || c == ' ') {
        return Err("`number` must contain only digits and spaces".into());
    }
    let digits = digits_of(number);
    if digits.len() < 2 {
        return Err("`number` needs at least two digits".into());
    }
    let valid = luhn_sum(&digits, false).is_multiple_of(10);
    let check = (10 - luhn_sum(&digits, true) % 10) % 10;
    Ok(json!({"valid": valid, "check_digit_if_appended": check}))
}

const SAMPLE_RATE: u32 = 8000;

pub fn tone_wav(args: &Args) -> Out {
    let frequency = num(args, "frequency_hz")?;
    let duration = opt_int(args, "duration_ms", 500, 10, 2000)?;
    let amplitude = opt_num(args, "amplitude", 0.5)?;
    if !(20.0..=4000.0).contains(&frequency) || !(0.0..=1.0).contains(&amplitude) {
        return Err("`frequency_hz` must be 20–4000 and `amplitude` 0–1".into());
    }
    let samples = u32::try_from(duration).unwrap_or(0) * SAMPLE_RATE / 1000;
    let mut wav = Vec::with_capacity(44 + samples as usize);
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + samples).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&1u16.to_le_bytes()); // mono
    wav.extend_from_slice(&SAMPLE_RATE.to_le_bytes());
    wav.extend_from_slice(&SAMPLE_RATE.to_le_bytes()); // byte rate at 8 bits mono
    wav.extend_from_slice(&1u16.to_le_bytes()); // block align
    wav.extend_from_slice(&8u16.to_le_bytes()); // bits per sample
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&samples.to_le_bytes());
    for n in 0..samples {
        let t = f64::from(n) / f64::from(SAMPLE_RATE);
        let v = 128.0 + 127.0 * amplitude * (2.0 * std::f64::consts::PI * frequency * t).sin();
        wav.push(v.round().clamp(0.0, 255.0) as u8);
    }
    Ok(
        json!({"wav_base64": B64.encode(&wav), "mime_type": "audio/wav", "bytes": wav.len(), "samples": samples}),
    )
}

pub fn wav_info(args: &Args) -> Out {
    let b = decode(args, "wav_base64")?;
    if !(b.starts_with(b"RIFF") && b.get(8..12) == Some(b"WAVE")) {
        return Err("not a RIFF/WAVE file".into());
    }
    let (mut at, mut format, mut data_bytes) = (12usize, None, None);
    // Chunks are walked forward by their declared sizes; the loop ends at the data's end.
    while at + 8 <= b.len() {
        let id = &b[at..at + 4];
        let size = le32(&b, at + 4).ok_or("truncated chunk header")? as usize;
        if id == b"fmt " {
            format = Some((le16(&b, at + 10), le32(&b, at + 12), le16(&b, at + 22)));
        } else if id == b"data" {
            data_bytes = Some(size.min(b.len().saturating_sub(at + 8)));
        }
        at = at.saturating_add(8).saturating_add(size + size % 2);
    }
    let (Some((Some(channels), Some(rate), Some(bits))), Some(data)) = (format, data_bytes) else {
        return Err("the WAV file has no complete fmt and data chunks".into());
    };
    let frame = (channels * bits).div_ceil(8).max(1);
    let duration = if rate == 0 {
        0.0
    } else {
        (data as u64 / frame) as f64 * 1000.0 / f64::from(rate)
    };
    Ok(
        json!({"channels": channels, "sample_rate": rate, "bits_per_sample": bits,
        "duration_ms": round(duration, 3), "data_bytes": data}),
    )
}

#[rustfmt::skip]
const NOTE_NAMES: [&str; 12] = [
    "C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B",
];

pub fn note_frequency(args: &Args) -> Out {
    let note = text(args, "note")?;
    let mut chars = note.chars();
    let letter = chars.next().map(|c| c.to_ascii_uppercase());
    let base = match letter {
        Some('C') => 0,
        Some('D') => 2,
        Some('E') => 4,
        Some('F') => 5,
        Some('G') => 7,
        Some('A') => 9,
        Some('B') => 11,
        _ => return Err(format!("`{note}` is not a note like A4, C#5 or Eb3")),
    };
    let rest: String = chars.collect();
    let (shift, octave) = match rest.chars().next() {
        Some('#') => (1, &rest[1..]),
        Some('b') => (-1, &rest[1..]),
        _ => (0, rest.as_str()),
    };
    let octave: i64 = octave
        .parse()
        .map_err(|_| format!("`{note}` is not a note like A4, C#5 or Eb3"))?;
    let midi = (octave + 1) * 12 + base + shift;
    let frequency = 440.0 * 2f64.powf((midi - 69) as f64 / 12.0);
    Ok(json!({"frequency_hz": round(frequency, 3), "midi": midi}))
}

pub fn frequency_to_note(args: &Args) -> Out {
    let f = num(args, "frequency_hz")?;
    if !(8.0..=20_000.0).contains(&f) {
        return Err("`frequency_hz` must be between 8 and 20000".into());
    }
    let exact = 69.0 + 12.0 * (f / 440.0).log2();
    let midi = exact.round() as i64;
    let name = NOTE_NAMES[midi.rem_euclid(12) as usize];
    Ok(
        json!({"note": format!("{name}{}", midi.div_euclid(12) - 1), "midi": midi,
        "cents": round((exact - midi as f64) * 100.0, 1)}),
    )
}

pub fn bpm_timing(args: &Args) -> Out {
    let bpm = num(args, "bpm")?;
    if !(20.0..=400.0).contains(&bpm) {
        return Err("`bpm` must be between 20 and 400".into());
    }
    let beats = opt_int(args, "beats_per_bar", 4, 1, 16)? as f64;
    let beat = 60_000.0 / bpm;
    Ok(
        json!({"beat_ms": round(beat, 3), "bar_ms": round(beat * beats, 3),
        "eighth_ms": round(beat / 2.0, 3), "sixteenth_ms": round(beat / 4.0, 3)}),
    )
}

pub fn dtmf(args: &Args) -> Out {
    const LOW: [u32; 4] = [697, 770, 852, 941];
    const HIGH: [u32; 4] = [1209, 1336, 1477, 1633];
    const KEYPAD: [&str; 4] = ["123A", "456B", "789C", "*0#D"];
    let tones: Vec<Value> = text(args, "keys")?
        .chars()
        .map(|c| {
            let key = c.to_ascii_uppercase();
            KEYPAD
                .iter()
                .enumerate()
                .find_map(|(row, keys)| keys.find(key).map(|col| (row, col)))
                .map(|(row, col)| json!({"key": key.to_string(), "low_hz": LOW[row], "high_hz": HIGH[col]}))
                .ok_or_else(|| format!("`{c}` is not a keypad key"))
        })
        .collect::<Result<_, _>>()?;
    Ok(json!({"tones": tones}))
}

pub fn decibels(args: &Args) -> Out {
    let value = num(args, "value")?;
    let factor = match opt_text(args, "kind", "amplitude") {
        "amplitude" => 20.0,
        "power" => 10.0,
        other => return Err(format!("unknown kind `{other}`")),
    };
    match text(args, "direction")? {
        "ratio_to_db" if value > 0.0 => {
            Ok(json!({"value": round(factor * value.log10(), 4), "unit": "dB"}))
        }
        "ratio_to_db" => Err("a ratio must be positive".into()),
        "db_to_ratio" => {
            Ok(json!({"value": round(10f64.powf(value / factor), 6), "unit": "ratio"}))
        }
        other => Err(format!("unknown direction `{other}`")),
    }
}

pub fn speech_duration(args: &Args) -> Out {
    let words = text(args, "text")?.split_whitespace().count();
    let wpm = opt_int(args, "words_per_minute", 150, 60, 400)? as f64;
    Ok(json!({"seconds": round(words as f64 / wpm * 60.0, 1), "words": words}))
}

pub fn morse_timing(args: &Args) -> Out {
    let wpm = opt_int(args, "wpm", 20, 5, 60)? as f64;
    let unit = 1200.0 / wpm;
    let (mut units, mut elements) = (0u64, 0u64);
    let mut words = Vec::new();
    for word in text(args, "text")?.split_whitespace() {
        let codes: Vec<&str> = word.chars().filter_map(morse_of).collect();
        if codes.is_empty() {
            continue;
        }
        if !words.is_empty() {
            units += 7;
        }
        for (i, code) in codes.iter().enumerate() {
            if i > 0 {
                units += 3;
            }
            for (j, symbol) in code.chars().enumerate() {
                if j > 0 {
                    units += 1;
                }
                units += if symbol == '-' { 3 } else { 1 };
                elements += 1;
            }
        }
        words.push(codes.join(" "));
    }
    Ok(
        json!({"unit_ms": round(unit, 3), "total_ms": round(units as f64 * unit, 3),
        "elements": elements, "morse": words.join(" / ")}),
    )
}
