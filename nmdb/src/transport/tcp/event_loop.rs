//! A network thread's event loop: the TCP connections handed to it, each
//! served start to end here, waiting in one `epoll_wait` for whichever is
//! ready.
//!
//! A request costs that wait, one read and one write, and nothing else:
//! no task to wake and poll, no timer armed, no clock read (but with an
//! idle timeout). On one CPU shared with its client, one client's
//! cache-only GETs went from 80-81% of the loopback limit, when each
//! connection was a tokio task, to 85-86%, and the server's CPU a request
//! from 3.9 to 3.6-3.7 µs (BENCHMARKS.md).
//!
//! What a connection rarely waits for (a free in-flight slot, room in the
//! database queue, its last deferred answers before it closes) is a
//! future, polled here with a waker that hands the connection back to
//! this loop through its [`Inbox`]. Timeouts (idle connections, clients
//! that stopped reading while unread replies are over their limit) are
//! checked on a coarse tick that runs only while there is one to check.

use super::connection::{release_if_large, Connection};
use super::{OpenConnection, UnsentReplies, MAX_IN_FLIGHT, READ_CHUNK, STOP_READING_BYTES};
use crate::engine::{Disposition, Engine, Link};
use crate::poller::{Event, Poller, Ticker, Wake};
use crate::reply::{ReplyShape, ReplyTo, STREAM_SHAPE};
use nmdb_proto::frame::{next_frame, FrameError};
use nmdb_proto::{Counter, MAX_MSG_SIZE, TCP_PREFIX_LEN};
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};

/// A connection accepted for a loop to serve.
pub struct NewConnection {
    /// Non-blocking.
    pub stream: std::net::TcpStream,
    pub engine: Arc<Engine>,
    pub(super) open: OpenConnection,
}

/// How the timeouts are checked: often enough for an idle timeout given in
/// seconds and for [`super::STALL_GRACE`], and rarely enough to cost
/// nothing.
const TICK: Duration = Duration::from_millis(100);

const WAKE_TOKEN: u64 = u64::MAX;
const TICK_TOKEN: u64 = u64::MAX - 1;

/// What other threads hand a loop.
#[derive(Default)]
struct Mail {
    new: Vec<NewConnection>,
    /// Connections whose awaited future can go on (tokens).
    woken: Vec<u64>,
    stop: bool,
}

/// A loop's mailbox: other threads leave connections and wake-ups in it.
pub struct Inbox {
    mail: parking_lot::Mutex<Mail>,
    wake: Wake,
}

impl Inbox {
    pub fn hand_over(&self, conn: NewConnection) {
        self.mail.lock().new.push(conn);
        self.wake.wake();
    }

    /// Tells the loop to drop its connections and end.
    pub fn stop(&self) {
        self.mail.lock().stop = true;
        self.wake.wake();
    }

    /// Wakes the loop with nothing in particular to do: it looks at the
    /// limits again.
    pub fn wake(&self) {
        self.wake.wake();
    }

    fn wake_connection(&self, token: u64) {
        self.mail.lock().woken.push(token);
        self.wake.wake();
    }
}

/// Hands a connection back to its loop when what it waits for is ready.
struct ConnectionWaker {
    inbox: Arc<Inbox>,
    token: u64,
}

impl std::task::Wake for ConnectionWaker {
    fn wake(self: Arc<Self>) {
        self.inbox.wake_connection(self.token);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.inbox.wake_connection(self.token);
    }
}

type Waiting<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// What a connection waits for before it goes on.
enum Wait {
    /// An in-flight slot for its next request.
    Slot(Waiting<Result<OwnedSemaphorePermit, AcquireError>>),
    /// Room in the database queue.
    Room(Waiting<()>),
    /// Every in-flight slot back, before it closes: each deferred answer
    /// was handed over.
    Answered(Waiting<()>),
}

/// A connection as its loop holds it.
struct Conn {
    shared: Arc<Connection>,
    engine: Arc<Engine>,
    open: OpenConnection,
    inbuf: Vec<u8>,
    /// The socket reported input not yet read to the end.
    readable: bool,
    /// No more requests are read: end of stream, a bad frame, a version
    /// the server does not speak, or a failed read.
    done_reading: bool,
    slots: Arc<Semaphore>,
    /// A slot held for the next request.
    slot: Option<OwnedSemaphorePermit>,
    wait: Option<Wait>,
    /// Hands this connection back to its loop when what it waits for is
    /// ready: made at its first wait, kept for the next ones.
    waker: Option<Waker>,
    /// When the client last sent something or last had a request in
    /// flight (only with an idle timeout).
    last_busy: Instant,
}

