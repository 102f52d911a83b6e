//! Text analysis: one tokenizer for every script we expect in capability text.
//!
//! Latin, Cyrillic, Greek, Arabic, Hangul … are split into words on anything that is not
//! alphanumeric, and camelCase identifiers (`targetLanguage`) are split into their words, so
//! schema property names match ordinary queries. Scripts written without spaces (Han, kana,
//! Thai, Lao, Khmer, Myanmar) have no word boundaries a tokenizer can find without a
//! dictionary, so each run is indexed as overlapping character bigrams (`翻译文本` →
//! `翻译 译文 文本`), the usual dictionary-free approach; a run of one character stays a unigram.
//!
//! The indexed analyzer then lowercases, folds Latin diacritics, drops English and Russian stop
//! words and stems with the English and then the Russian Snowball stemmers. Chaining is safe:
//! each algorithm only strips suffixes written in its own alphabet, so the English stemmer
//! leaves Cyrillic words alone and vice versa (unit-tested below).

use tantivy::tokenizer::{
    AsciiFoldingFilter, Language, LowerCaser, RemoveLongFilter, Stemmer, StopWordFilter,
    TextAnalyzer, Token, TokenStream, Tokenizer,
};

/// Name under which the stemming analyzer is registered on the tantivy index.
pub(crate) const TEXT_ANALYZER: &str = "aimarket_text";
/// Name under which the surface (unstemmed) analyzer is registered.
pub(crate) const SURFACE_ANALYZER: &str = "aimarket_surface";

/// Tokens longer than this many bytes are dropped (base64 blobs, hashes, URLs glued together).
const MAX_TOKEN_BYTES: usize = 48;

/// Splits text into words and CJK bigrams; see the module docs.
#[derive(Clone, Default)]
pub struct MultilingualTokenizer {
    tokens: Vec<Token>,
    empty: Token,
}

/// Token stream over the tokens [`MultilingualTokenizer`] computed up front.
pub struct MultilingualTokenStream<'a> {
    tokens: &'a mut Vec<Token>,
    empty: &'a mut Token,
    /// Number of tokens already returned; the current token is `tokens[cursor - 1]`.
    cursor: usize,
}

impl Tokenizer for MultilingualTokenizer {
    type TokenStream<'a> = MultilingualTokenStream<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> Self::TokenStream<'a> {
        self.tokens.clear();
        split(text, &mut self.tokens);
        MultilingualTokenStream {
            tokens: &mut self.tokens,
            empty: &mut self.empty,
            cursor: 0,
        }
    }
}

impl TokenStream for MultilingualTokenStream<'_> {
    fn advance(&mut self) -> bool {
        if self.cursor < self.tokens.len() {
            self.cursor += 1;
            true
        } else {
            false
        }
    }

    fn token(&self) -> &Token {
        match self.cursor.checked_sub(1).and_then(|i| self.tokens.get(i)) {
            Some(token) => token,
            None => self.empty,
        }
    }

    fn token_mut(&mut self) -> &mut Token {
        match self.cursor.checked_sub(1) {
            Some(i) if i < self.tokens.len() => &mut self.tokens[i],
            _ => self.empty,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum CharClass {
    /// Part of a space-delimited word.
    Word,
    /// A script without spaces: indexed as bigrams.
    Bigram,
    /// Anything else: a separator.
    Separator,
}

fn classify(c: char) -> CharClass {
    if is_bigram_script(c) {
        CharClass::Bigram
    } else if c.is_alphanumeric() {
        CharClass::Word
    } else {
        CharClass::Separator
    }
}

/// Scripts written without spaces between words.
pub(crate) fn is_bigram_script(c: char) -> bool {
    matches!(c as u32,
        0x0E00..=0x0EFF      // Thai, Lao
        | 0x1000..=0x109F    // Myanmar
        | 0x1780..=0x17FF    // Khmer
        | 0x3040..=0x30FF    // Hiragana, Katakana
        | 0x3400..=0x4DBF    // CJK Extension A
        | 0x4E00..=0x9FFF    // CJK Unified Ideographs
        | 0xF900..=0xFAFF    // CJK Compatibility Ideographs
        | 0x20000..=0x2FFFF  // CJK Extensions B..F
    )
}

fn push(tokens: &mut Vec<Token>, text: &str, from: usize, to: usize) {
    let position = tokens.len();
    tokens.push(Token {
        offset_from: from,
        offset_to: to,
        position,
        text: text[from..to].to_string(),
        position_length: 1,
    });
}

/// Splits one alphanumeric run at camelCase boundaries: `targetLanguage` → `target Language`,
/// `HTTPServer` → `HTTP Server`. Digits never start a new word (`v2`, `base64`, `mp3`).
fn push_word(tokens: &mut Vec<Token>, text: &str, start: usize, end: usize) {
    let word = &text[start..end];
    let chars: Vec<(usize, char)> = word.char_indices().collect();
    let mut from = 0usize;
    for i in 1..chars.len() {
        let (offset, c) = chars[i];
        let prev = chars[i - 1].1;
        let next_is_lower = chars.get(i + 1).is_some_and(|(_, n)| n.is_lowercase());
        let boundary =
            c.is_uppercase() && (prev.is_lowercase() || (prev.is_uppercase() && next_is_lower));
        if boundary {
            push(tokens, text, start + from, start + offset);
            from = offset;
        }
    }
    push(tokens, text, start + from, end);
}

/// Emits overlapping bigrams for a run of a space-less script.
fn push_bigrams(tokens: &mut Vec<Token>, text: &str, start: usize, end: usize) {
    let offsets: Vec<usize> = text[start..end]
        .char_indices()
        .map(|(i, _)| start + i)
        .chain(std::iter::once(end))
        .collect();
    let chars = offsets.len() - 1;
    if chars == 1 {
        push(tokens, text, start, end);
        return;
    }
    for i in 0..chars - 1 {
        push(tokens, text, offsets[i], offsets[i + 2]);
    }
}

fn split(text: &str, tokens: &mut Vec<Token>) {
    let mut run: Option<(CharClass, usize)> = None;
    for (offset, c) in text.char_indices() {
        let class = classify(c);
        match run {
            Some((current, _)) if current == class => {}
            Some((current, start)) => {
                flush(tokens, text, current, start, offset);
                run = (class != CharClass::Separator).then_some((class, offset));
            }
            None if class != CharClass::Separator => run = Some((class, offset)),
            None => {}
        }
    }
    if let Some((class, start)) = run {
        flush(tokens, text, class, start, text.len());
    }
}

fn flush(tokens: &mut Vec<Token>, text: &str, class: CharClass, start: usize, end: usize) {
    match class {
        CharClass::Word => push_word(tokens, text, start, end),
        CharClass::Bigram => push_bigrams(tokens, text, start, end),
        CharClass::Separator => {}
    }
}

fn stop_words() -> StopWordFilter {
    let words = ENGLISH_STOP_WORDS.iter().chain(RUSSIAN_STOP_WORDS);
    StopWordFilter::remove(words.map(|w| (*w).to_string()))
}

/// Lucene's English list (the one tantivy ships) plus question words common in intents.
#[rustfmt::skip]
const ENGLISH_STOP_WORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it",
    "no", "not", "of", "on", "or", "such", "that", "the", "their", "then", "there", "these",
    "they", "this", "to", "was", "will", "with", "i", "me", "my", "we", "our", "you", "your",
    "can", "could", "please", "want", "need", "some", "from", "something", "which", "what", "how",
];

/// Short Russian function words; content words are left to the stemmer.
#[rustfmt::skip]
const RUSSIAN_STOP_WORDS: &[&str] = &[
    "и", "в", "во", "не", "что", "он", "на", "я", "с", "со", "как", "а", "то", "все", "она", "так",
    "его", "но", "да", "ты", "к", "у", "же", "вы", "за", "бы", "по", "ее", "мне", "есть", "от",
    "из", "мы", "для", "это", "нужно", "надо", "мой", "моя", "мои", "хочу", "или", "о", "об",
];

/// The analyzer used for every text field and for query terms.
pub(crate) fn text_analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(MultilingualTokenizer::default())
        .filter(RemoveLongFilter::limit(MAX_TOKEN_BYTES))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .filter(stop_words())
        .filter(Stemmer::new(Language::English))
        .filter(Stemmer::new(Language::Russian))
        .build()
}

