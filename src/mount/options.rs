//! What `hammer2_mount -o` takes, and `DEVICE@PFS`.

use crate::error::{Error, Result};
use std::time::Duration;

/// Default interval between the flusher's commits (`commit=`).
pub const DEFAULT_COMMIT: Duration = Duration::from_secs(5);

/// Default bytes of dirty data past which the flusher commits (`dirty=`).
pub const DEFAULT_DIRTY: u64 = 256 << 20;

/// Options of a mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    /// Read-write (`rw`); read-only otherwise (`ro`, the default).
    pub write: bool,
    /// The flusher commits this often (read-write mounts).
    pub commit: Duration,
    /// The flusher commits when this many bytes were written since the last
    /// commit (read-write mounts).
    pub dirty: u64,
    /// Other users may use the mount (`allow_other`).
    pub allow_other: bool,
    /// Root may use the mount as well as its owner (`allow_root`).
    pub allow_root: bool,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            write: false,
            commit: DEFAULT_COMMIT,
            dirty: DEFAULT_DIRTY,
            allow_other: false,
            allow_root: false,
        }
    }
}

impl MountOptions {
    /// Parses `-o` arguments, each a comma-separated list (`ro`, `rw`,
    /// `commit=SECONDS`, `dirty=SIZE`, `allow_other`, `allow_root`; `dev`,
    /// `suid`, `exec`, `atime` and their `no` forms are accepted and left
    /// to the kernel's defaults for FUSE). Later options win.
    pub fn parse<S: AsRef<str>>(lists: &[S]) -> Result<MountOptions> {
        let mut o = MountOptions::default();
        for list in lists {
            for opt in list.as_ref().split(',').filter(|s| !s.is_empty()) {
                let (key, value) = match opt.split_once('=') {
                    Some((k, v)) => (k, Some(v)),
                    None => (opt, None),
                };
                let need =
                    || value.ok_or_else(|| Error::Usage(format!("-o {key} needs a value ({key}=...)")));
                match key {
                    "ro" => o.write = false,
                    "rw" => o.write = true,
                    "commit" => o.commit = parse_seconds(need()?)?,
                    "dirty" => o.dirty = parse_size(need()?)?,
                    "allow_other" => o.allow_other = true,
                    "allow_root" => o.allow_root = true,
                    "dev" | "nodev" | "suid" | "nosuid" | "exec" | "noexec" | "atime" | "noatime"
                    | "defaults" => {}
                    _ => return Err(Error::Usage(format!("unknown mount option '{opt}'"))),
                }
                if value.is_some() && !matches!(key, "commit" | "dirty") {
                    return Err(Error::Usage(format!("-o {key} takes no value")));
                }
            }
        }
        Ok(o)
    }
}

/// `SECONDS`: a positive number, fractions allowed.
fn parse_seconds(s: &str) -> Result<Duration> {
    let secs: f64 = s.parse().map_err(|_| Error::Usage(format!("commit={s}: not a number of seconds")))?;
    if secs.is_nan() || secs <= 0.0 {
        return Err(Error::Usage(format!("commit={s}: must be more than 0 seconds")));
    }
    Duration::try_from_secs_f64(secs).map_err(|_| Error::Usage(format!("commit={s}: out of range")))
}

/// `SIZE`: bytes, with an optional K, M, G or T suffix (powers of 1024).
fn parse_size(s: &str) -> Result<u64> {
    let bad = || Error::Usage(format!("dirty={s}: not a size (bytes, or a number with K, M, G or T)"));
    let (num, shift) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(bad()),
            };
            (&s[..i], shift)
        }
        _ => (s, 0),
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    let bytes = n.checked_mul(1u64 << shift).ok_or_else(bad)?;
    if bytes == 0 {
        return Err(Error::Usage(format!("dirty={s}: must be more than 0")));
    }
    Ok(bytes)
}

/// Splits `DEVICE[@PFS]`. A path that exists is a device as a whole, even
/// with an `@` in its name; otherwise the last `@` starts the PFS label.
pub fn split_target(target: &str) -> (String, Option<String>) {
    if std::path::Path::new(target).exists() {
        return (target.to_string(), None);
    }
    match target.rsplit_once('@') {
        Some((dev, pfs)) if !dev.is_empty() && !pfs.is_empty() => (dev.to_string(), Some(pfs.to_string())),
        _ => (target.to_string(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse() {
        let o = MountOptions::parse(&["rw,commit=2.5", "dirty=64M,allow_other"]).unwrap();
        assert!(o.write && o.allow_other && !o.allow_root);
        assert_eq!(o.commit, Duration::from_millis(2500));
        assert_eq!(o.dirty, 64 << 20);
        assert_eq!(MountOptions::parse::<&str>(&[]).unwrap(), MountOptions::default());
        assert!(!MountOptions::parse(&["rw,ro"]).unwrap().write);
        for bad in ["commit=0", "commit=x", "dirty=12Q", "dirty=0", "bogus", "ro=1", "commit"] {
            assert!(matches!(MountOptions::parse(&[bad]), Err(Error::Usage(_))), "{bad}");
        }
    }

    #[test]
    fn targets() {
        assert_eq!(split_target("/no/such.img@DATA"), ("/no/such.img".into(), Some("DATA".into())));
        assert_eq!(split_target("/no/such.img"), ("/no/such.img".into(), None));
        assert_eq!(split_target("/no/such.img@"), ("/no/such.img@".into(), None));
    }
}
