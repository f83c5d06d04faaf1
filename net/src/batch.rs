//! Buffers for receiving and sending many datagrams with one system call
//! (`recvmmsg`, `sendmmsg`).

use crate::{pktinfo, Destination, Message, SockAddr};
use std::mem::size_of;

/// Buffers for [`DgramSocket::recv_batch`](crate::DgramSocket::recv_batch): room for `count` messages of
/// up to `size` bytes each, with their addresses and control data.
pub struct RecvBatch {
    buffers: Vec<Vec<u8>>,
    addrs: Vec<SockAddr>,
    controls: Vec<pktinfo::ControlBuf>,
    iovecs: Vec<libc::iovec>,
    pub(crate) headers: Vec<libc::mmsghdr>,
    pub(crate) received: usize,
}

impl RecvBatch {
    pub fn new(count: usize, size: usize) -> Self {
        let count = count.max(1);
        let mut batch = RecvBatch {
            buffers: (0..count).map(|_| vec![0; size]).collect(),
            addrs: (0..count).map(|_| SockAddr::empty()).collect(),
            controls: (0..count)
                .map(|_| pktinfo::ControlBuf([0; pktinfo::CONTROL_LEN]))
                .collect(),
            // SAFETY (both): all-zero iovec and mmsghdr are valid; they
            // are pointed at the buffers just below.
            iovecs: (0..count).map(|_| unsafe { std::mem::zeroed() }).collect(),
            headers: (0..count).map(|_| unsafe { std::mem::zeroed() }).collect(),
            received: 0,
        };
        // The vectors never grow, so what the headers point at stays put.
        for i in 0..count {
            batch.iovecs[i] = libc::iovec {
                iov_base: batch.buffers[i].as_mut_ptr() as *mut libc::c_void,
                iov_len: batch.buffers[i].len(),
            };
            let hdr = &mut batch.headers[i].msg_hdr;
            hdr.msg_name = &mut batch.addrs[i].storage as *mut _ as *mut libc::c_void;
            hdr.msg_iov = &mut batch.iovecs[i];
            hdr.msg_iovlen = 1;
            hdr.msg_control = batch.controls[i].0.as_mut_ptr() as *mut libc::c_void;
        }
        batch
    }

    /// Resets the lengths the kernel shortened in the first `most` headers.
    pub(crate) fn prepare(&mut self, most: usize) {
        self.received = 0;
        for header in &mut self.headers[..most] {
            header.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            header.msg_hdr.msg_controllen = pktinfo::CONTROL_LEN as _;
            header.msg_hdr.msg_flags = 0;
            header.msg_len = 0;
        }
    }

    /// Message `i` of the last receive (below its count) and its bytes.
    pub fn message(&self, i: usize) -> (Message, &[u8]) {
        assert!(i < self.received, "message {i} of {}", self.received);
        let header = &self.headers[i];
        let hdr = &header.msg_hdr;
        let len = header.msg_len as usize;
        let mut from = self.addrs[i];
        from.len = hdr.msg_namelen;
        let message = Message {
            len,
            from,
            to: pktinfo::destination_of(hdr),
            complete: hdr.msg_flags & libc::MSG_TRUNC == 0,
        };
        (message, &self.buffers[i][..len])
    }
}

/// One message of a [`SendBatch`]: where its bytes are, and where to.
pub(crate) struct Outgoing {
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) to: SockAddr,
    pub(crate) from: Option<Destination>,
}

/// Messages to send with one [`DgramSocket::send_batch`](crate::DgramSocket::send_batch): each is
/// appended to [`SendBatch::buffer`] and then marked with
/// [`SendBatch::mark`].
#[derive(Default)]
pub struct SendBatch {
    pub(crate) bytes: Vec<u8>,
    pub(crate) messages: Vec<Outgoing>,
    iovecs: Vec<libc::iovec>,
    controls: Vec<pktinfo::ControlBuf>,
    pub(crate) headers: Vec<libc::mmsghdr>,
}

impl SendBatch {
    pub fn new() -> Self {
        Self::default()
    }

    /// Where the next message's bytes go.
    pub fn buffer(&mut self) -> &mut Vec<u8> {
        &mut self.bytes
    }

