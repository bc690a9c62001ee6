//! PDU reading as an association does it: `PduStream::read` (our framing and length limits,
//! then dicom-ul's `read_pdu`) over whatever the peer sends, PDU after PDU; an
//! A-ASSOCIATE-RQ goes through `negotiate` and its A-ASSOCIATE-AC/RJ is encoded and written
//! (it echoes peer-chosen AE titles and UIDs); command PDVs go to `Command::parse`.
//!
//! Input: byte 0 picks our max PDU size and the read chunk size, byte 1 the negotiation
//! variant; the rest is the byte stream from the peer.
#![no_main]

use std::io;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Duration;

use dicom_ul::pdu::{PDataValueType, Pdu};
use libfuzzer_sys::fuzz_target;
use pacs::dimse::access::{Service, ALL_SERVICES};
use pacs::dimse::command::Command;
use pacs::dimse::negotiation::negotiate;
use pacs::dimse::pdu_io::PduStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// An in-memory peer: reads hand out at most `chunk` bytes (so PDUs arrive in pieces, as
/// from TCP); writes are counted and dropped.
struct Peer<'a> {
    input: &'a [u8],
    chunk: usize,
    written: usize,
}

impl AsyncRead for Peer<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = self.input.len().min(self.chunk).min(buf.remaining());
        let (head, rest) = self.input.split_at(n);
        buf.put_slice(head);
        self.input = rest;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Peer<'_> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.written += buf.len();
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("tokio runtime")
    })
}

/// The range config.rs allows (4096..=16 MiB), its default, and a small size.
const MAX_PDU: [u32; 4] = [4096, 16_384, 262_138, 16 * 1024 * 1024];
const CHUNK: [usize; 4] = [1, 7, 1500, usize::MAX];

fuzz_target!(|data: &[u8]| {
    let [sel, variant, stream @ ..] = data else {
        return;
    };
    let max_pdu = MAX_PDU[usize::from(sel & 3)];
    let peer = Peer {
        input: stream,
        chunk: CHUNK[usize::from((sel >> 2) & 3)],
        written: 0,
    };
    runtime().block_on(async {
        let mut pdus = PduStream::new(peer, max_pdu);
        // A real association ends on the first error; a bound keeps each run short anyway.
        for _ in 0..64 {
            let pdu = match pdus.read(Duration::from_secs(1)).await {
                Ok(pdu) => pdu,
                Err(e) => {
                    let _ = e.is_protocol_error();
                    return;
                }
            };
            match pdu {
                Pdu::AssociationRQ(rq) => {
                    // Usually our AE title is the one called, so negotiation goes past it.
                    let our_ae = if variant & 1 == 0 {
                        rq.called_ae_title.trim().to_string()
                    } else {
                        "PACS".to_string()
                    };
                    let allowed: Option<&[Service]> = match (variant >> 1) & 3 {
                        0 => None,
                        1 => Some(&[Service::Find]),
                        _ => Some(ALL_SERVICES),
                    };
                    let reply = match negotiate(&rq, &our_ae, max_pdu, allowed) {
                        Ok((ac, _negotiated)) => Pdu::AssociationAC(ac),
                        Err(rj) => Pdu::AssociationRJ(rj),
                    };
                    let _ = pdus.write(&reply).await;
                }
                Pdu::PData { data } => {
                    for pdv in data {
                        if pdv.value_type == PDataValueType::Command {
                            let _ = Command::parse(&pdv.data);
                        }
                    }
                }
                _ => {}
            }
        }
    });
});
