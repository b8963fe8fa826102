//! Incremental, XOR-mergeable Merkle trees over a replica's data, one per partition.
//!
//! Anti-entropy compares replicas without shipping their data: equal trees mean equal
//! data. Each partition's position range is cut into [`SEGMENTS_PER_PARTITION`] leaves,
//! and a leaf is the XOR of `xxh3(key ‖ version digest)` over the keys in it. XOR makes
//! an update O(1) — remove the old entry hash, add the new one — with no re-hashing of
//! siblings, and makes trees of disjoint key sets mergeable by XOR (Riak's tictac AAE
//! uses the same trick). A partition's root is the XOR of its leaves; an exchange
//! compares roots, then the differing segments, then the keys in them.
//!
//! Memory is fixed: `SEGMENTS_PER_PARTITION × 8` bytes per partition, whatever the number
//! of keys. At start the trees are rebuilt from a storage scan in bounded steps driven by
//! the node's timer, so a large data directory never stalls a node; writes that land
//! during the rebuild are folded in by key order (see [`MerkleTrees::rebuild_step`]).

use twox_hash::XxHash3_64;

use crate::core::placement::ring::xxh3_joined;
use crate::storage::{SCAN_ROWS_MAX, Space, Storage, StorageError, decode_data_key};

/// Leaves per partition.
pub const SEGMENTS_PER_PARTITION: u32 = 256;
/// Leaves under one branch: a partition's tree is root → 16 branches → 16 leaves each.
pub const LEAVES_PER_BRANCH: u32 = 16;
/// Rows one rebuild step reads, bounding the time a step holds the node.
pub const REBUILD_ROWS_PER_STEP: usize = 1_024;

// Segments travel as one byte each.
const _: () =
    assert!(SEGMENTS_PER_PARTITION <= 256 && SEGMENTS_PER_PARTITION % LEAVES_PER_BRANCH == 0);

/// How anti-entropy looks for the differences in a partition whose roots differ.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AePath {
    /// Descend the Merkle tree; when most branches differ, exchange HLL sketches and
    /// switch to Bloom filters if they predict a large difference.
    #[default]
    Auto,
    /// Always descend the Merkle tree (root, branches, leaves, entry hashes).
    Merkle,
    /// Always exchange HLL sketches and Bloom filters (unless the partition is too large
    /// for a bounded scan, when the Merkle descent is the only bounded option).
    Bloom,
}

/// One replica's trees, for every partition of the ring.
#[derive(Clone, Debug)]
pub struct MerkleTrees {
    partition_bits: u32,
    leaves: Vec<u64>,
    /// A rebuild in progress: the fresh leaves and the next storage key to scan.
    rebuild: Option<Rebuild>,
}

#[derive(Clone, Debug)]
struct Rebuild {
    leaves: Vec<u64>,
    next: Vec<u8>,
    rows: u64,
}

/// Progress of a rebuild step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RebuildProgress {
    /// More rows remain; call again.
    Scanned(u64),
    /// The trees now reflect the whole data space.
    Done(u64),
}

/// The hash a key contributes to its leaf.
pub fn entry_hash(bucket: &[u8], key: &[u8], digest: u64) -> u64 {
    xxh3_joined(&[bucket, &[0], key, &digest.to_be_bytes()])
}

/// A 64-bit tree hash cut to 16 bits under a per-exchange salt.
///
/// Tree levels travel as 16-bit hashes, a quarter of the bytes. Two different hashes
/// then look equal with probability 2^-16 — which only delays a repair: the salt is
/// drawn afresh for every exchange, so the next cycle compares them under another cut.
pub fn short16(salt: u64, hash: u64) -> u16 {
    (XxHash3_64::oneshot_with_seed(salt, &hash.to_le_bytes()) >> 48) as u16
}

/// An entry hash cut to 32 bits under a per-exchange salt. Entries are listed against
/// all the other side's entries of the same segments, so they get more bits than tree
/// nodes, which are only ever compared one to one.
pub fn short32(salt: u64, hash: u64) -> u32 {
    (XxHash3_64::oneshot_with_seed(salt, &hash.to_le_bytes()) >> 32) as u32
}

impl MerkleTrees {
    /// Empty trees for a ring of `partitions` (a power of two), ready to rebuild.
    pub fn new(partitions: u32) -> MerkleTrees {
        let count = partitions as usize * SEGMENTS_PER_PARTITION as usize;
        MerkleTrees {
            partition_bits: partitions.trailing_zeros(),
            leaves: vec![0; count],
            rebuild: Some(Rebuild {
                leaves: vec![0; count],
                next: Vec::new(),
                rows: 0,
            }),
        }
    }

