//! Which key the next operation touches: YCSB's zipfian generator, or uniform.
//!
//! Real traffic is skewed — a few keys take most requests — and skew is what stresses a
//! store (hot coordinators, contended read-modify-writes), so the default is YCSB's
//! zipfian distribution with θ = 0.99. The generator is the one YCSB uses (Gray et al.,
//! "Quickly generating billion-record synthetic databases", SIGMOD 1994): ζ(n, θ) is
//! computed once, then each draw costs one `powf`.
//!
//! YCSB also offers a *scrambled* variant that hashes the rank so hot keys are not
//! neighbours in key order, because its stores keep keys sorted. ringkv places keys by a
//! hash of their name, so rank `i` simply becomes key `i`: neighbouring names already land
//! on unrelated partitions.

use rand::Rng;

/// YCSB's default skew: the most popular of 1000 keys takes about 13% of requests.
pub const ZIPF_THETA: f64 = 0.99;
/// Most distinct keys a run may address; ζ(n, θ) costs n `powf` calls up front.
pub const KEYS_MAX: u64 = 10_000_000;

/// How keys are drawn (`--distribution`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Distribution {
    /// Skewed: rank i is requested with probability ∝ 1/(i+1)^0.99 (YCSB's default).
    Zipfian,
    /// Every key equally likely.
    Uniform,
}

/// A zipfian distribution over the ranks `0..items`; rank 0 is the most popular.
#[derive(Debug, Clone, PartialEq)]
pub struct Zipfian {
    items: u64,
    theta: f64,
    alpha: f64,
    zeta_n: f64,
    eta: f64,
    /// Cumulative probability mass of ranks 0 and 1, scaled by ζ(n, θ).
    two_ranks_mass: f64,
}

/// Draws key indices in `0..keys` by a [`Distribution`].
#[derive(Debug, Clone, PartialEq)]
pub enum KeyChooser {
    Zipfian(Zipfian),
    Uniform { keys: u64 },
}

impl Distribution {
    pub fn name(self) -> &'static str {
        match self {
            Distribution::Zipfian => "zipfian",
            Distribution::Uniform => "uniform",
        }
    }
}

impl Zipfian {
    /// A zipfian distribution over `items` ranks (at least 1) with skew `theta` in (0, 1).
    pub fn new(items: u64, theta: f64) -> Zipfian {
        let items = items.max(1);
        let zeta_n = zeta(items, theta);
        let zeta_2 = zeta(2, theta);
        // With one item, eta's denominator is 1 - zeta_2/zeta_1 < 0 and would be
        // meaningless; `sample_at` never reaches eta then (u * zeta_n < 1 always).
        let eta = (1.0 - (2.0 / items as f64).powf(1.0 - theta)) / (1.0 - zeta_2 / zeta_n);
        Zipfian {
            items,
            theta,
            alpha: 1.0 / (1.0 - theta),
            zeta_n,
            eta,
            two_ranks_mass: 1.0 + 0.5_f64.powf(theta),
        }
    }

    pub fn items(&self) -> u64 {
        self.items
    }

    /// ζ(n, θ): the normaliser, so rank i has probability `1/(i+1)^θ / zeta_n()`.
    pub fn zeta_n(&self) -> f64 {
        self.zeta_n
    }

    /// The analytic probability of rank `i` (0-based).
    pub fn probability(&self, rank: u64) -> f64 {
        1.0 / ((rank + 1) as f64).powf(self.theta) / self.zeta_n
    }

    /// The rank for a uniform draw `u` in [0, 1). Ranks 0 and 1 are exact; higher ranks
    /// follow Gray's closed-form approximation of the inverse CDF, as in YCSB.
    pub fn sample_at(&self, u: f64) -> u64 {
        let uz = u * self.zeta_n;
        if uz < 1.0 {
            return 0;
        }
        if uz < self.two_ranks_mass {
            return 1.min(self.items - 1);
        }
        let rank = self.items as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha);
        // `as` saturates (NaN → 0); the clamp keeps rounding at u → 1 inside the range.
        (rank as u64).min(self.items - 1)
    }

    pub fn sample<R: Rng>(&self, rng: &mut R) -> u64 {
        self.sample_at(rng.random::<f64>())
    }
}

impl KeyChooser {
    pub fn new(distribution: Distribution, keys: u64) -> KeyChooser {
        match distribution {
            Distribution::Zipfian => KeyChooser::Zipfian(Zipfian::new(keys, ZIPF_THETA)),
            Distribution::Uniform => KeyChooser::Uniform { keys: keys.max(1) },
        }
    }

    /// The index of the next key, in `0..keys`.
    pub fn next<R: Rng>(&self, rng: &mut R) -> u64 {
        match self {
            KeyChooser::Zipfian(zipf) => zipf.sample(rng),
            KeyChooser::Uniform { keys } => rng.random_range(0..*keys),
        }
    }
}

