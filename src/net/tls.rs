//! Mutual TLS for QUIC: every server, dealer and party presents a certificate issued by the
//! deployment's CA, and a node accepts only the peers named in its configuration.
//!
//! Identities are DNS-style names (`server-0`, `dealer`, `party-a`) carried in the certificate's
//! subject alternative name. After the handshake, [`peer_identity`] finds which configured name
//! the peer's (already chain-verified) certificate is valid for; a certificate valid for none is
//! refused. A certificate must carry **exactly one** identity, a DNS name without wildcards
//! ([`single_identity`]): a certificate valid for several names (or for `*.example`) would let
//! one key act as several roles, for instance as two compute servers of the same job, which
//! breaks the assumption that at least one server is independent. Such a certificate is refused
//! when a node loads its own and when a peer presents one.

use crate::error::{Error, Result};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// ALPN protocol identifier: the version of the wire protocol. Nodes of different versions
/// refuse each other in the TLS handshake (no common application protocol), which
/// [`crate::net::dial`] reports as a version mismatch. 2: optional dealer in job descriptions,
/// pairwise OT rounds. 3: a party's upload carries its agreement tag (`Hello::Upload`).
pub const ALPN: &[u8] = b"ppea/3";

/// Where a node's TLS material lives.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The deployment's CA certificate (PEM).
    pub ca: PathBuf,
    /// This node's certificate chain (PEM).
    pub cert: PathBuf,
    /// This node's private key (PEM).
    pub key: PathBuf,
}

impl TlsFiles {
    /// Resolves relative paths against `base` (the directory of the file that named them).
    pub fn relative_to(&self, base: &Path) -> TlsFiles {
        let r = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };
        TlsFiles {
            ca: r(&self.ca),
            cert: r(&self.cert),
            key: r(&self.key),
        }
    }
}

/// A node's identity: its name, certificate chain and key, and the CA it trusts.
pub struct Identity {
    /// The node's name (must be in its certificate).
    pub name: String,
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    roots: Arc<RootCertStore>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identity({}, <key redacted>)", self.name)
    }
}

