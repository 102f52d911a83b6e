//! "Polyglot Works": translation, text transformation and text analysis.

use serde_json::json;

use super::{input, output, prop, prop_with, text_prop};
use crate::demo::spec::CapabilitySpec as Cap;

/// The computations, from the two modules that hold them.
mod ops {
    pub use super::super::text_ops::*;
    pub use super::super::translate_ops::*;
}

const TRANSLATE: &str = "polyglot-translate";
const TEXT: &str = "polyglot-text";
const ANALYZE: &str = "polyglot-analyze";

fn text_only(description: &str) -> serde_json::Value {
    input(vec![("text", text_prop(description))], &["text"])
}

/// The catalog.
pub fn capabilities() -> Vec<Cap> {
    let mut caps = translation();
    caps.extend(transforms());
    caps.extend(analysis());
    caps
}

fn translation() -> Vec<Cap> {
    vec![
        Cap::new(TRANSLATE, "translate.morse@v1", "Text to Morse code", "translation",
            "Translate plain text into International Morse code: letters separated by spaces, words by a slash.",
            ops::to_morse)
            .input(text_only("Text to encode (letters, digits and common punctuation)"))
            .output(output(&[("morse", "string"), ("unknown_characters", "integer")]))
            .price(0.002).quality(12, 0.998)
            .example(json!({"text": "SOS help"})),
        Cap::new(TRANSLATE, "translate.from_morse@v1", "Morse decoder", "translation",
            "Decode dots and dashes (International Morse) back into letters and digits; spaces separate letters, slashes separate words.",
            ops::from_morse)
            .input(input(vec![("signal", prop_with("string", "Dots and dashes, e.g. `... --- ...`", json!({"maxLength": 20000})))], &["signal"]))
            .output(output(&[("text", "string"), ("unknown_codes", "integer")]))
            .quality(10, 0.999)
            .example(json!({"signal": "... --- ... / .... . .-.. .--."})),
        Cap::new(TRANSLATE, "translate.pig_latin@v1", "English to Pig Latin", "translation",
            "Translate English words into Pig Latin, keeping punctuation and capitalisation.",
            ops::pig_latin)
            .input(text_only("English text"))
            .output(output(&[("text", "string")]))
            .quality(8, 0.999)
            .example(json!({"text": "Hello world, this is a string"})),
        Cap::new(TRANSLATE, "translate.nato_phonetic@v1", "NATO phonetic spelling", "translation",
            "Spell text with the NATO/ICAO phonetic alphabet (Alfa, Bravo, Charlie …), for reading codes over the phone.",
            ops::nato)
            .input(text_only("Letters and digits to spell"))
            .output(output(&[("words", "array"), ("spelled", "string")]))
            .quality(8, 0.999)
            .example(json!({"text": "AB12"})),
        Cap::new(TRANSLATE, "translate.braille@v1", "Text to Braille", "translation",
            "Transcribe text into uncontracted (grade 1) English Braille as Unicode braille cells, with capital and number signs.",
            ops::braille)
            .input(text_only("Text to transcribe"))
            .output(output(&[("braille", "string"), ("cells", "integer"), ("unknown_characters", "integer")]))
            .price(0.003).quality(15, 0.997)
            .example(json!({"text": "Hello 42"})),
        Cap::new(TRANSLATE, "translate.leetspeak@v1", "Leetspeak", "translation",
            "Rewrite text in leetspeak (a→4, e→3, i→1, o→0, s→5, t→7 …).",
            ops::leet)
            .input(text_only("Text to rewrite"))
            .output(output(&[("text", "string")]))
            .quality(5, 0.999)
            .example(json!({"text": "elite hackers"})),
        Cap::new(TRANSLATE, "translate.transliterate_ru@v1", "Russian to Latin transliteration", "translation",
            "Transliterate Russian Cyrillic text into readable Latin letters (simplified BGN/PCGN romanisation), e.g. Москва → Moskva.",
            ops::transliterate_ru)
            .input(text_only("Russian text in Cyrillic"))
            .output(output(&[("text", "string"), ("transliterated_characters", "integer")]))
            .price(0.004).quality(14, 0.998)
            .example(json!({"text": "Привет, Москва!"})),
        Cap::new(TRANSLATE, "translate.phrasebook@v1", "Travel phrasebook translation", "translation",
            "Translate common travel phrases (hello, thank you, where is the station …) from English into Spanish, French, German, Italian, Portuguese, Russian or Japanese.",
            ops::phrasebook)
            .input(input(vec![
                ("text", prop("string", "The English phrase, e.g. `thank you`")),
                ("target_language", prop_with("string", "Target language code",
                    json!({"enum": ["es", "fr", "de", "it", "pt", "ru", "ja"]}))),
            ], &["text", "target_language"]))
            .output(output(&[("translation", "string"), ("found", "boolean"), ("target_language", "string"), ("known_phrases", "array")]))
            .price(0.01).quality(25, 0.995)
            .example(json!({"text": "Thank you", "target_language": "fr"})),
    ]
}

