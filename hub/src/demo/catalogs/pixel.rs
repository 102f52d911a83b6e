//! "Pixel Forge": image generation and inspection, OCR of bitmap fonts and check digits,
//! audio utilities.

use serde_json::{Value, json};

use super::{input, output, prop, prop_with, text_prop};
use crate::demo::spec::CapabilitySpec as Cap;

/// The computations, from the two modules that hold them.
mod ops {
    pub use super::super::image_ops::*;
    pub use super::super::signal_ops::*;
}

const IMAGE: &str = "pixel-image";
const OCR: &str = "pixel-ocr";
const AUDIO: &str = "pixel-audio";

/// A 1×1 PNG, the example for the image inspectors.
pub(crate) const ONE_PIXEL_PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";

fn color(description: &str) -> Value {
    prop_with(
        "string",
        description,
        json!({"pattern": "^#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$"}),
    )
}

fn base64_prop(description: &str) -> Value {
    prop_with("string", description, json!({"maxLength": 1_400_000}))
}

/// The catalog.
pub fn capabilities() -> Vec<Cap> {
    let mut caps = images();
    caps.extend(ocr());
    caps.extend(audio());
    caps
}

fn images() -> Vec<Cap> {
    vec![
        Cap::new(IMAGE, "image.placeholder_svg@v1", "Placeholder image", "image",
            "Generate a placeholder image (SVG) of a given size with a centred caption and colours.",
            ops::placeholder_svg)
            .input(input(vec![
                ("width", prop_with("integer", "Width in pixels", json!({"minimum": 1, "maximum": 4096}))),
                ("height", prop_with("integer", "Height in pixels", json!({"minimum": 1, "maximum": 4096}))),
                ("text", prop_with("string", "Caption (default: the size)", json!({"maxLength": 200}))),
                ("background", color("Background colour, hex")),
                ("foreground", color("Text colour, hex")),
            ], &["width", "height"]))
            .output(output(&[("svg", "string"), ("mime_type", "string"), ("bytes", "integer")]))
            .quality(4, 1.0)
            .example(json!({"width": 320, "height": 180, "text": "Hello"})),
        Cap::new(IMAGE, "image.identicon@v1", "Identicon avatar", "image",
            "Generate a symmetric 5×5 identicon avatar (SVG) from any string, e.g. a user name or e-mail hash.",
            ops::identicon)
            .input(input(vec![
                ("seed", prop_with("string", "Any string; equal strings give equal avatars", json!({"maxLength": 1000}))),
                ("size", prop_with("integer", "Image size in pixels", json!({"minimum": 16, "maximum": 1024, "default": 250}))),
            ], &["seed"]))
            .output(output(&[("svg", "string"), ("grid", "array"), ("color", "string")]))
            .price(0.002).quality(6, 0.999)
            .example(json!({"seed": "ada@example.com"})),
        Cap::new(IMAGE, "image.bar_chart_svg@v1", "Bar chart", "image",
            "Render a bar chart (SVG) from numbers with optional labels and title.",
            ops::bar_chart)
            .input(input(vec![
                ("values", prop_with("array", "Bar heights (non-negative)", json!({"items": {"type": "number", "minimum": 0}, "minItems": 1, "maxItems": 50}))),
                ("labels", prop_with("array", "Bar labels", json!({"items": {"type": "string", "maxLength": 40}, "maxItems": 50}))),
                ("title", prop_with("string", "Chart title", json!({"maxLength": 120}))),
            ], &["values"]))
            .output(output(&[("svg", "string"), ("bars", "integer")]))
            .price(0.005).quality(12, 0.998)
            .example(json!({"values": [3, 7, 5], "labels": ["Mon", "Tue", "Wed"], "title": "Sales"})),
        Cap::new(IMAGE, "image.digit_bitmap@v1", "Digits to bitmap", "image",
            "Render digits in a 3×5 pixel font as rows of `#` and `.` (the input format of ocr.bitmap_digits).",
            ops::digit_bitmap)
            .input(input(vec![("text", prop_with("string", "Digits and spaces", json!({"pattern": "^[0-9 ]{1,64}$"})))], &["text"]))
            .output(output(&[("rows", "array"), ("width", "integer")]))
            .quality(3, 1.0)
            .example(json!({"text": "2024"})),
        Cap::new(IMAGE, "image.color_convert@v1", "Colour conversion", "image",
            "Convert a hex colour to RGB and HSL.",
            ops::color_convert)
            .input(input(vec![("color", color("Colour, hex like `#ff8800` or `f80`"))], &["color"]))
            .output(output(&[("hex", "string"), ("rgb", "object"), ("hsl", "object")]))
            .quality(2, 1.0)
            .example(json!({"color": "#ff8800"})),
        Cap::new(IMAGE, "image.palette@v1", "Colour palette", "image",
            "Build a colour palette from a base colour: complementary, triadic, analogous or monochrome.",
            ops::palette)
            .input(input(vec![
                ("color", color("Base colour, hex")),
                ("scheme", prop_with("string", "Palette scheme", json!({"enum": ["complementary", "triadic", "analogous", "monochrome"], "default": "triadic"}))),
            ], &["color"]))
            .output(output(&[("colors", "array"), ("scheme", "string")]))
            .price(0.003).quality(4, 1.0)
            .example(json!({"color": "#3366cc", "scheme": "triadic"})),
        Cap::new(IMAGE, "image.contrast_ratio@v1", "Colour contrast check", "accessibility",
            "WCAG 2 contrast ratio between text and background colours, with AA and AAA pass/fail.",
            ops::contrast_ratio)
            .input(input(vec![
                ("foreground", color("Text colour, hex")),
                ("background", color("Background colour, hex")),
            ], &["foreground", "background"]))
            .output(output(&[("ratio", "number"), ("aa_normal", "boolean"), ("aa_large", "boolean"), ("aaa_normal", "boolean")]))
            .quality(2, 1.0)
            .example(json!({"foreground": "#777777", "background": "#ffffff"})),
        Cap::new(IMAGE, "image.fit_dimensions@v1", "Resize dimensions", "image",
            "Scale image dimensions to fit inside a bounding box while keeping the aspect ratio.",
            ops::fit_dimensions)
            .input(input(vec![
                ("width", prop_with("integer", "Original width", json!({"minimum": 1}))),
                ("height", prop_with("integer", "Original height", json!({"minimum": 1}))),
                ("max_width", prop_with("integer", "Box width", json!({"minimum": 1}))),
                ("max_height", prop_with("integer", "Box height", json!({"minimum": 1}))),
            ], &["width", "height", "max_width", "max_height"]))
            .output(output(&[("width", "integer"), ("height", "integer"), ("scale", "number")]))
            .quality(2, 1.0)
            .example(json!({"width": 4000, "height": 3000, "max_width": 1024, "max_height": 1024})),
        Cap::new(IMAGE, "image.inspect@v1", "Image header inspection", "image",
            "Detect the format (PNG, GIF, JPEG, BMP) and pixel size of an image from its base64 bytes.",
            ops::inspect)
            .input(input(vec![("data_base64", base64_prop("The image file, base64"))], &["data_base64"]))
            .output(output(&[("format", "string"), ("width", "integer"), ("height", "integer"), ("bytes", "integer")]))
            .price(0.004).quality(8, 0.998)
            .example(json!({"data_base64": ONE_PIXEL_PNG})),
        Cap::new(IMAGE, "image.data_uri@v1", "Data URI builder", "image",
            "Wrap base64 file bytes into a `data:` URI for embedding in HTML or CSS.",
            ops::data_uri)
            .input(input(vec![
                ("data_base64", base64_prop("File bytes, base64")),
                ("mime_type", prop_with("string", "MIME type, e.g. `image/png`", json!({"pattern": "^[a-z]+/[a-z0-9.+-]+$"}))),
            ], &["data_base64", "mime_type"]))
            .output(output(&[("data_uri", "string"), ("bytes", "integer")]))
            .quality(2, 1.0)
            .example(json!({"data_base64": ONE_PIXEL_PNG, "mime_type": "image/png"})),
        Cap::new(IMAGE, "image.blend_colors@v1", "Colour blending", "image",
            "Mix two colours in a given proportion.",
            ops::blend_colors)
            .input(input(vec![
                ("color_a", color("First colour, hex")),
                ("color_b", color("Second colour, hex")),
                ("ratio", prop_with("number", "Share of the second colour, 0–1", json!({"minimum": 0, "maximum": 1, "default": 0.5}))),
            ], &["color_a", "color_b"]))
            .output(output(&[("hex", "string")]))
            .quality(2, 1.0)
            .example(json!({"color_a": "#ff0000", "color_b": "#0000ff"})),
    ]
}

