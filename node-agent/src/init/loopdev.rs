//! Attaching a file to a loop device, the one operation of the boot flow
//! that needs raw ioctls.
//!
//! `LOOP_CTL_GET_FREE` on `/dev/loop-control` returns a free device number;
//! `LOOP_SET_FD` binds the backing file. The file is opened read-only, which
//! makes the kernel mark the loop device read-only as well.

#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

const LOOP_CTL_GET_FREE: u64 = 0x4C82;
const LOOP_SET_FD: u64 = 0x4C00;

/// Binds `backing` to a free loop device and returns the device path.
pub fn attach(backing: &Path) -> std::io::Result<PathBuf> {
    let control = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/loop-control")?;
    // SAFETY: LOOP_CTL_GET_FREE takes no argument and only returns a number;
    // the descriptor is valid for the duration of the call.
    let number = unsafe { nix::libc::ioctl(control.as_raw_fd(), LOOP_CTL_GET_FREE as _) };
    if number < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let device_path = PathBuf::from(format!("/dev/loop{number}"));
    let device = OpenOptions::new().read(true).open(&device_path)?;
    let file = File::open(backing)?;
    // SAFETY: LOOP_SET_FD takes the backing file descriptor by value; both
    // descriptors are open for the duration of the call.
    let result = unsafe {
        nix::libc::ioctl(
            device.as_raw_fd(),
            LOOP_SET_FD as _,
            file.as_raw_fd() as nix::libc::c_ulong,
        )
    };
    if result < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(device_path)
}
