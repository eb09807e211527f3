//! The host/guest boundary, defined once and used by both sides: the guest SDK in this crate and
//! the runtime in `mercato-peer`.
//!
//! A chaincode module exports `memory`, [`EXPORT_ALLOC`], [`EXPORT_INVOKE`] and
//! [`EXPORT_VERSION`], and may import only [`IMPORT_CALL`] and [`IMPORT_TAKE`] from module
//! [`IMPORT_MODULE`]. Every message crossing the boundary is encoded with the small codec below;
//! the host decodes what a guest sends as hostile input (bounded, never panicking).
//!
//! One invocation:
//! 1. the host writes an encoded [`Invocation`] into guest memory obtained from `mercato_alloc`
//!    and calls `mercato_invoke(ptr, len)`;
//! 2. the guest may call `host_call(ptr, len)` with an encoded [`HostRequest`]; the host answers
//!    with the length of the encoded [`HostResponse`] (or a negative number when the request
//!    could not be decoded), and the guest fetches it with `host_take(ptr)` into a buffer of that
//!    length;
//! 3. `mercato_invoke` returns `(ptr << 32) | len` of an encoded [`InvokeResult`].

use alloc::string::String;
use alloc::vec::Vec;

/// The ABI version a module declares through [`EXPORT_VERSION`]; the host refuses others.
pub const ABI_VERSION: i32 = 1;
/// The module name of the host's imports.
pub const IMPORT_MODULE: &str = "mercato";
/// `host_call(ptr: i32, len: i32) -> i32`: perform a request; returns the response length.
pub const IMPORT_CALL: &str = "host_call";
/// `host_take(ptr: i32)`: copy the pending response to `ptr`.
pub const IMPORT_TAKE: &str = "host_take";
/// `mercato_alloc(len: i32) -> i32`: a buffer of `len` bytes in guest memory.
pub const EXPORT_ALLOC: &str = "mercato_alloc";
/// `mercato_invoke(ptr: i32, len: i32) -> i64`: run the invocation encoded at `ptr`.
pub const EXPORT_INVOKE: &str = "mercato_invoke";
/// `mercato_abi_version() -> i32`.
pub const EXPORT_VERSION: &str = "mercato_abi_version";

/// Packs a guest pointer and length into the `i64` that `mercato_invoke` returns.
pub fn pack(ptr: u32, len: u32) -> i64 {
    ((ptr as u64) << 32 | len as u64) as i64
}

/// Splits what [`pack`] made.
pub fn unpack(v: i64) -> (u32, u32) {
    let v = v as u64;
    ((v >> 32) as u32, v as u32)
}

/// Why bytes did not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub &'static str);

impl core::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "malformed ABI message: {}", self.0)
    }
}

/// Appends values to a buffer.
#[derive(Debug, Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }
    /// The encoded bytes.
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
    /// A byte.
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }
    /// An unsigned LEB128 number.
    pub fn u64(&mut self, mut v: u64) -> &mut Self {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.buf.push(byte);
                return self;
            }
            self.buf.push(byte | 0x80);
        }
    }
    /// A signed number (zigzag, then LEB128).
    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.u64(((v << 1) ^ (v >> 63)) as u64)
    }
    /// Length-prefixed bytes.
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.u64(v.len() as u64);
        self.buf.extend_from_slice(v);
        self
    }
    /// A length-prefixed UTF-8 string.
    pub fn str(&mut self, v: &str) -> &mut Self {
        self.bytes(v.as_bytes())
    }
    /// An optional signed number.
    pub fn opt_i64(&mut self, v: Option<i64>) -> &mut Self {
        match v {
            Some(v) => self.u8(1).i64(v),
            None => self.u8(0),
        }
    }
    /// Optional bytes.
    pub fn opt_bytes(&mut self, v: Option<&[u8]>) -> &mut Self {
        match v {
            Some(v) => self.u8(1).bytes(v),
            None => self.u8(0),
        }
    }
}