fn ocr() -> Vec<Cap> {
    vec![
        Cap::new(OCR, "ocr.svg_text@v1", "SVG text extraction", "ocr",
            "Extract the visible text of an SVG image (its text elements), in document order.",
            ops::svg_text)
            .input(input(vec![("svg", text_prop("The SVG document"))], &["svg"]))
            .output(output(&[("texts", "array"), ("text", "string")]))
            .price(0.01).quality(15, 0.997)
            .example(json!({"svg": "<svg xmlns=\"http://www.w3.org/2000/svg\"><text x=\"1\" y=\"9\">Invoice &amp; receipt</text><text><tspan>Total: 42</tspan></text></svg>"})),
        Cap::new(OCR, "ocr.bitmap_digits@v1", "Bitmap digit recognition", "ocr",
            "Recognise digits drawn in a 3×5 pixel font: five rows of `#` (ink) and `.` (paper), glyphs separated by blank columns.",
            ops::bitmap_digits)
            .input(input(vec![("rows", prop_with("array", "Exactly five rows of equal length",
                json!({"items": {"type": "string", "maxLength": 1000}, "minItems": 5, "maxItems": 5})))], &["rows"]))
            .output(output(&[("text", "string"), ("unrecognized", "integer")]))
            .price(0.02).quality(20, 0.995)
            .example(json!({"rows": ["###.###.###.#.#", "..#.#.#...#.#.#", "###.#.#.###.###", "#...#.#.#.....#", "###.###.###...#"]})),
        Cap::new(OCR, "ocr.ean13@v1", "EAN-13 barcode check digit", "ocr",
            "Compute or verify the check digit of an EAN-13 barcode number (12 or 13 digits).",
            ops::ean13)
            .input(input(vec![("code", prop_with("string", "12 digits (compute) or 13 digits (verify)", json!({"pattern": "^[0-9]{12,13}$"})))], &["code"]))
            .output(output(&[("check_digit", "integer"), ("valid", "boolean"), ("full_code", "string")]))
            .quality(2, 1.0)
            .example(json!({"code": "400638133393"})),
        Cap::new(OCR, "ocr.mrz_check_digit@v1", "Passport MRZ check digit", "ocr",
            "ICAO 9303 check digit of a machine-readable-zone field (passport number, dates), characters 0-9, A-Z and <.",
            ops::mrz_check_digit)
            .input(input(vec![("field", prop_with("string", "MRZ field", json!({"pattern": "^[0-9A-Z<]{1,44}$"})))], &["field"]))
            .output(output(&[("check_digit", "integer")]))
            .price(0.003).quality(2, 1.0)
            .example(json!({"field": "L898902C3"})),
        Cap::new(OCR, "ocr.luhn@v1", "Luhn checksum", "ocr",
            "Validate a number with the Luhn algorithm (card numbers, IMEI) and compute its check digit.",
            ops::luhn)
            .input(input(vec![("number", prop_with("string", "Digits, spaces allowed", json!({"pattern": "^[0-9 ]{2,64}$"})))], &["number"]))
            .output(output(&[("valid", "boolean"), ("check_digit_if_appended", "integer")]))
            .quality(2, 1.0)
            .example(json!({"number": "4539 1488 0343 6467"})),
    ]
}

