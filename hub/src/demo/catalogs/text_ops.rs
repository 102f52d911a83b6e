//! The computations behind the text and analysis capabilities of "Polyglot Works".

use std::collections::HashMap;

use serde_json::{Value, json};

use super::translate_ops::{capitalise_like, map_words, transliterate};
use super::{Args, opt_bool, opt_int, opt_text, round, text};

type Out = Result<Value, String>;

pub fn uppercase(args: &Args) -> Out {
    Ok(json!({"text": text(args, "text")?.to_uppercase()}))
}

pub fn lowercase(args: &Args) -> Out {
    Ok(json!({"text": text(args, "text")?.to_lowercase()}))
}

pub fn reverse(args: &Args) -> Out {
    Ok(json!({"text": text(args, "text")?.chars().rev().collect::<String>()}))
}

/// Sentences: runs of text ended by `.`, `!` or `?` (or the end of the text).
pub(crate) fn sentences(input: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for c in input.chars() {
        current.push(c);
        if matches!(c, '.' | '!' | '?') {
            let s = current.trim().to_owned();
            if s.chars().any(char::is_alphanumeric) {
                out.push(s);
            }
            current.clear();
        }
    }
    let rest = current.trim();
    if rest.chars().any(char::is_alphanumeric) {
        out.push(rest.to_owned());
    }
    out
}

pub fn word_count(args: &Args) -> Out {
    let t = text(args, "text")?;
    Ok(json!({
        "words": t.split_whitespace().count(),
        "characters": t.chars().count(),
        "characters_no_spaces": t.chars().filter(|c| !c.is_whitespace()).count(),
        "lines": t.lines().count(),
        "sentences": sentences(t).len(),
    }))
}

fn fold_accent(c: char) -> Option<&'static str> {
    Some(match c {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' => "a",
        'æ' => "ae",
        'ç' => "c",
        'è' | 'é' | 'ê' | 'ë' => "e",
        'ì' | 'í' | 'î' | 'ï' => "i",
        'ñ' => "n",
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' => "o",
        'ù' | 'ú' | 'û' | 'ü' => "u",
        'ý' | 'ÿ' => "y",
        'ß' => "ss",
        _ => return None,
    })
}

pub fn slugify(args: &Args) -> Out {
    let (latin, _) = transliterate(&text(args, "text")?.to_lowercase());
    let mut slug = String::new();
    for c in latin.chars() {
        let piece = match fold_accent(c) {
            Some(folded) => folded.to_owned(),
            None if c.is_ascii_alphanumeric() => c.to_string(),
            None => "-".to_owned(),
        };
        for p in piece.chars() {
            if p != '-' || !(slug.is_empty() || slug.ends_with('-')) {
                slug.push(p);
            }
        }
    }
    Ok(json!({"slug": slug.trim_end_matches('-')}))
}

pub fn title_case(args: &Args) -> Out {
    let out = map_words(text(args, "text")?, |word| {
        capitalise_like("X", word.to_lowercase())
    });
    Ok(json!({"text": out}))
}

pub fn rot13(args: &Args) -> Out {
    let out: String = text(args, "text")?
        .chars()
        .map(|c| match c {
            'a'..='z' => char::from(b'a' + (c as u8 - b'a' + 13) % 26),
            'A'..='Z' => char::from(b'A' + (c as u8 - b'A' + 13) % 26),
            _ => c,
        })
        .collect();
    Ok(json!({"text": out}))
}

pub fn dedupe_lines(args: &Args) -> Out {
    let mut seen = std::collections::HashSet::new();
    let lines: Vec<&str> = text(args, "text")?.lines().collect();
    let kept: Vec<&str> = lines.iter().copied().filter(|l| seen.insert(*l)).collect();
    Ok(json!({"removed": lines.len() - kept.len(), "text": kept.join("\n")}))
}

pub fn sort_lines(args: &Args) -> Out {
    let ignore_case = opt_bool(args, "ignore_case", true);
    let mut lines: Vec<&str> = text(args, "text")?.lines().collect();
    lines.sort_by(|a, b| {
        if ignore_case {
            a.to_lowercase().cmp(&b.to_lowercase()).then(a.cmp(b))
        } else {
            a.cmp(b)
        }
    });
    match opt_text(args, "order", "asc") {
        "asc" => {}
        "desc" => lines.reverse(),
        _ => return Err("`order` must be `asc` or `desc`".into()),
    }
    Ok(json!({"lines": lines}))
}

pub fn truncate(args: &Args) -> Out {
    let t = text(args, "text")?;
    let max = usize::try_from(opt_int(args, "max_chars", 80, 1, 10_000)?).unwrap_or(1);
    let ellipsis = opt_text(args, "ellipsis", "…");
    if t.chars().count() <= max {
        return Ok(json!({"text": t, "truncated": false}));
    }
    let room = max.saturating_sub(ellipsis.chars().count());
    let head: String = t.chars().take(room).collect();
    let cut = match head.rfind(char::is_whitespace) {
        Some(at) if at > 0 => head[..at].trim_end().to_owned(),
        _ => head,
    };
    Ok(json!({"text": format!("{cut}{ellipsis}"), "truncated": true}))
}

