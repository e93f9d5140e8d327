//! CRIU, found and driven one way. Every CRIU process vzrun starts (RPC workers, page
//! servers, lazy-pages daemons, `criu check`) is the same binary ([`binary`], honouring
//! `$VZRUN_CRIU`), so one move never mixes two CRIUs. Here: the client for CRIU's RPC
//! service (`criu swrk`: one request per CRIU process, notifications answered by a
//! callback, the final response), feature checks over that RPC, the page-server and
//! lazy-pages daemons of a migration held as child handles, a [`Stopper`] that ends a
//! call from another thread, and what a dump's stats image says.
//!
//! rust-criu's `Criu` drives the same protocol, but it hides the CRIU process (restore
//! must put it into the VE's cgroup before CRIU forks the restored tasks, as runc does)
//! and drops the restore response with the restored pid. Its generated protobuf types are
//! used as they are.

use std::io::{IoSlice, IoSliceMut, Read};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::sys::signal::{kill, Signal};
use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockType,
};
use protobuf::Message;
pub use rust_criu::rust_criu_protobuf::rpc;

#[derive(Debug, thiserror::Error)]
pub enum CriuError {
    /// No CRIU to run; says which binary was looked for, and where.
    #[error("criu not found: {0}")]
    NotFound(String),
    #[error("start {path}: {source}")]
    Spawn {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("criu rpc: {0}")]
    Rpc(String),
    #[error("criu failed{errno}{msg}", errno = errno_text(*.errno), msg = msg_text(.msg))]
    Failed { errno: i32, msg: String },
    #[error("{0}")]
    Notify(String),
    #[error("criu {what} (see {})", .log.display())]
    Daemon { what: &'static str, log: PathBuf },
    #[error("criu {what}: {source}")]
    Io {
        what: &'static str,
        source: std::io::Error,
    },
    /// Post-copy cannot work on this host and vzrun may not fix it.
    #[error(
        "--online (post-copy) refused: fs.pipe-max-size is {have} bytes, CRIU's lazy page \
         transfer needs {need} without CAP_SYS_RESOURCE (which this process lacks), and \
         /proc/sys/fs/pipe-max-size cannot be raised here ({source}); set \
         `sysctl -w fs.pipe-max-size={need}` on this host, or move the VE without --online"
    )]
    PipeMaxSize {
        have: u64,
        need: u64,
        source: std::io::Error,
    },
}

fn errno_text(e: i32) -> String {
    if e == 0 {
        String::new()
    } else {
        format!(" (errno {e}: {})", nix::errno::Errno::from_raw(e).desc())
    }
}

fn msg_text(m: &str) -> String {
    if m.is_empty() {
        String::new()
    } else {
        format!(": {m}")
    }
}

/// The CRIU binary: `$VZRUN_CRIU`, then PATH, then the usual sbin directories (a root
/// shell started by a daemon may have a short PATH).
pub fn binary() -> Result<PathBuf, CriuError> {
    if let Some(p) = std::env::var_os("VZRUN_CRIU") {
        let p = PathBuf::from(p);
        // Checked here, so the error names the setting rather than a failed start.
        if !is_executable(&p) {
            return Err(CriuError::NotFound(format!(
                "VZRUN_CRIU is {}, which is not an executable file",
                p.display()
            )));
        }
        return Ok(p);
    }
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    for d in ["/usr/local/sbin", "/usr/sbin", "/sbin"] {
        dirs.push(PathBuf::from(d));
    }
    let candidates: Vec<PathBuf> = dirs.into_iter().map(|d| d.join("criu")).collect();
    candidates
        .iter()
        .find(|p| is_executable(p))
        .cloned()
        .ok_or_else(|| {
            let looked: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
            CriuError::NotFound(format!(
                "looked for {} (install CRIU, or set VZRUN_CRIU to its path)",
                looked.join(", ")
            ))
        })
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// What a notification handler gets: the script name and a
/// descriptor passed along with it (the console master on `orphan-pts-master`).
pub struct Notify<'a> {
    pub script: &'a str,
    pub fd: Option<OwnedFd>,
}

