//! Micro-batches and optimizer steps.
//!
//! A micro-batch is a list of sequences run in one forward pass, packed one after another
//! with block-diagonal causal attention (no token sees another sequence, nothing is padded),
//! holding at most `micro_batch_tokens` tokens. An optimizer step is `grad_accum`
//! consecutive micro-batches.
//!
//! - `naive`: the sequences in a seeded random order, one per micro-batch.
//! - `sorted` (LongAlign's sorted batching): the sequences sorted by length, cut into
//!   micro-batches of similar lengths (consecutive sequences while they fit), and the
//!   micro-batches put in a seeded random order.
//! - `packed`: the sequences in a seeded random order, packed greedily: each goes into the
//!   current micro-batch if it fits, else starts the next.
//!
//! Every epoch draws its own order from `(seed, epoch)`, so the plan of any step can be
//! rebuilt from the configuration alone (what an exact resume needs).

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// How sequences are grouped into micro-batches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Batching {
    /// One sequence per micro-batch.
    Naive,
    /// Sorted by length, grouped, groups shuffled (LongAlign).
    Sorted,
    /// Shuffled, then packed greedily (the default).
    #[default]
    Packed,
}

impl std::str::FromStr for Batching {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "naive" => Ok(Self::Naive),
            "sorted" => Ok(Self::Sorted),
            "packed" => Ok(Self::Packed),
            other => Err(format!("unknown batching `{other}` (naive, sorted or packed)")),
        }
    }
}

/// Sequence indices of one micro-batch.
pub type MicroBatch = Vec<usize>;

/// The micro-batches of one epoch over sequences of lengths `lens`.
pub fn micro_batches(
    lens: &[usize],
    batching: Batching,
    micro_batch_tokens: usize,
    seed: u64,
    epoch: usize,
) -> Vec<MicroBatch> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut order: Vec<usize> = (0..lens.len()).collect();
    match batching {
        Batching::Naive => {
            order.shuffle(&mut rng);
            order.into_iter().map(|i| vec![i]).collect()
        }
        Batching::Sorted => {
            // Stable: equal lengths keep file order.
            order.sort_by_key(|&i| lens[i]);
            let mut batches = pack_in_order(&order, lens, micro_batch_tokens);
            batches.shuffle(&mut rng);
            batches
        }
        Batching::Packed => {
            order.shuffle(&mut rng);
            pack_in_order(&order, lens, micro_batch_tokens)
        }
    }
}

/// Consecutive sequences of `order` into micro-batches of at most `capacity` tokens (a longer
/// sequence is a micro-batch of its own).
fn pack_in_order(order: &[usize], lens: &[usize], capacity: usize) -> Vec<MicroBatch> {
    let mut out: Vec<MicroBatch> = Vec::new();
    let mut current: MicroBatch = Vec::new();
    let mut tokens = 0;
    for &i in order {
        if !current.is_empty() && tokens + lens[i] > capacity {
            out.push(std::mem::take(&mut current));
            tokens = 0;
        }
        current.push(i);
        tokens += lens[i];
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// One optimizer step: its micro-batches, and where it is in the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// 0-based epoch.
    pub epoch: usize,
    /// The micro-batches.
    pub micro_batches: Vec<MicroBatch>,
}

impl Step {
    /// Every sequence of the step.
    pub fn sequences(&self) -> impl Iterator<Item = usize> + '_ {
        self.micro_batches.iter().flatten().copied()
    }
}

/// The optimizer steps of `epochs` epochs: each epoch's micro-batches in groups of
/// `grad_accum` (an epoch's last step may have fewer).
pub fn plan_steps(
    lens: &[usize],
    batching: Batching,
    micro_batch_tokens: usize,
    grad_accum: usize,
    epochs: usize,
    seed: u64,
) -> Vec<Step> {
    let mut steps = Vec::new();
    for epoch in 0..epochs {
        let batches = micro_batches(lens, batching, micro_batch_tokens, seed, epoch);
        for group in batches.chunks(grad_accum.max(1)) {
            steps.push(Step { epoch, micro_batches: group.to_vec() });
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lens() -> Vec<usize> {
        (0..50).map(|i| (i * 37 % 97) + 5).collect()
    }

    fn check_partition(batches: &[MicroBatch], n: usize) {
        let mut all: Vec<usize> = batches.iter().flatten().copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..n).collect::<Vec<_>>());
    }

    #[test]
    fn every_batching_covers_each_sequence_once_and_respects_the_capacity() {
        let lens = lens();
        for batching in [Batching::Naive, Batching::Sorted, Batching::Packed] {
            let b = micro_batches(&lens, batching, 200, 7, 0);
            check_partition(&b, lens.len());
            for mb in &b {
                let tokens: usize = mb.iter().map(|&i| lens[i]).sum();
                assert!(tokens <= 200 || mb.len() == 1, "{batching:?}: {tokens}");
            }
            // Seeded: the same seed and epoch give the same plan; another epoch another one.
            assert_eq!(b, micro_batches(&lens, batching, 200, 7, 0));
            assert_ne!(b, micro_batches(&lens, batching, 200, 7, 1));
        }
        assert!(micro_batches(&lens, Batching::Naive, 200, 7, 0).iter().all(|mb| mb.len() == 1));
    }

    #[test]
    fn sorted_batches_hold_neighbours_in_length() {
        let lens = lens();
        let b = micro_batches(&lens, Batching::Sorted, 300, 1, 0);
        let mut sorted: Vec<usize> = lens.clone();
        sorted.sort_unstable();
        for mb in &b {
            let (lo, hi) = (mb.iter().map(|&i| lens[i]).min().unwrap(), mb.iter().map(|&i| lens[i]).max().unwrap());
            // No sequence outside the batch has a length strictly between its min and max
            // except those of other batches with equal lengths at the ends.
            let inside = sorted.iter().filter(|&&l| l > lo && l < hi).count();
            assert!(inside <= mb.len(), "{mb:?}");
        }
        let steps = plan_steps(&lens, Batching::Sorted, 300, 4, 2, 1);
        let per_epoch = b.len().div_ceil(4);
        assert_eq!(steps.len(), 2 * per_epoch);
        assert_eq!(steps[per_epoch].epoch, 1);
    }
}