pub fn wrap(args: &Args) -> Out {
    let width = usize::try_from(opt_int(args, "width", 72, 10, 200)?).unwrap_or(72);
    let mut lines: Vec<String> = Vec::new();
    for paragraph in text(args, "text")?.lines() {
        let mut line = String::new();
        for word in paragraph.split_whitespace() {
            if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
                lines.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        lines.push(line);
    }
    Ok(json!({"lines": lines.len(), "text": lines.join("\n")}))
}

fn is_email(token: &str) -> bool {
    match token.split_once('@') {
        Some((user, domain)) => {
            !user.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains('@')
        }
        None => false,
    }
}

fn is_phone(token: &str) -> bool {
    let digits = token.chars().filter(char::is_ascii_digit).count();
    digits >= 7
        && token
            .chars()
            .all(|c| c.is_ascii_digit() || "+-().".contains(c))
}

pub fn redact(args: &Args) -> Out {
    let (mut emails, mut phones) = (0, 0);
    let mut out = String::new();
    for (i, token) in text(args, "text")?.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let core = token.trim_end_matches([',', ';', ':', '!', '?', '.', ')']);
        let tail = &token[core.len()..];
        if is_email(core) {
            emails += 1;
            out.push_str("[email]");
            out.push_str(tail);
        } else if is_phone(core) {
            phones += 1;
            out.push_str("[phone]");
            out.push_str(tail);
        } else {
            out.push_str(token);
        }
    }
    Ok(json!({"text": out, "emails": emails, "phones": phones}))
}

#[rustfmt::skip]
const STOP_WORDS: [&str; 48] = [
    "the", "and", "for", "are", "but", "not", "you", "all", "any", "can", "had", "her", "was",
    "one", "our", "out", "has", "him", "his", "how", "its", "may", "new", "now", "old", "see",
    "two", "who", "did", "get", "let", "say", "she", "too", "use", "that", "with", "have", "this",
    "will", "your", "from", "they", "been", "were", "what", "when", "than",
];

/// Lower-case words of at least three letters that are not stop words.
fn content_words(input: &str) -> Vec<String> {
    input
        .split(|c: char| !c.is_alphanumeric())
        .map(str::to_lowercase)
        .filter(|w| w.chars().count() >= 3 && !STOP_WORDS.contains(&w.as_str()))
        .collect()
}

fn frequencies(words: &[String]) -> HashMap<&str, usize> {
    let mut counts = HashMap::new();
    for w in words {
        *counts.entry(w.as_str()).or_insert(0) += 1;
    }
    counts
}

pub fn keywords(args: &Args) -> Out {
    let k = usize::try_from(opt_int(args, "top_k", 5, 1, 50)?).unwrap_or(5);
    let words = content_words(text(args, "text")?);
    let mut ranked: Vec<(&str, usize)> = frequencies(&words).into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let top: Vec<Value> = ranked
        .into_iter()
        .take(k)
        .map(|(word, count)| json!({"word": word, "count": count}))
        .collect();
    Ok(json!({"keywords": top}))
}

pub fn sentiment(args: &Args) -> Out {
    #[rustfmt::skip]
    const POSITIVE: [&str; 20] = [
        "good", "great", "excellent", "love", "happy", "wonderful", "fantastic", "amazing", "like",
        "best", "nice", "awesome", "pleased", "delightful", "brilliant", "perfect", "enjoy",
        "fast", "reliable", "beautiful",
    ];
    #[rustfmt::skip]
    const NEGATIVE: [&str; 20] = [
        "bad", "terrible", "awful", "hate", "sad", "poor", "worst", "horrible", "disappointing",
        "angry", "broken", "slow", "ugly", "boring", "fail", "problem", "useless", "buggy",
        "expensive", "annoying",
    ];
    const NEGATIONS: [&str; 7] = ["not", "no", "never", "don't", "isn't", "wasn't", "doesn't"];
    let (mut positive, mut negative) = (Vec::new(), Vec::new());
    let mut negate = false;
    for raw in text(args, "text")?.split_whitespace() {
        let word: String = raw
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == '\'')
            .collect();
        if NEGATIONS.contains(&word.as_str()) {
            negate = true;
            continue;
        }
        let polarity = if POSITIVE.contains(&word.as_str()) {
            Some(true)
        } else if NEGATIVE.contains(&word.as_str()) {
            Some(false)
        } else {
            None
        };
        if let Some(is_positive) = polarity {
            if is_positive != negate {
                positive.push(word);
            } else {
                negative.push(word);
            }
            negate = false;
        }
    }
    let total = positive.len() + negative.len();
    let score = if total == 0 {
        0.0
    } else {
        (positive.len() as f64 - negative.len() as f64) / total as f64
    };
    let label = if score > 0.2 {
        "positive"
    } else if score < -0.2 {
        "negative"
    } else {
        "neutral"
    };
    Ok(
        json!({"label": label, "score": round(score, 3), "positive_words": positive, "negative_words": negative}),
    )
}