/// Reads values from untrusted bytes, refusing anything truncated or oversized.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }
    /// Whether everything was read.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
    /// Fails unless everything was read.
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError("trailing bytes"))
        }
    }
    /// A byte.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        let (&b, rest) = self.buf.split_first().ok_or(DecodeError("truncated"))?;
        self.buf = rest;
        Ok(b)
    }
    /// An unsigned LEB128 number of at most 10 bytes.
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for shift in (0..70).step_by(7) {
            let b = self.u8()?;
            if shift == 63 && b > 1 {
                return Err(DecodeError("number too large"));
            }
            v |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError("number too long"))
    }
    /// A signed number.
    pub fn i64(&mut self) -> Result<i64, DecodeError> {
        let v = self.u64()?;
        Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
    }
    /// A number that must fit in `u32`.
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        u32::try_from(self.u64()?).map_err(|_| DecodeError("number out of range"))
    }
    /// Length-prefixed bytes; the length cannot exceed what is left.
    pub fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = usize::try_from(self.u64()?).map_err(|_| DecodeError("length out of range"))?;
        if len > self.buf.len() {
            return Err(DecodeError("length beyond the message"));
        }
        let (v, rest) = self.buf.split_at(len);
        self.buf = rest;
        Ok(v)
    }
    /// A length-prefixed UTF-8 string.
    pub fn str(&mut self) -> Result<&'a str, DecodeError> {
        core::str::from_utf8(self.bytes()?).map_err(|_| DecodeError("string not UTF-8"))
    }
    /// An owned string.
    pub fn string(&mut self) -> Result<String, DecodeError> {
        self.str().map(String::from)
    }
    /// An optional signed number.
    pub fn opt_i64(&mut self) -> Result<Option<i64>, DecodeError> {
        match self.u8()? {
            0 => Ok(None),
            1 => self.i64().map(Some),
            _ => Err(DecodeError("bad option tag")),
        }
    }
    /// Optional bytes.
    pub fn opt_bytes(&mut self) -> Result<Option<&'a [u8]>, DecodeError> {
        match self.u8()? {
            0 => Ok(None),
            1 => self.bytes().map(Some),
            _ => Err(DecodeError("bad option tag")),
        }
    }
    /// A count of items that follow, each at least `min_item` bytes: bounded by what is left.
    pub fn count(&mut self, min_item: usize) -> Result<usize, DecodeError> {
        let n = usize::try_from(self.u64()?).map_err(|_| DecodeError("count out of range"))?;
        if n.saturating_mul(min_item.max(1)) > self.buf.len() {
            return Err(DecodeError("count beyond the message"));
        }
        Ok(n)
    }
}

/// Who submitted the transaction, from the validated creator certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Creator {
    /// The MSP (organisation) id.
    pub msp_id: String,
    /// The certificate's common name (enrollment id).
    pub id: String,
    /// The NodeOU role: client, peer, orderer, admin or auditor.
    pub role: String,
    /// The certificate's attributes (`role=brand`, `shop=...`), sorted by name.
    pub attributes: Vec<(String, String)>,
}

/// What the host hands the chaincode for one call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Invocation {
    /// The channel.
    pub channel: String,
    /// The transaction id.
    pub txid: String,
    /// The proposal's timestamp (seconds since the epoch, nanoseconds).
    pub timestamp: (i64, i32),
    /// The submitter.
    pub creator: Creator,
    /// The arguments; `args[0]` is the function name.
    pub args: Vec<Vec<u8>>,
    /// Private inputs from the proposal's transient map, sorted by name.
    pub transient: Vec<(String, Vec<u8>)>,
}

impl Invocation {
    /// Encodes the invocation.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.str(&self.channel)
            .str(&self.txid)
            .i64(self.timestamp.0)
            .i64(self.timestamp.1 as i64);
        w.str(&self.creator.msp_id)
            .str(&self.creator.id)
            .str(&self.creator.role);
        w.u64(self.creator.attributes.len() as u64);
        for (k, v) in &self.creator.attributes {
            w.str(k).str(v);
        }
        w.u64(self.args.len() as u64);
        for a in &self.args {
            w.bytes(a);
        }
        w.u64(self.transient.len() as u64);
        for (k, v) in &self.transient {
            w.str(k).bytes(v);
        }
        w.finish()
    }

    /// Decodes an invocation.
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(buf);
        let channel = r.string()?;
        let txid = r.string()?;
        let secs = r.i64()?;
        let nanos = i32::try_from(r.i64()?).map_err(|_| DecodeError("nanos out of range"))?;
        let msp_id = r.string()?;
        let id = r.string()?;
        let role = r.string()?;
        let n = r.count(2)?;
        let mut attributes = Vec::with_capacity(n);
        for _ in 0..n {
            attributes.push((r.string()?, r.string()?));
        }
        let n = r.count(1)?;
        let mut args = Vec::with_capacity(n);
        for _ in 0..n {
            args.push(r.bytes()?.to_vec());
        }
        let n = r.count(2)?;
        let mut transient = Vec::with_capacity(n);
        for _ in 0..n {
            transient.push((r.string()?, r.bytes()?.to_vec()));
        }
        r.finish()?;
        Ok(Invocation {
            channel,
            txid,
            timestamp: (secs, nanos),
            creator: Creator {
                msp_id,
                id,
                role,
                attributes,
            },
            args,
            transient,
        })
    }
}

