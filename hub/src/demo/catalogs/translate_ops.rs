//! The computations behind the translation capabilities of "Polyglot Works".

use serde_json::{Value, json};

use super::{Args, text};

type Out = Result<Value, String>;
/// International Morse code of `c` (upper case letters, digits, common punctuation).
pub(crate) fn morse_of(c: char) -> Option<&'static str> {
    #[rustfmt::skip]
    const TABLE: [(char, &str); 54] = [
        ('A', ".-"), ('B', "-..."), ('C', "-.-."), ('D', "-.."), ('E', "."), ('F', "..-."),
        ('G', "--."), ('H', "...."), ('I', ".."), ('J', ".---"), ('K', "-.-"), ('L', ".-.."),
        ('M', "--"), ('N', "-."), ('O', "---"), ('P', ".--."), ('Q', "--.-"), ('R', ".-."),
        ('S', "..."), ('T', "-"), ('U', "..-"), ('V', "...-"), ('W', ".--"), ('X', "-..-"),
        ('Y', "-.--"), ('Z', "--.."), ('0', "-----"), ('1', ".----"), ('2', "..---"),
        ('3', "...--"), ('4', "....-"), ('5', "....."), ('6', "-...."), ('7', "--..."),
        ('8', "---.."), ('9', "----."), ('.', ".-.-.-"), (',', "--..--"), ('?', "..--.."),
        ('\'', ".----."), ('!', "-.-.--"), ('/', "-..-."), ('(', "-.--."), (')', "-.--.-"),
        ('&', ".-..."), (':', "---..."), (';', "-.-.-."), ('=', "-...-"), ('+', ".-.-."),
        ('-', "-....-"), ('_', "..--.-"), ('"', ".-..-."), ('$', "...-..-"), ('@', ".--.-."),
    ];
    let upper = c.to_ascii_uppercase();
    TABLE.iter().find(|(k, _)| *k == upper).map(|(_, v)| *v)
}

pub fn to_morse(args: &Args) -> Out {
    let mut unknown = 0;
    let words: Vec<String> = text(args, "text")?
        .split_whitespace()
        .map(|word| {
            let codes: Vec<&str> = word
                .chars()
                .filter_map(|c| {
                    let code = morse_of(c);
                    if code.is_none() {
                        unknown += 1;
                    }
                    code
                })
                .collect();
            codes.join(" ")
        })
        .filter(|w| !w.is_empty())
        .collect();
    Ok(json!({"morse": words.join(" / "), "unknown_characters": unknown}))
}

pub fn from_morse(args: &Args) -> Out {
    let mut unknown = 0;
    let words: Vec<String> = text(args, "signal")?
        .split('/')
        .map(|word| {
            word.split_whitespace()
                .map(|code| {
                    ('!'..='~')
                        .find(|c| !c.is_ascii_lowercase() && morse_of(*c) == Some(code))
                        .unwrap_or_else(|| {
                            unknown += 1;
                            '?'
                        })
                })
                .collect()
        })
        .filter(|w: &String| !w.is_empty())
        .collect();
    Ok(json!({"text": words.join(" "), "unknown_codes": unknown}))
}

/// Applies `f` to every maximal run of alphabetic characters, keeping everything else.
pub(crate) fn map_words(input: &str, mut f: impl FnMut(&str) -> String) -> String {
    let mut out = String::with_capacity(input.len() + 16);
    let mut word = String::new();
    for c in input.chars() {
        if c.is_alphabetic() {
            word.push(c);
        } else {
            if !word.is_empty() {
                out.push_str(&f(&word));
                word.clear();
            }
            out.push(c);
        }
    }
    if !word.is_empty() {
        out.push_str(&f(&word));
    }
    out
}

pub(crate) fn capitalise_like(source: &str, word: String) -> String {
    if source.chars().next().is_some_and(char::is_uppercase) {
        let mut chars = word.chars();
        match chars.next() {
            Some(first) => first.to_uppercase().chain(chars).collect(),
            None => word,
        }
    } else {
        word
    }
}

pub fn pig_latin(args: &Args) -> Out {
    let translated = map_words(text(args, "text")?, |word| {
        let lower = word.to_lowercase();
        let is_vowel = |c: char| "aeiou".contains(c);
        let latin = if lower.starts_with(is_vowel) {
            format!("{lower}way")
        } else {
            let mut split = lower.find(is_vowel).unwrap_or(lower.len());
            // "qu" travels together: quiet → ietquay.
            if split > 0 && lower[..split].ends_with('q') && lower[split..].starts_with('u') {
                split += 1;
            }
            format!("{}{}ay", &lower[split..], &lower[..split])
        };
        capitalise_like(word, latin)
    });
    Ok(json!({"text": translated}))
}

