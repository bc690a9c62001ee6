//! HL7 v2 order intake over MLLP against the real server: NW, XO, CA for one accession
//! number answered AA and stored as a cancelled order; malformed and oversized messages
//! refused (the oversized one closing its connection); the audit trail names each order.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use pacs_storage::orders::{OrderStatus, Orders};

use crate::security::pacs;
use crate::support::*;

/// A server with the MLLP listener on a free loopback port.
pub(crate) fn server_with_hl7(data: &std::path::Path) -> Server {
    let config = data.parent().expect("parent").join("pacs.toml");
    std::fs::write(&config, "[hl7]\nport = 0\nbind = \"127.0.0.1\"\n").expect("config");
    let cfg = config.to_string_lossy().into_owned();
    Server::start_with(
        data,
        ServerOptions {
            extra_args: &["--config", &cfg],
            ..Default::default()
        },
    )
}

pub(crate) fn connect(server: &Server) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", server.hl7_port)).expect("connect to HL7");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    s
}

/// One MLLP exchange: the ACK's text, or None when the server closed instead.
pub(crate) fn exchange(stream: &mut TcpStream, message: &str) -> Option<String> {
    let mut frame = vec![0x0b];
    frame.extend(message.as_bytes());
    frame.extend([0x1c, 0x0d]);
    stream.write_all(&frame).ok()?;
    read_ack(stream)
}

fn read_ack(stream: &mut TcpStream) -> Option<String> {
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(&[0x1c, 0x0d]) {
        match stream.read(&mut byte) {
            Ok(1) => got.push(byte[0]),
            _ => return None,
        }
    }
    let start = got.iter().position(|&b| b == 0x0b)? + 1;
    Some(String::from_utf8_lossy(&got[start..got.len() - 2]).into_owned())
}

pub(crate) fn orm(control: &str, orc1: &str, orc5: &str, modality: &str) -> String {
    format!(
        "MSH|^~\\&|EHR|HOSP|PACS|RAD|20261205083000||ORM^O01|{control}|P|2.3\r\
         PID|1||HL7P1^^^HOSP^MR||Jones^Alice^Q||19800101|F\r\
         PV1|1|O\r\
         ORC|{orc1}|PL1|FL1||{orc5}||^^^202612101015^^S\r\
         OBR|1|PL1|FL1|CT-HEAD^CT head^L||||||||||||||HL7ACC1|RP1|SPS1||||{modality}\r"
    )
}

pub(crate) fn msa(ack: &str) -> &str {
    ack.split('\r')
        .find(|s| s.starts_with("MSA|"))
        .and_then(|s| s.split('|').nth(1))
        .unwrap_or("")
}

