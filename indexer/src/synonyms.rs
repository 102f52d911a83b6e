//! A small multilingual concept table for query expansion.
//!
//! BM25 only matches words that occur in a document, so `погода` cannot find a capability
//! described only in English, and `picture` misses one that says `image`. When a query word is
//! an alias of a concept below, the other aliases are added to the query as optional clauses
//! with a low weight ([`crate::query`]), so a document using the query's own words still ranks
//! first. Aliases are single words (CJK: two characters, one bigram) in English, Russian,
//! Chinese, Spanish, French and German; the table is stemmed with the index analyzer at start-up.

use std::collections::HashMap;

use tantivy::tokenizer::TextAnalyzer;

use crate::analysis::analyze;

/// Concept groups. Keep aliases unambiguous inside this catalog's domain: a wrong expansion
/// costs precision on every query that uses the word.
#[rustfmt::skip]
const CONCEPTS: &[&[&str]] = &[
    &[
        "translate", "translation", "translator", "перевод", "перевести", "переводчик",
        "翻译", "traducir", "traducción", "traduire", "traduction", "übersetzen", "übersetzung",
    ],
    &[
        "weather", "forecast", "meteorological", "погода", "погоды", "прогноз", "天气", "预报",
        "气象", "clima", "météo", "wetter",
    ],
    &[
        "ocr", "scan", "scanned", "digitize", "распознавание", "распознать", "识别", "扫描",
        "reconocimiento", "numériser",
    ],
    &[
        "image", "picture", "photo", "photograph", "изображение", "картинка", "фото",
        "фотография", "图片", "图像", "照片", "imagen", "foto", "bild",
    ],
    &["speech", "voice", "spoken", "речь", "голос", "语音", "声音", "voz", "voix", "stimme"],
    &["audio", "sound", "recording", "аудио", "звук", "запись", "音频", "录音", "sonido"],
    &[
        "transcribe", "transcription", "transcript", "dictation", "транскрипция",
        "расшифровка", "转录", "转写", "transcribir", "transcrire",
    ],
    &[
        "summarize", "summarise", "summary", "summarization", "tldr", "digest", "резюме",
        "суммаризация", "摘要", "总结", "概括", "resumir", "resumen", "résumer",
    ],
    &["stock", "equity", "ticker", "акция", "акции", "股票", "股价", "acciones", "aktie"],
    &[
        "currency", "fx", "forex", "валюта", "валюты", "汇率", "货币", "外汇", "divisa",
        "moneda", "devise", "währung",
    ],
    &[
        "legal", "law", "lawyer", "юридический", "юрист", "право", "法律", "律师", "jurídico",
        "juridique", "rechtlich",
    ],
    &["contract", "agreement", "договор", "контракт", "合同", "协议", "contrato", "contrat", "vertrag"],
    &[
        "code", "programming", "software", "код", "программирование", "代码", "编程", "código",
    ],
    &[
        "geocode", "geocoding", "address", "coordinates", "адрес", "координаты", "地址", "坐标",
        "dirección", "adresse",
    ],
    &["map", "maps", "карта", "地图", "mapa", "carte", "karte"],
    &[
        "health", "medical", "clinical", "healthcare", "здоровье", "медицинский", "медицина",
        "健康", "医疗", "医学", "salud", "médical", "santé", "gesundheit",
    ],
    &["symptom", "symptoms", "diagnosis", "симптом", "симптомы", "диагноз", "症状", "诊断", "síntoma"],
    &["email", "mail", "почта", "邮件", "邮箱", "correo", "courriel"],
    &["sentiment", "emotion", "mood", "тональность", "эмоция", "情感", "情绪", "sentimiento"],
    &["random", "randomness", "entropy", "случайный", "случайные", "随机", "aleatorio", "aléatoire"],
    &["document", "pdf", "документ", "文档", "文件", "documento"],
    &["search", "lookup", "поиск", "搜索", "检索", "búsqueda", "recherche", "suche"],
    &[
        "crypto", "cryptocurrency", "bitcoin", "blockchain", "криптовалюта", "биткоин",
        "加密", "区块", "比特", "criptomoneda",
    ],
    &["video", "clip", "видео", "视频", "vídeo", "vidéo"],
    &["music", "song", "melody", "музыка", "песня", "音乐", "歌曲", "música", "musique", "musik"],
    &["news", "headlines", "новости", "新闻", "noticias", "nouvelles", "nachrichten"],
    &["verify", "verification", "validate", "validation", "проверка", "проверить", "验证", "校验", "verificar", "vérifier"],
    &["invoice", "receipt", "bill", "счет", "чек", "发票", "收据", "factura", "facture", "rechnung"],
    &["face", "faces", "facial", "лицо", "лица", "人脸", "面部", "cara", "visage", "gesicht"],
    &["car", "vehicle", "автомобиль", "машина", "汽车", "车辆", "coche", "voiture"],
    &["flight", "flights", "airline", "рейс", "авиабилет", "航班", "vuelo", "flug"],
    &["tax", "vat", "налог", "ндс", "税", "税务", "impuesto", "impôt", "steuer"],
];

