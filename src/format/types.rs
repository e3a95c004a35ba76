//! Type codes stored in single bytes on media, decoded into enums that keep
//! unknown values instead of rejecting them (a checker must be able to name
//! what it found).

/// Declares a `u8`-coded enum with an `Unknown(u8)` arm, lossless in both
/// directions, with a short lower-case name per known value.
macro_rules! code_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $value:expr => $text:expr),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
            /// A value this version does not know.
            Unknown(u8),
        }

        impl From<u8> for $name {
            fn from(v: u8) -> Self {
                match v {
                    $($value => Self::$variant,)+
                    other => Self::Unknown(other),
                }
            }
        }

        impl From<$name> for u8 {
            fn from(v: $name) -> u8 {
                match v {
                    $($name::$variant => $value,)+
                    $name::Unknown(other) => other,
                }
            }
        }

        impl $name {
            /// Short name as HAMMER2's own tools print it.
            pub fn name(self) -> std::borrow::Cow<'static, str> {
                match self {
                    $(Self::$variant => std::borrow::Cow::Borrowed($text),)+
                    Self::Unknown(v) => std::borrow::Cow::Owned(format!("unknown({v})")),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.name())
            }
        }
    };
}

code_enum! {
    /// `blockref.type`: what the referenced media holds.
    BlockrefType {
        Empty = 0 => "empty",
        Inode = 1 => "inode",
        Indirect = 2 => "indirect",
        Data = 3 => "data",
        Dirent = 4 => "dirent",
        FreemapNode = 5 => "freemap_node",
        FreemapLeaf = 6 => "freemap_leaf",
        Invalid = 7 => "invalid",
        /// Pseudo type of the freemap root (never on media).
        Freemap = 254 => "freemap",
        /// Pseudo type of the volume root (never on media).
        Volume = 255 => "volume",
    }
}

code_enum! {
    /// Check method: high nibble of `blockref.methods`, low nibble of `check_algo`.
    CheckMethod {
        None = 0 => "none",
        Disabled = 1 => "disabled",
        Iscsi32 = 2 => "iscsi32",
        Xxhash64 = 3 => "xxhash64",
        Sha192 = 4 => "sha192",
        Freemap = 5 => "freemap",
    }
}

code_enum! {
    /// Compression method: low nibble of `blockref.methods` and of `comp_algo`.
    CompMethod {
        None = 0 => "none",
        Autozero = 1 => "autozero",
        Lz4 = 2 => "lz4",
        Zlib = 3 => "zlib",
    }
}

code_enum! {
    /// `inode.meta.type`: the object an inode describes.
    ObjType {
        Unknown0 = 0 => "unknown",
        Directory = 1 => "directory",
        Regfile = 2 => "regfile",
        Fifo = 4 => "fifo",
        Cdev = 5 => "cdev",
        Bdev = 6 => "bdev",
        Softlink = 7 => "softlink",
        Unused08 = 8 => "unused08",
        Socket = 9 => "socket",
        Whiteout = 10 => "whiteout",
    }
}

code_enum! {
    /// Low nibble of `inode.meta.pfs_type`: the role of a PFS.
    PfsType {
        None = 0 => "none",
        Cache = 1 => "cache",
        Unused02 = 2 => "unused02",
        Slave = 3 => "slave",
        SoftSlave = 4 => "soft_slave",
        SoftMaster = 5 => "soft_master",
        Master = 6 => "master",
        Unused07 = 7 => "unused07",
        Suproot = 8 => "suproot",
        Dummy = 9 => "dummy",
    }
}

code_enum! {
    /// `inode.meta.pfs_subtype`.
    PfsSubtype {
        None = 0 => "none",
        Snapshot = 1 => "snapshot",
        Autosnap = 2 => "autosnap",
    }
}

/// Packs check and compression methods into `blockref.methods`.
pub fn encode_methods(check: CheckMethod, comp: CompMethod) -> u8 {
    ((u8::from(check) & 15) << 4) | (u8::from(comp) & 15)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_including_unknown() {
        for v in 0..=255u8 {
            assert_eq!(u8::from(BlockrefType::from(v)), v);
            assert_eq!(u8::from(CheckMethod::from(v)), v);
            assert_eq!(u8::from(PfsType::from(v)), v);
        }
        assert_eq!(BlockrefType::from(200), BlockrefType::Unknown(200));
        assert_eq!(CheckMethod::from(3), CheckMethod::Xxhash64);
        assert_eq!(BlockrefType::from(200).to_string(), "unknown(200)");
        assert_eq!(encode_methods(CheckMethod::Xxhash64, CompMethod::Lz4), 0x32);
    }
}
