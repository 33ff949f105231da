//! Truncation in token space with the target model's tokenizer.
//!
//! Token counts include the tokenizer's special tokens (BOS …), as LongBench's `pred.py`
//! counts them, so that a budget means what the model receives.

use longctx_core::Tokenizer;
use serde::{Deserialize, Serialize};

use crate::Error;

/// Which part of an over-long text is cut out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// LongBench's rule: keep the text of the first `budget / 2` and of the last `budget / 2`
    /// tokens (each counted with special tokens, decoded without them).
    Middle,
    /// Cut the end: keep the start.
    End,
    /// Cut the start: keep the end.
    Start,
}

impl std::str::FromStr for Side {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "middle" => Ok(Self::Middle),
            "end" => Ok(Self::End),
            "start" => Ok(Self::Start),
            other => Err(Error::Config(format!("unknown truncation side {other:?} (middle, end or start)"))),
        }
    }
}

/// A text fitted to a token budget, with the counts before and after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Truncation {
    /// The text after truncation (the input itself when it fits).
    pub text: String,
    /// Tokens of the input, special tokens included.
    pub tokens_before: usize,
    /// Tokens of `text` when encoded again, special tokens included.
    pub tokens_after: usize,
    /// Whether anything was cut.
    pub truncated: bool,
}

/// Fits `text` into `budget` tokens by cutting from `side`.
///
/// The middle rule is exactly LongBench's (`longctx_bench::prompt::truncate_middle`). End and
/// start truncation keep `budget - s` content tokens, where `s` is the number of special
/// tokens the tokenizer adds, so that the re-encoded text counts `budget` tokens whenever the
/// kept tokens re-encode to themselves.
pub fn truncate(text: &str, tokenizer: &dyn Tokenizer, budget: usize, side: Side) -> Result<Truncation, Error> {
    let with_special = tokenizer.encode(text, true)?;
    let before = with_special.len();
    if before <= budget {
        return Ok(Truncation {
            text: text.to_string(),
            tokens_before: before,
            tokens_after: before,
            truncated: false,
        });
    }
    let kept = match side {
        Side::Middle => {
            longctx_bench::prompt::truncate_middle(text, tokenizer, budget)
                .map_err(|e| Error::Config(e.to_string()))?
                .text
        }
        Side::End | Side::Start => {
            let content = tokenizer.encode(text, false)?;
            let specials = before.saturating_sub(content.len());
            let keep = budget.saturating_sub(specials).min(content.len());
            let ids = if side == Side::End { &content[..keep] } else { &content[content.len() - keep..] };
            tokenizer.decode(ids, true)?
        }
    };
    let after = tokenizer.encode(&kept, true)?.len();
    Ok(Truncation { text: kept, tokens_before: before, tokens_after: after, truncated: true })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Chars;

    /// A small deterministic generator of texts (xorshift), so the property tests need no crate.
    fn texts() -> Vec<String> {
        let alphabet: Vec<char> = "ab c\ndé中文😀 ".chars().collect();
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        (0..300)
            .map(|i| {
                (0..i % 97)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        alphabet[(state % alphabet.len() as u64) as usize]
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn properties_hold_for_every_side_and_budget() {
        for text in texts() {
            let n = text.chars().count() + 1;
            for budget in [1, 2, 3, 7, 16, 50, 95, 200] {
                for side in [Side::Middle, Side::End, Side::Start] {
                    let t = truncate(&text, &Chars, budget, side).unwrap();
                    assert_eq!(t.tokens_before, n);
                    if n <= budget {
                        assert_eq!(t.text, text, "fits: unchanged");
                        assert!(!t.truncated);
                        continue;
                    }
                    assert!(t.tokens_after <= budget, "{side:?} {budget}: {} tokens", t.tokens_after);
                    assert_eq!(t.tokens_after, Chars.encode(&t.text, true).unwrap().len());
                    // Idempotent: what was cut to the budget fits it.
                    assert_eq!(truncate(&t.text, &Chars, budget, side).unwrap().text, t.text);
                    let chars: Vec<char> = text.chars().collect();
                    let kept: Vec<char> = t.text.chars().collect();
                    match side {
                        Side::End => {
                            assert_eq!(kept.len(), budget - 1);
                            assert_eq!(kept[..], chars[..budget - 1]);
                        }
                        Side::Start => {
                            assert_eq!(kept.len(), budget - 1);
                            assert_eq!(kept[..], chars[chars.len() - (budget - 1)..]);
                        }
                        Side::Middle => {
                            // BOS counts in the first half: half - 1 characters, then half.
                            let half = budget / 2;
                            let head = half.saturating_sub(1);
                            assert_eq!(kept[..head], chars[..head]);
                            assert_eq!(kept[head..], chars[chars.len() - half..]);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn sides_parse() {
        assert_eq!("middle".parse::<Side>().unwrap(), Side::Middle);
        assert!("left".parse::<Side>().is_err());
    }
}
