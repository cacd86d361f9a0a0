//! The initramfs stage: from the kernel's hand-off to the real root.
//!
//! `/init` (node-agent) mounts the kernel filesystems, loads the modules the
//! initramfs carries (in `modules.dep` order), attaches `/rootfs.squashfs`
//! to a loop device and mounts it read-only at `/newroot`, puts a tmpfs
//! overlay on `/etc` and tmpfs on `/var` and `/tmp`, moves the kernel
//! filesystems across, switches root and executes `/usr/bin/node-agent`,
//! which continues as PID 1 of the booted node.
//!
//! Every step goes through the [`Host`] trait, so the sequence is tested
//! with a recording double and only [`LinuxHost`] touches the machine.

pub mod loopdev;
pub mod modules;

use std::path::{Path, PathBuf};

use nix::mount::MsFlags;

use modules::ModulesDep;

pub const SQUASHFS: &str = "/rootfs.squashfs";
pub const NEW_ROOT: &str = "/newroot";
/// The program that continues as PID 1 on the real root.
pub const SYSTEM_INIT: &str = "/usr/bin/node-agent";

#[derive(Debug, thiserror::Error)]
#[error("{step}: {source}")]
pub struct InitError {
    pub step: String,
    #[source]
    pub source: std::io::Error,
}

fn step(step: impl Into<String>) -> impl FnOnce(std::io::Error) -> InitError {
    let step = step.into();
    move |source| InitError { step, source }
}

/// The machine, as the initramfs stage uses it.
pub trait Host {
    fn mkdir(&mut self, path: &Path) -> std::io::Result<()>;
    fn mount(
        &mut self,
        source: &str,
        target: &Path,
        fstype: &str,
        flags: MsFlags,
        data: Option<&str>,
    ) -> std::io::Result<()>;
    fn move_mount(&mut self, from: &Path, to: &Path) -> std::io::Result<()>;
    fn read_to_string(&mut self, path: &Path) -> std::io::Result<String>;
    fn kernel_release(&mut self) -> String;
    /// Loads a module; `Ok(false)` when it was already loaded.
    fn load_module(&mut self, path: &Path) -> std::io::Result<bool>;
    fn attach_loop(&mut self, file: &Path) -> std::io::Result<PathBuf>;
    /// chdir to `new_root`, move it onto `/`, chroot into it.
    fn switch_root(&mut self, new_root: &Path) -> std::io::Result<()>;
    /// Replaces this process; returns only on failure.
    fn exec(&mut self, program: &Path) -> std::io::Error;
}

/// Progress lines for the console.
pub trait Console {
    fn line(&mut self, text: &str);
}

impl<W: std::io::Write> Console for W {
    fn line(&mut self, text: &str) {
        let _ = writeln!(self, "{text}");
        let _ = self.flush();
    }
}

/// Runs the initramfs stage up to the `exec` of the system init. Returns
/// only on failure.
pub fn run(host: &mut dyn Host, console: &mut dyn Console) -> InitError {
    match prepare_root(host, console) {
        Ok(()) => {
            console.line(&format!("[init] starting {SYSTEM_INIT} on the new root"));
            let source = host.exec(Path::new(SYSTEM_INIT));
            InitError {
                step: format!("executing {SYSTEM_INIT}"),
                source,
            }
        }
        Err(error) => error,
    }
}