fn transforms() -> Vec<Cap> {
    vec![
        Cap::new(TEXT, "text.uppercase@v1", "Uppercase", "text",
            "Convert text to upper case (Unicode aware).", ops::uppercase)
            .input(text_only("Text to convert"))
            .output(output(&[("text", "string")]))
            .quality(3, 1.0)
            .example(json!({"text": "Hello, world"})),
        Cap::new(TEXT, "text.lowercase@v1", "Lowercase", "text",
            "Convert text to lower case (Unicode aware).", ops::lowercase)
            .input(text_only("Text to convert"))
            .output(output(&[("text", "string")]))
            .quality(3, 1.0)
            .example(json!({"text": "Hello, WORLD"})),
        Cap::new(TEXT, "text.reverse@v1", "Reverse text", "text",
            "Reverse the characters of a text.", ops::reverse)
            .input(text_only("Text to reverse"))
            .output(output(&[("text", "string")]))
            .quality(3, 1.0)
            .example(json!({"text": "stressed"})),
        Cap::new(TEXT, "text.word_count@v1", "Word count", "text",
            "Count words, characters, lines and sentences in a text.", ops::word_count)
            .input(text_only("Text to count"))
            .output(output(&[("words", "integer"), ("characters", "integer"),
                ("characters_no_spaces", "integer"), ("lines", "integer"), ("sentences", "integer")]))
            .quality(4, 1.0)
            .example(json!({"text": "One small step. One giant leap!"})),
        Cap::new(TEXT, "text.slugify@v1", "Slugify", "text",
            "Turn a title into a URL slug: lower case ASCII, accents folded, Cyrillic transliterated, words joined by hyphens.",
            ops::slugify)
            .input(text_only("Title or phrase"))
            .output(output(&[("slug", "string")]))
            .quality(4, 1.0)
            .example(json!({"text": "Crème brûlée & Co. in Москва"})),
        Cap::new(TEXT, "text.title_case@v1", "Title case", "text",
            "Capitalise the first letter of every word.", ops::title_case)
            .input(text_only("Text to capitalise"))
            .output(output(&[("text", "string")]))
            .quality(3, 1.0)
            .example(json!({"text": "the quick brown fox"})),
        Cap::new(TEXT, "text.rot13@v1", "ROT13", "text",
            "Apply the ROT13 letter substitution (its own inverse).", ops::rot13)
            .input(text_only("Text to encode or decode"))
            .output(output(&[("text", "string")]))
            .quality(3, 1.0)
            .example(json!({"text": "Why did the chicken cross the road?"})),
        Cap::new(TEXT, "text.dedupe_lines@v1", "Remove duplicate lines", "text",
            "Remove repeated lines, keeping the first occurrence and the original order.", ops::dedupe_lines)
            .input(text_only("Lines separated by newlines"))
            .output(output(&[("text", "string"), ("removed", "integer")]))
            .price(0.001).quality(5, 0.999)
            .example(json!({"text": "apple\nbanana\napple\ncherry\nbanana"})),
        Cap::new(TEXT, "text.sort_lines@v1", "Sort lines", "text",
            "Sort the lines of a text alphabetically, ascending or descending, optionally ignoring case.",
            ops::sort_lines)
            .input(input(vec![
                ("text", text_prop("Lines separated by newlines")),
                ("order", prop_with("string", "Sort order", json!({"enum": ["asc", "desc"], "default": "asc"}))),
                ("ignore_case", prop_with("boolean", "Compare without case", json!({"default": true}))),
            ], &["text"]))
            .output(output(&[("lines", "array")]))
            .price(0.001).quality(5, 0.999)
            .example(json!({"text": "pear\nApple\nbanana", "order": "asc"})),
        Cap::new(TEXT, "text.truncate@v1", "Truncate text", "text",
            "Shorten text to at most a number of characters, at a word boundary when possible, with an ellipsis.",
            ops::truncate)
            .input(input(vec![
                ("text", text_prop("Text to shorten")),
                ("max_chars", prop_with("integer", "Longest result, in characters", json!({"minimum": 1, "maximum": 10000}))),
                ("ellipsis", prop_with("string", "Appended when cut", json!({"default": "…", "maxLength": 10}))),
            ], &["text", "max_chars"]))
            .output(output(&[("text", "string"), ("truncated", "boolean")]))
            .quality(3, 1.0)
            .example(json!({"text": "The quick brown fox jumps over the lazy dog", "max_chars": 20})),
        Cap::new(TEXT, "text.wrap@v1", "Word wrap", "text",
            "Wrap text to lines of at most a given width, breaking between words.", ops::wrap)
            .input(input(vec![
                ("text", text_prop("Text to wrap")),
                ("width", prop_with("integer", "Line width in characters", json!({"minimum": 10, "maximum": 200, "default": 72}))),
            ], &["text"]))
            .output(output(&[("text", "string"), ("lines", "integer")]))
            .price(0.001).quality(4, 0.999)
            .example(json!({"text": "The quick brown fox jumps over the lazy dog near the river bank", "width": 20})),
        Cap::new(TEXT, "text.redact_pii@v1", "Redact emails and phone numbers", "privacy",
            "Replace e-mail addresses and phone numbers in text with [email] and [phone] placeholders.",
            ops::redact)
            .input(text_only("Text that may contain personal data"))
            .output(output(&[("text", "string"), ("emails", "integer"), ("phones", "integer")]))
            .price(0.005).quality(9, 0.997)
            .example(json!({"text": "Mail jane.doe@example.com or call +1-555-123-4567."})),
    ]
}

