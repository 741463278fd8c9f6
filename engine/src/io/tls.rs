//! The TLS record layer of a connection, behind [`Conn::recv`](super::Conn::recv) and
//! [`Conn::send`](super::Conn::send): rustls's unbuffered connection driven over the shard's
//! own ring, as the server of a client's connection to a TLS listener ([`ServerTls`]) or as the
//! client of a connection to a TLS upstream ([`ClientTls`]); one implementation for both
//! ([`Records`]). No thread, nothing blocking: a handshake waits on the ring like any
//! receive, so handshakes interleave with every other connection of the shard.
//!
//! rustls keeps offsets into the received records while a handshake message arrives in
//! pieces, so every call into it is shown those records (`cipher`), never another slice, and
//! what it says to discard is discarded before the next call. A panic here would take the
//! whole shard down. The server name a client asked for comes from the certificate resolver
//! (`tls::sni`), which rustls asks during those calls.
//!
//! Who owns which memory (the model is `uring.rs`'s):
//!
//! | bytes | where | freed |
//! |---|---|---|
//! | records received | `cipher`, a [`ReadBuf`]: a provided buffer the kernel picks when they land (none while idle), moved to a [record buffer](super::IoShard::record_pool) when one record is longer than a pool buffer | when every record in it was processed |
//! | records being received | the ring's operation slot, exactly as a plain receive | at the completion, even if the receive future was dropped |
//! | plaintext received | opened in place in `cipher`, then copied into the caller's [`ReadBuf`], or into `spill` when the caller's buffer is full | as the caller consumes it |
//! | records to send | pool buffers in an [`Outbound`], sealed there in place and sent in one gathered write; the ring's slot while in flight | when the send completes |
//! | handshake state | the boxed rustls connection | when the handshake is over |
//! | keys | the boxed [`RecordKeys`] and rustls's `KernelConnection` | with the connection |
//!
//! The kernel never sees anything but whole pool buffers through the existing receive and send
//! operations, so every invariant of `uring.rs` (a buffer lent to the kernel stays alive until
//! its completion, whatever happens to the future) holds unchanged. Idle, a TLS connection
//! holds no buffer at all: no records, no plaintext.
//!
//! Two record layers, one after the other: rustls's own runs the handshake (and whatever
//! records arrive with its end); once rustls has nothing left to send or hand over, the session
//! changes to coregate's ([`Session::Own`]): rustls keeps the secrets (key updates, an
//! upstream's session tickets) and `tls::record` seals and opens records in place with them.
//! rustls 0.23's record layer allocates a `Vec` for every record it opens or seals; after the
//! change, an HTTPS request allocates nothing. The plaintext is still copied once, from the
//! opened record into the caller's buffer.

use std::io;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use rustls::client::{ClientConfig, UnbufferedClientConnection};
use rustls::kernel::KernelConnection;
use rustls::pki_types::ServerName;
use rustls::server::{ServerConfig, UnbufferedServerConnection};
use rustls::unbuffered::{ConnectionState, EncodeError, UnbufferedStatus};
use rustls::{CommonState, client::ClientConnectionData, server::ServerConnectionData};
use rustls::{ExtractedSecrets, HandshakeKind, ProtocolVersion};

use crate::tls::record::{self, ContentType, HEADER, MAX_PLAINTEXT, RecordError, RecordKeys};

use super::buffer::BufferPool;
use super::conn::{Expect, receive, send_all};
use super::{IoShard, Outbound, ReadBuf};

/// More than any record's framing and tag adds to its plaintext: 5 header bytes, then at most
/// 8 of explicit nonce (TLS 1.2 GCM), 1 content type (TLS 1.3) and 16 of tag.
const RECORD_OVERHEAD: usize = 64;

/// The least free space worth encrypting a record into; below it, a fresh buffer is taken.
const MIN_RECORD_ROOM: usize = 1024;

/// What a finished handshake established, for the connection's context.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handshaken {
    /// The server name the client asked for.
    pub sni: Option<Box<str>>,
    pub alpn: Option<Box<[u8]>>,
    pub version: TlsVersion,
    /// Whether the client resumed an earlier session.
    pub resumed: bool,
    /// Who the client's verified certificate names (see `tls::x509::CertFacts::identity`),
    /// when the listener asks for certificates and the client sent one.
    pub client_identity: Option<Box<str>>,
}

/// The negotiated protocol version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

impl TlsVersion {
    /// As access logs and metrics name it.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsVersion::Tls12 => "TLSv1.2",
            TlsVersion::Tls13 => "TLSv1.3",
        }
    }
}

/// Why a handshake failed, as `/metrics` counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandshakeFailure {
    /// The handshake did not finish before its deadline.
    Timeout,
    /// The client closed, or the socket failed, before the handshake finished.
    Closed,
    /// The client sent an alert (it did not trust the certificate, say).
    PeerAlert,
    /// No certificate for the name asked (`unknown_name = "refuse"`).
    UnknownName,
    /// No protocol version, cipher suite, group or application protocol in common.
    Incompatible,
    /// A client certificate was missing or did not verify.
    ClientCertificate,
    /// Bytes that are not TLS, or a TLS peer breaking the protocol.
    Protocol,
}

impl HandshakeFailure {
    pub const ALL: [HandshakeFailure; 7] = [
        HandshakeFailure::Timeout,
        HandshakeFailure::Closed,
        HandshakeFailure::PeerAlert,
        HandshakeFailure::UnknownName,
        HandshakeFailure::Incompatible,
        HandshakeFailure::ClientCertificate,
        HandshakeFailure::Protocol,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            HandshakeFailure::Timeout => "timeout",
            HandshakeFailure::Closed => "closed",
            HandshakeFailure::PeerAlert => "peer_alert",
            HandshakeFailure::UnknownName => "unknown_name",
            HandshakeFailure::Incompatible => "incompatible",
            HandshakeFailure::ClientCertificate => "client_certificate",
            HandshakeFailure::Protocol => "protocol",
        }
    }

    fn of_io(err: &io::Error) -> HandshakeFailure {
        match err.kind() {
            io::ErrorKind::TimedOut => HandshakeFailure::Timeout,
            _ => HandshakeFailure::Closed,
        }
    }

    fn of_tls(err: &rustls::Error) -> HandshakeFailure {
        use rustls::Error as E;
        match err {
            E::AlertReceived(_) => HandshakeFailure::PeerAlert,
            E::General(text) if text.contains("certificate") => HandshakeFailure::UnknownName,
            E::PeerIncompatible(_) | E::NoApplicationProtocol => HandshakeFailure::Incompatible,
            E::NoCertificatesPresented | E::InvalidCertificate(_) => {
                HandshakeFailure::ClientCertificate
            }
            _ => HandshakeFailure::Protocol,
        }
    }
}

