//! Telling the kernel a disk's partition table changed (`BLKRRPART`), the
//! one raw ioctl growing STATE needs.

#![allow(unsafe_code)]

use std::fs::File;
use std::os::fd::AsRawFd;

/// `_IO(0x12, 95)`.
const BLKRRPART: u64 = 0x125F;

/// Makes the kernel re-read `disk`'s partition table. Fails with `EBUSY`
/// while a partition of it is in use.
pub fn reread_partitions(disk: &File) -> std::io::Result<()> {
    // SAFETY: BLKRRPART takes no argument; the descriptor is valid for the
    // duration of the call.
    let result = unsafe { nix::libc::ioctl(disk.as_raw_fd(), BLKRRPART as _) };
    if result < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