/// Lets `cmd`'s program inherit `fds`: Rust opens every descriptor close-on-exec.
fn inherit_fds(cmd: &mut Command, fds: Vec<RawFd>) {
    // SAFETY: between fork and exec only fcntl(2) runs, on descriptors the caller keeps
    // open until the child has started; nothing is allocated.
    unsafe {
        cmd.pre_exec(move || {
            for &fd in &fds {
                let flags = FdFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFD)?);
                fcntl(fd, FcntlArg::F_SETFD(flags - FdFlag::FD_CLOEXEC))?;
            }
            Ok(())
        });
    }
}

/// Ends a CRIU call from another thread: the way out of a dump or restore that waits for
/// a peer that is gone. Clone it into the call's options; [`Stopper::stop`] kills that
/// call's CRIU (at once if it has not started yet, and never a process reaped already).
#[derive(Debug, Clone, Default)]
pub struct Stopper(Arc<Mutex<StopSlot>>);

#[derive(Debug, Default)]
struct StopSlot {
    /// The running call's CRIU, until it is reaped.
    pid: Option<i32>,
    stopped: bool,
}

impl Stopper {
    pub fn stop(&self) {
        let mut slot = self.slot();
        slot.stopped = true;
        if let Some(pid) = slot.pid {
            let _ = kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
        }
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, StopSlot> {
        // A panic elsewhere cannot leave the slot half-written: take it as it is.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn started(&self, pid: i32) {
        let mut slot = self.slot();
        slot.pid = Some(pid);
        if slot.stopped {
            let _ = kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
        }
    }

    /// Called before the process is reaped, so its pid cannot have been reused.
    fn ended(&self) {
        self.slot().pid = None;
    }
}

/// One CRIU request. `started` runs with the CRIU pid before the request is sent, while
/// CRIU waits (restore moves it into the VE's cgroup then); `notify` answers each
/// notification, an error aborts the operation; `stopper` can end it from elsewhere.
pub fn call(
    req: rpc::Criu_req,
    keep_fds: &[RawFd],
    stopper: Option<&Stopper>,
    started: impl FnOnce(i32) -> Result<(), CriuError>,
    mut notify: impl FnMut(Notify) -> Result<(), CriuError>,
) -> Result<rpc::Criu_resp, CriuError> {
    let _step = tracing::debug_span!("criu", request = ?req.type_()).entered();
    let bin = binary()?;
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| CriuError::Rpc(format!("socketpair: {e}")))?;
    let their_fd = theirs.as_raw_fd();
    let mut inherit: Vec<RawFd> = keep_fds.to_vec();
    inherit.push(their_fd);
    let mut cmd = Command::new(&bin);
    cmd.arg("swrk")
        .arg(their_fd.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    inherit_fds(&mut cmd, inherit);
    let t0 = std::time::Instant::now();
    let mut child = cmd.spawn().map_err(|source| CriuError::Spawn {
        path: bin.clone(),
        source,
    })?;
    tracing::debug!(took = ?t0.elapsed(), "criu spawned");
    drop(theirs);
    if let Some(s) = stopper {
        s.started(child.id() as i32);
    }
    let result = converse(&mut child, ours, req, started, &mut notify);
    tracing::debug!(at = ?t0.elapsed(), "criu answered");
    if result.is_err() {
        let _ = child.kill();
    }
    if let Some(s) = stopper {
        s.ended();
    }
    let _ = child.wait();
    tracing::debug!(at = ?t0.elapsed(), "criu exited");
    result
}

fn converse(
    child: &mut Child,
    sock: OwnedFd,
    req: rpc::Criu_req,
    started: impl FnOnce(i32) -> Result<(), CriuError>,
    notify: &mut impl FnMut(Notify) -> Result<(), CriuError>,
) -> Result<rpc::Criu_resp, CriuError> {
    let t0 = std::time::Instant::now();
    started(child.id() as i32)?;
    tracing::debug!(took = ?t0.elapsed(), "criu started callback");
    let want = req.type_();
    let sock = UnixDatagram::from(sock);
    send(&sock, &req)?;
    loop {
        let (resp, fd) = receive(&sock)?;
        if resp.type_() == rpc::Criu_req_type::NOTIFY {
            let n = &resp.notify;
            let outcome = notify(Notify {
                script: n.script(),
                fd,
            });
            let mut ack = rpc::Criu_req::new();
            ack.set_type(rpc::Criu_req_type::NOTIFY);
            ack.set_notify_success(outcome.is_ok());
            send(&sock, &ack)?;
            outcome?;
            continue;
        }
        if !resp.success() {
            return Err(CriuError::Failed {
                errno: resp.cr_errno(),
                msg: resp.cr_errmsg().to_string(),
            });
        }
        if resp.type_() != want {
            return Err(CriuError::Rpc(format!(
                "unexpected response {:?} to {want:?}",
                resp.type_()
            )));
        }
        return Ok(resp);
    }
}

fn send(sock: &UnixDatagram, req: &rpc::Criu_req) -> Result<(), CriuError> {
    let bytes = req
        .write_to_bytes()
        .map_err(|e| CriuError::Rpc(e.to_string()))?;
    sendmsg::<()>(
        sock.as_raw_fd(),
        &[IoSlice::new(&bytes)],
        &[],
        MsgFlags::empty(),
        None,
    )
    .map_err(|e| CriuError::Rpc(format!("send: {e}")))?;
    Ok(())
}

fn receive(sock: &UnixDatagram) -> Result<(rpc::Criu_resp, Option<OwnedFd>), CriuError> {
    // CRIU's messages are small; 64 KiB leaves room for a long error message.
    let mut buf = vec![0u8; 64 * 1024];
    let mut cmsg = nix::cmsg_space!(RawFd);
    let (len, fd) = {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| CriuError::Rpc(format!("receive: {e}")))?;
        let mut fd = None;
        if let Ok(cmsgs) = msg.cmsgs() {
            for c in cmsgs {
                if let ControlMessageOwned::ScmRights(fds) = c {
                    // SAFETY: the kernel just installed these descriptors for us.
                    fd = fds.first().map(|f| unsafe { OwnedFd::from_raw_fd(*f) });
                }
            }
        }
        (msg.bytes, fd)
    };
    if len == 0 {
        return Err(CriuError::Rpc(
            "criu closed the connection (see its log)".into(),
        ));
    }
    let resp = rpc::Criu_resp::parse_from_bytes(&buf[..len])
        .map_err(|e| CriuError::Rpc(format!("parse response: {e}")))?;
    Ok((resp, fd))
}

