//! A private test CA ([`TestCa`]) issuing server and token-signing certificates, plus the
//! rustls configurations the harness uses (token issuer server, readiness probe client).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use time::OffsetDateTime;

/// A private certificate authority for tests (ECDSA P-256, CN "ferry test CA").
///
/// Every [`TestCa::new`] makes a fresh key: certificates of two CAs never chain to each other,
/// which is what "untrusted CA" tests want.
pub struct TestCa {
    cert: Certificate,
    key: KeyPair,
}

/// A certificate issued by a [`TestCa`], with its private key.
pub(crate) struct Issued {
    pub(crate) cert_pem: String,
    pub(crate) key_pem: String,
    pub(crate) cert_der: Vec<u8>,
    pub(crate) key_der: Vec<u8>,
}

impl TestCa {
    /// A new self-signed CA valid from a day ago for ten years.
    pub fn new() -> anyhow::Result<TestCa> {
        let key = KeyPair::generate().context("generating the test CA key")?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "ferry test CA");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = SystemTime::now();
        params.not_before = OffsetDateTime::from(now - Duration::from_secs(86_400));
        params.not_after = OffsetDateTime::from(now + Duration::from_secs(10 * 365 * 86_400));
        let cert = params
            .self_signed(&key)
            .context("self-signing the test CA")?;
        Ok(TestCa { cert, key })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        self.cert.der()
    }

    /// Issues a TLS server certificate for `sans` (IP addresses become IP SANs, anything else a
    /// DNS SAN; the first one is also the CN), valid from a day ago (or a day before `not_after`
    /// if that is earlier, for expired certificates) until `not_after`.
    ///
    /// Returns `(cert_pem, key_pem)`: the leaf alone, and its PKCS#8 key.
    pub fn issue_server_cert(
        &self,
        sans: &[&str],
        not_after: SystemTime,
    ) -> anyhow::Result<(String, String)> {
        let issued = self.issue(sans, not_after, true)?;
        Ok((issued.cert_pem, issued.key_pem))
    }

    /// Issues a leaf certificate; `server` adds the serverAuth extended key usage.
    pub(crate) fn issue(
        &self,
        sans: &[&str],
        not_after: SystemTime,
        server: bool,
    ) -> anyhow::Result<Issued> {
        let key = KeyPair::generate().context("generating a leaf key")?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            sans.first().copied().unwrap_or("ferry test"),
        );
        params.distinguished_name = dn;
        for san in sans {
            params.subject_alt_names.push(match san.parse() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*san).try_into().context("DNS SAN")?),
            });
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if server {
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        }
        let day = Duration::from_secs(86_400);
        let not_before = (SystemTime::now() - day).min(not_after - day);
        params.not_before = OffsetDateTime::from(not_before);
        params.not_after = OffsetDateTime::from(not_after);
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .context("signing a leaf certificate with the test CA")?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().to_vec(),
            key_der: key.serialize_der(),
        })
    }
}

/// The ring crypto provider (the workspace builds rustls without aws-lc).
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Server config presenting `leaf` followed by the CA certificate.
pub(crate) fn server_config(
    ca: &TestCa,
    leaf: &Issued,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let chain = vec![
        CertificateDer::from(leaf.cert_der.clone()),
        CertificateDer::from(ca.cert_der().to_vec()),
    ];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf.key_der.clone()));
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("rustls protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("rustls server certificate")?;
    Ok(Arc::new(config))
}

/// Client config trusting only the CA certificate `ca_der`.
pub(crate) fn client_config(ca_der: &[u8]) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(ca_der.to_vec()))
        .context("adding the test CA to a root store")?;
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("rustls protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