/// A request from the chaincode to the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostRequest {
    /// The value of a key, as this transaction sees it.
    Get { key: String },
    /// Writes a key.
    Put { key: String, value: Vec<u8> },
    /// Deletes a key.
    Delete { key: String },
    /// Up to `limit` keys in `[start, end)` (empty `end`: no end) from `bookmark` on.
    Range {
        start: String,
        end: String,
        limit: u32,
        bookmark: String,
    },
    /// Adds `amount` to the decimal number at `key` at commit, refusing a result below
    /// `lower_bound`.
    Add {
        key: String,
        amount: i64,
        lower_bound: Option<i64>,
    },
    /// Sets the transaction's chaincode event (the last one set wins).
    SetEvent { name: String, payload: Vec<u8> },
    /// Calls another chaincode on the same channel.
    Invoke {
        chaincode: String,
        args: Vec<Vec<u8>>,
    },
    /// A log line, attributed to the chaincode in the peer's log.
    Log { message: String },
}

const REQ_GET: u8 = 1;
const REQ_PUT: u8 = 2;
const REQ_DELETE: u8 = 3;
const REQ_RANGE: u8 = 4;
const REQ_ADD: u8 = 5;
const REQ_EVENT: u8 = 6;
const REQ_INVOKE: u8 = 7;
const REQ_LOG: u8 = 8;

impl HostRequest {
    /// Encodes the request.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        match self {
            HostRequest::Get { key } => w.u8(REQ_GET).str(key),
            HostRequest::Put { key, value } => w.u8(REQ_PUT).str(key).bytes(value),
            HostRequest::Delete { key } => w.u8(REQ_DELETE).str(key),
            HostRequest::Range {
                start,
                end,
                limit,
                bookmark,
            } => w
                .u8(REQ_RANGE)
                .str(start)
                .str(end)
                .u64(*limit as u64)
                .str(bookmark),
            HostRequest::Add {
                key,
                amount,
                lower_bound,
            } => w.u8(REQ_ADD).str(key).i64(*amount).opt_i64(*lower_bound),
            HostRequest::SetEvent { name, payload } => w.u8(REQ_EVENT).str(name).bytes(payload),
            HostRequest::Invoke { chaincode, args } => {
                w.u8(REQ_INVOKE).str(chaincode).u64(args.len() as u64);
                for a in args {
                    w.bytes(a);
                }
                &mut w
            }
            HostRequest::Log { message } => w.u8(REQ_LOG).str(message),
        };
        w.finish()
    }

    /// Decodes a request.
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(buf);
        let req = match r.u8()? {
            REQ_GET => HostRequest::Get { key: r.string()? },
            REQ_PUT => HostRequest::Put {
                key: r.string()?,
                value: r.bytes()?.to_vec(),
            },
            REQ_DELETE => HostRequest::Delete { key: r.string()? },
            REQ_RANGE => HostRequest::Range {
                start: r.string()?,
                end: r.string()?,
                limit: r.u32()?,
                bookmark: r.string()?,
            },
            REQ_ADD => HostRequest::Add {
                key: r.string()?,
                amount: r.i64()?,
                lower_bound: r.opt_i64()?,
            },
            REQ_EVENT => HostRequest::SetEvent {
                name: r.string()?,
                payload: r.bytes()?.to_vec(),
            },
            REQ_INVOKE => {
                let chaincode = r.string()?;
                let n = r.count(1)?;
                let mut args = Vec::with_capacity(n);
                for _ in 0..n {
                    args.push(r.bytes()?.to_vec());
                }
                HostRequest::Invoke { chaincode, args }
            }
            REQ_LOG => HostRequest::Log {
                message: r.string()?,
            },
            _ => return Err(DecodeError("unknown request")),
        };
        r.finish()?;
        Ok(req)
    }
}

/// The host's answer to a [`HostRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostResponse {
    /// Done, nothing to return.
    Done,
    /// A value, or none.
    Value(Option<Vec<u8>>),
    /// A page of a range query and the bookmark of the next page (empty: no more).
    Page {
        entries: Vec<(String, Vec<u8>)>,
        bookmark: String,
    },
    /// Another chaincode's result.
    Result(InvokeResult),
    /// The request failed; the message says why.
    Error(String),
}

const RESP_DONE: u8 = 0;
const RESP_VALUE: u8 = 1;
const RESP_PAGE: u8 = 2;
const RESP_RESULT: u8 = 3;
const RESP_ERROR: u8 = 4;