/// Same tokens without stop-word removal or stemming: surface forms, indexed separately and
/// matched by prefix and typo-tolerant (Levenshtein) queries, which need real words, not stems.
pub(crate) fn surface_analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(MultilingualTokenizer::default())
        .filter(RemoveLongFilter::limit(MAX_TOKEN_BYTES))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .build()
}

/// Runs an analyzer and returns `(position, text)` pairs.
pub(crate) fn analyze(analyzer: &mut TextAnalyzer, text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut stream = analyzer.token_stream(text);
    while let Some(token) = stream.next() {
        out.push((token.position, token.text.clone()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(analyzer: &mut TextAnalyzer, text: &str) -> Vec<String> {
        analyze(analyzer, text)
            .into_iter()
            .map(|(_, t)| t)
            .collect()
    }

    #[test]
    fn splits_ids_and_camel_case() {
        let mut a = surface_analyzer();
        assert_eq!(
            words(&mut a, "translate.multi@v2"),
            ["translate", "multi", "v2"]
        );
        assert_eq!(words(&mut a, "targetLanguage"), ["target", "language"]);
        assert_eq!(
            words(&mut a, "HTTPServer base64"),
            ["http", "server", "base64"]
        );
        assert_eq!(words(&mut a, "source_text"), ["source", "text"]);
        assert_eq!(words(&mut a, "  ...  "), Vec::<String>::new());
    }

    #[test]
    fn cjk_becomes_bigrams_with_positions() {
        let mut a = surface_analyzer();
        let tokens = analyze(&mut a, "翻译文本 to 中");
        let texts: Vec<&str> = tokens.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(texts, ["翻译", "译文", "文本", "to", "中"]);
        let positions: Vec<usize> = tokens.iter().map(|(p, _)| *p).collect();
        assert_eq!(positions, [0, 1, 2, 3, 4]);
        assert_eq!(words(&mut a, "テキスト"), ["テキ", "キス", "スト"]);
    }

    #[test]
    fn english_and_russian_stemming_coexist() {
        let mut a = text_analyzer();
        assert_eq!(
            words(&mut a, "Translating documents"),
            ["translat", "document"]
        );
        assert_eq!(words(&mut a, "перевод текстов"), ["перевод", "текст"]);
        assert_eq!(words(&mut a, "переводит текста"), ["перевод", "текст"]);
        // Stop words are dropped but positions keep the gap (phrase queries rely on it).
        let tokens = analyze(&mut a, "translate text to french");
        assert_eq!(tokens.last().map(|(p, _)| *p), Some(3));
        assert_eq!(words(&mut a, "Météo à Paris"), ["meteo", "pari"]);
    }

    #[test]
    fn never_panics_on_odd_input() {
        let mut a = text_analyzer();
        for text in [
            "",
            "\u{0}",
            "💥💥",
            "a\u{301}b",
            "ǅungla",
            "ΣΊΣΥΦΟΣ",
            "x".repeat(5000).as_str(),
        ] {
            let _ = analyze(&mut a, text);
        }
        // A single long token is dropped rather than indexed.
        assert!(words(&mut a, &"x".repeat(200)).is_empty());
    }
}
