//! Training data: chat conversations (LongAlign-10k's JSONL format, one
//! `{"messages": [{"role", "content"}, …]}` per line), rendered with the model's own chat
//! template and tokenized, with the loss on the assistant turns only.
//!
//! The assistant mask (the rule the parity fixtures of `tools/oracles/train_fixtures.py` are
//! made with): `text` is the whole conversation rendered; for each assistant message `i`,
//! `prefix` is the render of `messages[..i]` with the generation prompt and `upto` the render
//! of `messages[..=i]`; the message's span is `[len(prefix), len(upto.trim_end()))`, so the
//! end-of-turn token the template writes after the answer is in it and a newline after that
//! is not. `text` is tokenized without adding special tokens (the template writes them); a
//! token is a target when its start offset lies in a span (and it is not the first token).
//! Templates that render a conversation's prefix differently from the conversation's start
//! are refused.

use std::path::{Path, PathBuf};

use longctx_core::ChatMessage;
use longctx_models::chat_template::ChatTemplate;
use longctx_models::tokenizer::HfTokenizer;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// One conversation of a data file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    /// The messages.
    pub messages: Vec<ChatMessage>,
    /// 1-based line in the file.
    pub line: usize,
}

/// A conversation tokenized, with its targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// Token ids of the rendered conversation.
    pub ids: Vec<u32>,
    /// Whether each token is a target (predicted from the one before it).
    pub targets: Vec<bool>,
    /// 1-based line in the data file.
    pub line: usize,
    /// Whether the sequence was cut to the maximum length.
    pub truncated: bool,
}

impl Encoded {
    /// Tokens.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// No tokens.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Number of target tokens.
    pub fn n_targets(&self) -> usize {
        self.targets.iter().filter(|&&t| t).count()
    }
}

/// Where training data comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DataSource {
    /// A local JSONL file.
    File(PathBuf),
    /// A file of a dataset repository on the Hugging Face hub (e.g. `THUDM/LongAlign-10k`,
    /// `long.jsonl`).
    Hub {
        /// Repository id, optionally `@revision`.
        repo: String,
        /// File in the repository.
        file: String,
    },
}

impl DataSource {
    /// The local path of the data, downloading a hub dataset file into the hub cache.
    pub fn resolve(&self) -> Result<PathBuf> {
        match self {
            DataSource::File(p) => Ok(p.clone()),
            DataSource::Hub { repo, file } => {
                let (id, revision) = repo.split_once('@').unwrap_or((repo, "main"));
                let hub_error = |e: &dyn std::fmt::Display| {
                    Error::Data(format!(
                        "`{file}` of the dataset repository `{id}` could not be had from the Hugging Face hub: {e}. If this machine is offline, download it elsewhere and give its path"
                    ))
                };
                let api = hf_hub::api::sync::ApiBuilder::from_env().build().map_err(|e| hub_error(&e))?;
                let handle = api.repo(hf_hub::Repo::with_revision(
                    id.to_string(),
                    hf_hub::RepoType::Dataset,
                    revision.to_string(),
                ));
                handle.get(file).map_err(|e| hub_error(&e))
            }
        }
    }
}

#[derive(Deserialize)]
struct Line {
    messages: Vec<RawMessage>,
}

#[derive(Deserialize)]
struct RawMessage {
    role: String,
    content: String,
}

/// Reads a chat JSONL file. A line that is not a conversation — not JSON, no `messages`, a
/// role other than system/user/assistant, no assistant turn — is an error naming the file and
/// line. Blank lines are skipped.
pub fn read_jsonl(path: &Path) -> Result<Vec<Conversation>> {
    let text = fs_err::read_to_string(path)?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let bad = |message: String| Error::BadLine { path: path.to_path_buf(), line: line_no, message };
        let parsed: Line = serde_json::from_str(line).map_err(|e| {
            bad(format!("not a conversation (`{{\"messages\": [{{\"role\", \"content\"}}, …]}}`): {e}"))
        })?;
        let mut messages = Vec::with_capacity(parsed.messages.len());
        for (j, m) in parsed.messages.into_iter().enumerate() {
            if !matches!(m.role.as_str(), "system" | "user" | "assistant") {
                return Err(bad(format!("message {j} has role `{}` (system, user or assistant)", m.role)));
            }
            messages.push(ChatMessage::new(m.role, m.content));
        }
        if !messages.iter().any(|m| m.role == "assistant") {
            return Err(bad("the conversation has no assistant turn (nothing to train on)".into()));
        }
        out.push(Conversation { messages, line: line_no });
    }
    Ok(out)
}

