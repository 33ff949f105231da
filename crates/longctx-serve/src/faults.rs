//! Fault injection, for testing clients' retries: API requests (the `POST` endpoints) fail
//! at given rates, decided by a seeded hash of their arrival number, so that a sequence of
//! requests sees the same faults on every run.

use std::time::Duration;

/// Fault rates (each in `[0, 1]`; all 0 by default: no faults).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Faults {
    /// Share of requests answered 500.
    pub error_500: f64,
    /// Share of requests whose connection is closed without a complete response.
    pub drop: f64,
    /// Share of requests answered after a delay of `slow_s` seconds.
    pub slow: f64,
    /// The delay of slow requests, in seconds.
    pub slow_s: f64,
    /// Seed of the draws.
    pub seed: u64,
}

/// What happens to one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    /// Answered `500` without being run.
    Error500,
    /// The connection is closed without a complete response.
    Drop,
    /// Run normally after the delay.
    Slow(Duration),
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl Faults {
    /// Whether no fault can happen.
    pub fn is_off(&self) -> bool {
        self.error_500 <= 0.0 && self.drop <= 0.0 && self.slow <= 0.0
    }

    /// A uniform draw in `[0, 1)` for request `n` and fault `k`.
    fn draw(&self, n: u64, k: u64) -> f64 {
        let x = splitmix64(self.seed ^ splitmix64(n.wrapping_mul(3).wrapping_add(k)));
        (x >> 11) as f64 / (1u64 << 53) as f64
    }

    /// The fault of the `n`th API request since the server started (from 0), if any: each
    /// kind is drawn independently; a drop wins over a 500, which wins over a delay.
    pub fn fault_for(&self, n: u64) -> Option<Fault> {
        if self.draw(n, 0) < self.drop {
            Some(Fault::Drop)
        } else if self.draw(n, 1) < self.error_500 {
            Some(Fault::Error500)
        } else if self.draw(n, 2) < self.slow {
            Some(Fault::Slow(Duration::from_secs_f64(self.slow_s.max(0.0))))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_hold_and_draws_repeat() {
        assert!(Faults::default().is_off());
        assert_eq!((0..1000).filter_map(|n| Faults::default().fault_for(n)).count(), 0);
        let all = Faults { error_500: 1.0, ..Faults::default() };
        assert!((0..1000).all(|n| all.fault_for(n) == Some(Fault::Error500)));

        let f = Faults { error_500: 0.3, drop: 0.1, slow: 0.2, slow_s: 0.5, seed: 42 };
        let pattern: Vec<_> = (0..2000).map(|n| f.fault_for(n)).collect();
        assert_eq!(pattern, (0..2000).map(|n| f.fault_for(n)).collect::<Vec<_>>());
        let share = |want: fn(&Option<Fault>) -> bool| pattern.iter().filter(|x| want(x)).count() as f64 / 2000.0;
        // drop 0.1; 500: 0.9 * 0.3; slow: 0.9 * 0.7 * 0.2.
        assert!((share(|x| *x == Some(Fault::Drop)) - 0.1).abs() < 0.03);
        assert!((share(|x| *x == Some(Fault::Error500)) - 0.27).abs() < 0.04);
        assert!((share(|x| matches!(x, Some(Fault::Slow(_)))) - 0.126).abs() < 0.03);
        let other = Faults { seed: 43, ..f };
        assert_ne!(pattern, (0..2000).map(|n| other.fault_for(n)).collect::<Vec<_>>());
    }
}
