//! Naive (and reranked) retrieval-augmented context: chunk the sample's context, embed the
//! chunks and the query once, rank every chunk, and serve any k from that one ranking.

use longctx_core::{Embedder, Reranker, Tokenizer, Usage};
use serde::{Deserialize, Serialize};

use crate::chunk::{join_in_order, Chunk, ChunkConfig};
use crate::index::{FlatIndex, Hit};
use crate::Error;

/// The order kept chunks are given to the model in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// Document order (default): adjacent kept chunks read as the original text.
    #[default]
    Document,
    /// Best first.
    Score,
}

/// One sample's chunks ranked against its query.
#[derive(Debug, Clone)]
pub struct Retrieval {
    /// The chunks, by id.
    pub chunks: Vec<Chunk>,
    /// Every chunk, best first (ties: lower id first).
    pub ranking: Vec<Hit>,
    /// What embedding (and reranking) cost.
    pub usage: Usage,
}

/// What k chunks of a retrieval give the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Selection {
    /// The context text that replaces the sample's context.
    pub text: String,
    /// Kept chunk ids, in the order of `text`.
    pub ids: Vec<usize>,
    /// Their scores, same order.
    pub scores: Vec<f32>,
    /// Number of chunks of the context.
    pub n_chunks: usize,
    /// Whether every chunk was kept (`text` is then the whole context).
    pub whole: bool,
}

impl Retrieval {
    /// Chunks `context`, embeds the chunks and `query` in one call, and ranks the chunks by
    /// inner product with the query. `tokenizer` is needed only for token chunks.
    pub fn new(
        context: &str,
        query: &str,
        chunking: &ChunkConfig,
        embedder: &dyn Embedder,
        tokenizer: Option<&dyn Tokenizer>,
    ) -> Result<Self, Error> {
        let chunks = chunking.chunk(context, tokenizer)?;
        if chunks.is_empty() {
            return Ok(Self { chunks, ranking: Vec::new(), usage: Usage::default() });
        }
        let mut texts: Vec<&str> = chunks.iter().map(|c| c.text(context)).collect();
        texts.push(query);
        let mut embedded = embedder.embed(&texts)?;
        if embedded.vectors.len() != texts.len() {
            return Err(Error::Config(format!(
                "the embedder returned {} vectors for {} texts",
                embedded.vectors.len(),
                texts.len()
            )));
        }
        let query_vec = embedded.vectors.pop().unwrap_or_default();
        let ranking = FlatIndex::new(&embedded.vectors).rank(&query_vec);
        Ok(Self { chunks, ranking, usage: embedded.usage })
    }

    /// Re-scores the best `candidates` chunks with `reranker` and ranks them by its scores
    /// (ties: lower id first), ahead of the chunks it did not see (which keep their order).
    pub fn rerank(
        mut self,
        context: &str,
        query: &str,
        reranker: &dyn Reranker,
        candidates: usize,
    ) -> Result<Self, Error> {
        let n = candidates.min(self.ranking.len());
        if n == 0 {
            return Ok(self);
        }
        let texts: Vec<&str> = self.ranking[..n].iter().map(|h| self.chunks[h.id].text(context)).collect();
        let scored = reranker.rerank(query, &texts)?;
        if scored.scores.len() != n {
            return Err(Error::Config(format!("the reranker returned {} scores for {n} chunks", scored.scores.len())));
        }
        for (hit, &s) in self.ranking[..n].iter_mut().zip(&scored.scores) {
            hit.score = s;
        }
        self.ranking[..n].sort_by(|a, b| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id)));
        self.usage += scored.usage;
        Ok(self)
    }

    /// The context made of the best `k` chunks: `k` at or above the number of chunks gives
    /// the whole context. In document order, chunks that touch are joined as in the
    /// original text and other gaps get `separator`; in score order every chunk is
    /// separated by it.
    pub fn select(&self, context: &str, k: usize, order: Order, separator: &str) -> Selection {
        let n = self.chunks.len();
        if k >= n {
            return Selection {
                text: context.to_string(),
                ids: (0..n).collect(),
                scores: {
                    let mut s = vec![0f32; n];
                    for h in &self.ranking {
                        s[h.id] = h.score;
                    }
                    s
                },
                n_chunks: n,
                whole: true,
            };
        }
        let mut top: Vec<Hit> = self.ranking[..k].to_vec();
        let text = match order {
            Order::Document => {
                top.sort_by_key(|h| h.id);
                let ids: Vec<usize> = top.iter().map(|h| h.id).collect();
                join_in_order(context, &self.chunks, &ids, separator)
            }
            Order::Score => top.iter().map(|h| self.chunks[h.id].text(context)).collect::<Vec<_>>().join(separator),
        };
        Selection {
            text,
            ids: top.iter().map(|h| h.id).collect(),
            scores: top.iter().map(|h| h.score).collect(),
            n_chunks: n,
            whole: false,
        }
    }
}