/// Renders and tokenizes a conversation and marks the assistant tokens (the rule of this
/// module's documentation); the error says what went wrong with it.
pub fn encode(
    conversation: &Conversation,
    tokenizer: &HfTokenizer,
    template: &ChatTemplate,
) -> std::result::Result<Encoded, String> {
    let messages = &conversation.messages;
    let render = |msgs: &[ChatMessage], generation: bool| template.render(msgs, generation).map_err(|e| e.to_string());
    let text = render(messages, false)?;
    let mut spans = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        if m.role != "assistant" {
            continue;
        }
        let prefix = render(&messages[..i], true)?;
        let upto = render(&messages[..=i], false)?;
        if !upto.starts_with(&prefix) || !text.starts_with(&upto) {
            return Err(format!(
                "the chat template renders the conversation up to message {i} differently from the start of the whole conversation, so the assistant's tokens cannot be found"
            ));
        }
        spans.push(prefix.len()..upto.trim_end().len());
    }
    let encoding = tokenizer.inner().encode(text.as_str(), false).map_err(|e| format!("tokenizer: {e}"))?;
    let ids = encoding.get_ids().to_vec();
    let targets = encoding
        .get_offsets()
        .iter()
        .enumerate()
        .map(|(t, &(start, _))| t > 0 && spans.iter().any(|s| s.contains(&start)))
        .collect();
    Ok(Encoded { ids, targets, line: conversation.line, truncated: false })
}

/// What to do with a conversation longer than the maximum length.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overlong {
    /// Leave it out (the default).
    #[default]
    Drop,
    /// Keep its first `max_seq_len` tokens (left out if no target remains).
    Truncate,
}

/// Counts of the data preparation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataSummary {
    /// Conversations in the file.
    pub conversations: usize,
    /// Kept for training.
    pub kept: usize,
    /// Left out for being longer than the maximum length.
    pub dropped_overlong: usize,
    /// Cut to the maximum length.
    pub truncated: usize,
    /// Left out because no target token remained (after truncation).
    pub dropped_no_target: usize,
    /// Tokens of the kept sequences.
    pub tokens: usize,
    /// Target tokens of the kept sequences.
    pub target_tokens: usize,
}

/// Encodes every conversation of `path` and fits them to `max_seq_len` tokens; a
/// conversation the template or tokenizer refuses is an error naming its line.
pub fn prepare(
    path: &Path,
    conversations: &[Conversation],
    tokenizer: &HfTokenizer,
    template: &ChatTemplate,
    max_seq_len: usize,
    overlong: Overlong,
) -> Result<(Vec<Encoded>, DataSummary)> {
    let mut summary = DataSummary { conversations: conversations.len(), ..DataSummary::default() };
    let mut out = Vec::new();
    for c in conversations {
        let mut e = encode(c, tokenizer, template).map_err(|message| Error::BadLine {
            path: path.to_path_buf(),
            line: c.line,
            message,
        })?;
        if e.len() > max_seq_len {
            match overlong {
                Overlong::Drop => {
                    summary.dropped_overlong += 1;
                    continue;
                }
                Overlong::Truncate => {
                    e.ids.truncate(max_seq_len);
                    e.targets.truncate(max_seq_len);
                    e.truncated = true;
                }
            }
        }
        if e.n_targets() == 0 {
            summary.dropped_no_target += 1;
            continue;
        }
        summary.truncated += usize::from(e.truncated);
        summary.tokens += e.len();
        summary.target_tokens += e.n_targets();
        out.push(e);
    }
    summary.kept = out.len();
    if out.is_empty() {
        return Err(Error::Data(format!(
            "{}: no conversation is left to train on: {} of {} are longer than max_seq_len = {max_seq_len} tokens{}",
            path.display(),
            summary.dropped_overlong,
            summary.conversations,
            if summary.dropped_no_target > 0 {
                format!(" and {} have no assistant token within it", summary.dropped_no_target)
            } else {
                String::new()
            }
        )));
    }
    Ok((out, summary))
}