    /// Bytes of leaves per partition (fixed, whatever the number of keys).
    pub fn bytes_per_partition() -> usize {
        SEGMENTS_PER_PARTITION as usize * std::mem::size_of::<u64>()
    }

    /// True once the trees reflect all stored data (the start-up rebuild finished).
    pub fn is_ready(&self) -> bool {
        self.rebuild.is_none()
    }

    /// Records that the key at `position` changed from `old` to `new` (version digests;
    /// `None` for absent). `data_key` is its storage key, used to order it against a
    /// rebuild in progress.
    pub fn update(
        &mut self,
        position: u64,
        data_key: &[u8],
        bucket: &[u8],
        key: &[u8],
        old: Option<u64>,
        new: Option<u64>,
    ) {
        let delta = old.map_or(0, |d| entry_hash(bucket, key, d))
            ^ new.map_or(0, |d| entry_hash(bucket, key, d));
        let leaf = self.leaf_of(position);
        self.leaves[leaf] ^= delta;
        if let Some(r) = &mut self.rebuild
            && data_key < r.next.as_slice()
        {
            // Already scanned: the fresh tree must see the change too. Keys at or past
            // the cursor will be read in their new state when the scan reaches them.
            r.leaves[leaf] ^= delta;
        }
    }

    /// A partition's root: the XOR of its leaves.
    pub fn root(&self, partition: u32) -> u64 {
        self.segments(partition).iter().fold(0, |acc, l| acc ^ l)
    }

    /// A partition's branch hashes: the XOR of each run of [`LEAVES_PER_BRANCH`] leaves.
    pub fn branches(&self, partition: u32) -> Vec<u64> {
        self.segments(partition)
            .chunks(LEAVES_PER_BRANCH as usize)
            .map(|c| c.iter().fold(0, |acc, l| acc ^ l))
            .collect()
    }

    /// The leaves under one branch of a partition.
    pub fn leaves_of(&self, partition: u32, branch: u32) -> &[u64] {
        let per = LEAVES_PER_BRANCH as usize;
        let start = branch as usize * per;
        self.segments(partition)
            .get(start..start + per)
            .unwrap_or(&[])
    }

    /// A partition's leaves, in position order.
    pub fn segments(&self, partition: u32) -> &[u64] {
        let per = SEGMENTS_PER_PARTITION as usize;
        let start = partition as usize * per;
        self.leaves.get(start..start + per).unwrap_or(&[])
    }

    /// The segment (0..SEGMENTS_PER_PARTITION) of a position within its partition.
    pub fn segment_of(&self, position: u64) -> u32 {
        (self.leaf_of(position) % SEGMENTS_PER_PARTITION as usize) as u32
    }

    /// Scans up to [`REBUILD_ROWS_PER_STEP`] rows into the fresh trees; when the scan
    /// ends they replace the live ones. `digest` decodes a stored value into its version
    /// digest (None skips a record that does not decode; it is reported elsewhere).
    ///
    /// `seen` gets the ring position of every stored key scanned, so other start-up
    /// sketches (distinct keys) fill from this one scan instead of reading the data again.
    pub fn rebuild_step(
        &mut self,
        storage: &dyn Storage,
        digest: &dyn Fn(&[u8]) -> Option<u64>,
        seen: &mut dyn FnMut(u64),
    ) -> Result<RebuildProgress, StorageError> {
        let Some(mut r) = self.rebuild.take() else {
            return Ok(RebuildProgress::Done(0));
        };
        let rows = storage.scan(
            Space::Data,
            &r.next,
            None,
            REBUILD_ROWS_PER_STEP.min(SCAN_ROWS_MAX),
        )?;
        let done = rows.len() < REBUILD_ROWS_PER_STEP;
        for (raw, value) in &rows {
            r.rows += 1;
            let Ok(dk) = decode_data_key(raw) else {
                continue;
            };
            seen(dk.position);
            if let Some(d) = digest(value) {
                let leaf = self.leaf_of(dk.position);
                r.leaves[leaf] ^= entry_hash(&dk.bucket, &dk.key, d);
            }
        }
        if let Some((last, _)) = rows.last() {
            r.next = last.clone();
            r.next.push(0);
        }
        if done {
            self.leaves = r.leaves;
            return Ok(RebuildProgress::Done(r.rows));
        }
        let scanned = r.rows;
        self.rebuild = Some(r);
        Ok(RebuildProgress::Scanned(scanned))
    }

