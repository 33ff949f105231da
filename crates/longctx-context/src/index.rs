//! An exact inner-product index over one sample's chunks (a flat index: at 100–700 chunks an
//! approximate index would only lose exactness).

/// Vectors of equal length, searched exhaustively by inner product.
#[derive(Debug, Clone, Default)]
pub struct FlatIndex {
    dim: usize,
    data: Vec<f32>,
}

/// A chunk id with its score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    /// Chunk id (insertion order, from 0).
    pub id: usize,
    /// Inner product with the query.
    pub score: f32,
}

impl FlatIndex {
    /// An index of `vectors` (ids are their positions). Panics if their lengths differ.
    pub fn new(vectors: &[Vec<f32>]) -> Self {
        let dim = vectors.first().map_or(0, Vec::len);
        let mut data = Vec::with_capacity(dim * vectors.len());
        for v in vectors {
            assert_eq!(v.len(), dim, "all vectors of an index have the same length");
            data.extend_from_slice(v);
        }
        Self { dim, data }
    }

    /// Number of vectors.
    pub fn len(&self) -> usize {
        self.data.len().checked_div(self.dim).unwrap_or(0)
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every id with its score, best first; equal scores keep the lower id first. Any top-k
    /// is a prefix of this ranking, so one pass serves a whole sweep of k.
    pub fn rank(&self, query: &[f32]) -> Vec<Hit> {
        assert!(self.is_empty() || query.len() == self.dim, "query length differs from the index's");
        let mut hits: Vec<Hit> = self
            .data
            .chunks_exact(self.dim.max(1))
            .enumerate()
            .map(|(id, v)| Hit { id, score: v.iter().zip(query).map(|(a, b)| a * b).sum() })
            .collect();
        hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id)));
        hits
    }

    /// The `k` best hits (all of them when `k` is larger than the index).
    pub fn search(&self, query: &[f32], k: usize) -> Vec<Hit> {
        let mut hits = self.rank(query);
        hits.truncate(k);
        hits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_by_score_then_id() {
        let index = FlatIndex::new(&[vec![0.0, 1.0], vec![1.0, 0.0], vec![0.6, 0.8], vec![1.0, 0.0]]);
        let ids: Vec<usize> = index.search(&[1.0, 0.0], 3).iter().map(|h| h.id).collect();
        assert_eq!(ids, [1, 3, 2]);
        assert_eq!(index.search(&[1.0, 0.0], 10).len(), 4);
        assert!(FlatIndex::new(&[]).search(&[1.0], 5).is_empty());
    }
}