#[test]
fn orders_over_mllp_place_change_cancel_and_refusals() {
    let (_tmp, data) = data_dir();
    let config = data.parent().expect("parent").join("pacs.toml");
    std::fs::write(
        &config,
        "[hl7]\nport = 0\nbind = \"127.0.0.1\"\nmax_message_bytes = 65536\n\
         sending_application = \"ARCHIVE\"\n",
    )
    .expect("config");
    let cfg = config.to_string_lossy().into_owned();
    let mut server = Server::start_with(
        &data,
        ServerOptions {
            extra_args: &["--config", &cfg],
            ..Default::default()
        },
    );
    assert_ne!(
        server.hl7_port,
        0,
        "no HL7 port in the log:\n{}",
        server.log()
    );

    let mut s = connect(&server);
    for (control, orc1, orc5, modality) in [
        ("C1", "NW", "SC", "CT"),
        ("C2", "XO", "SC", "MR"),
        ("C3", "CA", "CA", "MR"),
    ] {
        let ack = exchange(&mut s, &orm(control, orc1, orc5, modality)).expect("an ACK");
        assert!(ack.starts_with("MSH|^~\\&|ARCHIVE|PACS|EHR|HOSP|"), "{ack}");
        assert!(ack.contains("|ACK^O01^ACK|"), "{ack}");
        assert_eq!(msa(&ack), "AA", "{orc1}: {ack}");
        assert!(ack.contains(&format!("MSA|AA|{control}")), "{ack}");
    }
    // A second NW for the same accession number: AE, duplicate key.
    let ack = exchange(&mut s, &orm("C4", "NW", "SC", "CT")).expect("an ACK");
    assert_eq!(msa(&ack), "AE", "{ack}");
    assert!(ack.contains("ERR|"), "{ack}");
    // No PID-3: refused, naming PID^1^3.
    let ack = exchange(
        &mut s,
        &orm("C5", "NW", "SC", "CT")
            .replace("HL7P1^^^HOSP^MR", "")
            .replace("HL7ACC1", "HL7ACC2"),
    )
    .expect("an ACK");
    assert_eq!(msa(&ack), "AE", "{ack}");
    assert!(ack.contains("ERR||PID^1^3|101^"), "{ack}");
    // No MSH at all: AR with an empty MSA-2.
    let ack = exchange(&mut s, "PID|1||X\r").expect("an ACK");
    assert!(ack.contains("MSA|AR||"), "{ack}");
    assert!(ack.contains("ERR||MSH^1^1|100^"), "{ack}");

    // 10 MB: AR "message too large", then the connection is closed.
    let mut big = connect(&server);
    let mut frame = vec![0x0b];
    frame.extend(orm("BIG", "NW", "SC", "CT").as_bytes());
    frame.resize(10 * 1024 * 1024, b'A');
    frame.extend([0x1c, 0x0d]);
    // The server stops reading at the limit; the rest of the write may fail.
    let _ = big.write_all(&frame);
    let ack = read_ack(&mut big).expect("an AR before the close");
    assert!(ack.contains("MSA|AR|BIG|"), "{ack}");
    assert!(ack.contains("message too large"), "{ack}");
    assert!(
        read_ack(&mut big).is_none(),
        "the connection must be closed"
    );
    // The server still answers new connections.
    let mut again = connect(&server);
    let ack = exchange(
        &mut again,
        &orm("C6", "NW", "SC", "US").replace("HL7ACC1", "HL7ACC3"),
    )
    .expect("an ACK");
    assert_eq!(msa(&ack), "AA", "{ack}");
    // Two orders in one message (two ORC groups): both placed, one ACK.
    let first = orm("C7", "NW", "SC", "CT").replace("HL7ACC1", "HL7ACC4");
    let second_group = first[first.find("ORC|").expect("ORC")..]
        .replace("HL7ACC4", "HL7ACC5")
        .replace("CT-HEAD^CT head", "CT-CHEST^CT chest");
    let ack = exchange(&mut again, &format!("{first}{second_group}")).expect("an ACK");
    assert_eq!(msa(&ack), "AA", "{ack}");
    drop((s, big, again));

    assert!(server.terminate().success());
    let index = pacs_storage::RocksIndex::open_read_only(data.join("index")).expect("index");
    let order = index.order("HL7ACC1").expect("read").expect("stored");
    assert_eq!(order.status, OrderStatus::Cancelled);
    assert_eq!(order.patient.name, "Jones^Alice^Q");
    assert_eq!(order.patient.id, "HL7P1");
    assert_eq!(order.step.modality, "MR");
    assert_eq!(order.step.start_date, "20261210");
    assert_eq!(order.step.start_time, "101500");
    assert!(order.study_instance_uid.starts_with("2.25."));
    assert!(index.order("HL7ACC2").expect("read").is_none());
    assert_eq!(
        index
            .order("HL7ACC3")
            .expect("read")
            .map(|o| o.step.modality),
        Some("US".to_string())
    );
    for (accession, code) in [("HL7ACC4", "CT-HEAD"), ("HL7ACC5", "CT-CHEST")] {
        let order = index.order(accession).expect("read").expect("stored");
        assert_eq!(order.patient.id, "HL7P1", "{accession}");
        assert_eq!(order.procedure.map(|c| c.value).as_deref(), Some(code));
    }
    drop(index);

    let out = run(pacs().args(["audit", "export", "--data"]).arg(&data));
    let audit = String::from_utf8_lossy(&out.stdout);
    let hl7: Vec<&str> = audit.lines().filter(|l| l.contains("\"hl7\"")).collect();
    let count = |action: &str, outcome: &str| {
        hl7.iter()
            .filter(|l| l.contains(&format!("\"{action}\"")) && l.contains(outcome))
            .count()
    };
    assert_eq!(count("order.place", "success"), 4, "{audit}");
    assert_eq!(count("order.change", "success"), 1, "{audit}");
    assert_eq!(count("order.cancel", "success"), 1, "{audit}");
    // The duplicate NW is a refused placement; the messages refused before their order was
    // read (no PID-3, no MSH, too large) are refused messages.
    assert_eq!(count("order.place", "failure"), 1, "{audit}");
    assert_eq!(count("order.message", "failure"), 3, "{audit}");
    assert!(
        hl7.iter()
            .any(|l| l.contains("HL7ACC1") && l.contains("HL7P1")),
        "{audit}"
    );
}
