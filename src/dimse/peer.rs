//! Who is at the other end of an association. Its own module so that the listener (which
//! learns it), the association and the audit trail (which name it) share it without
//! importing one another.

use std::net::SocketAddr;

/// Who is at the other end of an association.
#[derive(Debug, Clone)]
pub struct DimsePeer {
    pub addr: SocketAddr,
    /// Common name of the verified client certificate (DICOM TLS with client certificates).
    pub client_cn: Option<String>,
}
