//! Checks shared by the maintenance-command tests (PFS operations,
//! bulkfree, growfs, destroy): both checkers, makefs as a mounting kernel,
//! and the PFS list as a comparable summary.

use super::oracle::reference_fsck;
use std::path::Path;

/// A device spec for an image path.
pub fn spec_of(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

/// Two scratch copies of fixture `name` in `dir`, for the same operation
/// done by us and by makefs: (ours, kernel's) images and their specs.
pub fn twin_copies(name: &str, dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, String, String) {
    let ours = super::scratch_copy(name, dir);
    let kernel = dir.join("kernel.img");
    super::copy_sparse(&ours, &kernel);
    let (a, b) = (spec_of(&ours), spec_of(&kernel));
    (ours, kernel, a, b)
}

/// Our fsck finds nothing but informational notes in `spec`.
pub fn our_fsck_clean(spec: &str) {
    let bad = our_fsck_problems(spec);
    assert!(bad.is_empty(), "our fsck finds problems in {spec}:\n{}", bad.join("\n"));
}

/// Our fsck's findings above informational, as `ID location detail` lines.
pub fn our_fsck_problems(spec: &str) -> Vec<String> {
    let r = hammer2::fsck::fsck(spec, &Default::default()).unwrap();
    r.findings
        .iter()
        .filter(|f| f.problem.severity != hammer2::fsck::Severity::Info)
        .map(|f| format!("{} {} {}", f.problem.id, f.location, f.detail))
        .collect()
}

/// Our fsck, verifying the topology from every valid header copy
/// (`--all-copies`), finds nothing but informational notes.
pub fn all_copies_clean(spec: &str) {
    let opts = hammer2::fsck::FsckOptions { all_copies: true, ..Default::default() };
    let r = hammer2::fsck::fsck(spec, &opts).unwrap();
    let bad: Vec<String> =
        r.damage().map(|f| format!("{} {} {}", f.problem.id, f.location, f.detail)).collect();
    assert!(bad.is_empty(), "fsck --all-copies finds problems in {spec}:\n{}", bad.join("\n"));
}

/// The reference checker accepts `spec`.
pub fn oracle_fsck(spec: &str) {
    if !super::oracle::wanted() {
        return;
    }
    let (ok, text) = reference_fsck(spec);
    assert!(ok, "reference fsck_hammer2 rejects {spec}:\n{text}");
}

/// The PFSs of `spec` as (label, type, subtype), sorted by label.
pub fn pfs_summary(spec: &str) -> Vec<(String, String, String)> {
    let s = hammer2::write::session::Session::open(spec, true).unwrap();
    let mut v: Vec<_> = s.pfs_list().unwrap().into_iter().map(|p| (p.label, p.pfs_type, p.subtype)).collect();
    v.sort();
    v
}

/// Offsets of the 16 KiB chunks the freemap of `spec` marks allocated (11)
/// at or above `allocator_beg`, and those it marks possibly free (10).
pub fn chunk_states(spec: &str) -> (std::collections::BTreeSet<u64>, std::collections::BTreeSet<u64>) {
    let fs = hammer2::Hammer2::open_path(spec).unwrap();
    let a = hammer2::write::alloc::Allocator::load(&fs).unwrap();
    let beg = fs.voldata.allocator_beg.get() & !0x3fff;
    let (mut allocated, mut staged) = (std::collections::BTreeSet::new(), std::collections::BTreeSet::new());
    for zone in a.leaf_keys() {
        for off in (zone.max(beg)..zone + (1 << 30)).step_by(16384) {
            match a.chunk_state(off) {
                Some(hammer2::freemap::ChunkState::Allocated) => allocated.insert(off),
                Some(hammer2::freemap::ChunkState::PossiblyFree) => staged.insert(off),
                _ => false,
            };
        }
    }
    (allocated, staged)
}

/// The reference checker accepts the best header copy of `spec` (`-b`):
/// for repairs that leave older copies, the history, as they were.
pub fn oracle_fsck_best(spec: &str) {
    if !super::oracle::wanted() {
        return;
    }
    let out = std::process::Command::new(super::oracle::reftools().join("fsck_hammer2"))
        .args(["-q", "-b", spec])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "reference fsck_hammer2 -b rejects {spec}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