fn analysis() -> Vec<Cap> {
    vec![
        Cap::new(ANALYZE, "analyze.keywords@v1", "Keyword extraction", "nlp",
            "Extract the most frequent meaningful words of a text (stop words removed), with counts.",
            ops::keywords)
            .input(input(vec![
                ("text", text_prop("Text to analyse")),
                ("top_k", prop_with("integer", "How many keywords", json!({"minimum": 1, "maximum": 50, "default": 5}))),
            ], &["text"]))
            .output(output(&[("keywords", "array")]))
            .price(0.004).quality(18, 0.997)
            .example(json!({"text": "Rust makes systems programming safe. Rust programs are fast, and safe programs are reliable.", "top_k": 3})),
        Cap::new(ANALYZE, "analyze.sentiment@v1", "Sentiment analysis", "nlp",
            "Classify the sentiment of English text as positive, negative or neutral with a score in [-1, 1] (lexicon based, handles simple negation).",
            ops::sentiment)
            .input(text_only("English text, e.g. a product review"))
            .output(output(&[("label", "string"), ("score", "number"), ("positive_words", "array"), ("negative_words", "array")]))
            .price(0.005).quality(22, 0.996)
            .example(json!({"text": "I love this phone, the camera is great but the battery is not good."})),
        Cap::new(ANALYZE, "analyze.detect_script@v1", "Script and language detection", "nlp",
            "Detect the writing system of a text (Latin, Cyrillic, Han, Arabic, Devanagari …) and give a language hint.",
            ops::detect_script)
            .input(text_only("Text in any language"))
            .output(output(&[("script", "string"), ("language_hint", "string"), ("scripts", "object")]))
            .price(0.002).quality(6, 0.999)
            .example(json!({"text": "Съешь же ещё этих мягких французских булок"})),
        Cap::new(ANALYZE, "analyze.readability@v1", "Readability score", "nlp",
            "Compute the Flesch reading-ease score of English text, with word, sentence and syllable counts.",
            ops::readability)
            .input(text_only("English text"))
            .output(output(&[("flesch_reading_ease", "number"), ("level", "string"),
                ("words", "integer"), ("sentences", "integer"), ("syllables", "integer")]))
            .price(0.003).quality(10, 0.998)
            .example(json!({"text": "The cat sat on the mat. It was a sunny day, and everyone was happy."})),
        Cap::new(ANALYZE, "analyze.summarize@v1", "Extractive summary", "nlp",
            "Summarise text by picking its most representative sentences (keyword-frequency scoring), in original order.",
            ops::summarize)
            .input(input(vec![
                ("text", text_prop("Text to summarise")),
                ("sentences", prop_with("integer", "Sentences to keep", json!({"minimum": 1, "maximum": 20, "default": 2}))),
            ], &["text"]))
            .output(output(&[("summary", "string"), ("sentences_in", "integer"), ("sentences_out", "integer")]))
            .price(0.02).quality(40, 0.995)
            .example(json!({"text": "Solar power is growing fast. Panels are cheaper every year. Many homes now use solar power. Cats like naps.", "sentences": 2})),
        Cap::new(ANALYZE, "analyze.palindrome@v1", "Palindrome check", "text",
            "Check whether a phrase reads the same backwards, ignoring case, spaces and punctuation.",
            ops::palindrome)
            .input(text_only("Word or phrase"))
            .output(output(&[("is_palindrome", "boolean"), ("normalized", "string")]))
            .quality(3, 1.0)
            .example(json!({"text": "A man, a plan, a canal: Panama"})),
    ]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::{Value, json};

    fn run(cid: &str, input: Value) -> Value {
        let caps = super::capabilities();
        let cap = caps.iter().find(|c| c.capability_id == cid).unwrap();
        (cap.op)(input.as_object().unwrap()).unwrap()
    }

    #[test]
    fn known_answers() {
        assert_eq!(
            run("translate.morse@v1", json!({"text": "SOS"}))["morse"],
            "... --- ..."
        );
        assert_eq!(
            run("translate.morse@v1", json!({"text": "a b"}))["morse"],
            ".- / -..."
        );
        assert_eq!(
            run(
                "translate.from_morse@v1",
                json!({"signal": "... --- ... / .-"})
            )["text"],
            "SOS A"
        );
        assert_eq!(
            run(
                "translate.pig_latin@v1",
                json!({"text": "Hello apple, quiet"})
            )["text"],
            "Ellohay appleway, ietquay"
        );
        assert_eq!(
            run("translate.nato_phonetic@v1", json!({"text": "a1"}))["spelled"],
            "Alfa One"
        );
        assert_eq!(
            run("translate.braille@v1", json!({"text": "Ab 1"}))["braille"],
            "⠠⠁⠃⠀⠼⠁"
        );
        assert_eq!(
            run(
                "translate.transliterate_ru@v1",
                json!({"text": "Москва Щи"})
            )["text"],
            "Moskva Shchi"
        );
        assert_eq!(
            run(
                "translate.phrasebook@v1",
                json!({"text": "thank you!", "target_language": "de"})
            )["translation"],
            "danke"
        );
        assert_eq!(
            run(
                "translate.phrasebook@v1",
                json!({"text": "flux capacitor", "target_language": "de"})
            )["found"],
            false
        );
        assert_eq!(
            run("text.reverse@v1", json!({"text": "héllo"}))["text"],
            "olléh"
        );
        let counts = run(
            "text.word_count@v1",
            json!({"text": "One two. Three!\nFour"}),
        );
        assert_eq!(
            (
                counts["words"].as_u64(),
                counts["lines"].as_u64(),
                counts["sentences"].as_u64()
            ),
            (Some(4), Some(2), Some(3))
        );
        assert_eq!(
            run(
                "text.slugify@v1",
                json!({"text": "Crème brûlée in Москва!"})
            )["slug"],
            "creme-brulee-in-moskva"
        );
        assert_eq!(
            run("text.rot13@v1", json!({"text": "Hello"}))["text"],
            "Uryyb"
        );
        assert_eq!(
            run("text.dedupe_lines@v1", json!({"text": "a\nb\na"}))["removed"],
            1
        );
        assert_eq!(
            run(
                "text.sort_lines@v1",
                json!({"text": "b\nA\nc", "order": "desc"})
            )["lines"],
            json!(["c", "b", "A"])
        );
        let cut = run(
            "text.truncate@v1",
            json!({"text": "The quick brown fox", "max_chars": 12}),
        );
        assert_eq!(
            (cut["text"].as_str(), cut["truncated"].as_bool()),
            (Some("The quick…"), Some(true))
        );
        assert_eq!(
            run("text.wrap@v1", json!({"text": "aaa bbb ccc", "width": 10}))["text"],
            "aaa bbb\nccc"
        );
        let red = run(
            "text.redact_pii@v1",
            json!({"text": "a@b.io, 555-123-4567 ok"}),
        );
        assert_eq!(red["text"], "[email], [phone] ok");
        assert_eq!(
            run(
                "analyze.keywords@v1",
                json!({"text": "cat dog cat the", "top_k": 1})
            )["keywords"],
            json!([{"word": "cat", "count": 2}])
        );
        assert_eq!(
            run(
                "analyze.sentiment@v1",
                json!({"text": "not good, terrible"})
            )["label"],
            "negative"
        );
        assert_eq!(
            run(
                "analyze.sentiment@v1",
                json!({"text": "great and wonderful"})
            )["label"],
            "positive"
        );
        assert_eq!(
            run(
                "analyze.detect_script@v1",
                json!({"text": "東京へようこそ"})
            )["language_hint"],
            "ja"
        );
        assert_eq!(
            run("analyze.detect_script@v1", json!({"text": "Привет"}))["script"],
            "Cyrillic"
        );
        assert_eq!(
            run(
                "analyze.palindrome@v1",
                json!({"text": "Never odd or even"})
            )["is_palindrome"],
            true
        );
        let summary = run(
            "analyze.summarize@v1",
            json!({"text": "Solar power grows. Solar panels are cheap. Cats nap.", "sentences": 1}),
        );
        assert!(summary["summary"].as_str().unwrap().contains("Solar"));
    }
}