impl Conn {
    fn new(new: NewConnection) -> Self {
        let NewConnection {
            stream,
            engine,
            open,
        } = new;
        Conn {
            shared: Arc::new(Connection::new(stream, open.0.unsent.clone())),
            engine,
            open,
            inbuf: Vec::with_capacity(READ_CHUNK),
            readable: false,
            done_reading: false,
            slots: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            slot: None,
            wait: None,
            waker: None,
            last_busy: Instant::now(),
        }
    }
}

/// What the loop does with a connection after serving it.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// Wait for the socket or a wake-up.
    Wait,
    /// Its turn ended with more to do: serve it again after the others.
    Again,
    Close,
}

/// What handling the frames already read came to.
enum Handled {
    /// All handled; more may be read.
    All,
    /// The connection now waits for something (`Conn::wait`).
    Waiting,
    TurnOver,
    Close,
}

struct TcpLink<'a> {
    conn: &'a Arc<Connection>,
    slot: &'a mut Option<OwnedSemaphorePermit>,
    /// The request put work on the database queue.
    queued: bool,
}

impl Link for TcpLink<'_> {
    fn shape(&self) -> ReplyShape {
        STREAM_SHAPE
    }

    fn pauses_when_queue_full(&self) -> bool {
        true
    }

    fn queued_for_db(&mut self) {
        self.queued = true;
    }

    fn defer(&mut self) -> ReplyTo {
        let slot = self
            .slot
            .take()
            .expect("a slot is reserved before every frame");
        ReplyTo::stream(self.conn.clone(), slot)
    }
}

pub struct EventLoop {
    poller: Poller,
    inbox: Arc<Inbox>,
    ticker: Ticker,
    /// Connections by slot; a token is the slot and its generation, so an
    /// event or a wake-up meant for a closed connection finds nothing.
    conns: Vec<Option<(u32, Conn)>>,
    free: Vec<usize>,
    generation: u32,
    /// Connections whose turn ended, served again after the others.
    again: VecDeque<u64>,
    events: Vec<Event>,
    /// Immediate answers being gathered for the connection being served.
    out: Vec<u8>,
    /// Connections here with an idle timeout.
    timed: usize,
    /// The unread-replies counts this loop's connections add to.
    watched: Vec<Arc<UnsentReplies>>,
}

impl EventLoop {
    pub fn new() -> io::Result<Self> {
        let poller = Poller::new()?;
        let wake = Wake::new(&poller, WAKE_TOKEN)?;
        let ticker = Ticker::new(&poller, TICK_TOKEN)?;
        Ok(EventLoop {
            poller,
            inbox: Arc::new(Inbox {
                mail: parking_lot::Mutex::new(Mail::default()),
                wake,
            }),
            ticker,
            conns: Vec::new(),
            free: Vec::new(),
            generation: 0,
            again: VecDeque::new(),
            events: Vec::new(),
            out: Vec::new(),
            timed: 0,
            watched: Vec::new(),
        })
    }

    pub fn inbox(&self) -> &Arc<Inbox> {
        &self.inbox
    }