/// The two ends rustls drives unbuffered: the same record processing, each end with its own
/// handshake.
pub trait Records: Sized {
    type Data;
    /// Servers read the ClientHello's server name for the context.
    const SERVER: bool;
    fn process<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self::Data>;
    fn state(&self) -> &CommonState;
    /// The secrets, once the handshake is over, and what rustls keeps to renew them.
    fn into_kernel(self) -> Result<Kernel<Self::Data>, rustls::Error>;
    /// A session ticket the peer sent after the handshake (only a server may).
    fn take_ticket(
        kernel: &mut KernelConnection<Self::Data>,
        body: &[u8],
    ) -> Result<(), rustls::Error>;
}

/// What rustls hands over when coregate takes the records over.
pub type Kernel<Data> = (ExtractedSecrets, KernelConnection<Data>);

impl Records for UnbufferedServerConnection {
    type Data = ServerConnectionData;
    const SERVER: bool = true;
    fn process<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self::Data> {
        self.process_tls_records(incoming)
    }
    fn state(&self) -> &CommonState {
        self
    }
    fn into_kernel(self) -> Result<Kernel<Self::Data>, rustls::Error> {
        self.dangerous_into_kernel_connection()
    }
    fn take_ticket(_: &mut KernelConnection<Self::Data>, _: &[u8]) -> Result<(), rustls::Error> {
        Err(rustls::Error::General(
            "a client sent a session ticket".into(),
        ))
    }
}

impl Records for UnbufferedClientConnection {
    type Data = ClientConnectionData;
    const SERVER: bool = false;
    fn process<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self::Data> {
        self.process_tls_records(incoming)
    }
    fn state(&self) -> &CommonState {
        self
    }
    fn into_kernel(self) -> Result<Kernel<Self::Data>, rustls::Error> {
        self.dangerous_into_kernel_connection()
    }
    fn take_ticket(
        kernel: &mut KernelConnection<Self::Data>,
        body: &[u8],
    ) -> Result<(), rustls::Error> {
        kernel.handle_new_session_ticket(body)
    }
}

/// Whose record layer a session is on.
enum Session<C: Records> {
    /// rustls's: the handshake, and the records that arrive with its end.
    Rustls(Box<C>),
    /// coregate's, with the keys rustls negotiated.
    Own(Box<Established<C::Data>>),
    /// Only while changing from the one to the other, or after that failed.
    Gone,
}

/// An established session on coregate's record layer.
struct Established<Data> {
    keys: RecordKeys,
    /// What renews the keys on a TLS 1.3 key update and stores an upstream's tickets.
    kernel: KernelConnection<Data>,
    /// The peer asked for a key update: ours goes out ahead of the next record sealed.
    update_owed: bool,
}

/// A TLS server session (a client's connection to a TLS listener).
pub type ServerTls = TlsLayer<UnbufferedServerConnection>;
/// A TLS client session (a connection to a TLS upstream).
pub type ClientTls = TlsLayer<UnbufferedClientConnection>;

/// Bytes an established session of a TLS listener holds, boxed apart from its connection: the
/// layer and coregate's record keys (rustls's own state for key updates comes on top).
pub fn server_session_bytes() -> usize {
    std::mem::size_of::<ServerTls>() + std::mem::size_of::<Established<ServerConnectionData>>()
}

/// A TLS session on one connection, either end.
pub struct TlsLayer<C: Records> {
    session: Session<C>,
    /// Records received and not yet processed; no buffer while empty.
    cipher: ReadBuf,
    /// Plaintext rustls handed over that did not fit the caller's buffer, from `spill_at` on.
    /// Empty (and unallocated) unless a client pipelines more than a buffer of requests.
    spill: Vec<u8>,
    spill_at: usize,
    /// Records rustls made outside a send while it still ran the records (a post-handshake
    /// message that arrived with the handshake's end): sent ahead of the next write's records.
    /// On coregate's layer a key update is answered from [`Established`] instead. Boxed apart:
    /// hardly a session ever needs it, and every idle one would carry its parts.
    pending: Option<Box<Outbound>>,
    /// The name the ClientHello asked for.
    sni: Option<Box<str>>,
    /// The peer sent `close_notify` (reported once; every later read is an end).
    peer_closed: bool,
    /// rustls reported an error: the session is over, and rustls is not asked again (it
    /// would only fail again, and in debug builds assert that it never alerts twice).
    broken: bool,
}

/// What one step of the state machine asks for next.
enum Next {
    /// Go on processing.
    Again,
    /// Send the records made so far.
    Send,
    /// Receive more records.
    Receive,
    /// The handshake is over, and rustls holds plaintext to hand over.
    Done,
    /// The handshake is over and rustls holds nothing more: the records may change to
    /// coregate's layer.
    Writable,
    Closed,
    Failed(rustls::Error),
}

/// What reading plaintext gave.
pub(super) enum Read {
    Bytes(usize),
    /// Nothing yet: more records are needed.
    More,
    /// The client sent `close_notify`.
    Closed,
}

impl ServerTls {
    pub fn new(config: Arc<ServerConfig>) -> io::Result<ServerTls> {
        let conn = UnbufferedServerConnection::new(config).map_err(tls_error)?;
        Ok(TlsLayer::with(conn))
    }
}

impl ClientTls {
    /// A client session to `name` (a DNS name is sent as SNI; an IP address is not).
    pub fn client(config: Arc<ClientConfig>, name: ServerName<'static>) -> io::Result<ClientTls> {
        let conn = UnbufferedClientConnection::new(config, name).map_err(tls_error)?;
        Ok(TlsLayer::with(conn))
    }
}

impl<C: Records> TlsLayer<C> {
    fn with(conn: C) -> TlsLayer<C> {
        TlsLayer {
            session: Session::Rustls(Box::new(conn)),
            cipher: ReadBuf::new(),
            spill: Vec::new(),
            spill_at: 0,
            pending: None,
            sni: None,
            peer_closed: false,
            broken: false,
        }
    }

    /// Whether the layer holds any buffer (records or plaintext): never while idle.
    pub fn holds_buffer(&self) -> bool {
        self.cipher.holds_buffer()
            || self.spill.len() > self.spill_at
            || self
                .pending
                .as_ref()
                .is_some_and(|pending| !pending.is_empty())
    }

    #[cfg(test)]
    pub(super) fn on_own_records(&self) -> bool {
        matches!(self.session, Session::Own(_))
    }

    /// Whether received records or plaintext wait to be read.
    pub(super) fn has_buffered_input(&self) -> bool {
        !self.cipher.is_empty() || self.spill.len() > self.spill_at
    }