fn tls_err(what: impl Into<String>) -> Error {
    Error::invalid(what)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Identity {
    /// Loads a node's certificate, key and CA, checking that the certificate names `name`.
    pub fn load(name: &str, files: &TlsFiles) -> Result<Identity> {
        let at = |path: &Path, what: &str| {
            let path = path.display().to_string();
            let what = what.to_string();
            move |e: &dyn std::fmt::Display| tls_err(format!("{path}: {what}{e}"))
        };
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
            .map_err(|e| at(&files.cert, "cannot read certificate: ")(&e))?
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| at(&files.cert, "bad PEM certificate: ")(&e))?;
        if certs.is_empty() {
            return Err(at(&files.cert, "no certificate found")(&""));
        }
        let key = PrivateKeyDer::from_pem_file(&files.key)
            .map_err(|e| at(&files.key, "cannot read private key: ")(&e))?;
        let mut roots = RootCertStore::empty();
        let cas = CertificateDer::pem_file_iter(&files.ca)
            .map_err(|e| at(&files.ca, "cannot read CA certificate: ")(&e))?;
        for ca in cas {
            let ca = ca.map_err(|e| at(&files.ca, "bad PEM CA certificate: ")(&e))?;
            roots
                .add(ca)
                .map_err(|e| at(&files.ca, "unusable CA certificate: ")(&e))?;
        }
        if roots.is_empty() {
            return Err(at(&files.ca, "no CA certificate found")(&""));
        }
        single_identity(&certs[0])
            .map_err(|why| tls_err(format!("{}: {why}", files.cert.display())))?;
        if cert_names(&certs[0], &[name.to_string()]).is_none() {
            return Err(tls_err(format!(
                "{}: the certificate is not issued for {name:?} (its subject alternative names must include it)",
                files.cert.display()
            )));
        }
        Ok(Identity {
            name: name.to_string(),
            certs,
            key,
            roots: Arc::new(roots),
        })
    }

    /// QUIC transport settings with the default liveness timers (endpoints apply their own).
    fn transport() -> Arc<quinn::TransportConfig> {
        crate::net::liveness::Liveness::default().transport()
    }

    fn misfit(&self, e: rustls::Error) -> Error {
        tls_err(format!(
            "certificate and key of {} do not fit together: {e}",
            self.name
        ))
    }

    /// Server-side configuration: TLS 1.3, client certificates required and verified against
    /// the CA.
    pub fn server_config(&self) -> Result<quinn::ServerConfig> {
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            self.roots.clone(),
            provider(),
        )
        .build()
        .map_err(|e| tls_err(format!("client verifier: {e}")))?;
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| tls_err(format!("TLS versions: {e}")))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.certs.clone(), self.key.clone_key())
            .map_err(|e| self.misfit(e))?;
        cfg.alpn_protocols = vec![ALPN.to_vec()];
        let quic =
            QuicServerConfig::try_from(cfg).map_err(|e| tls_err(format!("QUIC TLS: {e}")))?;
        let mut sc = quinn::ServerConfig::with_crypto(Arc::new(quic));
        sc.transport_config(Self::transport());
        Ok(sc)
    }

    /// Client-side configuration: TLS 1.3, server verified against the CA, this node's
    /// certificate presented.
    pub fn client_config(&self) -> Result<quinn::ClientConfig> {
        self.client_config_speaking(ALPN)
    }

    /// [`Identity::client_config`] offering the protocol version `alpn` (compatibility tests:
    /// a node of another version).
    pub fn client_config_speaking(&self, alpn: &[u8]) -> Result<quinn::ClientConfig> {
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| tls_err(format!("TLS versions: {e}")))?
            .with_root_certificates(self.roots.clone())
            .with_client_auth_cert(self.certs.clone(), self.key.clone_key())
            .map_err(|e| self.misfit(e))?;
        cfg.alpn_protocols = vec![alpn.to_vec()];
        let quic =
            QuicClientConfig::try_from(cfg).map_err(|e| tls_err(format!("QUIC TLS: {e}")))?;
        let mut cc = quinn::ClientConfig::new(Arc::new(quic));
        cc.transport_config(Self::transport());
        Ok(cc)
    }

    /// A QUIC endpoint that listens on `addr` and can also connect out, with the default
    /// liveness timers.
    pub fn endpoint(&self, addr: std::net::SocketAddr) -> Result<quinn::Endpoint> {
        self.endpoint_with(addr, &crate::net::liveness::Liveness::default())
    }

    /// A QUIC endpoint that listens on `addr` and can also connect out, with these liveness
    /// timers on every connection.
    pub fn endpoint_with(
        &self,
        addr: std::net::SocketAddr,
        liveness: &crate::net::liveness::Liveness,
    ) -> Result<quinn::Endpoint> {
        let mut sc = self.server_config()?;
        sc.transport_config(liveness.transport());
        let mut ep = quinn::Endpoint::server(sc, addr)
            .map_err(|e| tls_err(format!("cannot listen on {addr}: {e}")))?;
        ep.set_default_client_config(self.client_config_with(liveness)?);
        Ok(ep)
    }

    /// A client-only QUIC endpoint with the default liveness timers.
    pub fn client_endpoint(&self) -> Result<quinn::Endpoint> {
        self.client_endpoint_with(&crate::net::liveness::Liveness::default())
    }

    /// A client-only QUIC endpoint with these liveness timers.
    pub fn client_endpoint_with(
        &self,
        liveness: &crate::net::liveness::Liveness,
    ) -> Result<quinn::Endpoint> {
        let mut ep = quinn::Endpoint::client("0.0.0.0:0".parse().expect("address"))
            .map_err(|e| tls_err(format!("cannot open a UDP socket: {e}")))?;
        ep.set_default_client_config(self.client_config_with(liveness)?);
        Ok(ep)
    }

    fn client_config_with(
        &self,
        liveness: &crate::net::liveness::Liveness,
    ) -> Result<quinn::ClientConfig> {
        let mut cc = self.client_config()?;
        cc.transport_config(liveness.transport());
        Ok(cc)
    }
}