fn prepare_root(host: &mut dyn Host, console: &mut dyn Console) -> Result<(), InitError> {
    let none = MsFlags::empty();
    let quiet = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    for (fstype, target, flags, data) in [
        ("proc", "/proc", quiet, None),
        ("sysfs", "/sys", quiet, None),
        ("devtmpfs", "/dev", MsFlags::MS_NOSUID, Some("mode=0755")),
        (
            "tmpfs",
            "/run",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("mode=0755"),
        ),
    ] {
        host.mkdir(Path::new(target))
            .map_err(step(format!("creating {target}")))?;
        host.mount(fstype, Path::new(target), fstype, flags, data)
            .map_err(step(format!("mounting {fstype} on {target}")))?;
    }

    let release = host.kernel_release();
    let dep_path = PathBuf::from(format!("/usr/lib/modules/{release}/modules.dep"));
    let dep_text = host
        .read_to_string(&dep_path)
        .map_err(step(format!("reading {}", dep_path.display())))?;
    let dep = ModulesDep::parse(&dep_text);
    let wanted: Vec<String> = dep.names().cloned().collect();
    let (order, _) = dep.load_order(&wanted);
    let mut loaded = 0;
    for relative in &order {
        let path = PathBuf::from(format!("/usr/lib/modules/{release}/{relative}"));
        if host
            .load_module(&path)
            .map_err(step(format!("loading {}", path.display())))?
        {
            loaded += 1;
        }
    }
    console.line(&format!(
        "[init] loaded {loaded} kernel modules for kernel {release}"
    ));

    let device = host
        .attach_loop(Path::new(SQUASHFS))
        .map_err(step(format!("attaching {SQUASHFS} to a loop device")))?;
    let new_root = Path::new(NEW_ROOT);
    host.mkdir(new_root)
        .map_err(step(format!("creating {NEW_ROOT}")))?;
    host.mount(
        &device.to_string_lossy(),
        new_root,
        "squashfs",
        MsFlags::MS_RDONLY,
        None,
    )
    .map_err(step(format!(
        "mounting {} (squashfs) on {NEW_ROOT}",
        device.display()
    )))?;
    console.line(&format!(
        "[init] mounted {SQUASHFS} read-only on {NEW_ROOT} via {}",
        device.display()
    ));

    // /etc is writable through a tmpfs overlay: configuration applied at
    // boot lives in memory and the image stays untouched.
    let etc_state = Path::new("/run/cairn/etc");
    for dir in ["upper", "work"] {
        host.mkdir(&etc_state.join(dir))
            .map_err(step("creating the /etc overlay directories"))?;
    }
    let etc = new_root.join("etc");
    host.mount(
        "overlay",
        &etc,
        "overlay",
        none,
        Some("lowerdir=/newroot/etc,upperdir=/run/cairn/etc/upper,workdir=/run/cairn/etc/work"),
    )
    .map_err(step("mounting the /etc overlay"))?;
    for (target, data) in [("var", "mode=0755"), ("tmp", "mode=1777")] {
        host.mount(
            "tmpfs",
            &new_root.join(target),
            "tmpfs",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(data),
        )
        .map_err(step(format!("mounting tmpfs on /{target}")))?;
    }
    for target in ["/proc", "/sys", "/dev", "/run"] {
        let to = new_root.join(target.trim_start_matches('/'));
        host.move_mount(Path::new(target), &to)
            .map_err(step(format!("moving {target} into the new root")))?;
    }
    host.switch_root(new_root).map_err(step("switching root"))?;
    Ok(())
}

/// The real machine.
#[derive(Debug, Default)]
pub struct LinuxHost;