/// ζ(n, θ) = Σ_{i=1..n} 1/i^θ.
pub fn zeta(n: u64, theta: f64) -> f64 {
    (1..=n).map(|i| 1.0 / (i as f64).powf(theta)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    const DRAWS: usize = 400_000;
    const SEED: u64 = 20_240_601;

    fn counts(chooser: &KeyChooser, keys: u64) -> Vec<u64> {
        let mut rng = ChaCha8Rng::seed_from_u64(SEED);
        let mut counts = vec![0_u64; keys as usize];
        for _ in 0..DRAWS {
            let k = chooser.next(&mut rng);
            assert!(k < keys, "key {k} out of 0..{keys}");
            counts[k as usize] += 1;
        }
        counts
    }

    #[test]
    fn zipfian_over_1000_keys_matches_the_analytic_skew() {
        let keys = 1000;
        let chooser = KeyChooser::new(Distribution::Zipfian, keys);
        let KeyChooser::Zipfian(zipf) = &chooser else {
            panic!("the default chooser is zipfian");
        };
        // ζ(1000, 0.99) by its definition, independently of the generator.
        let zeta_1000: f64 = (1..=1000).map(|i| (i as f64).powf(-0.99)).sum();
        assert!((zipf.zeta_n() - zeta_1000).abs() < 1e-9);
        let p0 = 1.0 / zeta_1000;
        assert!((0.12..0.15).contains(&p0), "p(rank 0) = {p0}");

        let counts = counts(&chooser, keys);
        let share = |c: u64| c as f64 / DRAWS as f64;
        // Ranks 0 and 1 are drawn exactly: within 4 standard deviations of a binomial share.
        for rank in 0..2 {
            let p = zipf.probability(rank);
            let sd = (p * (1.0 - p) / DRAWS as f64).sqrt();
            let got = share(counts[rank as usize]);
            assert!(
                (got - p).abs() < 4.0 * sd,
                "rank {rank}: share {got:.5}, analytic {p:.5}"
            );
        }
        // The most popular key is rank 0, and popularity falls with rank.
        let top = (0..keys as usize)
            .max_by_key(|&i| counts[i])
            .unwrap_or(usize::MAX);
        assert_eq!(top, 0);
        assert!(counts[0] > counts[1] && counts[1] > counts[9] && counts[9] > counts[99]);

        // The top 10% of keys take most requests, as the analytic sum says. Gray's inverse
        // CDF approximates ranks above 1: it puts about 1.6 points too much mass on ranks
        // 2..9 and 1 point too little on the tail, hence a 2-point tolerance.
        let top_tenth: f64 = (0..100).map(|r| zipf.probability(r)).sum();
        let got_tenth = share(counts[..100].iter().sum());
        assert!(top_tenth > 0.6, "analytic top-10% share {top_tenth}");
        assert!(
            (got_tenth - top_tenth).abs() < 0.02,
            "top 10% share {got_tenth:.4}, analytic {top_tenth:.4}"
        );
        // Bands further down the tail also follow the analytic mass.
        for (lo, hi) in [(2, 10), (10, 100), (100, 1000)] {
            let want: f64 = (lo..hi).map(|r| zipf.probability(r)).sum();
            let got = share(counts[lo as usize..hi as usize].iter().sum());
            assert!(
                (got - want).abs() < 0.02,
                "ranks {lo}..{hi}: share {got:.4}, analytic {want:.4}"
            );
        }
    }

    #[test]
    fn uniform_spreads_evenly() {
        let keys = 100;
        let counts = counts(&KeyChooser::new(Distribution::Uniform, keys), keys);
        let expected = DRAWS as f64 / keys as f64;
        for (k, &c) in counts.iter().enumerate() {
            assert!(
                (c as f64 - expected).abs() < 0.1 * expected,
                "key {k}: {c} draws, expected about {expected}"
            );
        }
    }

    #[test]
    fn degenerate_key_counts_stay_in_range() {
        let mut rng = ChaCha8Rng::seed_from_u64(SEED);
        for keys in [1, 2, 3] {
            let chooser = KeyChooser::new(Distribution::Zipfian, keys);
            let mut seen = vec![false; keys as usize];
            for _ in 0..10_000 {
                let k = chooser.next(&mut rng);
                assert!(k < keys);
                seen[k as usize] = true;
            }
            assert!(seen.iter().all(|s| *s), "{keys} keys: some never drawn");
        }
        let zipf = Zipfian::new(10, ZIPF_THETA);
        assert_eq!(zipf.sample_at(0.0), 0);
        assert_eq!(zipf.sample_at(0.999_999_999), 9);
    }

    #[test]
    fn the_same_seed_draws_the_same_keys() {
        let chooser = KeyChooser::new(Distribution::Zipfian, 1000);
        let draw = || {
            let mut rng = ChaCha8Rng::seed_from_u64(7);
            (0..100).map(|_| chooser.next(&mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(draw(), draw());
    }
}