/// Whether CRIU is installed and `criu check` passes. The answer is cached beside the
/// binary's identity (path, size, mtime), so `features` stays fast and a reinstalled
/// CRIU is checked again.
pub fn available() -> bool {
    let Ok(bin) = binary() else { return false };
    let Ok(meta) = std::fs::metadata(&bin) else {
        return false;
    };
    let stamp = {
        use std::os::unix::fs::MetadataExt;
        format!(
            "{} {} {} {}",
            bin.display(),
            meta.len(),
            meta.mtime(),
            meta.mtime_nsec()
        )
    };
    let cache = cache_file();
    if let Ok(text) = std::fs::read_to_string(&cache) {
        if let Some((s, v)) = text.rsplit_once('\n') {
            if s == stamp {
                return v == "ok";
            }
        }
    }
    let ok =
        crate::sys::process::run(Command::new(&bin).arg("check").stderr(Stdio::null())).is_ok();
    let tmp = cache.with_extension(format!("tmp{}", std::process::id()));
    let verdict = if ok { "ok" } else { "failed" };
    if std::fs::write(&tmp, format!("{stamp}\n{verdict}")).is_ok() {
        let _ = std::fs::rename(&tmp, &cache);
    }
    ok
}

fn cache_file() -> PathBuf {
    if nix::unistd::geteuid().is_root() {
        PathBuf::from("/run/vzrun-criu-check")
    } else {
        std::env::temp_dir().join(format!("vzrun-criu-check-{}", nix::unistd::geteuid()))
    }
}