/// The one identity a certificate carries: its subject alternative names must be exactly one
/// DNS name, with no wildcard. Returns the name, or why the certificate is unacceptable.
pub fn single_identity(cert: &CertificateDer<'_>) -> std::result::Result<String, String> {
    use x509_parser::extensions::GeneralName;
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| format!("the certificate does not parse: {e}"))?;
    let san = parsed
        .subject_alternative_name()
        .map_err(|e| format!("bad subject alternative name extension: {e}"))?
        .ok_or(
            "the certificate has no subject alternative name; it must carry exactly one identity",
        )?;
    let names = &san.value.general_names;
    match names.as_slice() {
        [GeneralName::DNSName(n)] if !n.contains('*') => Ok(n.to_string()),
        [GeneralName::DNSName(n)] => Err(format!(
            "the certificate is for the wildcard name {n:?}; each node needs a certificate for \
             exactly one identity, so that one key cannot act as several nodes"
        )),
        [_] => Err(
            "the certificate's subject alternative name is not a DNS name; it must be exactly one identity such as server-0"
                .to_string(),
        ),
        many => Err(format!(
            "the certificate carries {} identities ({}); each node needs a certificate for \
             exactly one identity, so that one key cannot act as several nodes",
            many.len(),
            many.iter()
                .map(|g| match g {
                    GeneralName::DNSName(n) => n.to_string(),
                    other => format!("{other:?}"),
                })
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// The first of `names` that `cert` is valid for.
fn cert_names(cert: &CertificateDer<'_>, names: &[String]) -> Option<String> {
    let ee = webpki::EndEntityCert::try_from(cert).ok()?;
    names.iter().find_map(|n| {
        let sn = ServerName::try_from(n.as_str()).ok()?;
        ee.verify_is_valid_for_subject_name(&sn)
            .ok()
            .map(|_| n.clone())
    })
}

/// Which of the `allowed` identities the peer of `conn` is. The chain was verified against the
/// CA during the handshake; this maps it to a configured name or refuses it.
pub fn peer_identity(conn: &quinn::Connection, allowed: &[String]) -> Result<String> {
    let certs = conn
        .peer_identity()
        .and_then(|any| any.downcast::<Vec<CertificateDer<'static>>>().ok())
        .ok_or_else(|| {
            tls_err(format!(
                "peer {} presented no certificate",
                conn.remote_address()
            ))
        })?;
    let first = certs
        .first()
        .ok_or_else(|| tls_err("empty certificate chain"))?;
    single_identity(first)
        .map_err(|why| tls_err(format!("peer {} refused: {why}", conn.remote_address())))?;
    cert_names(first, allowed).ok_or_else(|| {
        tls_err(format!(
            "peer {} has a valid certificate, but for none of the configured identities {allowed:?}",
            conn.remote_address()
        ))
    })
}

/// Writes a development CA and one certificate and key per name into `dir` (`ca.pem`,
/// `NAME.pem`, `NAME.key`; the CA key is discarded). For local deployments and tests only.
pub fn write_dev_pki(dir: &Path, names: &[String]) -> Result<()> {
    let io = |e: std::io::Error| tls_err(format!("{}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(io)?;
    let gen_err = |e: rcgen::Error| tls_err(format!("certificate generation: {e}"));
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(gen_err)?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "ppea development CA");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca_key = rcgen::KeyPair::generate().map_err(gen_err)?;
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).map_err(gen_err)?;
    let mut files = vec![("ca.pem".to_string(), ca.pem())];
    let mut keys = Vec::new();
    for name in names {
        ServerName::try_from(name.as_str()).map_err(|_| {
            tls_err(format!(
                "{name:?} is not a valid identity name (use letters, digits and '-')"
            ))
        })?;
        let mut p = rcgen::CertificateParams::new(vec![name.clone()]).map_err(gen_err)?;
        p.distinguished_name
            .push(rcgen::DnType::CommonName, name.as_str());
        p.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = rcgen::KeyPair::generate().map_err(gen_err)?;
        let cert = p.signed_by(&key, &ca).map_err(gen_err)?;
        files.push((format!("{name}.pem"), cert.pem()));
        keys.push((format!("{name}.key"), key.serialize_pem()));
    }
    for (name, pem) in &keys {
        write_private(&dir.join(name), pem).map_err(io)?;
    }
    let refs: Vec<(&str, String)> = files.iter().map(|(n, b)| (n.as_str(), b.clone())).collect();
    crate::model::graph::write_atomically(dir, &refs).map_err(io)
}

/// Writes a private key readable by its owner only (mode 0600 on Unix), through a temporary
/// file created with that mode, so the key is never readable by others, even briefly.
fn write_private(path: &Path, body: &str) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("key.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut open = std::fs::OpenOptions::new();
    open.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
    let mut f = open.open(&tmp)?;
    f.write_all(body.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}