    /// Makes what was appended to the buffer since `start` one message to
    /// `to`, sent from `from` when given; nothing when nothing was added.
    pub fn mark(&mut self, start: usize, to: SockAddr, from: Option<Destination>) {
        let end = self.bytes.len();
        if end > start {
            self.messages.push(Outgoing {
                start,
                end,
                to,
                from,
            });
        }
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// Builds the kernel's headers for the messages as they now are.
    pub(crate) fn prepare(&mut self) {
        let n = self.messages.len();
        self.iovecs.clear();
        self.headers.clear();
        self.controls
            .resize_with(n, || pktinfo::ControlBuf([0; pktinfo::CONTROL_LEN]));
        for m in &self.messages {
            self.iovecs.push(libc::iovec {
                iov_base: self.bytes[m.start..].as_ptr() as *mut libc::c_void,
                iov_len: m.end - m.start,
            });
        }
        for (i, m) in self.messages.iter().enumerate() {
            // SAFETY: an all-zero mmsghdr is valid (no control data).
            let mut header: libc::mmsghdr = unsafe { std::mem::zeroed() };
            let hdr = &mut header.msg_hdr;
            hdr.msg_name = m.to.as_ptr() as *mut libc::c_void;
            hdr.msg_namelen = m.to.len;
            hdr.msg_iov = &mut self.iovecs[i];
            hdr.msg_iovlen = 1;
            if let Some(from) = &m.from {
                pktinfo::write_source(hdr, &mut self.controls[i], from);
            }
            self.headers.push(header);
        }
    }

    pub(crate) fn clear(&mut self) {
        self.bytes.clear();
        self.messages.clear();
        self.headers.clear();
        self.iovecs.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DgramSocket;
    use std::net::{Ipv4Addr, SocketAddr};
    use std::time::Duration;

    #[test]
    fn a_batch_takes_every_queued_message_with_its_sender_and_destination() {
        let rx = DgramSocket::new(libc::AF_INET, libc::SOCK_DGRAM, 0).unwrap();
        rx.bind(&SockAddr::from("0.0.0.0:0".parse::<SocketAddr>().unwrap()))
            .unwrap();
        rx.enable_packet_info(false).unwrap();
        let port = rx.local_addr().unwrap().as_inet().unwrap().port();
        let to = SockAddr::from(SocketAddr::from(([127, 0, 0, 1], port)));
        let senders: Vec<DgramSocket> = (0..3)
            .map(|_| DgramSocket::new(libc::AF_INET, libc::SOCK_DGRAM, 0).unwrap())
            .collect();
        for (i, tx) in senders.iter().enumerate() {
            tx.send_to(&vec![i as u8; 10 + i], &to).unwrap();
        }
        // One longer than a buffer, one more than a batch holds.
        senders[0].send_to(&[9u8; 100], &to).unwrap();
        senders[1].send_to(b"next batch", &to).unwrap();
        let mut batch = RecvBatch::new(4, 50);
        assert_eq!(rx.recv_batch(&mut batch, 4).unwrap(), 4);
        for (i, tx) in senders.iter().enumerate() {
            let (msg, bytes) = batch.message(i);
            assert_eq!(bytes, vec![i as u8; 10 + i]);
            assert!(msg.complete);
            let port = |a: &SockAddr| a.as_inet().unwrap().port();
            assert_eq!(port(&msg.from), port(&tx.local_addr().unwrap()));
            assert_eq!(msg.to, Some(Destination::V4(Ipv4Addr::LOCALHOST)));
        }
        let (cut, bytes) = batch.message(3);
        assert_eq!((cut.len, bytes.len(), cut.complete), (50, 50, false));
        // Only what is queued is taken: no waiting for a full batch.
        senders[2].send_to(b"then one", &to).unwrap();
        assert_eq!(rx.recv_batch(&mut batch, 4).unwrap(), 2);
        assert_eq!(batch.message(0).1, b"next batch");
        assert_eq!(batch.message(1).1, b"then one");
        // Never more than asked for.
        senders[0].send_to(b"one", &to).unwrap();
        senders[0].send_to(b"two", &to).unwrap();
        assert_eq!(rx.recv_batch(&mut batch, 1).unwrap(), 1);
        assert_eq!(rx.recv_batch(&mut batch, 4).unwrap(), 1);
        assert_eq!(batch.message(0).1, b"two");
    }

    #[test]
    fn a_send_batch_delivers_each_message_and_skips_one_the_kernel_refuses() {
        let bound = || {
            let s = DgramSocket::new(libc::AF_INET, libc::SOCK_DGRAM, 0).unwrap();
            s.bind(&SockAddr::from(
                "127.0.0.1:0".parse::<SocketAddr>().unwrap(),
            ))
            .unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s
        };
        let (tx, a, c) = (bound(), bound(), bound());
        let nowhere = SockAddr::from("[::1]:9".parse::<SocketAddr>().unwrap());
        let mut batch = SendBatch::new();
        for (bytes, to) in [
            (&b"for a"[..], a.local_addr().unwrap()),
            (b"refused", nowhere),
            (b"", a.local_addr().unwrap()),
            (b"for c", c.local_addr().unwrap()),
        ] {
            let start = batch.buffer().len();
            batch.buffer().extend_from_slice(bytes);
            batch.mark(start, to, None);
        }
        let mut refused = Vec::new();
        tx.send_batch(&mut batch, |to, e| refused.push((to.as_inet(), e.kind())));
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert!(batch.is_empty());
        let mut buf = [0u8; 16];
        let (n, _) = a.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"for a");
        let (n, _) = c.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"for c");
        a.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        assert!(
            a.recv_from(&mut buf).is_err(),
            "an empty message is not sent"
        );
    }
}
