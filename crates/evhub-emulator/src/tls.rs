//! TLS for the `amqps` listener: TLS starts directly on the socket (no AMQP
//! TLS protocol header), which is what the SDKs do on port 5671.

use crate::{
    config::TlsConfig,
    error::{EmulatorError, Result},
};
use std::sync::Arc;
use tokio_rustls::{
    rustls::{
        pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer},
        ServerConfig,
    },
    TlsAcceptor,
};

/// A ready TLS acceptor and, for a generated certificate, its PEM text so
/// clients can trust it.
pub(crate) struct TlsSetup {
    pub acceptor: TlsAcceptor,
    pub generated_certificate_pem: Option<String>,
}

fn tls_error(what: &str) -> impl FnOnce(String) -> EmulatorError + '_ {
    move |detail| EmulatorError::Tls(format!("{what}: {detail}"))
}

pub(crate) fn build(config: &TlsConfig) -> Result<TlsSetup> {
    let (certs, key, generated) = match (&config.cert, &config.key) {
        (Some(cert_path), Some(key_path)) => {
            let certs = CertificateDer::pem_file_iter(cert_path)
                .map_err(|e| tls_error("reading certificate file")(e.to_string()))?
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| tls_error("parsing certificate file")(e.to_string()))?;
            if certs.is_empty() {
                return Err(EmulatorError::Tls(format!(
                    "no certificate in {}",
                    cert_path.display()
                )));
            }
            let key = PrivateKeyDer::from_pem_file(key_path)
                .map_err(|e| tls_error("reading key file")(e.to_string()))?;
            (certs, key, None)
        }
        (None, None) => {
            let certified = rcgen::generate_simple_self_signed(vec![
                "localhost".to_string(),
                "127.0.0.1".to_string(),
            ])
            .map_err(|e| tls_error("generating a self-signed certificate")(e.to_string()))?;
            let key =
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));
            let pem = certified.cert.pem();
            (vec![certified.cert.der().clone()], key, Some(pem))
        }
        _ => {
            return Err(EmulatorError::Tls(
                "set both the certificate and the key file, or neither".into(),
            ))
        }
    };
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let server_config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error("choosing protocol versions")(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| tls_error("using certificate and key")(e.to_string()))?;
    Ok(TlsSetup {
        acceptor: TlsAcceptor::from(Arc::new(server_config)),
        generated_certificate_pem: generated,
    })
}