impl Host for LinuxHost {
    fn mkdir(&mut self, path: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn mount(
        &mut self,
        source: &str,
        target: &Path,
        fstype: &str,
        flags: MsFlags,
        data: Option<&str>,
    ) -> std::io::Result<()> {
        nix::mount::mount(Some(source), target, Some(fstype), flags, data)
            .map_err(std::io::Error::from)
    }

    fn move_mount(&mut self, from: &Path, to: &Path) -> std::io::Result<()> {
        nix::mount::mount(Some(from), to, None::<&str>, MsFlags::MS_MOVE, None::<&str>)
            .map_err(std::io::Error::from)
    }

    fn read_to_string(&mut self, path: &Path) -> std::io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn kernel_release(&mut self) -> String {
        nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    fn load_module(&mut self, path: &Path) -> std::io::Result<bool> {
        let file = std::fs::File::open(path)?;
        match nix::kmod::finit_module(&file, c"", nix::kmod::ModuleInitFlags::empty()) {
            Ok(()) => Ok(true),
            Err(nix::errno::Errno::EEXIST) => Ok(false),
            Err(errno) => Err(errno.into()),
        }
    }

    fn attach_loop(&mut self, file: &Path) -> std::io::Result<PathBuf> {
        loopdev::attach(file)
    }

    fn switch_root(&mut self, new_root: &Path) -> std::io::Result<()> {
        nix::unistd::chdir(new_root)?;
        nix::mount::mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)?;
        nix::unistd::chroot(".")?;
        nix::unistd::chdir("/")?;
        Ok(())
    }

    fn exec(&mut self, program: &Path) -> std::io::Error {
        use std::os::unix::process::CommandExt;
        std::process::Command::new(program).exec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Recorder {
        steps: Vec<String>,
        fail_on: Option<&'static str>,
    }

    impl Recorder {
        fn record(&mut self, step: String) -> std::io::Result<()> {
            let fail = self.fail_on.is_some_and(|f| step.contains(f));
            self.steps.push(step);
            if fail {
                Err(std::io::Error::from_raw_os_error(19))
            } else {
                Ok(())
            }
        }
    }

    impl Host for Recorder {
        fn mkdir(&mut self, _path: &Path) -> std::io::Result<()> {
            Ok(())
        }
        fn mount(
            &mut self,
            source: &str,
            target: &Path,
            fstype: &str,
            flags: MsFlags,
            data: Option<&str>,
        ) -> std::io::Result<()> {
            let ro = if flags.contains(MsFlags::MS_RDONLY) {
                " ro"
            } else {
                ""
            };
            self.record(
                format!(
                    "mount {fstype} {source} {}{ro} {}",
                    target.display(),
                    data.unwrap_or("")
                )
                .trim_end()
                .to_owned(),
            )
        }
        fn move_mount(&mut self, from: &Path, to: &Path) -> std::io::Result<()> {
            self.record(format!("move {} {}", from.display(), to.display()))
        }
        fn read_to_string(&mut self, path: &Path) -> std::io::Result<String> {
            self.record(format!("read {}", path.display()))?;
            Ok("kernel/fs/squashfs/squashfs.ko:\nkernel/fs/overlayfs/overlay.ko:\nkernel/drivers/block/loop.ko:\n".to_owned())
        }
        fn kernel_release(&mut self) -> String {
            "6.1.0-test".to_owned()
        }
        fn load_module(&mut self, path: &Path) -> std::io::Result<bool> {
            self.record(format!("load {}", path.display()))?;
            Ok(true)
        }
        fn attach_loop(&mut self, file: &Path) -> std::io::Result<PathBuf> {
            self.record(format!("loop {}", file.display()))?;
            Ok(PathBuf::from("/dev/loop0"))
        }
        fn switch_root(&mut self, new_root: &Path) -> std::io::Result<()> {
            self.record(format!("switch-root {}", new_root.display()))
        }
        fn exec(&mut self, program: &Path) -> std::io::Error {
            self.steps.push(format!("exec {}", program.display()));
            std::io::Error::from_raw_os_error(2)
        }
    }

    #[test]
    fn the_root_is_prepared_in_order_then_init_is_executed() {
        let mut host = Recorder::default();
        let mut console = Vec::new();
        let error = run(&mut host, &mut console);
        assert_eq!(error.step, "executing /usr/bin/node-agent");
        let expected = [
            "mount proc proc /proc",
            "mount sysfs sysfs /sys",
            "mount devtmpfs devtmpfs /dev mode=0755",
            "mount tmpfs tmpfs /run mode=0755",
            "read /usr/lib/modules/6.1.0-test/modules.dep",
            "load /usr/lib/modules/6.1.0-test/kernel/drivers/block/loop.ko",
            "load /usr/lib/modules/6.1.0-test/kernel/fs/overlayfs/overlay.ko",
            "load /usr/lib/modules/6.1.0-test/kernel/fs/squashfs/squashfs.ko",
            "loop /rootfs.squashfs",
            "mount squashfs /dev/loop0 /newroot ro",
            "mount overlay overlay /newroot/etc lowerdir=/newroot/etc,upperdir=/run/cairn/etc/upper,workdir=/run/cairn/etc/work",
            "mount tmpfs tmpfs /newroot/var mode=0755",
            "mount tmpfs tmpfs /newroot/tmp mode=1777",
            "move /proc /newroot/proc",
            "move /sys /newroot/sys",
            "move /dev /newroot/dev",
            "move /run /newroot/run",
            "switch-root /newroot",
            "exec /usr/bin/node-agent",
        ];
        assert_eq!(host.steps, expected);
        let console = String::from_utf8(console).expect("utf-8");
        assert!(
            console.contains("[init] loaded 3 kernel modules for kernel 6.1.0-test"),
            "{console}"
        );
    }

    #[test]
    fn a_failing_step_stops_the_sequence_and_names_itself() {
        let mut host = Recorder {
            fail_on: Some("squashfs /dev/loop0"),
            ..Recorder::default()
        };
        let error = run(&mut host, &mut Vec::new());
        assert!(
            error
                .step
                .contains("mounting /dev/loop0 (squashfs) on /newroot"),
            "{error}"
        );
        assert!(
            !host.steps.iter().any(|s| s.starts_with("exec")),
            "nothing runs after a failure"
        );
    }
}