    /// Runs the handshake to its end over `fd`. A failure leaves the connection fit only for
    /// closing; the alert rustls made for it is sent first, best effort.
    pub(super) async fn handshake(
        &mut self,
        shard: &IoShard,
        fd: RawFd,
        deadline: Option<Instant>,
    ) -> Result<Handshaken, (HandshakeFailure, String)> {
        let closed = |what: &str| (HandshakeFailure::Closed, what.to_owned());
        let of_io = |err: io::Error| (HandshakeFailure::of_io(&err), err.to_string());
        let pool = shard.pool();
        let mut out = Outbound::new();
        loop {
            let next = {
                let TlsLayer {
                    session,
                    cipher,
                    sni,
                    ..
                } = self;
                let Session::Rustls(conn) = session else {
                    return Err((HandshakeFailure::Protocol, "a second handshake".into()));
                };
                let status = conn.process(cipher.data_mut());
                // Taken whatever the outcome, so it never waits for another connection.
                if let Some(asked) = crate::tls::sni::take_asked_name() {
                    *sni = asked;
                }
                let discard = status.discard;
                let next = match status.state {
                    Ok(ConnectionState::EncodeTlsData(mut data)) => {
                        match encode(&mut out, pool, |buf| data.encode(buf)) {
                            Ok(true) => Next::Again,
                            Ok(false) => Next::Send,
                            Err(_) => Next::Closed,
                        }
                    }
                    Ok(ConnectionState::TransmitTlsData(transmit)) => {
                        // The records go out right below, before anything else is processed.
                        transmit.done();
                        Next::Send
                    }
                    Ok(ConnectionState::BlockedHandshake) => Next::Receive,
                    Ok(ConnectionState::WriteTraffic(_)) => Next::Writable,
                    Ok(ConnectionState::ReadTraffic(_)) => Next::Done,
                    Ok(_) => Next::Closed,
                    Err(err) => Next::Failed(err),
                };
                cipher.consume(discard);
                // TLS 1.3 lets a server write once its own Finished is out; the handshake is
                // over only with the client's (a client that distrusts the certificate says so
                // by an alert instead, which counts as a failure).
                match next {
                    Next::Done | Next::Writable if conn.state().is_handshaking() => Next::Receive,
                    next => next,
                }
            };
            match next {
                Next::Again => {}
                Next::Send => send_all(shard, fd, &mut out, deadline)
                    .await
                    .map(|()| out.clear())
                    .map_err(of_io)?,
                Next::Receive => {
                    self.make_record_room(shard)
                        .map_err(|err| (HandshakeFailure::Protocol, err.to_string()))?;
                    match receive(shard, fd, &mut self.cipher, deadline, Expect::Now).await {
                        Ok(0) => return Err(closed("the peer closed the connection")),
                        Ok(_) => {}
                        Err(err) => return Err(of_io(err)),
                    }
                }
                Next::Done | Next::Writable => {
                    if !out.is_empty() {
                        send_all(shard, fd, &mut out, deadline)
                            .await
                            .map_err(of_io)?;
                    }
                    let handshaken = self.handshaken();
                    if matches!(next, Next::Writable) {
                        self.establish()
                            .map_err(|err| (HandshakeFailure::Protocol, err.to_string()))?;
                    }
                    return Ok(handshaken);
                }
                Next::Closed => return Err(closed("the session closed")),
                Next::Failed(err) => {
                    self.broken = true;
                    let failure = (HandshakeFailure::of_tls(&err), err.to_string());
                    out.clear();
                    if self.queue_alert(&mut out, pool) {
                        let _ = send_all(shard, fd, &mut out, deadline).await;
                    }
                    return Err(failure);
                }
            }
        }
    }

    /// What the handshake established; asked before the session changes to coregate's
    /// records, while rustls still has it all.
    fn handshaken(&mut self) -> Handshaken {
        let Session::Rustls(conn) = &self.session else {
            unreachable!("asked at the end of the handshake, before the change of layer")
        };
        let state = conn.state();
        Handshaken {
            sni: self.sni.take(),
            alpn: state.alpn_protocol().map(Into::into),
            version: match state.protocol_version() {
                Some(ProtocolVersion::TLSv1_2) => TlsVersion::Tls12,
                _ => TlsVersion::Tls13,
            },
            resumed: state.handshake_kind() == Some(HandshakeKind::Resumed),
            client_identity: C::SERVER
                .then(|| state.peer_certificates())
                .flatten()
                .and_then(|chain| chain.first())
                .and_then(|leaf| crate::tls::x509::facts(leaf).ok()?.identity)
                .map(Into::into),
        }
    }

    /// After a failure: what rustls queued (the records of the flight it had begun and the
    /// alert), encoded into `out`. True when there is anything.
    ///
    /// rustls is asked only while it has records queued (it hands those out before looking
    /// at any input; looking at the input again after a failure would only fail again), and is
    /// shown the records received, never an empty slice (see [`TlsLayer::encrypt`]).
    fn queue_alert(&mut self, out: &mut Outbound, pool: &Rc<BufferPool>) -> bool {
        let Session::Rustls(conn) = &mut self.session else {
            return false;
        };
        while conn.state().wants_write() {
            let status = conn.process(self.cipher.data_mut());
            let Ok(ConnectionState::EncodeTlsData(mut data)) = status.state else {
                break;
            };
            if encode(out, pool, |buf| data.encode(buf)) != Ok(true) {
                break;
            }
        }
        !out.is_empty()
    }

    /// The plaintext of the records at hand, appended to `rb`: `Some(n)` new bytes (0: the
    /// client closed with `close_notify`), or `None` when more records must be received first
    /// (into [`TlsLayer::records_in`], which then has room for the record under way).
    pub(super) fn read_at_hand(
        &mut self,
        rb: &mut ReadBuf,
        shard: &IoShard,
    ) -> io::Result<Option<usize>> {
        match self.read(rb, shard.pool())? {
            Read::Bytes(n) => return Ok(Some(n)),
            Read::Closed => return Ok(Some(0)),
            Read::More => {}
        }
        if rb.capacity().is_some_and(|capacity| rb.len() == capacity) {
            return Err(io::Error::new(
                io::ErrorKind::OutOfMemory,
                "read buffer full",
            ));
        }
        self.make_record_room(shard)?;
        Ok(None)
    }

    /// Where received records go.
    pub(super) fn records_in(&mut self) -> &mut ReadBuf {
        &mut self.cipher
    }

    /// Decrypts the records at hand into `rb`.
    pub(super) fn read(&mut self, rb: &mut ReadBuf, pool: &Rc<BufferPool>) -> io::Result<Read> {
        if self.broken {
            return Err(broken());
        }
        let got = self.read_spill(rb, pool);
        if self.spill.len() > self.spill_at {
            return Ok(Read::Bytes(got));
        }
        let opened = if self.peer_closed {
            Ok(0)
        } else if matches!(self.session, Session::Own(_)) {
            self.open_records(rb, pool)
        } else {
            self.read_rustls(rb, pool)
        };
        let got = got + opened.inspect_err(|_| self.broken = true)?;
        Ok(match got {
            0 if self.peer_closed => Read::Closed,
            0 => Read::More,
            n => Read::Bytes(n),
        })
    }

    /// Plaintext left over from an earlier read, appended to `rb`; the bytes moved.
    fn read_spill(&mut self, rb: &mut ReadBuf, pool: &Rc<BufferPool>) -> usize {
        if self.spill.len() <= self.spill_at {
            return 0;
        }
        let n = rb.append(&self.spill[self.spill_at..], pool);
        self.spill_at += n;
        if self.spill.len() == self.spill_at {
            self.spill = Vec::new();
            self.spill_at = 0;
        }
        n
    }

