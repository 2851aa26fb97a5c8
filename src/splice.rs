//! Zero-copy moves from one TCP socket to another through a kernel pipe (Linux splice(2)),
//! driven by tokio's readiness so that nothing blocks. Must not decide when a relay ends nor
//! count for it: that is `tunnel`'s; this only moves bytes and says how many.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::task::{Context, Poll, ready};

use rustix::pipe::{PipeFlags, SpliceFlags};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Each pipe's capacity (the default is 16 pages). The relay's CPU per GiB, measured with the
/// ignored `throughput_vs_direct` test in `tunnel`, was 0.31-0.33 s at 64 KiB, 0.23-0.28 s at
/// 256 KiB, 0.21-0.25 s at 1 MiB (copy loop 0.37-0.48 s); through the ward binary, with an origin
/// sending page-cache pages (4 KiB per pipe slot), 0.42-0.49 s at 256 KiB but 0.33-0.36 s at
/// 1 MiB (copy loop 0.49-0.68 s). The cost: an unprivileged user may hold 64 MiB of pipes
/// (`fs.pipe-user-pages-soft`), so 64 bulk directions at once; past that a lane keeps copying.
pub const PIPE_CAPACITY: usize = 1024 * 1024;

/// Non-blocking on the pipe (the sockets already are), and pages moved rather than copied
/// where the kernel can.
const FLAGS: SpliceFlags = SpliceFlags::NONBLOCK.union(SpliceFlags::MOVE);

/// A kernel pipe carrying one direction of a tunnel, with how many bytes it holds.
#[derive(Debug)]
pub struct KernelPipe {
    read: OwnedFd,
    write: OwnedFd,
    /// What the kernel granted: [`PIPE_CAPACITY`] rounded up to a power of two pages.
    capacity: usize,
    /// Spliced in from the reader and not yet out to the writer.
    held: usize,
}

impl KernelPipe {
    /// A new empty pipe of [`PIPE_CAPACITY`]. Fails when the process is out of file
    /// descriptors, or when the user's pipe quota is spent: the kernel then hands out pipes
    /// of two pages, through which splicing costs more than copying.
    pub fn new() -> io::Result<Self> {
        let (read, write) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
        let capacity = rustix::pipe::fcntl_setpipe_size(&write, PIPE_CAPACITY)?;
        Ok(KernelPipe {
            read,
            write,
            capacity,
            held: 0,
        })
    }

    /// No bytes are in flight in the pipe.
    pub fn is_empty(&self) -> bool {
        self.held == 0
    }

    /// Splices what `from` has received into the pipe, which must be empty: a splice into a
    /// pipe with some room left could fail for the pipe being full, and that failure would be
    /// taken for the socket having nothing to read. `Ok(0)` is `from`'s EOF.
    pub fn poll_fill(&mut self, cx: &mut Context<'_>, from: &TcpStream) -> Poll<io::Result<usize>> {
        debug_assert!(self.is_empty(), "fill only an empty pipe");
        let n = ready!(poll_splice(
            cx,
            from,
            Interest::READABLE,
            from,
            &self.write,
            self.capacity
        ))?;
        self.held = n;
        Poll::Ready(Ok(n))
    }

    /// Splices bytes held in the pipe out to `to`; returns how many went. The pipe must not be
    /// empty, so that a would-block can only mean `to` is full.
    pub fn poll_drain(&mut self, cx: &mut Context<'_>, to: &TcpStream) -> Poll<io::Result<usize>> {
        debug_assert!(!self.is_empty(), "drain only a pipe with bytes in it");
        let n = ready!(poll_splice(
            cx,
            to,
            Interest::WRITABLE,
            &self.read,
            to,
            self.held
        ))?;
        if n == 0 {
            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
        }
        self.held -= n;
        Poll::Ready(Ok(n))
    }
}

/// Whether a splice error means this kernel or this pair of descriptors cannot splice, so the
/// caller should move the bytes itself instead.
pub fn is_unsupported(error: &io::Error) -> bool {
    [libc::EINVAL, libc::ENOSYS, libc::EOPNOTSUPP].contains(&error.raw_os_error().unwrap_or(0))
}

/// One splice once `socket` is ready for `interest`; a would-block clears that readiness (so
/// the next poll waits for the socket) and the attempt is made again.
fn poll_splice(
    cx: &mut Context<'_>,
    socket: &TcpStream,
    interest: Interest,
    from: impl AsFd,
    to: impl AsFd,
    len: usize,
) -> Poll<io::Result<usize>> {
    loop {
        if interest.is_readable() {
            ready!(socket.poll_read_ready(cx))?;
        } else {
            ready!(socket.poll_write_ready(cx))?;
        }
        let moved = socket.try_io(interest, || {
            rustix::pipe::splice(&from, None, &to, None, len, FLAGS).map_err(io::Error::from)
        });
        match moved {
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
            done => return Poll::Ready(done),
        }
    }
}