    /// Serves connections until told to stop; then drops them all.
    pub fn run(mut self) {
        loop {
            let block = self.again.is_empty();
            self.events.clear();
            match self.poller.wait(block) {
                Ok(events) => self.events.extend(events),
                Err(e) => {
                    log::error!("tcp event loop: {e}");
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            }
            for i in 0..self.events.len() {
                let event = self.events[i];
                match event.token {
                    WAKE_TOKEN => {
                        if !self.read_mail() {
                            return;
                        }
                    }
                    TICK_TOKEN => {
                        self.ticker.reset();
                        self.check_timeouts();
                    }
                    token => self.on_socket(token, event),
                }
            }
            for _ in 0..self.again.len() {
                if let Some(token) = self.again.pop_front() {
                    self.serve_token(token);
                }
            }
            self.set_ticker();
        }
    }

    /// Takes what other threads left; false when told to stop.
    fn read_mail(&mut self) -> bool {
        self.inbox.wake.reset();
        let mail = std::mem::take(&mut *self.inbox.mail.lock());
        if mail.stop {
            return false;
        }
        for conn in mail.new {
            self.add(conn);
        }
        for token in mail.woken {
            self.serve_token(token);
        }
        true
    }

    fn add(&mut self, new: NewConnection) {
        let _ = new.stream.set_nodelay(true);
        let unsent = &new.open.0.unsent;
        if !self.watched.iter().any(|u| Arc::ptr_eq(u, unsent)) {
            unsent.watch(&self.inbox);
            self.watched.push(unsent.clone());
        }
        let timed = new.open.0.idle_timeout.is_some();
        let conn = Conn::new(new);
        let index = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.conns.len() - 1
        });
        self.generation = self.generation.wrapping_add(1);
        let token = token_of(self.generation, index);
        if let Err(e) = self
            .poller
            .add_socket(conn.shared.stream().as_raw_fd(), token)
        {
            log::warn!("tcp connection dropped: {e}");
            self.free.push(index);
            return;
        }
        self.timed += usize::from(timed);
        self.conns[index] = Some((self.generation, conn));
    }

    fn index_of(&self, token: u64) -> Option<usize> {
        let (generation, index) = ((token >> 32) as u32, (token as u32) as usize);
        match self.conns.get(index) {
            Some(Some((g, _))) if *g == generation => Some(index),
            _ => None,
        }
    }

    fn on_socket(&mut self, token: u64, event: Event) {
        let Some(index) = self.index_of(token) else {
            return;
        };
        let conn = &mut self.conns[index].as_mut().expect("indexed").1;
        if event.readable {
            conn.readable = true;
        }
        if event.writable && !conn.shared.flush() {
            self.close(index);
            return;
        }
        self.serve_index(token, index);
    }

    fn serve_token(&mut self, token: u64) {
        if let Some(index) = self.index_of(token) {
            self.serve_index(token, index);
        }
    }

    fn serve_index(&mut self, token: u64, index: usize) {
        let conn = &mut self.conns[index].as_mut().expect("indexed").1;
        match serve(conn, token, &self.inbox, &mut self.out) {
            Next::Wait => {}
            Next::Again => self.again.push_back(token),
            Next::Close => self.close(index),
        }
    }

    fn close(&mut self, index: usize) {
        if let Some((_, conn)) = self.conns[index].take() {
            // The descriptor stays open while database threads hold the
            // connection for its deferred answers: removed here, so that
            // it is never reported to this loop again.
            let _ = self.poller.remove(conn.shared.stream().as_raw_fd());
            self.timed -= usize::from(conn.open.0.idle_timeout.is_some());
            self.free.push(index);
        }
    }

    /// Ticks while a timeout may need checking: connections here have an
    /// idle timeout, or unread replies are over their limit.
    fn set_ticker(&mut self) {
        let needed = self.timed > 0 || self.watched.iter().any(|u| u.is_over());
        if let Err(e) = self.ticker.set(needed.then_some(TICK)) {
            log::error!("tcp event loop: {e}");
        }
    }

    fn check_timeouts(&mut self) {
        let now = Instant::now();
        for index in 0..self.conns.len() {
            let Some((_, conn)) = &mut self.conns[index] else {
                continue;
            };
            if timed_out(conn, now) {
                self.close(index);
            }
        }
    }
}

/// A connection's token: its slot, and the slot's generation above.
fn token_of(generation: u32, index: usize) -> u64 {
    (u64::from(generation) << 32) | index as u64
}

/// Whether `conn` must close now: its client stopped reading while unread
/// replies are over their limit, or it has been idle past its timeout.
fn timed_out(conn: &mut Conn, now: Instant) -> bool {
    let unsent = conn.shared.unsent();
    if unsent.is_over() && conn.shared.stalled_past_grace(now) {
        unsent.count_stalled();
        conn.shared.abandon("its client stopped reading");
        return true;
    }
    let Some(idle) = conn.open.0.idle_timeout else {
        return false;
    };
    if now.saturating_duration_since(conn.last_busy) < idle {
        return false;
    }
    // Waiting for the database is not idleness.
    let reserved = usize::from(conn.slot.is_some());
    if conn.slots.available_permits() + reserved < MAX_IN_FLIGHT {
        conn.last_busy = now;
        return false;
    }
    log::debug!("closing tcp connection idle for {idle:?}");
    true
}