/// What [`supports`] can ask CRIU about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feature {
    /// Soft-dirty page tracking, which pre-dumps need (`criu check --feature
    /// mem_dirty_track`).
    MemTrack,
}

/// Whether the kernel and CRIU support `feature`, asked over CRIU's RPC as runc asks; no
/// where CRIU cannot be asked at all.
pub fn supports(feature: Feature) -> bool {
    // CRIU's RPC wants an image directory even for a check: a scratch one, removed again.
    let dir = std::env::temp_dir().join(format!("vzrun-criu-feature-{}", std::process::id()));
    if std::fs::create_dir_all(&dir).is_err() {
        return false;
    }
    let answer = (|| {
        let images = std::fs::File::open(&dir).ok()?;
        let mut opts = rpc::Criu_opts::new();
        opts.set_images_dir_fd(images.as_raw_fd());
        opts.set_log_file("feature-check.log".into());
        opts.set_log_level(4);
        let mut asked = rpc::Criu_features::new();
        match feature {
            Feature::MemTrack => asked.set_mem_track(true),
        }
        let mut req = rpc::Criu_req::new();
        req.set_type(rpc::Criu_req_type::FEATURE_CHECK);
        req.opts = protobuf::MessageField::some(opts);
        req.features = protobuf::MessageField::some(asked);
        let resp = call(req, &[images.as_raw_fd()], None, |_| Ok(()), |_| Ok(())).ok()?;
        let got = resp.features.as_ref()?;
        Some(match feature {
            Feature::MemTrack => got.mem_track(),
        })
    })();
    let _ = std::fs::remove_dir_all(&dir);
    answer.unwrap_or(false)
}

/// The pipe size CRIU's lazy page transfer needs: its page server sizes a tee pipe to
/// about 3.2 MiB with F_SETPIPE_SZ (`pipe_read_dest_init` in criu/page-pipe.c), which the
/// kernel rounds up to a power of two of pages.
pub const LAZY_PIPE_BYTES: u64 = 4 << 20;

const PIPE_MAX_SIZE: &str = "/proc/sys/fs/pipe-max-size";

/// Capability bit of CAP_SYS_RESOURCE in /proc/self/status's CapEff.
const CAP_SYS_RESOURCE: u32 = 24;

/// Whether this process may exceed fs.pipe-max-size (and raise hard rlimits).
pub fn has_sys_resource() -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_SYS_RESOURCE) != 0)
}

/// What [`prepare_lazy_pages`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PipePrep {
    /// Nothing to do: the capability is there or the limit is high enough.
    Enough,
    /// fs.pipe-max-size was raised from the first value to the second.
    Raised(u64, u64),
}

/// Makes the pipe size CRIU's lazy page transfer asks for allowed, on either end of a
/// post-copy move. Without CAP_SYS_RESOURCE, F_SETPIPE_SZ above fs.pipe-max-size fails;
/// CRIU ignores that failure and its page server dies on the first page request
/// ("page-pipe: splice: Bad file descriptor"), so the move would fail only after the VE
/// was frozen. The sysctl is left raised: another move may be using it right now, and
/// the value only lets unprivileged pipes grow to 4 MiB.
pub fn prepare_lazy_pages() -> Result<PipePrep, CriuError> {
    prepare_pipe_max(Path::new(PIPE_MAX_SIZE), has_sys_resource())
}