pub fn nato(args: &Args) -> Out {
    #[rustfmt::skip]
    const LETTERS: [&str; 26] = [
        "Alfa", "Bravo", "Charlie", "Delta", "Echo", "Foxtrot", "Golf", "Hotel", "India",
        "Juliett", "Kilo", "Lima", "Mike", "November", "Oscar", "Papa", "Quebec", "Romeo",
        "Sierra", "Tango", "Uniform", "Victor", "Whiskey", "X-ray", "Yankee", "Zulu",
    ];
    #[rustfmt::skip]
    const DIGITS: [&str; 10] = [
        "Zero", "One", "Two", "Three", "Four", "Five", "Six", "Seven", "Eight", "Nine",
    ];
    let words: Vec<&str> = text(args, "text")?
        .chars()
        .filter_map(|c| {
            let c = c.to_ascii_uppercase();
            if c.is_ascii_uppercase() {
                LETTERS.get(usize::from(c as u8 - b'A')).copied()
            } else if c.is_ascii_digit() {
                DIGITS.get(usize::from(c as u8 - b'0')).copied()
            } else {
                None
            }
        })
        .collect();
    Ok(json!({"spelled": words.join(" "), "words": words}))
}

/// The Unicode braille cell with the given dots (1–6).
fn cell(dots: &[u32]) -> char {
    let bits: u32 = dots.iter().map(|d| 1 << (d - 1)).sum();
    char::from_u32(0x2800 + bits).unwrap_or('\u{2800}')
}

fn letter_dots(c: char) -> Option<&'static [u32]> {
    #[rustfmt::skip]
    const DOTS: [&[u32]; 26] = [
        &[1], &[1, 2], &[1, 4], &[1, 4, 5], &[1, 5], &[1, 2, 4], &[1, 2, 4, 5], &[1, 2, 5],
        &[2, 4], &[2, 4, 5], &[1, 3], &[1, 2, 3], &[1, 3, 4], &[1, 3, 4, 5], &[1, 3, 5],
        &[1, 2, 3, 4], &[1, 2, 3, 4, 5], &[1, 2, 3, 5], &[2, 3, 4], &[2, 3, 4, 5], &[1, 3, 6],
        &[1, 2, 3, 6], &[2, 4, 5, 6], &[1, 3, 4, 6], &[1, 3, 4, 5, 6], &[1, 3, 5, 6],
    ];
    c.is_ascii_lowercase()
        .then(|| DOTS[usize::from(c as u8 - b'a')])
}

pub fn braille(args: &Args) -> Out {
    let mut out = String::new();
    let mut unknown = 0;
    let mut in_number = false;
    for c in text(args, "text")?.chars() {
        if c.is_ascii_digit() {
            if !in_number {
                out.push(cell(&[3, 4, 5, 6]));
                in_number = true;
            }
            // 1–9 are a–i, 0 is j.
            let letter = if c == '0' {
                'j'
            } else {
                char::from(b'a' + (c as u8 - b'1'))
            };
            out.push(cell(letter_dots(letter).unwrap_or(&[])));
            continue;
        }
        in_number = false;
        if let Some(dots) = letter_dots(c.to_ascii_lowercase()) {
            if c.is_ascii_uppercase() {
                out.push(cell(&[6]));
            }
            out.push(cell(dots));
        } else {
            match c {
                ' ' | '\n' | '\t' => out.push('\u{2800}'),
                ',' => out.push(cell(&[2])),
                '.' => out.push(cell(&[2, 5, 6])),
                '?' => out.push(cell(&[2, 3, 6])),
                '!' => out.push(cell(&[2, 3, 5])),
                ';' => out.push(cell(&[2, 3])),
                ':' => out.push(cell(&[2, 5])),
                '-' => out.push(cell(&[3, 6])),
                _ => unknown += 1,
            }
        }
    }
    Ok(json!({"cells": out.chars().count(), "braille": out, "unknown_characters": unknown}))
}

pub fn leet(args: &Args) -> Out {
    let out: String = text(args, "text")?
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            'a' => '4',
            'b' => '8',
            'e' => '3',
            'g' => '6',
            'i' => '1',
            'o' => '0',
            's' => '5',
            't' => '7',
            _ => c,
        })
        .collect();
    Ok(json!({"text": out}))
}

