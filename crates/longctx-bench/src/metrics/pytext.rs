//! Python `str` semantics the official metrics depend on (CPython 3.11, Unicode 14).
//!
//! The LongBench metrics are written against Python's `str`: `split()` splits on
//! `str.isspace()` characters, `lower()` applies full Unicode case mapping, and the `re`
//! module's `\b`, `\w` and `\d` are Unicode-aware with CPython's own definitions. Rust's
//! standard library differs in small ways (`char::is_whitespace` does not include the
//! `\x1c`–`\x1f` separators; `\w` of the `regex` crate includes combining marks), so these
//! helpers reproduce the Python behaviour.

use unicode_general_category::{get_general_category, GeneralCategory as G};

/// `str.isspace()` for one character: Unicode `White_Space` plus the four ASCII information
/// separators `\x1c`–`\x1f`, which CPython counts as whitespace (bidirectional class B/S).
pub(crate) fn is_space(c: char) -> bool {
    c.is_whitespace() || ('\x1c'..='\x1f').contains(&c)
}

/// `s.split()` without arguments: splits on runs of [`is_space`] and drops empty pieces.
pub(crate) fn split_whitespace(s: &str) -> impl Iterator<Item = &str> {
    s.split(is_space).filter(|w| !w.is_empty())
}

/// `str.lower()` (full case mapping, including final sigma, as CPython does).
pub(crate) fn lower(s: &str) -> String {
    s.to_lowercase()
}

/// `string.punctuation`: the 32 ASCII punctuation characters.
pub(crate) const ASCII_PUNCTUATION: &str = r##"!"#$%&'()*+,-./:;<=>?@[\]^_`{|}~"##;

/// CPython's `str.isalnum()` for one character (the `re` module's Unicode `\w` is this or
/// `_`): letters (Lu, Ll, Lt, Lm, Lo) and numerics (Nd, Nl, No).
pub(crate) fn is_alnum(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphanumeric();
    }
    matches!(
        get_general_category(c),
        G::UppercaseLetter
            | G::LowercaseLetter
            | G::TitlecaseLetter
            | G::ModifierLetter
            | G::OtherLetter
            | G::DecimalNumber
            | G::LetterNumber
            | G::OtherNumber
    )
}

/// Python `re`'s Unicode `\w`.
pub(crate) fn is_word(c: char) -> bool {
    c == '_' || is_alnum(c)
}

/// Python `re`'s Unicode `\d`: a decimal digit (general category Nd).
pub(crate) fn is_decimal(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_digit();
    }
    get_general_category(c) == G::DecimalNumber
}

/// `re.findall(r"\d+", s)`: maximal runs of decimal digits, left to right.
pub(crate) fn find_digit_runs(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in s.char_indices() {
        match (is_decimal(c), start) {
            (true, None) => start = Some(i),
            (false, Some(st)) => {
                out.push(&s[st..i]);
                start = None;
            }
            _ => {}
        }
    }
    if let Some(st) = start {
        out.push(&s[st..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_whitespace_includes_information_separators() {
        let s = "a\x1cb\x1fc\u{a0}d\u{3000}e\u{200b}f";
        assert_eq!(split_whitespace(s).collect::<Vec<_>>(), ["a", "b", "c", "d", "e\u{200b}f"]);
        assert_eq!(split_whitespace("  ").count(), 0);
    }

    #[test]
    fn word_chars_follow_cpython() {
        assert!(is_word('é') && is_word('中') && is_word('_') && is_word('²'));
        // A combining mark is alphabetic for Rust but not alnum for CPython.
        assert!('\u{0345}'.is_alphabetic() && !is_word('\u{0345}'));
        assert!(!is_word('-') && !is_word(' '));
    }

    #[test]
    fn digit_runs_are_unicode_decimal() {
        assert_eq!(find_digit_runs("p12 and ３4, ²5"), ["12", "３4", "5"]);
        assert!(find_digit_runs("none").is_empty());
    }

    #[test]
    fn lower_handles_final_sigma() {
        assert_eq!(lower("ΟΔΟΣ"), "οδος");
    }
}