impl HostResponse {
    /// Encodes the response.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        match self {
            HostResponse::Done => w.u8(RESP_DONE),
            HostResponse::Value(v) => w.u8(RESP_VALUE).opt_bytes(v.as_deref()),
            HostResponse::Page { entries, bookmark } => {
                w.u8(RESP_PAGE).u64(entries.len() as u64);
                for (k, v) in entries {
                    w.str(k).bytes(v);
                }
                w.str(bookmark)
            }
            HostResponse::Result(r) => {
                w.u8(RESP_RESULT);
                r.write(&mut w);
                &mut w
            }
            HostResponse::Error(m) => w.u8(RESP_ERROR).str(m),
        };
        w.finish()
    }

    /// Decodes a response.
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(buf);
        let resp = match r.u8()? {
            RESP_DONE => HostResponse::Done,
            RESP_VALUE => HostResponse::Value(r.opt_bytes()?.map(<[u8]>::to_vec)),
            RESP_PAGE => {
                let n = r.count(2)?;
                let mut entries = Vec::with_capacity(n);
                for _ in 0..n {
                    entries.push((r.string()?, r.bytes()?.to_vec()));
                }
                HostResponse::Page {
                    entries,
                    bookmark: r.string()?,
                }
            }
            RESP_RESULT => HostResponse::Result(InvokeResult::read(&mut r)?),
            RESP_ERROR => HostResponse::Error(r.string()?),
            _ => return Err(DecodeError("unknown response")),
        };
        r.finish()?;
        Ok(resp)
    }
}

/// What a chaincode call returns: Fabric's `Response` (status 200 is success, 400 and above an
/// error with a message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvokeResult {
    /// The status.
    pub status: i32,
    /// The error message (empty on success).
    pub message: String,
    /// The payload.
    pub payload: Vec<u8>,
}

impl InvokeResult {
    fn write(&self, w: &mut Writer) {
        w.i64(self.status as i64)
            .str(&self.message)
            .bytes(&self.payload);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(InvokeResult {
            status: i32::try_from(r.i64()?).map_err(|_| DecodeError("status out of range"))?,
            message: r.string()?,
            payload: r.bytes()?.to_vec(),
        })
    }

    /// Encodes the result.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.write(&mut w);
        w.finish()
    }

    /// Decodes a result.
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(buf);
        let v = Self::read(&mut r)?;
        r.finish()?;
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn messages_round_trip() {
        let inv = Invocation {
            channel: "ch".into(),
            txid: "t".into(),
            timestamp: (-5, 7),
            creator: Creator {
                msp_id: "M".into(),
                id: "i".into(),
                role: "client".into(),
                attributes: vec![("a".into(), "b".into())],
            },
            args: vec![b"f".to_vec(), vec![], vec![0xff; 300]],
            transient: vec![("k".into(), b"v".to_vec())],
        };
        assert_eq!(Invocation::decode(&inv.encode()).unwrap(), inv);
        let reqs = [
            HostRequest::Get { key: "k".into() },
            HostRequest::Put {
                key: "k".into(),
                value: vec![1, 2],
            },
            HostRequest::Delete { key: "k".into() },
            HostRequest::Range {
                start: "a".into(),
                end: "".into(),
                limit: 10,
                bookmark: "b".into(),
            },
            HostRequest::Add {
                key: "k".into(),
                amount: i64::MIN,
                lower_bound: Some(i64::MAX),
            },
            HostRequest::Add {
                key: "k".into(),
                amount: -1,
                lower_bound: None,
            },
            HostRequest::SetEvent {
                name: "e".into(),
                payload: vec![9],
            },
            HostRequest::Invoke {
                chaincode: "c".into(),
                args: vec![b"x".to_vec()],
            },
            HostRequest::Log {
                message: "m".into(),
            },
        ];
        for r in reqs {
            assert_eq!(HostRequest::decode(&r.encode()).unwrap(), r);
        }
        let resps = [
            HostResponse::Done,
            HostResponse::Value(None),
            HostResponse::Value(Some(vec![1])),
            HostResponse::Page {
                entries: vec![("a".into(), vec![1])],
                bookmark: "b".into(),
            },
            HostResponse::Result(InvokeResult {
                status: 404,
                message: "no".into(),
                payload: vec![],
            }),
            HostResponse::Error("bad".into()),
        ];
        for r in resps {
            assert_eq!(HostResponse::decode(&r.encode()).unwrap(), r);
        }
        assert_eq!(
            unpack(pack(0xdead_beef, 0x1234_5678)),
            (0xdead_beef, 0x1234_5678)
        );
    }

    #[test]
    fn hostile_bytes_are_errors() {
        let good = HostRequest::Put {
            key: "key".into(),
            value: vec![1; 40],
        }
        .encode();
        for cut in 0..good.len() {
            assert!(HostRequest::decode(&good[..cut]).is_err(), "cut at {cut}");
        }
        // A length claiming more than the message holds, an endless varint, a huge count.
        assert!(HostRequest::decode(&[REQ_GET, 0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
        assert!(Reader::new(&[0x80; 11]).u64().is_err());
        assert!(HostRequest::decode(&[REQ_INVOKE, 1, b'c', 0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
        assert!(HostRequest::decode(&[99]).is_err());
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(HostRequest::decode(&trailing).is_err());
        assert!(Invocation::decode(&[0xff; 64]).is_err());
    }
}
