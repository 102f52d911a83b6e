//! Tiny glob patterns for allow/deny lists: `*` matches any run of characters (including
//! none), `?` exactly one; everything else is literal.

/// A compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    pattern: Vec<char>,
    source: String,
}

impl Glob {
    /// Compiles a pattern; `None` for an empty one.
    pub fn new(pattern: &str) -> Option<Self> {
        (!pattern.is_empty()).then(|| Self {
            pattern: pattern.chars().collect(),
            source: pattern.to_owned(),
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// True when the whole of `text` matches. Iterative matching with a single backtrack
    /// point (O(len(pattern) × len(text)) worst case, no recursion, no allocation).
    pub fn matches(&self, text: &str) -> bool {
        let p = &self.pattern;
        let char_at = |i: usize| text[i..].chars().next();
        let (mut pi, mut ti) = (0usize, 0usize);
        // (pattern index of the last `*`, text byte index it currently absorbs up to)
        let mut star: Option<(usize, usize)> = None;
        while let Some(c) = char_at(ti) {
            if pi < p.len() && (p[pi] == '?' || p[pi] == c) {
                pi += 1;
                ti += c.len_utf8();
            } else if pi < p.len() && p[pi] == '*' {
                star = Some((pi, ti));
                pi += 1;
            } else if let Some((sp, st)) = star {
                let absorbed = char_at(st).map_or(1, char::len_utf8);
                star = Some((sp, st + absorbed));
                pi = sp + 1;
                ti = st + absorbed;
            } else {
                return false;
            }
        }
        p[pi..].iter().all(|c| *c == '*')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, t: &str) -> bool {
        Glob::new(p).is_some_and(|g| g.matches(t))
    }

    #[test]
    fn globbing() {
        assert!(m("translate.*", "translate.multi@v2"));
        assert!(m("translate.*", "translate."));
        assert!(!m("translate.*", "translate"));
        assert!(!m("translate.*", "xtranslate.multi"));
        assert!(m("*", ""));
        assert!(m("a?c", "abc"));
        assert!(!m("a?c", "ac"));
        assert!(m("*.example.com", "https://hub.example.com"));
        assert!(m("*a*b*c", "xxaxxbxxbc"));
        assert!(!m("*a*b*c", "xxaxxbxxb"));
        assert!(m("exact", "exact"));
        assert!(!m("exact", "exactly"));
        assert!(m("日本*", "日本語"));
        assert!(Glob::new("").is_none());
        assert_eq!(
            Glob::new("a*").map(|g| g.as_str().to_owned()),
            Some("a*".into())
        );
    }
}
