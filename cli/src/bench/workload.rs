//! The workloads: which operation each request is, on which key, and how it is sent.
//!
//! Reads and blind updates go to last-writer-wins keys, the equivalent of Redis's GET and
//! SET: a blind write to a `siblings` key would add a sibling every time and soon hit the
//! sibling limit. YCSB-F's read-modify-write is the one place causality matters, so it
//! uses `siblings` keys of its own (another key prefix, so the policies never meet on one
//! key): it reads, then writes back with the context it read, which supersedes every
//! sibling that read saw.

use rand::Rng;
use ringkv::client::{Client, ClientError};
use ringkv::proto::{Key, QuorumOpts};

/// Key names of last-writer-wins keys (reads and blind updates): `k0`, `k1`, ...
pub const LWW_KEY_PREFIX: &str = "k";
/// Key names of the read-modify-write keys of YCSB-F: `rmw0`, `rmw1`, ...
pub const RMW_KEY_PREFIX: &str = "rmw";
/// Largest `--value-size`, well under the frame limit so a value always fits a request.
pub const VALUE_BYTES_MAX: u32 = 1024 * 1024;

/// `--workload`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// Blind writes only.
    Put,
    /// Reads only (of preloaded keys).
    Get,
    /// 50% reads, 50% blind writes.
    Mixed,
    /// YCSB A, update heavy: 50% reads, 50% updates.
    YcsbA,
    /// YCSB B, read mostly: 95% reads, 5% updates.
    YcsbB,
    /// YCSB C, read only.
    YcsbC,
    /// YCSB F: read-modify-write (read, then write back with the read's context).
    YcsbF,
}

/// What one request of a run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Read,
    Update,
    /// A read and a write with its context, timed as one operation (as YCSB does).
    ReadModifyWrite,
}

/// Everything an operation needs besides the key: shared by all workers.
#[derive(Debug, Clone)]
pub struct Target {
    pub client: Client,
    pub bucket: String,
    pub value: Vec<u8>,
    pub quorum: QuorumOpts,
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::Put => "put",
            Workload::Get => "get",
            Workload::Mixed => "mixed",
            Workload::YcsbA => "ycsb-a",
            Workload::YcsbB => "ycsb-b",
            Workload::YcsbC => "ycsb-c",
            Workload::YcsbF => "ycsb-f",
        }
    }

    /// Percent of requests that read (the rest update); YCSB-F does both in each request.
    pub fn read_percent(self) -> u32 {
        match self {
            Workload::Put => 0,
            Workload::Get | Workload::YcsbC => 100,
            Workload::Mixed | Workload::YcsbA => 50,
            Workload::YcsbB => 95,
            Workload::YcsbF => 100,
        }
    }

    /// True when requests read keys, which must then exist before timing starts.
    pub fn needs_preload(self) -> bool {
        self != Workload::Put
    }

    /// The kind of the next request.
    pub fn pick<R: Rng>(self, rng: &mut R) -> OpKind {
        match self {
            Workload::YcsbF => OpKind::ReadModifyWrite,
            other => {
                let percent = other.read_percent();
                if percent == 100 || (percent > 0 && rng.random_range(0..100) < percent) {
                    OpKind::Read
                } else {
                    OpKind::Update
                }
            }
        }
    }

    /// The name of key `index` in this workload's key space.
    pub fn key(self, bucket: &str, index: u64) -> Key {
        let prefix = if self == Workload::YcsbF {
            RMW_KEY_PREFIX
        } else {
            LWW_KEY_PREFIX
        };
        Key::new(bucket, format!("{prefix}{index}"))
    }
}

impl OpKind {
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Read => "read",
            OpKind::Update => "update",
            OpKind::ReadModifyWrite => "rmw",
        }
    }
}

impl Target {
    /// Sends one operation and waits for its answer.
    pub async fn run(&self, kind: OpKind, key: &Key) -> Result<(), ClientError> {
        match kind {
            OpKind::Read => self.client.get(key, self.quorum).await.map(drop),
            OpKind::Update => self
                .client
                .put_lww(key, self.value.clone(), self.quorum)
                .await
                .map(drop),
            OpKind::ReadModifyWrite => {
                let read = self.client.get(key, self.quorum).await?;
                let context = Some(read.context.as_str()).filter(|c| !c.is_empty());
                self.client
                    .put(key, self.value.clone(), context, self.quorum)
                    .await
                    .map(drop)
            }
        }
    }

    /// Writes key `key` so a read workload finds it: the same operation the workload's
    /// updates use, so a preload never changes a key's policy or adds a sibling.
    pub async fn preload(&self, workload: Workload, key: &Key) -> Result<(), ClientError> {
        let kind = if workload == Workload::YcsbF {
            OpKind::ReadModifyWrite
        } else {
            OpKind::Update
        };
        self.run(kind, key).await
    }
}

/// A value of `size` printable bytes drawn from `rng`, so values do not compress to nothing.
pub fn make_value<R: Rng>(rng: &mut R, size: u32) -> Vec<u8> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    (0..size)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn read_share(workload: Workload) -> f64 {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let draws = 100_000;
        let reads = (0..draws)
            .filter(|_| workload.pick(&mut rng) == OpKind::Read)
            .count();
        reads as f64 / draws as f64
    }

    #[test]
    fn mixes_follow_the_ycsb_definitions() {
        assert_eq!(read_share(Workload::Put), 0.0);
        assert_eq!(read_share(Workload::Get), 1.0);
        assert_eq!(read_share(Workload::YcsbC), 1.0);
        for (workload, want) in [
            (Workload::Mixed, 0.5),
            (Workload::YcsbA, 0.5),
            (Workload::YcsbB, 0.95),
        ] {
            let got = read_share(workload);
            assert!((got - want).abs() < 0.01, "{workload:?}: {got}");
        }
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        assert_eq!(
            Workload::YcsbF.pick(&mut rng),
            OpKind::ReadModifyWrite,
            "every YCSB-F request is a read-modify-write"
        );
    }

    #[test]
    fn read_modify_write_keys_never_share_a_name_with_lww_keys() {
        assert_eq!(Workload::Get.key("b", 7), Key::new("b", "k7"));
        assert_eq!(Workload::YcsbA.key("b", 7), Workload::Put.key("b", 7));
        assert_eq!(Workload::YcsbF.key("b", 7), Key::new("b", "rmw7"));
        assert!(!Workload::Put.needs_preload());
        assert!(Workload::YcsbF.needs_preload() && Workload::Mixed.needs_preload());
    }

    #[test]
    fn values_have_the_requested_size() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        assert!(make_value(&mut rng, 0).is_empty());
        let value = make_value(&mut rng, 100);
        assert_eq!(value.len(), 100);
        assert!(value.iter().all(u8::is_ascii_alphanumeric));
    }
}