fn audio() -> Vec<Cap> {
    vec![
        Cap::new(AUDIO, "audio.tone_wav@v1", "Tone generator", "audio",
            "Generate a sine-wave tone as a WAV file (8 kHz, 8-bit mono), base64 encoded.",
            ops::tone_wav)
            .input(input(vec![
                ("frequency_hz", prop_with("number", "Pitch in hertz", json!({"minimum": 20, "maximum": 4000}))),
                ("duration_ms", prop_with("integer", "Length in milliseconds", json!({"minimum": 10, "maximum": 2000}))),
                ("amplitude", prop_with("number", "Volume, 0–1", json!({"minimum": 0, "maximum": 1, "default": 0.5}))),
            ], &["frequency_hz", "duration_ms"]))
            .output(output(&[("wav_base64", "string"), ("mime_type", "string"), ("bytes", "integer"), ("samples", "integer")]))
            .price(0.01).quality(10, 0.998)
            .example(json!({"frequency_hz": 440, "duration_ms": 100})),
        Cap::new(AUDIO, "audio.wav_info@v1", "WAV file inspection", "audio",
            "Read the format of a WAV file from its base64 bytes: channels, sample rate, bit depth, duration.",
            ops::wav_info)
            .input(input(vec![("wav_base64", base64_prop("The WAV file, base64"))], &["wav_base64"]))
            .output(output(&[("channels", "integer"), ("sample_rate", "integer"), ("bits_per_sample", "integer"),
                ("duration_ms", "number"), ("data_bytes", "integer")]))
            .price(0.002).quality(5, 0.999)
            .example(json!({"wav_base64": "UklGRjAAAABXQVZFZm10IBAAAAABAAEAQB8AAEAfAAABAAgAZGF0YQwAAACAgICAgICAgICAgIA="})),
        Cap::new(AUDIO, "audio.note_frequency@v1", "Note to frequency", "audio",
            "Frequency in hertz and MIDI number of a musical note such as A4, C#5 or Eb3 (equal temperament, A4 = 440 Hz).",
            ops::note_frequency)
            .input(input(vec![("note", prop_with("string", "Note name with octave", json!({"pattern": "^[A-Ga-g][#b]?-?[0-9]$"})))], &["note"]))
            .output(output(&[("frequency_hz", "number"), ("midi", "integer")]))
            .quality(2, 1.0)
            .example(json!({"note": "C#5"})),
        Cap::new(AUDIO, "audio.frequency_to_note@v1", "Frequency to note", "audio",
            "Nearest musical note to a frequency, with the offset in cents (tuner).",
            ops::frequency_to_note)
            .input(input(vec![("frequency_hz", prop_with("number", "Frequency in hertz", json!({"minimum": 8, "maximum": 20000})))], &["frequency_hz"]))
            .output(output(&[("note", "string"), ("midi", "integer"), ("cents", "number")]))
            .quality(2, 1.0)
            .example(json!({"frequency_hz": 445})),
        Cap::new(AUDIO, "audio.bpm_timing@v1", "Tempo timing", "audio",
            "Milliseconds per beat, bar, eighth and sixteenth note at a tempo (BPM).",
            ops::bpm_timing)
            .input(input(vec![
                ("bpm", prop_with("number", "Beats per minute", json!({"minimum": 20, "maximum": 400}))),
                ("beats_per_bar", prop_with("integer", "Time signature numerator", json!({"minimum": 1, "maximum": 16, "default": 4}))),
            ], &["bpm"]))
            .output(output(&[("beat_ms", "number"), ("bar_ms", "number"), ("eighth_ms", "number"), ("sixteenth_ms", "number")]))
            .quality(2, 1.0)
            .example(json!({"bpm": 120})),
        Cap::new(AUDIO, "audio.dtmf@v1", "DTMF tones", "audio",
            "The dual-tone (DTMF) frequency pair of each telephone keypad key.",
            ops::dtmf)
            .input(input(vec![("keys", prop_with("string", "Keypad keys: 0-9, *, #, A-D", json!({"pattern": "^[0-9*#A-Da-d]{1,64}$"})))], &["keys"]))
            .output(output(&[("tones", "array")]))
            .quality(2, 1.0)
            .example(json!({"keys": "911"})),
        Cap::new(AUDIO, "audio.decibels@v1", "Decibel conversion", "audio",
            "Convert an amplitude or power ratio to decibels, or decibels back to a ratio.",
            ops::decibels)
            .input(input(vec![
                ("value", prop("number", "The ratio or the decibels")),
                ("direction", prop_with("string", "Conversion direction", json!({"enum": ["ratio_to_db", "db_to_ratio"]}))),
                ("kind", prop_with("string", "Amplitude (20·log10) or power (10·log10)", json!({"enum": ["amplitude", "power"], "default": "amplitude"}))),
            ], &["value", "direction"]))
            .output(output(&[("value", "number"), ("unit", "string")]))
            .quality(2, 1.0)
            .example(json!({"value": 2, "direction": "ratio_to_db"})),
        Cap::new(AUDIO, "audio.speech_duration@v1", "Speech duration estimate", "audio",
            "Estimate how long a text takes to read aloud at a speaking rate.",
            ops::speech_duration)
            .input(input(vec![
                ("text", text_prop("The script")),
                ("words_per_minute", prop_with("integer", "Speaking rate", json!({"minimum": 60, "maximum": 400, "default": 150}))),
            ], &["text"]))
            .output(output(&[("seconds", "number"), ("words", "integer")]))
            .price(0.001).quality(3, 1.0)
            .example(json!({"text": "Four score and seven years ago our fathers brought forth on this continent a new nation."})),
        Cap::new(AUDIO, "audio.morse_timing@v1", "Morse audio timing", "audio",
            "Timing of text sent as Morse audio at a speed in words per minute: unit length, total duration and element count.",
            ops::morse_timing)
            .input(input(vec![
                ("text", text_prop("Text to send")),
                ("wpm", prop_with("integer", "Speed in words per minute (PARIS standard)", json!({"minimum": 5, "maximum": 60, "default": 20}))),
            ], &["text"]))
            .output(output(&[("unit_ms", "number"), ("total_ms", "number"), ("elements", "integer"), ("morse", "string")]))
            .price(0.002).quality(4, 1.0)
            .example(json!({"text": "PARIS", "wpm": 20})),
    ]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::{Value, json};

    fn run(cid: &str, input: Value) -> Result<Value, String> {
        let caps = super::capabilities();
        let cap = caps.iter().find(|c| c.capability_id == cid).unwrap();
        (cap.op)(input.as_object().unwrap())
    }

    #[test]
    fn known_answers() {
        let inspected = run(
            "image.inspect@v1",
            json!({"data_base64": super::ONE_PIXEL_PNG}),
        )
        .unwrap();
        assert_eq!(
            (inspected["format"].as_str(), inspected["width"].as_u64()),
            (Some("png"), Some(1))
        );
        // GIF89a, 3×2.
        let gif = base64_of(&[b'G', b'I', b'F', b'8', b'9', b'a', 3, 0, 2, 0, 0, 0, 0]);
        let g = run("image.inspect@v1", json!({"data_base64": gif})).unwrap();
        assert_eq!(
            (
                g["format"].as_str(),
                g["width"].as_u64(),
                g["height"].as_u64()
            ),
            (Some("gif"), Some(3), Some(2))
        );
        assert!(run("image.inspect@v1", json!({"data_base64": "!!"})).is_err());
        let rows = run("image.digit_bitmap@v1", json!({"text": "907 1"})).unwrap()["rows"].clone();
        assert_eq!(
            run("ocr.bitmap_digits@v1", json!({"rows": rows})).unwrap()["text"],
            "907 1"
        );
        assert_eq!(run("ocr.bitmap_digits@v1", json!({"rows": ["###.###.###.#.#", "..#.#.#...#.#.#", "###.#.#.###.###", "#...#.#.#.....#", "###.###.###...#"]})).unwrap()["text"], "2024");
        assert_eq!(
            run("ocr.ean13@v1", json!({"code": "400638133393"})).unwrap()["check_digit"],
            1
        );
        assert_eq!(
            run("ocr.ean13@v1", json!({"code": "4006381333932"})).unwrap()["valid"],
            false
        );
        assert_eq!(
            run("ocr.mrz_check_digit@v1", json!({"field": "L898902C3"})).unwrap()["check_digit"],
            6
        );
        assert_eq!(
            run("ocr.luhn@v1", json!({"number": "79927398713"})).unwrap()["valid"],
            true
        );
        assert_eq!(
            run(
                "ocr.svg_text@v1",
                json!({"svg": "<svg><text>a &lt; b</text></svg>"})
            )
            .unwrap()["texts"],
            json!(["a < b"])
        );
        assert_eq!(
            run("image.color_convert@v1", json!({"color": "f80"})).unwrap()["rgb"],
            json!({"r": 255, "g": 136, "b": 0})
        );
        assert_eq!(
            run(
                "image.contrast_ratio@v1",
                json!({"foreground": "#000", "background": "#fff"})
            )
            .unwrap()["ratio"],
            21.0
        );
        assert_eq!(
            run(
                "image.blend_colors@v1",
                json!({"color_a": "#ff0000", "color_b": "#0000ff"})
            )
            .unwrap()["hex"],
            "#800080"
        );
        let fit = run(
            "image.fit_dimensions@v1",
            json!({"width": 4000, "height": 3000, "max_width": 1024, "max_height": 1024}),
        )
        .unwrap();
        assert_eq!(
            (fit["width"].as_u64(), fit["height"].as_u64()),
            (Some(1024), Some(768))
        );
        let wav = run(
            "audio.tone_wav@v1",
            json!({"frequency_hz": 440, "duration_ms": 250}),
        )
        .unwrap();
        let info = run(
            "audio.wav_info@v1",
            json!({"wav_base64": wav["wav_base64"]}),
        )
        .unwrap();
        assert_eq!(
            (info["sample_rate"].as_u64(), info["duration_ms"].as_f64()),
            (Some(8000), Some(250.0))
        );
        assert_eq!(
            run("audio.note_frequency@v1", json!({"note": "A4"})).unwrap(),
            json!({"frequency_hz": 440.0, "midi": 69})
        );
        assert_eq!(
            run(
                "audio.frequency_to_note@v1",
                json!({"frequency_hz": 261.63})
            )
            .unwrap()["note"],
            "C4"
        );
        assert_eq!(
            run("audio.dtmf@v1", json!({"keys": "1"})).unwrap()["tones"],
            json!([{"key": "1", "low_hz": 697, "high_hz": 1209}])
        );
        assert_eq!(
            run(
                "audio.decibels@v1",
                json!({"value": 20, "direction": "db_to_ratio"})
            )
            .unwrap()["value"],
            10.0
        );
        // PARIS is 50 units by definition of the word-per-minute speed.
        let paris = run("audio.morse_timing@v1", json!({"text": "PARIS", "wpm": 20})).unwrap();
        assert_eq!(
            (paris["unit_ms"].as_f64(), paris["total_ms"].as_f64()),
            (Some(60.0), Some(2580.0))
        );
    }

    fn base64_of(bytes: &[u8]) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }
}