/// Most aliases added for one query word (the table's groups are small anyway).
const MAX_EXPANSIONS_PER_WORD: usize = 16;

/// The stemmed concept table.
#[derive(Debug, Default)]
pub(crate) struct Synonyms {
    /// stem → concept indices.
    concepts_of: HashMap<String, Vec<usize>>,
    /// concept index → member stems.
    members: Vec<Vec<String>>,
}

impl Synonyms {
    pub fn new(analyzer: &mut TextAnalyzer) -> Self {
        let mut table = Synonyms::default();
        for (concept, aliases) in CONCEPTS.iter().enumerate() {
            let mut members: Vec<String> = Vec::new();
            for alias in *aliases {
                // An alias that analyzes to several tokens (or none) cannot be a single term.
                if let [(_, stem)] = analyze(analyzer, alias).as_slice()
                    && !members.contains(stem)
                {
                    members.push(stem.clone());
                }
            }
            for stem in &members {
                table
                    .concepts_of
                    .entry(stem.clone())
                    .or_default()
                    .push(concept);
            }
            table.members.push(members);
        }
        table
    }

    /// Every alias stem of the table.
    pub fn members(&self) -> impl Iterator<Item = &str> {
        self.concepts_of.keys().map(String::as_str)
    }

    /// Other stems sharing a concept with `stem`, excluding `stem` and anything in `skip`.
    pub fn expand(&self, stem: &str, skip: &[String]) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for &concept in self
            .concepts_of
            .get(stem)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            for member in &self.members[concept] {
                if member != stem
                    && !skip.contains(member)
                    && !out.contains(&member.as_str())
                    && out.len() < MAX_EXPANSIONS_PER_WORD
                {
                    out.push(member);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::text_analyzer;

    #[test]
    fn every_alias_is_one_term() {
        let mut analyzer = text_analyzer();
        for aliases in CONCEPTS {
            for alias in *aliases {
                let tokens = analyze(&mut analyzer, alias);
                assert_eq!(tokens.len(), 1, "alias {alias:?} analyzes to {tokens:?}");
            }
        }
    }

    #[test]
    fn expands_across_languages() {
        let mut analyzer = text_analyzer();
        let table = Synonyms::new(&mut analyzer);
        let stem = |w: &str| analyze(&mut text_analyzer(), w)[0].1.clone();
        let expanded = table.expand(&stem("погода"), &[]);
        assert!(expanded.contains(&stem("weather").as_str()), "{expanded:?}");
        assert!(expanded.contains(&"天气"));
        assert!(table.expand("zzzz", &[]).is_empty());
        let skip = vec![stem("weather")];
        assert!(
            !table
                .expand(&stem("forecast"), &skip)
                .contains(&skip[0].as_str())
        );
    }
}