/// Serves one connection as far as it can go now.
fn serve(conn: &mut Conn, token: u64, inbox: &Arc<Inbox>, out: &mut Vec<u8>) -> Next {
    loop {
        if let Some(next) = poll_wait(conn, token, inbox) {
            return next;
        }
        if conn.shared.is_broken() {
            return Next::Close;
        }
        if conn.done_reading {
            return finish(conn, token, inbox);
        }
        // A client that does not read its replies is not read from.
        if conn.shared.pending() >= stop_reading_at(conn) {
            return Next::Wait;
        }
        match handle_buffered(conn, out) {
            Handled::All => {}
            Handled::Waiting => continue,
            Handled::TurnOver => return Next::Again,
            Handled::Close => return Next::Close,
        }
        if conn.done_reading {
            continue;
        }
        if !conn.readable {
            return Next::Wait;
        }
        if !read_more(conn) {
            conn.done_reading = true;
        }
    }
}

/// Unsent bytes at which a connection stops being read: while unread
/// replies are over their limit, any.
fn stop_reading_at(conn: &Conn) -> usize {
    match conn.shared.unsent().is_over() {
        true => 1,
        false => STOP_READING_BYTES,
    }
}

/// Polls what the connection waits for, if anything: `None` once it can
/// go on, else what the loop does meanwhile.
fn poll_wait(conn: &mut Conn, token: u64, inbox: &Arc<Inbox>) -> Option<Next> {
    let wait = conn.wait.as_mut()?;
    let waker = conn.waker.get_or_insert_with(|| {
        Waker::from(Arc::new(ConnectionWaker {
            inbox: inbox.clone(),
            token,
        }))
    });
    let mut cx = Context::from_waker(waker);
    let ready = match wait {
        Wait::Slot(f) => match f.as_mut().poll(&mut cx) {
            Poll::Ready(Ok(slot)) => {
                conn.slot = Some(slot);
                true
            }
            Poll::Ready(Err(_)) => return Some(Next::Close),
            Poll::Pending => false,
        },
        Wait::Room(f) | Wait::Answered(f) => f.as_mut().poll(&mut cx).is_ready(),
    };
    if !ready {
        return Some(Next::Wait);
    }
    let answered = matches!(conn.wait.take(), Some(Wait::Answered(_)));
    if answered {
        // Every deferred answer is handed over: the rest waits for the
        // socket to take what is unsent.
        return Some(match conn.shared.pending() {
            0 => shut_and_close(conn),
            _ => Next::Wait,
        });
    }
    None
}

/// A connection that reads no more: answers still owed by the database
/// are sent if the peer reads them (every in-flight slot back means every
/// deferred answer was handed over), then what waits unsent goes, and the
/// client reads end of stream.
fn finish(conn: &mut Conn, token: u64, inbox: &Arc<Inbox>) -> Next {
    conn.slot = None;
    // A client gone for good is found out by writing to it: no event may
    // come to tell.
    if !conn.shared.flush() {
        return Next::Close;
    }
    if conn.slots.available_permits() < MAX_IN_FLIGHT {
        let slots = conn.slots.clone();
        conn.wait = Some(Wait::Answered(Box::pin(async move {
            let _ = slots.acquire_many(MAX_IN_FLIGHT as u32).await;
        })));
        return poll_wait(conn, token, inbox).unwrap_or(Next::Wait);
    }
    match conn.shared.pending() {
        0 => shut_and_close(conn),
        _ => Next::Wait,
    }
}

fn shut_and_close(conn: &Conn) -> Next {
    conn.shared.shut_down(std::net::Shutdown::Write);
    Next::Close
}

/// Reads more of the connection; false at end of stream or on error.
fn read_more(conn: &mut Conn) -> bool {
    let buf = &mut conn.inbuf;
    if buf.capacity() - buf.len() < READ_CHUNK / 4 {
        buf.reserve(READ_CHUNK);
    }
    loop {
        let spare = buf.spare_capacity_mut();
        // SAFETY: the kernel only writes into the spare capacity, and
        // `set_len` below covers only what it wrote.
        let read = unsafe {
            libc::read(
                conn.shared.stream().as_raw_fd(),
                spare.as_mut_ptr().cast(),
                spare.len(),
            )
        };
        if read > 0 {
            // SAFETY: `read` bytes past the length were just written.
            unsafe { buf.set_len(buf.len() + read as usize) };
            if conn.open.0.idle_timeout.is_some() {
                conn.last_busy = Instant::now();
            }
            return true;
        }
        if read == 0 {
            return false;
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::WouldBlock => {
                conn.readable = false;
                return true;
            }
            io::ErrorKind::Interrupted => continue,
            _ => {
                log::debug!("closing tcp connection: read failed: {e}");
                return false;
            }
        }
    }
}