    /// Opens the whole records at hand on coregate's layer, their plaintext into `rb`: the
    /// bytes appended to `rb`. A `close_notify` sets `peer_closed`. Once some plaintext is in,
    /// a record is opened only if `rb` can take all of its plaintext; the rest wait, sealed,
    /// for the next read. Only a record that does not fit into an `rb` that took nothing yet
    /// is split, the part that does not fit into `spill` (allocated), and none after it.
    fn open_records(&mut self, rb: &mut ReadBuf, pool: &Rc<BufferPool>) -> io::Result<usize> {
        let mut got = 0;
        while !self.peer_closed && self.spill.is_empty() {
            let TlsLayer {
                session,
                cipher,
                spill,
                peer_closed,
                ..
            } = self;
            let Session::Own(own) = session else {
                return Err(broken());
            };
            let data = cipher.data_mut();
            let Some(len) = record::record_len(data).filter(|&len| len <= data.len()) else {
                break;
            };
            if got > 0 && own.keys.most_plaintext_in(len) > rb.room(pool.buf_size()) {
                break;
            }
            let record = &mut data[..len];
            let opened = own.keys.open(record).map_err(record_error)?;
            let plaintext = &record[opened.plaintext];
            match opened.typ {
                ContentType::ApplicationData => {
                    let n = rb.append(plaintext, pool);
                    got += n;
                    spill.extend_from_slice(&plaintext[n..]);
                }
                ContentType::Alert => *peer_closed = own.alert(plaintext)?,
                ContentType::Handshake => own.post_handshake::<C>(plaintext)?,
            }
            cipher.consume(len);
        }
        Ok(got)
    }

    /// Decrypts the records at hand with rustls (the ones that arrive with the handshake's
    /// end), changing to coregate's layer once rustls holds nothing more: the bytes appended
    /// to `rb`. The peer's close sets `peer_closed`.
    fn read_rustls(&mut self, rb: &mut ReadBuf, pool: &Rc<BufferPool>) -> io::Result<usize> {
        let mut got = 0;
        loop {
            let TlsLayer {
                session,
                cipher,
                spill,
                pending,
                ..
            } = self;
            let Session::Rustls(conn) = session else {
                return Err(broken());
            };
            let status = conn.process(cipher.data_mut());
            let discard = status.discard;
            let next = match status.state {
                Ok(ConnectionState::ReadTraffic(mut traffic)) => {
                    let mut failed = None;
                    while let Some(record) = traffic.next_record() {
                        match record {
                            Ok(record) => {
                                let n = rb.append(record.payload, pool);
                                got += n;
                                // Whatever did not fit waits for the next read.
                                spill.extend_from_slice(&record.payload[n..]);
                            }
                            Err(err) => {
                                failed = Some(err);
                                break;
                            }
                        }
                    }
                    match failed {
                        Some(err) => Next::Failed(err),
                        None => Next::Again,
                    }
                }
                Ok(ConnectionState::EncodeTlsData(mut data)) => {
                    let pending = pending.get_or_insert_with(Box::default);
                    match encode(pending, pool, |buf| data.encode(buf)) {
                        Ok(true) => Next::Again,
                        _ => Next::Failed(rustls::Error::General(
                            "no buffer for a post-handshake message".into(),
                        )),
                    }
                }
                Ok(ConnectionState::TransmitTlsData(transmit)) => {
                    // `pending` leaves ahead of the next write's records.
                    transmit.done();
                    Next::Again
                }
                Ok(ConnectionState::WriteTraffic(_)) => Next::Writable,
                Ok(ConnectionState::PeerClosed | ConnectionState::Closed) => Next::Closed,
                Ok(_) => Next::Receive,
                Err(err) => Next::Failed(err),
            };
            cipher.consume(discard);
            return match next {
                Next::Again => continue,
                Next::Failed(err) => Err(tls_error(err)),
                Next::Writable => {
                    self.establish()?;
                    Ok(got + self.open_records(rb, pool)?)
                }
                Next::Closed => {
                    self.peer_closed = true;
                    Ok(got)
                }
                _ => Ok(got),
            };
        }
    }

    /// Changes the session to coregate's record layer: rustls has finished the handshake,
    /// sent everything it made and handed over every plaintext byte (it says so by asking
    /// for application data to write).
    fn establish(&mut self) -> io::Result<()> {
        let Session::Rustls(conn) = std::mem::replace(&mut self.session, Session::Gone) else {
            return Ok(());
        };
        let version = conn.state().protocol_version();
        let suite = conn.state().negotiated_cipher_suite();
        let (Some(version), Some(suite)) = (version, suite) else {
            return Err(io::Error::other(
                "TLS: no version or suite after the handshake",
            ));
        };
        let (secrets, kernel) = (*conn).into_kernel().map_err(tls_error)?;
        let keys = RecordKeys::new(version, suite, secrets.tx, secrets.rx).map_err(record_error)?;
        self.session = Session::Own(Box::new(Established {
            keys,
            kernel,
            update_owed: false,
        }));
        Ok(())
    }

    /// Encrypts every part of `plain`, in order, and sends the records in as few gathered
    /// writes as the part slots allow (one, for a head and a body of up to two buffers).
    /// `plain` is left unchanged.
    pub(super) async fn send(
        &mut self,
        shard: &IoShard,
        fd: RawFd,
        plain: &Outbound,
        deadline: Option<Instant>,
    ) -> io::Result<()> {
        let pool = shard.pool();
        let mut records = self
            .pending
            .take()
            .map_or_else(Outbound::new, |pending| *pending);
        for part in plain.parts() {
            let mut bytes = part.bytes();
            while !bytes.is_empty() {
                match self.encrypt(bytes, &mut records, pool)? {
                    Some(taken) => bytes = &bytes[taken..],
                    None if records.is_empty() => {
                        return Err(super::no_buffer());
                    }
                    None => {
                        send_all(shard, fd, &mut records, deadline).await?;
                        records.clear();
                    }
                }
            }
        }
        if !records.is_empty() {
            send_all(shard, fd, &mut records, deadline).await?;
        }
        Ok(())
    }

    /// Encrypts a prefix of `bytes` (one record) after the records in `out`; returns its
    /// length, or `None` when `out` has no room (send it first).
    pub(super) fn encrypt(
        &mut self,
        bytes: &[u8],
        out: &mut Outbound,
        pool: &Rc<BufferPool>,
    ) -> io::Result<Option<usize>> {
        if self.broken {
            return Err(broken());
        }
        if !matches!(self.session, Session::Own(_)) {
            self.settle_rustls(out, pool)
                .inspect_err(|_| self.broken = true)?;
        }
        let Session::Own(own) = &mut self.session else {
            // rustls still has records to send first.
            return Ok(None);
        };
        let sealed = own.seal_data(bytes, out, pool);
        if sealed.is_err() {
            self.broken = true;
        }
        sealed
    }

