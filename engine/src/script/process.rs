//! The script's process group: exit detection without reaping, group
//! signals, a scan of the group's members, and reaping.
//!
//! The main process is reaped **last**. While it is an unreaped zombie its
//! pid, which is also the group id, cannot be reused, so every signal sent
//! to `-pgid` reaches the script's group and no one else's.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ExitStatus};
use std::time::Duration;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// The running script: its main process (leader of its own group).
pub(crate) struct Group {
    pid: libc::pid_t,
    /// Readable once the main process has exited (Linux pidfd); `None`
    /// where pidfds are unavailable, and exit is polled instead.
    pidfd: Option<AsyncFd<OwnedFd>>,
    reaped: Option<ExitStatus>,
}

impl Group {
    /// Takes over `child`, a group leader. `std`'s `Child` neither kills
    /// nor waits when dropped; from here on the pid is ours to reap.
    pub(crate) fn new(child: Child) -> Group {
        let pid = child.id() as libc::pid_t;
        let pidfd = pidfd_open(pid).and_then(|fd| {
            // SAFETY: an OwnedFd is a valid open fd and always returns the
            // same one; the AsyncFd owns it until dropped.
            unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }.ok()
        });
        Group {
            pid,
            pidfd,
            reaped: None,
        }
    }

    /// Whether the main process has exited (it stays unreaped).
    pub(crate) fn has_exited(&self) -> bool {
        self.reaped.is_some() || exited_nowait(self.pid)
    }

    /// Resolves once the main process has exited; does not reap it.
    pub(crate) async fn exited(&self) {
        if let Some(fd) = &self.pidfd {
            // An error means the reactor is gone (runtime shutting down):
            // fall back to polling.
            while let Ok(mut guard) = fd.readable().await {
                if self.has_exited() {
                    return;
                }
                guard.clear_ready();
            }
        }
        // Without a pidfd: poll. Cheap (one waitid), and the latency is
        // small next to any script's run time.
        while !self.has_exited() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends `sig` to every process of the group. Errors are ignored: ESRCH
    /// means there is no one left, which is the point.
    pub(crate) fn signal(&self, sig: libc::c_int) {
        // SAFETY: plain syscall; a negative pid addresses the group.
        unsafe {
            libc::kill(-self.pid, sig);
        }
    }

    /// Live members of the group other than the main process, or `None`
    /// where the system offers no way to list them.
    pub(crate) fn others_alive(&self) -> Option<usize> {
        members(self.pid).map(|m| m.iter().filter(|p| p.pid != self.pid && !p.zombie).count())
    }

    /// Reaps members of the group that died as our children: orphans are
    /// re-parented to the nearest subreaper, which may be this process. Only
    /// the group's own pids are waited for, so no other child's status is
    /// stolen from whoever owns it.
    pub(crate) fn reap_orphans(&self) {
        let me = std::process::id() as libc::pid_t;
        for p in members(self.pid).unwrap_or_default() {
            if p.pid != self.pid && p.zombie && p.ppid == me {
                waitpid(p.pid, libc::WNOHANG);
            }
        }
    }

    /// Reaps the main process (once it has exited). The group id may be
    /// reused afterwards: no group signal may follow this.
    pub(crate) fn reap(&mut self) -> Option<ExitStatus> {
        if self.reaped.is_none() {
            self.reaped = waitpid(self.pid, libc::WNOHANG);
        }
        self.reaped
    }
}

impl Drop for Group {
    /// The run was abandoned (its future dropped) or ended without reaping:
    /// never leave the script running or a zombie behind.
    fn drop(&mut self) {
        if self.reaped.is_some() {
            return;
        }
        self.signal(libc::SIGKILL);
        if waitpid(self.pid, libc::WNOHANG).is_none() {
            // Dying after SIGKILL takes a moment; do not block the dropping
            // task for it.
            let pid = self.pid;
            std::thread::spawn(move || waitpid(pid, 0));
        }
    }
}