/// Handles every whole frame read so far, in order.
fn handle_buffered(conn: &mut Conn, out: &mut Vec<u8>) -> Handled {
    if conn.inbuf.is_empty() {
        return Handled::All;
    }
    let engine = &conn.engine;
    let mut used = 0;
    let mut handled = Handled::All;
    loop {
        let total = match next_frame(&conn.inbuf[used..], MAX_MSG_SIZE) {
            Ok(Some(total)) => total,
            Ok(None) => break,
            Err(e) => {
                if let FrameError::ShorterThanHeader(_) = e {
                    engine.stats.inc(Counter::MsgTcp);
                    engine.stats.inc(Counter::NetBrokenReq);
                }
                log::debug!("closing tcp connection: {e}");
                conn.done_reading = true;
                break;
            }
        };
        if conn.slot.is_none() {
            match conn.slots.clone().try_acquire_owned() {
                Ok(p) => conn.slot = Some(p),
                Err(_) => {
                    // Too much waits on the database: the client has what
                    // is answered, then waits for a slot.
                    let slots = conn.slots.clone();
                    conn.wait = Some(Wait::Slot(Box::pin(slots.acquire_owned())));
                    handled = Handled::Waiting;
                    break;
                }
            }
        }
        engine.stats.inc(Counter::MsgTcp);
        let msg = &conn.inbuf[used + TCP_PREFIX_LEN..used + total];
        let mut link = TcpLink {
            conn: &conn.shared,
            slot: &mut conn.slot,
            queued: false,
        };
        let disposition = engine.handle(msg, &mut link, out);
        let queued = link.queued;
        used += total;
        if disposition == Disposition::Close {
            conn.done_reading = true;
            break;
        }
        // Replies past the threshold go out before more requests are
        // taken; then the thread's other connections have their turn, so
        // that a long pipeline of large answers does not hold them up.
        if out.len() >= conn.shared.unsent().turn_bytes() {
            handled = Handled::TurnOver;
            break;
        }
        // This client added to a database queue over budget: it waits for
        // the queue to drain (its answers so far are sent first). Clients
        // that queue nothing go on.
        if queued && engine.db.budget().is_spent() {
            let engine = engine.clone();
            conn.wait = Some(Wait::Room(Box::pin(async move {
                engine.db.budget().wait_for_room().await;
            })));
            handled = Handled::Waiting;
            break;
        }
    }
    conn.inbuf.drain(..used);
    if !out.is_empty() {
        let sent = conn.shared.send(out, None);
        out.clear();
        release_if_large(out);
        if !sent {
            return Handled::Close;
        }
    }
    handled
}

