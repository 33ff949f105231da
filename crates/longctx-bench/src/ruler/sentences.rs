//! Sentence splitting for the essay haystack, where RULER uses NLTK's Punkt
//! (`sent_tokenize`). This is a rule-based stand-in, not a port: a sentence ends after `.`,
//! `!` or `?` (and any closing quotes or brackets) followed by whitespace and then an
//! uppercase letter, a digit or an opening quote/bracket — unless the word before the
//! period is a common abbreviation or a single letter. Needles are inserted between
//! sentences, so only where the boundaries fall differs from RULER, not what a needle is.

const ABBREVIATIONS: [&str; 16] =
    ["mr", "mrs", "ms", "dr", "st", "prof", "inc", "ltd", "co", "vs", "etc", "e.g", "i.e", "jr", "sr", "u.s"];

fn closes(c: char) -> bool {
    matches!(c, '"' | '\'' | ')' | ']' | '\u{201d}' | '\u{2019}')
}

fn opens(c: char) -> bool {
    c.is_uppercase() || c.is_ascii_digit() || matches!(c, '"' | '\'' | '(' | '[' | '\u{201c}' | '\u{2018}')
}

/// The sentences of `text` (trimmed, in order; joined with single spaces they give back
/// the text when it has single spaces between sentences).
pub(crate) fn split(text: &str) -> Vec<String> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < chars.len() {
        let (_, c) = chars[i];
        if matches!(c, '.' | '!' | '?') {
            let mut j = i + 1;
            while j < chars.len() && (closes(chars[j].1) || matches!(chars[j].1, '.' | '!' | '?')) {
                j += 1;
            }
            let end = chars.get(j).map_or(text.len(), |p| p.0);
            let mut k = j;
            while k < chars.len() && chars[k].1.is_whitespace() {
                k += 1;
            }
            let boundary =
                k > j && k < chars.len() && opens(chars[k].1) && !(c == '.' && abbreviation(&text[start..chars[i].0]));
            if boundary {
                let s = text[start..end].trim();
                if !s.is_empty() {
                    out.push(s.to_string());
                }
                start = chars[k].0;
                i = k;
                continue;
            }
            i = j;
            continue;
        }
        i += 1;
    }
    let s = text[start..].trim();
    if !s.is_empty() {
        out.push(s.to_string());
    }
    out
}

/// Whether the word ending `before` (the text up to a period) is an abbreviation.
fn abbreviation(before: &str) -> bool {
    let word = before.rsplit(char::is_whitespace).next().unwrap_or("");
    let word = word.trim_start_matches(['"', '\'', '(', '[']);
    let lower = word.to_lowercase();
    (word.chars().count() == 1 && word.chars().all(char::is_alphabetic)) || ABBREVIATIONS.contains(&lower.as_str())
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn splits_at_sentence_ends_only() {
        let s = split("It works. Mr. Smith said \"yes.\" Then 3 left! Why? e.g. this stays. A. B. Jones came.");
        assert_eq!(
            s,
            ["It works.", "Mr. Smith said \"yes.\"", "Then 3 left!", "Why? e.g. this stays.", "A. B. Jones came."]
        );
        assert_eq!(split("no end"), ["no end"]);
        assert!(split("  ").is_empty());
        assert_eq!(split("x.y and 3.5 stay."), ["x.y and 3.5 stay."]);
    }
}