    /// Before the first write after the handshake: whatever rustls still has (records it made,
    /// plaintext that arrived with the handshake's end, kept in `spill` for the next read),
    /// then the change to coregate's layer. Records rustls makes go into `out`; when they do
    /// not fit, the session stays on rustls's layer until `out` is sent.
    ///
    /// rustls is always shown the records received so far, never an empty slice: it keeps
    /// offsets into that buffer while a handshake message arrives in pieces, and would read
    /// them out of an empty one.
    fn settle_rustls(&mut self, out: &mut Outbound, pool: &Rc<BufferPool>) -> io::Result<()> {
        loop {
            let TlsLayer {
                session,
                cipher,
                spill,
                peer_closed,
                ..
            } = self;
            let Session::Rustls(conn) = session else {
                return Err(broken());
            };
            let status = conn.process(cipher.data_mut());
            let discard = status.discard;
            let next = match status.state.map_err(tls_error)? {
                ConnectionState::WriteTraffic(_) => Next::Writable,
                ConnectionState::ReadTraffic(mut traffic) => {
                    while let Some(record) = traffic.next_record() {
                        spill.extend_from_slice(record.map_err(tls_error)?.payload);
                    }
                    Next::Again
                }
                ConnectionState::EncodeTlsData(mut data) => {
                    match encode(out, pool, |buf| data.encode(buf)).map_err(io::Error::other)? {
                        true => Next::Again,
                        false => Next::Send,
                    }
                }
                ConnectionState::TransmitTlsData(transmit) => {
                    transmit.done();
                    Next::Again
                }
                // Edge-triggered: reported once, after which writing goes on.
                ConnectionState::PeerClosed => {
                    *peer_closed = true;
                    Next::Again
                }
                ConnectionState::Closed => {
                    return Err(io::Error::new(
                        io::ErrorKind::BrokenPipe,
                        "the TLS session is closed",
                    ));
                }
                _ => {
                    return Err(io::Error::other(
                        "TLS: plaintext to send before the handshake finished",
                    ));
                }
            };
            self.cipher.consume(discard);
            match next {
                Next::Writable => return self.establish(),
                Next::Send => return Ok(()),
                _ => {}
            }
        }
    }

    /// Seals a `close_notify` alert after the records in `out` (a tunnel whose other side
    /// finished sending): the peer learns the stream ended on purpose. Nothing when the session
    /// already failed or closed.
    pub(super) fn close_notify(
        &mut self,
        out: &mut Outbound,
        pool: &Rc<BufferPool>,
    ) -> io::Result<()> {
        if self.broken {
            return Ok(());
        }
        if !matches!(self.session, Session::Own(_)) {
            self.settle_rustls(out, pool)?;
        }
        match &mut self.session {
            Session::Own(own) => own.seal(ContentType::Alert, &record::CLOSE_NOTIFY, out, pool),
            _ => Ok(()),
        }
    }

    /// Takes records received elsewhere (a tunnel's receive): as many of `incoming`'s bytes as
    /// fit after the records at hand, moving a long record to a record buffer first when
    /// needed. Call after [`TlsLayer::read`] found no whole record, so what is at hand is at
    /// most one partial record.
    pub(super) fn feed(&mut self, incoming: &mut ReadBuf, shard: &IoShard) -> io::Result<()> {
        let mut n = self.cipher.append(incoming.data(), shard.pool());
        if n == 0 && !incoming.is_empty() {
            self.make_record_room(shard)?;
            n = self.cipher.append(incoming.data(), shard.pool());
            if n == 0 {
                return Err(super::no_buffer());
            }
        }
        incoming.consume(n);
        Ok(())
    }

    /// Before receiving: a record longer than the buffer it started in moves to a record
    /// buffer, so it can arrive whole.
    fn make_record_room(&mut self, shard: &IoShard) -> io::Result<()> {
        let data = self.cipher.data();
        if data.len() < HEADER {
            return Ok(());
        }
        let record = HEADER + u16::from_be_bytes([data[3], data[4]]) as usize;
        let capacity = self.cipher.capacity().unwrap_or(0);
        if record <= capacity {
            return Ok(());
        }
        let records = shard.record_pool();
        if record > records.buf_size() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a TLS record longer than the protocol allows",
            ));
        }
        let bigger = records.take().ok_or_else(super::no_buffer)?;
        self.cipher.move_to(bigger);
        Ok(())
    }
}

impl<Data> Established<Data> {
    /// Seals a prefix of `bytes` as one application record after the records in `out`: its
    /// length, or `None` when `out` has no room (send it first).
    fn seal_data(
        &mut self,
        bytes: &[u8],
        out: &mut Outbound,
        pool: &Rc<BufferPool>,
    ) -> io::Result<Option<usize>> {
        if self.update_owed && !self.answer_key_update(out, pool)? {
            return Ok(None);
        }
        let want = bytes.len().min(MAX_PLAINTEXT) + RECORD_OVERHEAD;
        let Some(room) = out.tail_room(want.min(MIN_RECORD_ROOM), pool) else {
            return Ok(None);
        };
        let take = bytes
            .len()
            .min(MAX_PLAINTEXT)
            .min(room.len().saturating_sub(RECORD_OVERHEAD));
        let written = self
            .keys
            .seal(ContentType::ApplicationData, &bytes[..take], room)
            .map_err(record_error)?;
        out.wrote(written);
        Ok(Some(take))
    }

    /// Seals one short record (an alert, a key update) after the records in `out`.
    fn seal(
        &mut self,
        typ: ContentType,
        payload: &[u8],
        out: &mut Outbound,
        pool: &Rc<BufferPool>,
    ) -> io::Result<()> {
        let room = out
            .tail_room(RECORD_OVERHEAD, pool)
            .ok_or_else(super::no_buffer)?;
        let written = self.keys.seal(typ, payload, room).map_err(record_error)?;
        out.wrote(written);
        Ok(())
    }

    /// The key update the peer asked for, sealed under the old key ahead of the first record
    /// under the new one (RFC 8446 4.6.3). False when `out` has no room.
    fn answer_key_update(&mut self, out: &mut Outbound, pool: &Rc<BufferPool>) -> io::Result<bool> {
        if out.tail_room(RECORD_OVERHEAD, pool).is_none() {
            return Ok(false);
        }
        self.seal(
            ContentType::Handshake,
            &record::KEY_UPDATE_NOT_REQUESTED,
            out,
            pool,
        )?;
        let (_, secrets) = self.kernel.update_tx_secret().map_err(tls_error)?;
        self.keys.rekey_seal(&secrets).map_err(record_error)?;
        self.update_owed = false;
        Ok(true)
    }