fn script_of(c: char) -> Option<&'static str> {
    let cp = u32::from(c);
    Some(match cp {
        0x41..=0x5A | 0x61..=0x7A | 0xC0..=0x24F => "Latin",
        0x370..=0x3FF => "Greek",
        0x400..=0x4FF => "Cyrillic",
        0x590..=0x5FF => "Hebrew",
        0x600..=0x6FF => "Arabic",
        0x900..=0x97F => "Devanagari",
        0xE00..=0xE7F => "Thai",
        0x3040..=0x309F => "Hiragana",
        0x30A0..=0x30FF => "Katakana",
        0x4E00..=0x9FFF => "Han",
        0xAC00..=0xD7AF => "Hangul",
        _ => return None,
    })
}

pub fn detect_script(args: &Args) -> Out {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for c in text(args, "text")?.chars() {
        if let Some(script) = script_of(c) {
            *counts.entry(script).or_insert(0) += 1;
        }
    }
    let mut ranked: Vec<(&str, usize)> = counts.iter().map(|(k, v)| (*k, *v)).collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let script = ranked.first().map_or("Unknown", |(s, _)| *s);
    let kana = counts.contains_key("Hiragana") || counts.contains_key("Katakana");
    let hint = match script {
        "Latin" => "en",
        "Greek" => "el",
        "Cyrillic" => "ru",
        "Hebrew" => "he",
        "Arabic" => "ar",
        "Devanagari" => "hi",
        "Thai" => "th",
        "Hiragana" | "Katakana" => "ja",
        "Han" if kana => "ja",
        "Han" => "zh",
        "Hangul" => "ko",
        _ => "und",
    };
    Ok(json!({"script": script, "language_hint": hint, "scripts": counts}))
}

/// Vowel groups, minus a silent final `e`, at least one.
fn syllables(word: &str) -> usize {
    let w = word.to_lowercase();
    let mut count = 0;
    let mut previous_vowel = false;
    for c in w.chars() {
        let vowel = "aeiouy".contains(c);
        if vowel && !previous_vowel {
            count += 1;
        }
        previous_vowel = vowel;
    }
    if w.ends_with('e') && !w.ends_with("le") && count > 1 {
        count -= 1;
    }
    count.max(1)
}

pub fn readability(args: &Args) -> Out {
    let t = text(args, "text")?;
    let words: Vec<&str> = t
        .split(|c: char| !c.is_alphabetic())
        .filter(|w| !w.is_empty())
        .collect();
    if words.is_empty() {
        return Err("`text` contains no words".into());
    }
    let sentence_count = sentences(t).len().max(1);
    let syllable_count: usize = words.iter().map(|w| syllables(w)).sum();
    let score = 206.835
        - 1.015 * (words.len() as f64 / sentence_count as f64)
        - 84.6 * (syllable_count as f64 / words.len() as f64);
    let level = match score {
        s if s >= 90.0 => "very easy",
        s if s >= 70.0 => "easy",
        s if s >= 60.0 => "standard",
        s if s >= 50.0 => "fairly difficult",
        s if s >= 30.0 => "difficult",
        _ => "very difficult",
    };
    Ok(
        json!({"flesch_reading_ease": round(score, 1), "level": level, "words": words.len(),
        "sentences": sentence_count, "syllables": syllable_count}),
    )
}

pub fn summarize(args: &Args) -> Out {
    let t = text(args, "text")?;
    let keep = usize::try_from(opt_int(args, "sentences", 2, 1, 20)?).unwrap_or(2);
    let all = sentences(t);
    let words = content_words(t);
    let freq = frequencies(&words);
    let mut scored: Vec<(usize, usize)> = all
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let score = content_words(s)
                .iter()
                .map(|w| freq.get(w.as_str()).copied().unwrap_or(0))
                .sum();
            (i, score)
        })
        .collect();
    scored.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut chosen: Vec<usize> = scored.iter().take(keep).map(|(i, _)| *i).collect();
    chosen.sort_unstable();
    let summary: Vec<&str> = chosen.iter().map(|i| all[*i].as_str()).collect();
    Ok(
        json!({"summary": summary.join(" "), "sentences_in": all.len(), "sentences_out": summary.len()}),
    )
}

pub fn palindrome(args: &Args) -> Out {
    let normalized: String = text(args, "text")?
        .chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect();
    let reversed: String = normalized.chars().rev().collect();
    Ok(
        json!({"is_palindrome": !normalized.is_empty() && normalized == reversed, "normalized": normalized}),
    )
}