#[cfg(test)]
mod tests {
    use super::super::{Limits, TURN_REPLY_BYTES};
    use super::*;
    use crate::backend::NullBackend;
    use crate::testing::{engine_on, panicking_backend, PANIC_KEY};
    use nmdb_proto::{Reply, Request, FLAGS_CACHE_ONLY};
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};

    /// A connected pair: the server's end, non-blocking, and the client's.
    fn socket_pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        (server, client)
    }

    /// A connection counted open in `limits`, for `engine`.
    fn new_connection(
        stream: TcpStream,
        engine: &Arc<Engine>,
        limits: &Arc<Limits>,
    ) -> NewConnection {
        NewConnection {
            stream,
            engine: engine.clone(),
            open: OpenConnection::new(limits.clone()),
        }
    }

    fn limits() -> Arc<Limits> {
        Arc::new(Limits::new(10, None, 1 << 30))
    }

    /// A connection as a loop holds it, and its client's end.
    fn connection() -> (Conn, TcpStream) {
        let (server, client) = socket_pair();
        let new = new_connection(server, &engine_on(Arc::new(NullBackend)), &limits());
        let mut conn = Conn::new(new);
        conn.readable = true;
        (conn, client)
    }

    /// The ids of every reply sent so far: the client reads while the
    /// connection sends what its socket did not take at once.
    fn replies_sent(conn: &Conn, client: &mut TcpStream, buf: &mut Vec<u8>) -> Vec<u32> {
        let mut ids = replies_now(client, buf);
        while conn.shared.pending() > 0 {
            conn.shared.flush();
            ids.extend(replies_now(client, buf));
        }
        ids
    }

    /// The ids of the whole replies `client` has been sent so far.
    fn replies_now(client: &mut TcpStream, buf: &mut Vec<u8>) -> Vec<u32> {
        client.set_nonblocking(true).unwrap();
        let mut chunk = [0u8; 65536];
        loop {
            match client.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        let mut ids = Vec::new();
        while let Ok(Some(total)) = next_frame(buf, MAX_MSG_SIZE) {
            ids.push(Reply::parse(&buf[TCP_PREFIX_LEN..total]).unwrap().id);
            buf.drain(..total);
        }
        ids
    }

    #[test]
    fn a_turn_ends_after_its_share_of_answers_and_the_rest_follow_in_order() {
        let (mut conn, mut client) = connection();
        let inbox = EventLoop::new().unwrap().inbox().clone();
        let value = vec![b'v'; 10_000];
        let mut requests = Vec::new();
        let set = Request::Set {
            key: b"k",
            value: &value,
        };
        set.encode_framed(0, FLAGS_CACHE_ONLY, &mut requests);
        const GETS: u32 = 20;
        for id in 1..=GETS {
            Request::Get { key: b"k" }.encode_framed(id, FLAGS_CACHE_ONLY, &mut requests);
        }
        client.write_all(&requests).unwrap();
        let mut out = Vec::new();
        let mut buf = Vec::new();

        // 200 KB of answers: the first turn ends past TURN_REPLY_BYTES.
        assert_eq!(serve(&mut conn, 1, &inbox, &mut out), Next::Again);
        let first = replies_sent(&conn, &mut client, &mut buf);
        let sent = (first.len() - 1) * value.len();
        assert!(
            sent >= TURN_REPLY_BYTES && sent < TURN_REPLY_BYTES + value.len(),
            "{} answers in the first turn",
            first.len()
        );
        let mut all = first;
        while serve(&mut conn, 1, &inbox, &mut out) == Next::Again {
            all.extend(replies_sent(&conn, &mut client, &mut buf));
        }
        all.extend(replies_sent(&conn, &mut client, &mut buf));
        assert_eq!(all, (0..=GETS).collect::<Vec<_>>());
    }

    #[test]
    fn serving_a_half_closed_client_answers_it_then_shuts_the_socket_and_ends() {
        let (mut conn, mut client) = connection();
        let inbox = EventLoop::new().unwrap().inbox().clone();
        let mut requests = Vec::new();
        for id in 0..3 {
            Request::Get { key: b"absent" }.encode_framed(id, FLAGS_CACHE_ONLY, &mut requests);
        }
        client.write_all(&requests).unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        let mut out = Vec::new();
        assert_eq!(serve(&mut conn, 1, &inbox, &mut out), Next::Close);
        let mut buf = Vec::new();
        assert_eq!(replies_now(&mut client, &mut buf), [0, 1, 2]);
        // The server shut its side: end of stream, not a wait.
        client.set_nonblocking(false).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        assert_eq!(client.read(&mut [0u8; 16]).map_err(|e| e.kind()), Ok(0));
    }

    #[test]
    fn a_request_that_panics_closes_its_connection_and_the_loop_serves_the_others() {
        let engine = engine_on(panicking_backend());
        let limits = limits();
        let mut event_loop = EventLoop::new().unwrap();
        let mut clients = Vec::new();
        for _ in 0..2 {
            let (server, client) = socket_pair();
            event_loop.add(new_connection(server, &engine, &limits));
            clients.push(client);
        }
        let token = |event_loop: &EventLoop, index: usize| {
            token_of(event_loop.conns[index].as_ref().unwrap().0, index)
        };
        let readable = |token| Event {
            token,
            readable: true,
            writable: false,
        };
        let (first, second) = (token(&event_loop, 0), token(&event_loop, 1));

        // A database read the backend panics on, made on the loop's thread.
        let mut request = Vec::new();
        Request::Get { key: PANIC_KEY }.encode_framed(1, 0, &mut request);
        clients[0].write_all(&request).unwrap();
        event_loop.on_socket(first, readable(first));
        assert!(event_loop.conns[0].is_none(), "the connection is closed");
        let mut buf = Vec::new();
        clients[0]
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        assert_eq!(
            clients[0].read_to_end(&mut buf).map_err(|e| e.kind()),
            Ok(0)
        );

        // The loop serves its other connection as before.
        request.clear();
        Request::Get { key: b"k" }.encode_framed(2, FLAGS_CACHE_ONLY, &mut request);
        clients[1].write_all(&request).unwrap();
        event_loop.on_socket(second, readable(second));
        assert_eq!(replies_now(&mut clients[1], &mut buf), [2]);
        assert_eq!(limits.open_connections(), 1);
    }
}