/// Simplified BGN/PCGN romanisation of one lower-case Cyrillic letter.
fn romanise(c: char) -> Option<&'static str> {
    #[rustfmt::skip]
    const TABLE: [(char, &str); 33] = [
        ('а', "a"), ('б', "b"), ('в', "v"), ('г', "g"), ('д', "d"), ('е', "e"), ('ё', "yo"),
        ('ж', "zh"), ('з', "z"), ('и', "i"), ('й', "y"), ('к', "k"), ('л', "l"), ('м', "m"),
        ('н', "n"), ('о', "o"), ('п', "p"), ('р', "r"), ('с', "s"), ('т', "t"), ('у', "u"),
        ('ф', "f"), ('х', "kh"), ('ц', "ts"), ('ч', "ch"), ('ш', "sh"), ('щ', "shch"),
        ('ъ', ""), ('ь', ""), ('ы', "y"), ('э', "e"), ('ю', "yu"), ('я', "ya"),
    ];
    TABLE.iter().find(|(k, _)| *k == c).map(|(_, v)| *v)
}

/// Transliterates Cyrillic letters, returning the text and how many letters changed.
pub(crate) fn transliterate(input: &str) -> (String, usize) {
    let mut out = String::with_capacity(input.len());
    let mut count = 0;
    for c in input.chars() {
        let lower = c.to_lowercase().next().unwrap_or(c);
        match romanise(lower) {
            Some(latin) => {
                count += 1;
                if c.is_uppercase() {
                    out.push_str(&capitalise_like("X", latin.to_owned()));
                } else {
                    out.push_str(latin);
                }
            }
            None => out.push(c),
        }
    }
    (out, count)
}

pub fn transliterate_ru(args: &Args) -> Out {
    let (out, count) = transliterate(text(args, "text")?);
    Ok(json!({"text": out, "transliterated_characters": count}))
}

/// English phrase → translations in es, fr, de, it, pt, ru, ja.
#[rustfmt::skip]
const PHRASES: [(&str, [&str; 7]); 12] = [
    ("hello", ["hola", "bonjour", "hallo", "ciao", "olá", "привет", "こんにちは"]),
    ("goodbye", ["adiós", "au revoir", "auf Wiedersehen", "arrivederci", "adeus", "до свидания", "さようなら"]),
    ("thank you", ["gracias", "merci", "danke", "grazie", "obrigado", "спасибо", "ありがとう"]),
    ("please", ["por favor", "s'il vous plaît", "bitte", "per favore", "por favor", "пожалуйста", "お願いします"]),
    ("yes", ["sí", "oui", "ja", "sì", "sim", "да", "はい"]),
    ("no", ["no", "non", "nein", "no", "não", "нет", "いいえ"]),
    ("good morning", ["buenos días", "bonjour", "guten Morgen", "buongiorno", "bom dia", "доброе утро", "おはようございます"]),
    ("good night", ["buenas noches", "bonne nuit", "gute Nacht", "buonanotte", "boa noite", "спокойной ночи", "おやすみなさい"]),
    ("excuse me", ["perdón", "excusez-moi", "Entschuldigung", "mi scusi", "com licença", "извините", "すみません"]),
    ("how are you", ["¿cómo estás?", "comment ça va ?", "wie geht's?", "come stai?", "como está?", "как дела?", "お元気ですか"]),
    ("where is the station", ["¿dónde está la estación?", "où est la gare ?", "wo ist der Bahnhof?", "dov'è la stazione?", "onde fica a estação?", "где вокзал?", "駅はどこですか"]),
    ("cheers", ["¡salud!", "santé !", "prost!", "salute!", "saúde!", "за здоровье!", "乾杯"]),
];
const PHRASE_LANGUAGES: [&str; 7] = ["es", "fr", "de", "it", "pt", "ru", "ja"];

pub fn phrasebook(args: &Args) -> Out {
    let language = text(args, "target_language")?;
    let column = PHRASE_LANGUAGES
        .iter()
        .position(|l| *l == language)
        .ok_or_else(|| {
            format!(
                "`target_language` must be one of {}",
                PHRASE_LANGUAGES.join(", ")
            )
        })?;
    let normalized: String = text(args, "text")?
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || c.is_whitespace())
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let found = PHRASES.iter().find(|(english, _)| *english == normalized);
    let known: Vec<&str> = PHRASES.iter().map(|(english, _)| *english).collect();
    Ok(json!({
        "translation": found.map_or("", |(_, row)| row[column]),
        "found": found.is_some(),
        "target_language": language,
        "known_phrases": if found.is_some() { Vec::new() } else { known },
    }))
}