    fn leaf_of(&self, position: u64) -> usize {
        let bits = self.partition_bits + SEGMENTS_PER_PARTITION.trailing_zeros();
        if bits == 0 {
            0
        } else {
            (position >> (64 - bits)) as usize
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::placement::ring::key_position;
    use crate::storage::{MemoryStorage, Rmw, encode_data_key};

    fn put(storage: &MemoryStorage, trees: &mut MerkleTrees, key: &str, digest: u64) {
        let pos = key_position(b"b", key.as_bytes());
        let dk = encode_data_key(pos, b"b", key.as_bytes()).unwrap();
        let mut old = None;
        storage
            .update(Space::Data, &dk, &mut |cur| {
                old = cur.map(|v| u64::from_be_bytes(v.try_into().unwrap()));
                Rmw::Put(digest.to_be_bytes().to_vec())
            })
            .unwrap();
        trees.update(pos, &dk, b"b", key.as_bytes(), old, Some(digest));
    }

    fn digest_of(v: &[u8]) -> Option<u64> {
        Some(u64::from_be_bytes(v.try_into().ok()?))
    }

    fn rebuilt(storage: &MemoryStorage) -> MerkleTrees {
        let mut t = MerkleTrees::new(16);
        while let RebuildProgress::Scanned(_) =
            t.rebuild_step(storage, &digest_of, &mut |_| {}).unwrap()
        {}
        t
    }

    #[test]
    fn incremental_updates_match_a_rebuild_from_storage() {
        let storage = MemoryStorage::new();
        let mut live = rebuilt(&storage);
        for i in 0..3000u64 {
            put(&storage, &mut live, &format!("k{}", i % 1700), i);
        }
        let fresh = rebuilt(&storage);
        for p in 0..16 {
            assert_eq!(live.segments(p), fresh.segments(p), "partition {p}");
        }
        assert_ne!(live.root(0), 0);
    }

    #[test]
    fn one_changed_key_changes_exactly_one_segment() {
        let storage = MemoryStorage::new();
        let mut a = rebuilt(&storage);
        for i in 0..500u64 {
            put(&storage, &mut a, &format!("k{i}"), 1);
        }
        let mut b = a.clone();
        put(&storage, &mut b, "k42", 2);
        let pos = key_position(b"b", b"k42");
        let p = (pos >> 60) as u32;
        let differing: Vec<usize> = (0..SEGMENTS_PER_PARTITION as usize)
            .filter(|&s| a.segments(p)[s] != b.segments(p)[s])
            .collect();
        assert_eq!(differing, vec![b.segment_of(pos) as usize]);
        assert_ne!(a.root(p), b.root(p));
        for q in (0..16).filter(|&q| q != p) {
            assert_eq!(a.root(q), b.root(q));
        }
    }

    #[test]
    fn writes_during_a_rebuild_are_not_lost() {
        let storage = MemoryStorage::new();
        let mut scratch = rebuilt(&storage);
        for i in 0..5000u64 {
            put(&storage, &mut scratch, &format!("k{i}"), i);
        }
        // a restart: fresh trees rebuilding while writes keep arriving between steps
        let mut t = MerkleTrees::new(16);
        let mut i = 0u64;
        while let RebuildProgress::Scanned(_) =
            t.rebuild_step(&storage, &digest_of, &mut |_| {}).unwrap()
        {
            for _ in 0..300 {
                put(
                    &storage,
                    &mut t,
                    &format!("k{}", (i * 7919) % 6000),
                    10_000 + i,
                );
                i += 1;
            }
        }
        assert!(t.is_ready());
        let fresh = rebuilt(&storage);
        for p in 0..16 {
            assert_eq!(t.segments(p), fresh.segments(p), "partition {p}");
        }
        assert_eq!(MerkleTrees::bytes_per_partition(), 2048);
    }

    #[test]
    fn short_hashes_depend_on_the_salt() {
        let (a, b) = (entry_hash(b"b", b"k1", 1), entry_hash(b"b", b"k2", 1));
        // over many salts, two different hashes collide about 2^-16 of the time
        let collisions = (0..4096u64)
            .filter(|&s| short16(s, a) == short16(s, b))
            .count();
        assert!(collisions <= 2, "{collisions} collisions in 4096 salts");
        assert_eq!(short16(7, a), short16(7, a));
        assert_ne!(short32(1, a), short32(2, a));
    }
}
