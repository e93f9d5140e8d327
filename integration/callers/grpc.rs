//! Unary gRPC calls over a daemon's unix socket with curl (HTTP/2 without TLS), and just
//! enough protobuf to build requests and read answers: what the containerd suite needs for
//! the calls ctr 1.6 cannot make (`Tasks/Update`, the CRI RuntimeService), without a gRPC
//! crate.

use std::path::Path;
use std::process::Command;

use super::run;
use crate::common;

/// Whether curl can speak HTTP/2 over a unix socket (for [`grpc_call`]).
pub fn curl_h2() -> bool {
    common::have("curl")
        && run(Command::new("curl").arg("-V"))
            .stdout
            .lines()
            .any(|l| l.starts_with("Features:") && l.contains("HTTP2"))
}

/// A unary gRPC call of `method` (`package.Service/Method`) with the encoded request `msg`
/// over the unix socket `sock`, in the containerd namespace `ns` when given; the encoded
/// answer, or `Err((grpc status, message))`.
pub fn grpc_call(
    sock: &Path,
    ns: Option<&str>,
    method: &str,
    msg: &[u8],
) -> Result<Vec<u8>, (u32, String)> {
    let tmp = tempfile::Builder::new()
        .prefix("vzt-grpc-")
        .tempdir()
        .unwrap();
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    framed.extend_from_slice(msg);
    let req = tmp.path().join("req");
    let hdr = tmp.path().join("hdr");
    let body = tmp.path().join("body");
    std::fs::write(&req, framed).unwrap();
    let mut c = Command::new("curl");
    c.args(["-sS", "--http2-prior-knowledge", "--max-time", "60"])
        .arg("--unix-socket")
        .arg(sock)
        .args(["-H", "content-type: application/grpc", "-H", "te: trailers"]);
    if let Some(ns) = ns {
        c.args(["-H", &format!("containerd-namespace: {ns}")]);
    }
    c.arg("--data-binary")
        .arg(format!("@{}", req.display()))
        .arg("-D")
        .arg(&hdr)
        .arg("-o")
        .arg(&body)
        .arg(format!("http://localhost/{method}"));
    let o = run(&mut c);
    assert_eq!(o.code, 0, "curl {method}: {o:?}");
    let headers = std::fs::read_to_string(&hdr).unwrap_or_default();
    let field = |name: &str| {
        headers
            .lines()
            .filter_map(|l| l.split_once(':'))
            .filter(|(k, _)| k.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
            .next_back()
    };
    let status: u32 = field("grpc-status")
        .and_then(|s| s.parse().ok())
        .unwrap_or(u32::MAX);
    if status != 0 {
        return Err((
            status,
            percent_decode(&field("grpc-message").unwrap_or_default()),
        ));
    }
    let b = std::fs::read(&body).unwrap_or_default();
    Ok(if b.len() >= 5 {
        b[5..].to_vec()
    } else {
        Vec::new()
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A protobuf message being built, field by field.
#[derive(Default, Clone)]
pub struct Pb(pub Vec<u8>);

fn varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

impl Pb {
    pub fn new() -> Self {
        Pb::default()
    }
    pub fn bytes(mut self, field: u32, b: &[u8]) -> Self {
        varint(&mut self.0, ((field as u64) << 3) | 2);
        varint(&mut self.0, b.len() as u64);
        self.0.extend_from_slice(b);
        self
    }
    pub fn str(self, field: u32, s: &str) -> Self {
        self.bytes(field, s.as_bytes())
    }
    pub fn strs(mut self, field: u32, v: &[&str]) -> Self {
        for s in v {
            self = self.str(field, s);
        }
        self
    }
    pub fn msg(self, field: u32, m: Pb) -> Self {
        self.bytes(field, &m.0)
    }
    pub fn uint(mut self, field: u32, v: u64) -> Self {
        varint(&mut self.0, (field as u64) << 3);
        varint(&mut self.0, v);
        self
    }
    pub fn map(mut self, field: u32, entries: &[(&str, &str)]) -> Self {
        for (k, v) in entries {
            self = self.msg(field, Pb::new().str(1, k).str(2, v));
        }
        self
    }
}

/// A decoded protobuf message: (field, varint value or bytes), in wire order.
#[derive(Debug)]
pub struct Fields(pub Vec<(u32, Result<u64, Vec<u8>>)>);

fn read_varint(b: &[u8], i: &mut usize) -> u64 {
    let mut v = 0u64;
    let mut shift = 0;
    while *i < b.len() {
        let x = b[*i];
        *i += 1;
        v |= ((x & 0x7f) as u64) << shift;
        if x & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    v
}

impl Fields {
    pub fn parse(b: &[u8]) -> Fields {
        let mut i = 0;
        let mut v = Vec::new();
        while i < b.len() {
            let key = read_varint(b, &mut i);
            let (field, wt) = ((key >> 3) as u32, key & 7);
            match wt {
                0 => v.push((field, Ok(read_varint(b, &mut i)))),
                2 => {
                    let n = read_varint(b, &mut i) as usize;
                    v.push((field, Err(b[i..i + n].to_vec())));
                    i += n;
                }
                1 => i += 8,
                5 => i += 4,
                _ => panic!("protobuf wire type {wt} not handled"),
            }
        }
        Fields(v)
    }
    pub fn bytes(&self, field: u32) -> Vec<u8> {
        self.all_bytes(field)
            .into_iter()
            .next_back()
            .unwrap_or_default()
    }
    pub fn all_bytes(&self, field: u32) -> Vec<Vec<u8>> {
        self.0
            .iter()
            .filter(|(f, _)| *f == field)
            .filter_map(|(_, v)| v.as_ref().err().cloned())
            .collect()
    }
    pub fn string(&self, field: u32) -> String {
        String::from_utf8_lossy(&self.bytes(field)).into_owned()
    }
    pub fn msg(&self, field: u32) -> Fields {
        Fields::parse(&self.bytes(field))
    }
    pub fn uint(&self, field: u32) -> u64 {
        self.0
            .iter()
            .filter(|(f, _)| *f == field)
            .filter_map(|(_, v)| v.as_ref().ok().copied())
            .next_back()
            .unwrap_or(0)
    }
    /// A map<string,string> field.
    pub fn map(&self, field: u32) -> Vec<(String, String)> {
        self.all_bytes(field)
            .iter()
            .map(|e| {
                let f = Fields::parse(e);
                (f.string(1), f.string(2))
            })
            .collect()
    }
}
