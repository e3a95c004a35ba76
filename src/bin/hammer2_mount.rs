//! hammer2_mount: a HAMMER2 PFS mounted through FUSE.

mod common;

use clap::Parser;
use hammer2::cli::mount::MountCli;
use hammer2::mount::{self, MountOptions, MountRequest};
use std::sync::Arc;

fn main() {
    let cli = MountCli::parse();
    common::run("hammer2_mount", || {
        let options = MountOptions::parse(&cli.options).map_err(|e| common::usage(e.to_string()))?;
        if !cli.mountpoint.is_dir() {
            return Err(common::usage(format!("{}: not a directory", cli.mountpoint.display())));
        }
        let (device, pfs) = mount::split_target(&cli.device);
        // The daemon forks before anything opens the device or starts a thread.
        let ready: Box<dyn FnOnce()> =
            if cli.foreground { Box::new(|| {}) } else { Box::new(mount::daemonize()?) };
        // Ctrl-C and SIGTERM unmount (a read-write mount then commits), so
        // that no dead mount is left behind.
        let mp = cli.mountpoint.clone();
        let _ = ctrlc::set_handler(move || {
            if let Err(e) = mount::unmount(&mp) {
                eprintln!("hammer2_mount: {e}");
            }
        });
        let log: mount::Log = if cli.foreground {
            Arc::new(|msg: &str| eprintln!("hammer2_mount: {msg}"))
        } else {
            mount::syslog_log()
        };
        let req = MountRequest {
            device: &device,
            pfs: pfs.as_deref(),
            mountpoint: &cli.mountpoint,
            options,
            wait: cli.wait.get(),
            log,
        };
        mount::mount(req, ready).map_err(|e| match e {
            e @ hammer2::Error::Locked { .. } => common::lock_refused(e),
            e => e.into(),
        })?;
        Ok(common::EXIT_OK)
    })
}
