//! The Cyrus "basic" sync CRC of a mailbox (`SYNC_CRC` of `APPLY MAILBOX`):
//! the XOR of one CRC-32 per live record, the algorithm Cyrus 2.4 fixed
//! (`crc_basic` in imap/mailbox.c, unchanged in 3.6). It lets the replay
//! check its state of a mailbox against the server's after every line.
//!
//! With `expunge_mode: immediate` an expunged record leaves the server's
//! index at once; sync_client then sends a line without `SINCE_MODSEQ`
//! that lists only the changed records, and nothing says which records
//! went away. The CRC difference does: the replay looks for the one set of
//! unlisted records whose CRCs XOR to it.

use std::collections::HashMap;

use flate2::Crc;

fn crc32(b: &[u8]) -> u32 {
    let mut c = Crc::new();
    c.update(b);
    c.sum()
}

/// The CRC of one live record: flags (lower-cased, XORed so their order
/// does not matter), then `"<uid> <modseq> <last_updated> (<flagcrc>)
/// <internaldate> <guid>"`.
pub fn record_crc(
    uid: u32,
    modseq: u64,
    last_updated: i64,
    flags: &[String],
    internaldate: i64,
    guid: &str,
) -> u32 {
    let flagcrc = flags.iter().fold(0u32, |acc, f| {
        acc ^ crc32(f.to_ascii_lowercase().as_bytes())
    });
    crc32(format!("{uid} {modseq} {last_updated} ({flagcrc}) {internaldate} {guid}").as_bytes())
}

/// Pair searches are done up to this many candidates: beyond it a chance
/// collision of two CRCs with the difference becomes likely enough.
const PAIR_LIMIT: usize = 2000;

/// The indices of the one subset of `cands` whose XOR is `diff`, when it
/// is certain: exact for up to 32 candidates (linear algebra over GF(2),
/// unique only when the CRCs are independent), else the only single or
/// pair that matches. `None` when there is none or more than one.
pub fn solve(diff: u32, cands: &[u32]) -> Option<Vec<usize>> {
    if diff == 0 {
        return None;
    }
    if cands.len() <= 32 {
        return solve_exact(diff, cands);
    }
    let mut found: Vec<Vec<usize>> = cands
        .iter()
        .enumerate()
        .filter(|(_, c)| **c == diff)
        .map(|(i, _)| vec![i])
        .collect();
    if cands.len() <= PAIR_LIMIT {
        let mut by_crc: HashMap<u32, Vec<usize>> = HashMap::new();
        for (i, c) in cands.iter().enumerate() {
            by_crc.entry(*c).or_default().push(i);
        }
        for (i, c) in cands.iter().enumerate() {
            for &j in by_crc.get(&(c ^ diff)).map(Vec::as_slice).unwrap_or(&[]) {
                if j > i {
                    found.push(vec![i, j]);
                }
            }
        }
    }
    (found.len() == 1).then(|| found.remove(0))
}

/// Gaussian elimination over GF(2): each basis row keeps which candidates
/// it combines. A dependent candidate means more than one solution.
fn solve_exact(diff: u32, cands: &[u32]) -> Option<Vec<usize>> {
    // (pivot bit, vector, combination of candidate indices)
    let mut basis: Vec<(u32, u32, u64)> = Vec::new();
    for (i, &c) in cands.iter().enumerate() {
        let (mut v, mut m) = (c, 1u64 << i);
        for &(bit, bv, bm) in &basis {
            if v & bit != 0 {
                v ^= bv;
                m ^= bm;
            }
        }
        if v == 0 {
            return None;
        }
        let bit = 1u32 << (31 - v.leading_zeros());
        for row in basis.iter_mut() {
            if row.1 & bit != 0 {
                row.1 ^= v;
                row.2 ^= m;
            }
        }
        basis.push((bit, v, m));
    }
    let (mut v, mut m) = (diff, 0u64);
    for &(bit, bv, bm) in &basis {
        if v & bit != 0 {
            v ^= bv;
            m ^= bm;
        }
    }
    (v == 0).then(|| (0..cands.len()).filter(|i| m & (1 << i) != 0).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_crc_is_cyrus_crc_basic() {
        // user.ivan's first line in the expunge-immediate corpus: SYNC_CRC
        // 3326796796 over its four records.
        let recs = [
            (
                1,
                2,
                1796117135,
                &["\\Seen"][..],
                1735725600,
                "c9caf15b60b954f92b29650f03bbf5de659e13c8",
            ),
            (
                2,
                3,
                1796117135,
                &[][..],
                1735812000,
                "9be33a87c1fd8f59f5516e9137c1abec16484ee5",
            ),
            (
                3,
                4,
                1796117135,
                &[][..],
                1735898400,
                "3795b1ff445fd6b558f84abb4b13df3c6835769a",
            ),
            (
                4,
                5,
                1796117136,
                &[][..],
                1735984800,
                "16b9b17f16abfb836e20f94173b1e245b163cb79",
            ),
        ];
        let crc = recs
            .iter()
            .fold(0, |acc, (uid, modseq, lu, flags, date, guid)| {
                let f: Vec<String> = flags.iter().map(|s| s.to_string()).collect();
                acc ^ record_crc(*uid, *modseq, *lu, &f, *date, guid)
            });
        assert_eq!(crc, 3326796796);
        // Flag order and case do not matter.
        let f = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            record_crc(9, 3, 5, &f(&["\\Seen", "$Label1"]), 7, "ab"),
            record_crc(9, 3, 5, &f(&["$label1", "\\SEEN"]), 7, "ab")
        );
    }

    #[test]
    fn solves_unique_subsets_only() {
        let c = [0x1111_0000, 0x0000_2222, 0x4400_0044, 0x0808_0808];
        assert_eq!(solve(c[1] ^ c[3], &c), Some(vec![1, 3]));
        assert_eq!(solve(c[2], &c), Some(vec![2]));
        assert_eq!(solve(0x0000_0001, &c), None);
        // A dependent set has more than one answer.
        let d = [1, 2, 3];
        assert_eq!(solve(3, &d), None);
        // Many candidates: the one pair.
        let many: Vec<u32> = (0..100u32)
            .map(|i| i.wrapping_mul(0x9E37_79B9) | 1 << 31)
            .collect();
        let s = solve(many[10] ^ many[77], &many).unwrap();
        assert_eq!(s, vec![10, 77]);
    }
}