/// `waitpid`, retried on EINTR; `Some` once `pid` is reaped (or was).
fn waitpid(pid: libc::pid_t, flags: libc::c_int) -> Option<ExitStatus> {
    loop {
        let mut status = 0;
        // SAFETY: plain syscall writing into a local.
        let r = unsafe { libc::waitpid(pid, &mut status, flags) };
        if r == pid {
            return Some(ExitStatus::from_raw(status));
        }
        if r == 0 {
            return None;
        }
        match io::Error::last_os_error().raw_os_error() {
            Some(libc::EINTR) => continue,
            // ECHILD: not (or no longer) our child; nothing to wait for.
            _ => return None,
        }
    }
}

#[cfg(target_os = "linux")]
fn pidfd_open(pid: libc::pid_t) -> Option<OwnedFd> {
    // SAFETY: plain syscall; on success it returns a new fd that we own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the fd was just created for us and is owned by nobody else.
    Some(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
}

#[cfg(not(target_os = "linux"))]
fn pidfd_open(_pid: libc::pid_t) -> Option<OwnedFd> {
    None
}

/// Whether `pid` (our child) has exited, without reaping it.
fn exited_nowait(pid: libc::pid_t) -> bool {
    // SAFETY: waitid only writes into the zeroed siginfo we own.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let r = libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        );
        // ECHILD: already reaped (by us), so certainly exited.
        if r != 0 {
            return io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD);
        }
        info.si_pid() != 0
    }
}

pub(crate) struct Member {
    pid: libc::pid_t,
    ppid: libc::pid_t,
    zombie: bool,
}

/// The processes whose group is `pgid`, from `/proc`.
#[cfg(target_os = "linux")]
fn members(pgid: libc::pid_t) -> Option<Vec<Member>> {
    let dir = std::fs::read_dir("/proc").ok()?;
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|s| s.parse::<libc::pid_t>().ok()) else {
            continue;
        };
        // A process may vanish between the listing and the read.
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid pgrp ...`; comm may contain spaces and
        // parentheses, so parse after the last `)`.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let mut f = rest.split_whitespace();
        let (Some(state), Some(ppid), Some(pgrp)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if pgrp.parse::<libc::pid_t>().ok() != Some(pgid) {
            continue;
        }
        out.push(Member {
            pid,
            ppid: ppid.parse().unwrap_or(0),
            zombie: state == "Z" || state == "X",
        });
    }
    Some(out)
}

#[cfg(not(target_os = "linux"))]
fn members(_pgid: libc::pid_t) -> Option<Vec<Member>> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;
    use std::time::Instant;

    fn leader(script: &str) -> Child {
        std::process::Command::new("/bin/sh")
            .args(["-c", script])
            .process_group(0)
            .spawn()
            .unwrap()
    }

    #[tokio::test]
    async fn exit_is_seen_without_reaping_with_and_without_a_pidfd() {
        for use_pidfd in [true, false] {
            let mut g = Group::new(leader("sleep 0.1; exit 4"));
            if !use_pidfd {
                // Where pidfds are unavailable (older kernels, other unixes).
                g.pidfd = None;
            }
            assert!(!g.has_exited());
            let started = Instant::now();
            tokio::time::timeout(Duration::from_secs(5), g.exited())
                .await
                .expect("exit noticed");
            assert!(started.elapsed() >= Duration::from_millis(80));
            // Not reaped yet: the zombie still holds the group id.
            // SAFETY: signal 0 only checks for existence.
            assert_eq!(unsafe { libc::kill(-g.pid, 0) }, 0);
            assert_eq!(
                g.reap().and_then(|s| s.code()),
                Some(4),
                "pidfd {use_pidfd}"
            );
        }
    }

    #[tokio::test]
    async fn dropping_an_unfinished_group_kills_and_reaps_it() {
        let g = Group::new(leader("sleep 30"));
        let pid = g.pid;
        drop(g);
        let deadline = Instant::now() + Duration::from_secs(5);
        // Killed, and reaped by the drop's thread: a zombie would still
        // answer a group kill.
        loop {
            // SAFETY: signal 0 only checks for existence.
            let gone = unsafe { libc::kill(-pid, 0) } == -1;
            if gone {
                break;
            }
            assert!(Instant::now() < deadline, "group {pid} survived the drop");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