fn prepare_pipe_max(path: &Path, privileged: bool) -> Result<PipePrep, CriuError> {
    if privileged {
        return Ok(PipePrep::Enough);
    }
    let need = LAZY_PIPE_BYTES;
    let text = std::fs::read_to_string(path).map_err(|source| CriuError::Io {
        what: "read fs.pipe-max-size",
        source,
    })?;
    let have: u64 = text.trim().parse().map_err(|_| CriuError::Io {
        what: "read fs.pipe-max-size",
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, text.trim().to_string()),
    })?;
    if have >= need {
        return Ok(PipePrep::Enough);
    }
    std::fs::write(path, need.to_string()).map_err(|source| CriuError::PipeMaxSize {
        have,
        need,
        source,
    })?;
    Ok(PipePrep::Raised(have, need))
}

/// A CRIU daemon run as this process's child: stopped and reaped when the handle goes,
/// so none outlives the move it served.
struct Held(Child);

impl Drop for Held {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A `criu page-server` writing what a dump sends into an image directory (a pre-copy
/// round's pages). It ends by itself after the dump that connects to it; dropping the
/// handle stops it.
pub struct PageServer {
    child: Held,
}

impl PageServer {
    /// Starts the server on `addr` and returns once it listens, so the address can be
    /// handed out at once.
    pub fn start(images: &Path, addr: SocketAddr) -> Result<PageServer, CriuError> {
        let bin = binary()?;
        let io = |what| move |source| CriuError::Io { what, source };
        // CRIU writes one byte to --status-fd once it listens; end of file means it failed.
        let (ready_r, ready_w) = nix::unistd::pipe()
            .map_err(|e| io("page-server: status pipe")(std::io::Error::from(e)))?;
        let mut cmd = Command::new(&bin);
        cmd.args(["page-server", "--images-dir"])
            .arg(images)
            .args(["--address", &addr.ip().to_string()])
            .args(["--port", &addr.port().to_string()])
            .args(["--status-fd", &ready_w.as_raw_fd().to_string()])
            .args(["-o", "page-server.log"])
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        inherit_fds(&mut cmd, vec![ready_w.as_raw_fd()]);
        let child = cmd
            .spawn()
            .map_err(|source| CriuError::Spawn { path: bin, source })?;
        drop(ready_w);
        let server = PageServer { child: Held(child) };
        let mut byte = [0u8; 1];
        if std::fs::File::from(ready_r).read(&mut byte).unwrap_or(0) == 0 {
            return Err(CriuError::Daemon {
                what: "page-server failed",
                log: images.join("page-server.log"),
            });
        }
        Ok(server)
    }

    /// Gives the server a moment to finish writing what it received, then stops it.
    pub fn finish(mut self) {
        for _ in 0..100 {
            if !matches!(self.child.0.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// CRIU's lazy-pages daemon of a post-copy restore: it serves the restored tasks' page
/// faults from the source's page server and pulls the rest in the background, and ends
/// once it has every page. Dropping the handle stops it.
pub struct LazyPages {
    child: Held,
}

impl LazyPages {
    /// Starts the daemon for the images in `images`, fetching from `page_server`. It is
    /// ready once its socket exists ([`lazy_socket_ready`]); the restore's own start
    /// goes on meanwhile.
    pub fn start(images: &Path, page_server: SocketAddr) -> Result<LazyPages, CriuError> {
        let bin = binary()?;
        let child = Command::new(&bin)
            .args(["lazy-pages", "--page-server", "--address"])
            .arg(page_server.ip().to_string())
            .args(["--port", &page_server.port().to_string(), "--images-dir"])
            .arg(images)
            .arg("--work-dir")
            .arg(images)
            .args(["-o", "lazy-pages.log", "-v4"])
            .stdin(Stdio::null())
            .spawn()
            .map_err(|source| CriuError::Spawn { path: bin, source })?;
        Ok(LazyPages { child: Held(child) })
    }

    /// Whether the daemon has ended with a failure (its page server is gone, or CRIU
    /// cannot serve pages on this kernel).
    pub fn failed(&mut self) -> bool {
        matches!(self.child.0.try_wait(), Ok(Some(st)) if !st.success())
    }

    /// How it ended, if it has.
    pub fn try_wait(&mut self) -> std::io::Result<Option<ExitStatus>> {
        self.child.0.try_wait()
    }
}

/// Waits (a second at most) until the lazy-pages daemon working in `images` has made the
/// socket a lazy restore connects to.
pub fn lazy_socket_ready(images: &Path) -> Result<(), CriuError> {
    let sock = images.join("lazy-pages.socket");
    for _ in 0..1000 {
        if sock.exists() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Err(CriuError::Daemon {
        what: "lazy-pages did not start",
        log: images.join("lazy-pages.log"),
    })
}

/// `pages_written` from a CRIU `stats-dump` image: one or two 32-bit magics, then a
/// size-prefixed StatsEntry whose field 1 is DumpStatsEntry with pages_written as field 7.
/// rust-criu carries no stats messages: protobuf's reader takes them as unknown fields of
/// an empty message, instead of a hand-written varint parser.
pub fn stats_pages_written(path: &Path) -> Option<u64> {
    use protobuf::well_known_types::empty::Empty;
    use protobuf::UnknownValueRef;
    // Field `n` of a message, read by protobuf as an unknown field of an empty one.
    fn unknown<T>(msg: &[u8], n: u32, get: impl FnOnce(UnknownValueRef) -> Option<T>) -> Option<T> {
        let parsed = Empty::parse_from_bytes(msg).ok()?;
        get(parsed.special_fields.unknown_fields().get(n)?)
    }
    let data = std::fs::read(path).ok()?;
    // The second magic is there for "service" images.
    for skip in [4usize, 8] {
        let Some(len) = data.get(skip..skip + 4) else {
            continue;
        };
        let len = u32::from_le_bytes(len.try_into().ok()?) as usize;
        let Some(msg) = data.get(skip + 4..skip + 4 + len) else {
            continue;
        };
        let dump = unknown(msg, 1, |v| match v {
            UnknownValueRef::LengthDelimited(b) => Some(b.to_vec()),
            _ => None,
        });
        let written = dump.and_then(|d| {
            unknown(&d, 7, |v| match v {
                UnknownValueRef::Varint(n) => Some(n),
                _ => None,
            })
        });
        if written.is_some() {
            return written;
        }
    }
    None
}

/// How many pages a post-copy restore still has to fetch: the entries flagged lazy
/// (PE_LAZY) in the images' `pagemap-*.img`. Each image is two 32-bit magics, then
/// size-prefixed messages: a PagemapHead, then PagemapEntry {vaddr 1, nr_pages 2, flags
/// 4, and in CRIU 4 the 64-bit page count 5 with 2 left at zero}.
pub fn lazy_pages_in(images: &Path) -> u64 {
    use protobuf::well_known_types::empty::Empty;
    use protobuf::UnknownValueRef;
    const PE_LAZY: u64 = 1 << 1;
    fn varint(msg: &[u8], n: u32) -> Option<u64> {
        let parsed = Empty::parse_from_bytes(msg).ok()?;
        match parsed.special_fields.unknown_fields().get(n)? {
            UnknownValueRef::Varint(v) => Some(v),
            _ => None,
        }
    }
    let Ok(dir) = std::fs::read_dir(images) else {
        return 0;
    };
    let mut total = 0;
    for entry in dir.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with("pagemap-") && name.ends_with(".img")) {
            continue;
        }
        let Ok(data) = std::fs::read(entry.path()) else {
            continue;
        };
        let mut at = 8;
        let mut first = true;
        while let Some(len) = data.get(at..at + 4) {
            let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
            let Some(msg) = data.get(at + 4..at + 4 + len) else {
                break;
            };
            at += 4 + len;
            if std::mem::take(&mut first) {
                continue;
            }
            if varint(msg, 4).unwrap_or(0) & PE_LAZY != 0 {
                total += varint(msg, 5).or_else(|| varint(msg, 2)).unwrap_or(0);
            }
        }
    }
    total
}

/// Pages a lazy-pages daemon has received so far, as its log (-v4) tells.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LazyCounts {
    /// Fetched because a task touched them.
    pub demand: u64,
    /// Pushed in the background.
    pub pushed: u64,
    /// Copied into the tasks, either way: what grows only while pages move (a fault the
    /// source never answers is logged again and again, and counted again in `demand`).
    pub copied: u64,
}

/// [`LazyCounts`] from a lazy-pages daemon's log.
pub fn lazy_counts(log: &Path) -> LazyCounts {
    std::fs::read_to_string(log)
        .map(|t| lazy_counts_of(&t))
        .unwrap_or_default()
}

fn lazy_counts_of(text: &str) -> LazyCounts {
    // -v4 logs "#PF at ADDR" for each fault a task took and "uffd_copy: ADDR/BYTES" for
    // each copy into the tasks, faulted or pushed: what was not faulted was pushed.
    let (mut faults, mut copied) = (0u64, 0u64);
    for l in text.lines() {
        if l.contains("#PF at") {
            faults += 1;
        } else if let Some(bytes) = l
            .split_once("uffd_copy: ")
            .and_then(|(_, r)| r.rsplit_once('/'))
            .and_then(|(_, n)| n.trim().parse::<u64>().ok())
        {
            copied += bytes.div_ceil(4096);
        }
    }
    LazyCounts {
        demand: faults,
        pushed: copied.saturating_sub(faults),
        copied,
    }
}

/// The error to show: CRIU's own message repeats the log's first error line, which the
/// log's tail names better, so it is dropped when there is a tail.
pub fn with_tail(err: CriuError, tail: &str) -> CriuError {
    match err {
        CriuError::Failed { errno, .. } if !tail.is_empty() => CriuError::Failed {
            errno,
            msg: String::new(),
        },
        e => e,
    }
}

/// The last error lines of a CRIU log, to name the cause in vzrun's own error.
pub fn log_tail(log: &Path) -> String {
    let Ok(text) = std::fs::read_to_string(log) else {
        return String::new();
    };
    // CRIU's first error is often its failed attempt to raise RLIMIT_NOFILE (no
    // CAP_SYS_RESOURCE), which it survives: not a cause.
    let errors: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("Error") && !l.contains("RLIMIT_NOFILE"))
        .collect();
    let picked: Vec<&str> = if errors.is_empty() {
        text.lines()
            .rev()
            .take(3)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect()
    } else {
        errors.iter().rev().take(3).rev().copied().collect()
    };
    picked
        .iter()
        .map(|l| l.trim())
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lazy_counts_split_faults_from_pushes() {
        let log = "(00.1) uffd: 16-13: #PF at 0x7f00\n\
                   (00.1) uffd: 16-13: uffd_copy: 0x7f00/4096\n\
                   (00.2) uffd: 1-12: uffd_copy: 0x8000/262144\n\
                   (00.2) uffd: 1-12: copy: mcopy_rc:-11, errno:11\n";
        assert_eq!(
            lazy_counts_of(log),
            LazyCounts {
                demand: 1,
                pushed: 64,
                copied: 65
            }
        );
        // A fault logged again and again moves no page.
        let spin = "(00.3) uffd: 1-13: #PF at 0x7f00\n".repeat(3);
        assert_eq!(lazy_counts_of(&format!("{log}{spin}")).copied, 65);
    }

    #[test]
    fn lazy_pages_are_counted_from_pagemaps() {
        let d = tempfile::tempdir().unwrap();
        let mut img = vec![0x19, 0x43, 0x56, 0x54, 0x25, 0x40, 0x08, 0x56];
        // Head, a present page, five lazy pages (CRIU 4's count in field 5).
        for msg in [
            &[0x08, 0x01][..],
            &[0x08, 0x80, 0x20, 0x10, 0x00, 0x20, 0x04, 0x28, 0x01],
            &[0x08, 0x80, 0x40, 0x10, 0x00, 0x20, 0x02, 0x28, 0x05],
        ] {
            img.extend_from_slice(&(msg.len() as u32).to_le_bytes());
            img.extend_from_slice(msg);
        }
        std::fs::write(d.path().join("pagemap-1.img"), &img).unwrap();
        std::fs::write(d.path().join("pages-1.img"), &img).unwrap();
        assert_eq!(lazy_pages_in(d.path()), 5);
    }

    #[test]
    fn pipe_max_size_is_raised_only_when_needed() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("pipe-max-size");
        std::fs::write(&f, "1048576\n").unwrap();
        assert_eq!(prepare_pipe_max(&f, true).unwrap(), PipePrep::Enough);
        assert_eq!(
            prepare_pipe_max(&f, false).unwrap(),
            PipePrep::Raised(1048576, LAZY_PIPE_BYTES)
        );
        assert_eq!(prepare_pipe_max(&f, false).unwrap(), PipePrep::Enough);
        let missing = d.path().join("none").join("pipe-max-size");
        assert!(prepare_pipe_max(&missing, false).is_err());
    }

    #[test]
    fn failure_text_names_errno_and_message() {
        let e = CriuError::Failed {
            errno: libc::EPERM,
            msg: "x".into(),
        };
        assert_eq!(
            e.to_string(),
            "criu failed (errno 1: Operation not permitted): x"
        );
        let e = CriuError::Failed {
            errno: 0,
            msg: String::new(),
        };
        assert_eq!(e.to_string(), "criu failed");
    }

    #[test]
    fn log_tail_prefers_error_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.log");
        std::fs::write(&p, "a\n(00.1) Error (criu/a.c:1): one\nb\nc\n").unwrap();
        assert_eq!(log_tail(&p), "(00.1) Error (criu/a.c:1): one");
        std::fs::write(&p, "a\nb\nc\nd\n").unwrap();
        assert_eq!(log_tail(&p), "b; c; d");
    }

    #[test]
    fn stats_image_is_read() {
        // magic, size, StatsEntry{ dump: DumpStatsEntry{ freezing_time: 5, pages_written: 300 } }
        let dump = [0x08, 5, 0x38, 0xac, 0x02];
        let mut entry = vec![0x0a, dump.len() as u8];
        entry.extend_from_slice(&dump);
        let mut img = 0x5709_3306u32.to_le_bytes().to_vec();
        img.extend_from_slice(&(entry.len() as u32).to_le_bytes());
        img.extend_from_slice(&entry);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("stats-dump");
        std::fs::write(&p, &img).unwrap();
        assert_eq!(stats_pages_written(&p), Some(300));
    }

    #[test]
    fn feature_checks_over_rpc_answer_as_criu_check_does() {
        if !available() {
            eprintln!("SKIP: criu is missing or `criu check` fails");
            return;
        }
        let cli = Command::new(binary().unwrap())
            .args(["check", "--feature", "mem_dirty_track"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success();
        assert_eq!(supports(Feature::MemTrack), cli);
    }

    #[test]
    fn a_page_server_is_a_child_that_listens_when_started() {
        if !available() {
            eprintln!("SKIP: criu is missing or `criu check` fails");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let server = PageServer::start(dir.path(), addr).unwrap();
        let pid = server.child.0.id() as i32;
        assert!(std::net::TcpStream::connect(addr).is_ok(), "not listening");
        drop(server);
        // Reaped by the handle: no such process any more.
        assert!(kill(nix::unistd::Pid::from_raw(pid), None).is_err());
    }
}
