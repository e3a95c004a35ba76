//! hammer2_dump as a user runs it.

use std::process::Command;

fn dump(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hammer2_dump")).args(args).output().unwrap()
}

#[test]
fn volhdr_table_marks_the_copy_in_use() {
    let img = crate::common::fixture("varied");
    let out = dump(&["volhdr", img.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("copy #1 *"), "{text}");
    assert!(text.contains("valid, in use"), "{text}");
    assert!(text.contains("copy in use: #1"), "{text}");
    assert!(text.contains("0x11"), "{text}");
}

#[test]
fn volhdr_json_on_every_fixture() {
    for (name, spec) in crate::common::all_specs() {
        let out = dump(&["volhdr", "--json", &spec]);
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let vols = v["volumes"].as_array().unwrap();
        assert_eq!(vols.len(), if name == "multivol" { 2 } else { 1 }, "{name}");
        for vol in vols {
            let copies = vol["copies"].as_array().unwrap();
            let in_use: Vec<_> = copies.iter().filter(|c| c["in_use"] == true).collect();
            assert_eq!(in_use.len(), 1, "{name}");
            for c in copies.iter().filter(|c| c["state"] != "absent") {
                assert_eq!(c["state"], "valid", "{name}");
                for crc in ["crc_sector0", "crc_sector1", "crc_header"] {
                    assert_eq!(c["header"][crc]["ok"], true, "{name} {crc}");
                }
            }
        }
    }
}

#[test]
fn volhdr_reports_a_corrupt_copy_and_bad_paths_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let img = crate::common::scratch_copy("newfs-1g", dir.path());
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
        f.seek(SeekFrom::Start(0x300)).unwrap();
        f.write_all(&[1, 2, 3]).unwrap();
    }
    let out = dump(&["volhdr", img.to_str().unwrap()]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("INVALID: sector 1 CRC"), "{text}");
    assert!(text.contains("NO VALID COPY"), "{text}");

    let out = dump(&["volhdr", "/nonexistent/x.img"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.starts_with("hammer2_dump: cannot open device: /nonexistent/x.img"), "{err}");
    let out = dump(&["volhdr"]);
    assert_eq!(out.status.code(), Some(2), "usage error");
}

#[test]
fn volhdr_on_a_truncated_device_shows_what_is_there_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let img = crate::common::scratch_copy("newfs-1g", dir.path());
    let full = std::fs::metadata(&img).unwrap().len();
    let out = dump(&["volhdr", img.to_str().unwrap()]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains("truncated"), "whole image: {text}");

    // Cut the image to 1 MiB: header copy #0 (at 0) is all that is left.
    let cut = 1u64 << 20;
    std::fs::OpenOptions::new().write(true).open(&img).unwrap().set_len(cut).unwrap();
    let out = dump(&["volhdr", img.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let want =
        format!("device is truncated: its header says the volume is {full} bytes, the device has {cut}");
    assert!(text.contains(&want), "{text}");
    assert!(text.contains("copy #0 *"), "the copy left is still shown: {text}");

    let out = dump(&["volhdr", "--json", img.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let vol = &v["volumes"][0];
    assert_eq!(vol["truncated"], true);
    assert_eq!(vol["header_size"], full);
    assert_eq!(vol["device_size"], cut);
}