    /// An alert from the peer: true for `close_notify`, nothing for the warnings that may be
    /// ignored, an error for the rest (RFC 8446 6, RFC 5246 7.2).
    fn alert(&self, alert: &[u8]) -> io::Result<bool> {
        const WARNING: u8 = 1;
        const CLOSE_NOTIFY: u8 = 0;
        const USER_CANCELED: u8 = 90;
        let &[level, description] = alert else {
            return Err(invalid("a malformed alert"));
        };
        match description {
            CLOSE_NOTIFY => Ok(true),
            USER_CANCELED => Ok(false),
            _ if level == WARNING && !self.keys.is_tls13() => Ok(false),
            _ => Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                format!("the TLS peer sent alert {description}"),
            )),
        }
    }

    /// Handshake messages after the handshake: a key update, an upstream's session ticket
    /// (rustls stores it for the next connection), a TLS 1.2 hello request (ignored: coregate
    /// does not renegotiate, RFC 5246 7.4.1.1). Anything else ends the session.
    fn post_handshake<C: Records<Data = Data>>(&mut self, plaintext: &[u8]) -> io::Result<()> {
        const HELLO_REQUEST: u8 = 0;
        for message in record::handshake_messages(plaintext) {
            match message.map_err(record_error)? {
                (record::KEY_UPDATE, [requested @ (0 | 1)]) if self.keys.is_tls13() => {
                    let (_, secrets) = self.kernel.update_rx_secret().map_err(tls_error)?;
                    self.keys.rekey_open(&secrets).map_err(record_error)?;
                    self.update_owed |= *requested == 1;
                }
                (record::NEW_SESSION_TICKET, body) => {
                    C::take_ticket(&mut self.kernel, body).map_err(tls_error)?
                }
                (HELLO_REQUEST, []) if !C::SERVER && !self.keys.is_tls13() => {}
                _ => {
                    return Err(invalid(
                        "an unexpected handshake message after the handshake",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Encodes one handshake record after the records in `out`: `Ok(true)` done, `Ok(false)` no
/// room (send `out` first).
fn encode(
    out: &mut Outbound,
    pool: &Rc<BufferPool>,
    mut encode: impl FnMut(&mut [u8]) -> Result<usize, EncodeError>,
) -> Result<bool, String> {
    let mut need = MIN_RECORD_ROOM;
    loop {
        let Some(room) = out.tail_room(need, pool) else {
            return Ok(false);
        };
        match encode(room) {
            Ok(n) => {
                out.wrote(n);
                return Ok(true);
            }
            Err(EncodeError::InsufficientSize(size)) if size.required_size > need => {
                if size.required_size > pool.buf_size() {
                    return Err(format!(
                        "a handshake record of {} bytes is larger than a buffer",
                        size.required_size
                    ));
                }
                need = size.required_size;
            }
            Err(err) => return Err(err.to_string()),
        }
    }
}

fn broken() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "the TLS session failed earlier")
}

fn tls_error(err: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, err)
}

fn record_error(err: RecordError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, err)
}

fn invalid(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

#[cfg(test)]
mod tests {
    //! The record layer on a ring turned by hand, against a rustls client on a thread: a whole
    //! exchange, and each path that lends buffers to the kernel (handshake receive, record
    //! receive, record send) dropped, cancelled and shut down in the middle, after which every
    //! buffer is back in its pool.

    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::os::fd::IntoRawFd;
    use std::pin::pin;
    use std::rc::Rc;
    use std::sync::Arc;
    use std::time::Duration;

    use super::super::testing::{self, poll_once, tcp_pair};
    use super::super::{Conn, IoShard, Outbound, ReadBuf};
    use super::{HandshakeFailure, TlsVersion};
    use crate::tls::{ListenerTls, MinVersion, UnknownName, certificate};

    fn server_config() -> Arc<rustls::ServerConfig> {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["io.test".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let loaded = certificate::load(
            "c.pem".as_ref(),
            cert.pem().as_bytes(),
            "k.pem".as_ref(),
            key.serialize_pem().as_bytes(),
            certificate::unix_now(),
        )
        .unwrap();
        ListenerTls::new(vec![loaded], UnknownName::Default, MinVersion::Tls12).server_config()
    }

    /// A client that trusts anything (these tests are about buffers, not trust).
    fn client() -> rustls::ClientConnection {
        client_of(rustls::DEFAULT_VERSIONS)
    }

    fn client_of(
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> rustls::ClientConnection {
        client_fragmenting(versions, None)
    }

    /// A client whose records carry at most `fragment` bytes (its ClientHello included).
    fn client_fragmenting(
        versions: &[&'static rustls::SupportedProtocolVersion],
        fragment: Option<usize>,
    ) -> rustls::ClientConnection {
        #[derive(Debug)]
        struct Any;
        impl rustls::client::danger::ServerCertVerifier for Any {
            fn verify_server_cert(
                &self,
                _: &rustls::pki_types::CertificateDer<'_>,
                _: &[rustls::pki_types::CertificateDer<'_>],
                _: &rustls::pki_types::ServerName<'_>,
                _: &[u8],
                _: rustls::pki_types::UnixTime,
            ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
                Ok(rustls::client::danger::ServerCertVerified::assertion())
            }
            fn verify_tls12_signature(
                &self,
                _: &[u8],
                _: &rustls::pki_types::CertificateDer<'_>,
                _: &rustls::DigitallySignedStruct,
            ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error>
            {
                Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
            }
            fn verify_tls13_signature(
                &self,
                _: &[u8],
                _: &rustls::pki_types::CertificateDer<'_>,
                _: &rustls::DigitallySignedStruct,
            ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error>
            {
                Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
            }
            fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
                crate::tls::provider()
                    .signature_verification_algorithms
                    .supported_schemes()
            }
        }
        let config = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_protocol_versions(versions)
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Any))
            .with_no_client_auth();
        let mut config = config;
        config.max_fragment_size = fragment;
        rustls::ClientConnection::new(Arc::new(config), "io.test".try_into().unwrap()).unwrap()
    }

    /// A TLS server connection on `shard` and the far end of its socket.
    fn tls_conn(shard: &Rc<IoShard>) -> (Conn, TcpStream) {
        let (near, far) = tcp_pair();
        let peer = near.peer_addr().unwrap();
        let mut conn = Conn::new(shard.clone(), near.into_raw_fd(), peer);
        conn.start_tls(server_config()).unwrap();
        (conn, far)
    }

    /// Turns the ring until nothing is in flight, then checks every buffer of both pools is
    /// back (on our side or offered to the kernel).
    fn assert_all_buffers_back(shard: &IoShard) {
        for _ in 0..200 {
            if shard.ring_in_flight() == 0 {
                break;
            }
            shard.ring().turn(Duration::from_millis(5));
        }
        assert_eq!(shard.ring_in_flight(), 0, "operations still in flight");
        let pool = shard.pool();
        assert_eq!(
            pool.free_count() + pool.in_kernel(),
            pool.count(),
            "pool buffers"
        );
        let records = shard.record_pool();
        assert_eq!(records.free_count(), records.count(), "record buffers");
    }

    #[test]
    fn a_handshake_then_requests_and_answers_of_many_records() {
        let shard = testing::shard();
        let (mut conn, mut far) = tls_conn(&shard);
        let peer = std::thread::spawn(move || {
            let mut tls = client();
            let mut stream = rustls::Stream::new(&mut tls, &mut far);
            // 40 KiB in records of up to 16 KiB: longer than the test's 4 KiB buffers.
            let request: Vec<u8> = (0..40 * 1024).map(|i| (i % 253) as u8).collect();
            stream.write_all(&request).unwrap();
            let mut answer = vec![0u8; 64 * 1024];
            stream.read_exact(&mut answer).unwrap();
            answer
        });
        let facts = testing::run(&shard, conn.handshake(None)).expect("handshake");
        assert_eq!(facts.sni.as_deref(), Some("io.test"));
        let mut rb = ReadBuf::new();
        let mut got = Vec::new();
        while got.len() < 40 * 1024 {
            let n = testing::run(&shard, conn.recv(&mut rb, None)).unwrap();
            assert!(n > 0, "the client closed early");
            got.extend_from_slice(rb.data());
            let len = rb.len();
            rb.consume(len);
        }
        let expected: Vec<u8> = (0..40 * 1024).map(|i| (i % 253) as u8).collect();
        assert!(got == expected, "the request arrived intact");
        // 64 KiB in 16 pool buffers of 4 KiB, sent as four gathered writes.
        let mut sent = Vec::new();
        for chunk in 0..16u8 {
            let mut out = Outbound::new();
            for _ in 0..1 {
                let mut buf = shard.pool().take().unwrap();
                buf.as_mut_slice().fill(chunk);
                out.push(buf, 0, 4096);
            }
            testing::run(&shard, conn.send(&mut out, None)).unwrap();
            sent.extend(std::iter::repeat_n(chunk, 4096));
        }
        assert!(peer.join().unwrap() == sent, "the answer arrived intact");
        assert!(
            !conn.tls_holds_buffer(),
            "an idle TLS connection holds no buffer"
        );
        drop(conn);
        assert_all_buffers_back(&shard);
    }

    /// A handshake waiting in the kernel for the rest of a ClientHello, dropped: its receive
    /// keeps the buffer until the kernel lets go; then everything is back.
    /// After the handshake the records are coregate's own: both versions carry requests and
    /// answers, a TLS 1.3 client's key update (asking for ours) changes keys both ways, and
    /// the client's `close_notify` ends the stream.
    #[test]
    fn key_updates_and_close_notify_on_coregates_own_records() {
        for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
            let shard = testing::shard();
            let (mut conn, mut far) = tls_conn(&shard);
            let peer = std::thread::spawn(move || {
                let mut tls = client_of(&[version]);
                let mut stream = rustls::Stream::new(&mut tls, &mut far);
                let mut answers = Vec::new();
                for (round, ask) in [b"one", b"two", b"six"].into_iter().enumerate() {
                    if round > 0 && version == &rustls::version::TLS13 {
                        stream.conn.refresh_traffic_keys().unwrap();
                    }
                    stream.write_all(ask).unwrap();
                    let mut answer = [0u8; 3];
                    stream.read_exact(&mut answer).unwrap();
                    answers.push(answer);
                }
                stream.conn.send_close_notify();
                stream.flush().unwrap();
                answers
            });
            let facts = testing::run(&shard, conn.handshake(None)).expect("handshake");
            let expected = if version == &rustls::version::TLS13 {
                TlsVersion::Tls13
            } else {
                TlsVersion::Tls12
            };
            assert_eq!(facts.version, expected);
            let mut rb = ReadBuf::new();
            for round in 0..3 {
                while rb.len() < 3 {
                    let n = testing::run(&shard, conn.recv(&mut rb, None)).unwrap();
                    assert!(n > 0, "the client closed early");
                }
                let mut out = Outbound::new();
                let mut buf = shard.pool().take().unwrap();
                buf.as_mut_slice()[..3].copy_from_slice(&rb.data()[..3].to_ascii_uppercase());
                out.push(buf, 0, 3);
                rb.consume(3);
                testing::run(&shard, conn.send(&mut out, None)).unwrap();
                assert!(
                    conn.tls_on_own_records(),
                    "round {round}: coregate's records"
                );
            }
            assert_eq!(
                peer.join().unwrap(),
                [*b"ONE", *b"TWO", *b"SIX"],
                "{version:?}"
            );
            let end = testing::run(&shard, conn.recv(&mut rb, None)).unwrap();
            assert_eq!(end, 0, "close_notify ends the stream ({version:?})");
            drop(conn);
            assert_all_buffers_back(&shard);
        }
    }

    /// The name a client asked for is known however its ClientHello was cut into records.
    /// Before: only a hello in one record was read, and a split one logged no name.
    #[test]
    fn the_server_name_of_a_client_hello_split_over_records_is_known() {
        for fragment in [None, Some(64)] {
            let shard = testing::shard();
            let (mut conn, mut far) = tls_conn(&shard);
            let peer = std::thread::spawn(move || {
                let mut tls = client_fragmenting(rustls::DEFAULT_VERSIONS, fragment);
                let mut stream = rustls::Stream::new(&mut tls, &mut far);
                stream.write_all(b"ping").unwrap();
            });
            let facts = testing::run(&shard, conn.handshake(None)).expect("handshake");
            assert_eq!(
                facts.sni.as_deref(),
                Some("io.test"),
                "records of {fragment:?}"
            );
            peer.join().unwrap();
        }
    }

    #[test]
    fn a_handshake_dropped_mid_flight_gives_every_buffer_back() {
        let shard = testing::shard();
        let (mut conn, mut far) = tls_conn(&shard);
        let mut hello = Vec::new();
        client().write_tls(&mut hello).unwrap();
        far.write_all(&hello[..hello.len() / 2]).unwrap();
        {
            let mut handshake = pin!(conn.handshake(None));
            for _ in 0..5 {
                assert!(poll_once(handshake.as_mut()).is_pending());
                shard.ring().turn(Duration::from_millis(5));
            }
        }
        // The bytes the dropped receive had went with its buffer (as on a plain connection):
        // the session is fit only for closing, and nothing it lent is lost.
        drop(conn);
        drop(far);
        assert_all_buffers_back(&shard);
    }

    /// The socket shut down while the handshake waits: it ends as `Closed`, nothing leaks.
    #[test]
    fn a_handshake_shut_down_mid_flight_ends_closed() {
        let shard = testing::shard();
        let (mut conn, mut far) = tls_conn(&shard);
        let mut hello = Vec::new();
        client().write_tls(&mut hello).unwrap();
        far.write_all(&hello[..10]).unwrap();
        let fd = conn.raw_fd();
        let result = {
            let mut handshake = pin!(conn.handshake(None));
            assert!(poll_once(handshake.as_mut()).is_pending());
            shard.ring().turn(Duration::from_millis(5));
            // SAFETY: shutdown(2) on the descriptor the connection owns (as draining does).
            unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
            testing::run(&shard, handshake)
        };
        assert_eq!(result.unwrap_err(), HandshakeFailure::Closed);
        drop(conn);
        assert_all_buffers_back(&shard);
    }

    /// Garbage instead of a ClientHello: a protocol failure, with the alert sent.
    #[test]
    fn bytes_that_are_not_tls_fail_the_handshake() {
        let shard = testing::shard();
        let (mut conn, mut far) = tls_conn(&shard);
        far.write_all(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n").unwrap();
        let failure = testing::run(&shard, conn.handshake(None)).unwrap_err();
        assert_eq!(failure, HandshakeFailure::Protocol);
        let mut alert = [0u8; 7];
        far.read_exact(&mut alert).unwrap();
        assert_eq!(alert[0], 21, "an alert record");
        drop(conn);
        assert_all_buffers_back(&shard);
    }

    /// A tunnel with one TLS side, dropped while its receives wait in the kernel and records
    /// arrive: every buffer comes back; and one shut down under it ends it.
    #[test]
    fn a_tls_tunnel_dropped_or_shut_down_mid_flight_gives_every_buffer_back() {
        for shut_down in [false, true] {
            let shard = testing::shard();
            let (mut conn, mut far) = tls_conn(&shard);
            let (plain_near, mut plain_far) = tcp_pair();
            let peer_addr = plain_near.peer_addr().unwrap();
            let mut other = Conn::new(shard.clone(), plain_near.into_raw_fd(), peer_addr);
            let peer = std::thread::spawn(move || {
                let mut tls = client();
                while tls.is_handshaking() {
                    tls.complete_io(&mut far).unwrap();
                }
                (tls, far)
            });
            testing::run(&shard, conn.handshake(None)).expect("handshake");
            let (mut tls, mut far) = peer.join().unwrap();
            let (a_fd, b_fd) = (conn.raw_fd(), other.raw_fd());
            {
                let mut tunnel = pin!(super::super::tunnel::join(
                    &mut conn,
                    &mut other,
                    Duration::from_secs(5)
                ));
                assert!(poll_once(tunnel.as_mut()).is_pending());
                shard.ring().turn(Duration::from_millis(5));
                // Records in flight towards the tunnel, plain bytes towards its other side.
                tls.writer().write_all(&[b'x'; 40 * 1024]).unwrap();
                while tls.wants_write() {
                    tls.write_tls(&mut far).unwrap();
                }
                plain_far.write_all(&[b'y'; 10 * 1024]).unwrap();
                for _ in 0..3 {
                    shard.ring().turn(Duration::from_millis(5));
                    assert!(poll_once(tunnel.as_mut()).is_pending());
                }
                if shut_down {
                    // SAFETY: shutdown(2) on descriptors the connections own (as draining does).
                    unsafe {
                        libc::shutdown(a_fd, libc::SHUT_RDWR);
                        libc::shutdown(b_fd, libc::SHUT_RDWR);
                    }
                    // It ends (how does not matter here: nothing may be left behind).
                    let _ = testing::run(&shard, tunnel);
                }
            }
            drop(conn);
            drop(other);
            drop(far);
            drop(plain_far);
            assert_all_buffers_back(&shard);
        }
    }

    /// A record whose bytes were changed on the way fails the read; the session is over, and
    /// reading or sending again fails too, without asking rustls again (which would alert a
    /// second time).
    #[test]
    fn a_tampered_record_ends_the_session_without_a_panic() {
        let shard = testing::shard();
        let (mut conn, mut far) = tls_conn(&shard);
        let peer = std::thread::spawn(move || {
            let mut tls = client();
            while tls.is_handshaking() {
                tls.complete_io(&mut far).unwrap();
            }
            tls.writer().write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
            let mut wire = Vec::new();
            while tls.wants_write() {
                tls.write_tls(&mut wire).unwrap();
            }
            let last = wire.len() - 1;
            wire[last] ^= 0x55;
            far.write_all(&wire).unwrap();
            far
        });
        testing::run(&shard, conn.handshake(None)).expect("handshake");
        let _far = peer.join().unwrap();
        let mut rb = ReadBuf::new();
        let mut failed = None;
        for _ in 0..4 {
            match testing::run(&shard, conn.recv(&mut rb, None)) {
                Ok(n) => assert!(n > 0, "no close before the tampered record"),
                Err(err) => {
                    failed = Some(err);
                    break;
                }
            }
        }
        assert_eq!(
            failed.expect("the read fails").kind(),
            std::io::ErrorKind::InvalidData
        );
        assert!(testing::run(&shard, conn.recv(&mut rb, None)).is_err());
        let mut out = Outbound::new();
        out.push(shard.pool().take().unwrap(), 0, 100);
        assert!(testing::run(&shard, conn.send(&mut out, None)).is_err());
        drop(out);
        drop(conn);
        assert_all_buffers_back(&shard);
    }

    /// Records being sent to a client that does not read, cancelled (the future dropped) and
    /// then the connection dropped: the kernel's send keeps its buffers until it completes.
    #[test]
    fn a_record_send_cancelled_mid_flight_gives_every_buffer_back() {
        let shard = testing::shard();
        let (mut conn, far) = tls_conn(&shard);
        // A small receive buffer on the far side, so the sends below soon find the socket full.
        socket2::SockRef::from(&far)
            .set_recv_buffer_size(4096)
            .unwrap();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let peer = std::thread::spawn(move || {
            let mut far = far;
            let mut tls = client();
            while tls.is_handshaking() {
                tls.complete_io(&mut far).unwrap();
            }
            // Holds the socket open without reading until the server side is done.
            let _ = done_rx.recv();
        });
        testing::run(&shard, conn.handshake(None)).expect("handshake");
        let mut pending = false;
        // Up to 16 MiB: loopback's send buffer grows to a few MiB before it is full.
        for _ in 0..1024 {
            let mut out = Outbound::new();
            for _ in 0..4 {
                out.push(shard.pool().take().unwrap(), 0, 4096);
            }
            let mut send = pin!(conn.send(&mut out, None));
            if poll_once(send.as_mut()).is_ready() {
                continue;
            }
            shard.ring().turn(Duration::from_millis(5));
            if poll_once(send.as_mut()).is_pending() {
                pending = true;
                break; // dropped here, in flight
            }
        }
        assert!(pending, "the socket never filled");
        drop(conn);
        let _ = done_tx.send(());
        peer.join().unwrap();
        assert_all_buffers_back(&shard);
    }

    /// A receive of records waiting in the kernel, cancelled (dropped, and the cancellation
    /// reaped), then records and a close: the next receive reads them, and the buffers are
    /// all back.
    #[test]
    fn a_record_receive_dropped_mid_flight_leaves_the_session_usable() {
        let shard = testing::shard();
        let (mut conn, mut far) = tls_conn(&shard);
        let peer = std::thread::spawn(move || {
            let mut tls = client();
            while tls.is_handshaking() {
                tls.complete_io(&mut far).unwrap();
            }
            (tls, far)
        });
        testing::run(&shard, conn.handshake(None)).expect("handshake");
        let (mut tls, mut far) = peer.join().unwrap();
        let mut rb = ReadBuf::new();
        {
            let mut receive = pin!(conn.recv(&mut rb, None));
            assert!(poll_once(receive.as_mut()).is_pending());
            shard.ring().turn(Duration::from_millis(5));
        }
        while shard.ring_in_flight() > 0 {
            shard.ring().turn(Duration::from_millis(5));
        }
        tls.writer().write_all(b"after").unwrap();
        tls.send_close_notify();
        while tls.wants_write() {
            tls.write_tls(&mut far).unwrap();
        }
        let mut got = Vec::new();
        loop {
            let n = testing::run(&shard, conn.recv(&mut rb, None)).unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(rb.data());
            let len = rb.len();
            rb.consume(len);
        }
        assert_eq!(got, b"after");
        drop(conn);
        assert_all_buffers_back(&shard);
    }
}
