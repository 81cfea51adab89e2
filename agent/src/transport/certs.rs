//! What a certificate says: subject, issuer, names and validity, for `agent cert list`
//! and the expiry metric.

use x509_parser::extensions::GeneralName;
use x509_parser::pem::Pem;

use super::tls::TlsError;

/// The facts of one certificate an operator needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSummary {
    /// Subject, as `CN=..., O=...`.
    pub subject: String,
    /// Issuer, as `CN=..., O=...`.
    pub issuer: String,
    /// DNS names and IP addresses it is valid for.
    pub hosts: Vec<String>,
    /// Whether it is a CA certificate.
    pub is_ca: bool,
    /// Unix time (seconds) it becomes valid.
    pub not_before: i64,
    /// Unix time (seconds) it expires.
    pub not_after: i64,
}

/// Summarizes the first certificate of a PEM document.
pub fn summarize(pem: &str) -> Result<CertSummary, TlsError> {
    summarize_all(pem)?
        .into_iter()
        .next()
        .ok_or_else(|| TlsError::Certificate("no certificate in the PEM document".into()))
}

/// Summarizes every certificate of a PEM document (other PEM blocks, keys, are skipped).
pub fn summarize_all(pem: &str) -> Result<Vec<CertSummary>, TlsError> {
    let mut out = Vec::new();
    for block in Pem::iter_from_buffer(pem.as_bytes()) {
        let block = block.map_err(|e| TlsError::Certificate(e.to_string()))?;
        if block.label != "CERTIFICATE" {
            continue;
        }
        let cert = block
            .parse_x509()
            .map_err(|e| TlsError::Certificate(e.to_string()))?;
        let hosts = match cert.subject_alternative_name() {
            Ok(Some(san)) => san.value.general_names.iter().filter_map(host_of).collect(),
            _ => Vec::new(),
        };
        out.push(CertSummary {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            hosts,
            is_ca: cert.is_ca(),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
        });
    }
    Ok(out)
}

fn host_of(name: &GeneralName<'_>) -> Option<String> {
    match name {
        GeneralName::DNSName(dns) => Some((*dns).to_string()),
        GeneralName::IPAddress(bytes) => match bytes.len() {
            4 => <[u8; 4]>::try_from(*bytes)
                .ok()
                .map(|b| std::net::Ipv4Addr::from(b).to_string()),
            16 => <[u8; 16]>::try_from(*bytes)
                .ok()
                .map(|b| std::net::Ipv6Addr::from(b).to_string()),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::tls;

    #[test]
    fn a_ca_is_summarized_as_one() {
        let ca = tls::generate_ca_valid_for("prod", 100).unwrap();
        let summary = summarize(&ca.cert_pem).unwrap();
        assert!(summary.is_ca);
        assert_eq!(summary.subject, summary.issuer, "self-signed");
        assert!(summary.subject.contains("prod cluster CA"));
        assert_eq!((summary.not_after - summary.not_before) / 86_400, 101);
    }

    #[test]
    fn a_key_alone_is_no_certificate() {
        let ca = tls::generate_ca("prod").unwrap();
        assert!(summarize_all(&ca.key_pem).unwrap().is_empty());
        assert!(matches!(
            summarize(&ca.key_pem),
            Err(TlsError::Certificate(_))
        ));
        assert!(summarize("garbage").is_err() || summarize_all("garbage").unwrap().is_empty());
    }
}
