//! SASL: ANONYMOUS always; PLAIN with a configured key name and key (any
//! credentials in `--no-auth` mode). Authorization itself happens via `$cbs`.

use crate::config::SasKey;
use fe2o3_amqp::acceptor::sasl_acceptor::{SaslAcceptor, SaslServerFrame};
use fe2o3_amqp_types::{
    primitives::{Array, Symbol},
    sasl::{SaslCode, SaslInit, SaslOutcome, SaslResponse},
};
use std::sync::Arc;

const ANONYMOUS: &str = "ANONYMOUS";
const PLAIN: &str = "PLAIN";

/// Accepts ANONYMOUS and PLAIN.
#[derive(Debug, Clone)]
pub(crate) struct EmulatorSasl {
    pub keys: Arc<Vec<SasKey>>,
    pub no_auth: bool,
}

fn outcome(code: SaslCode) -> SaslServerFrame {
    SaslServerFrame::Outcome(SaslOutcome {
        code,
        additional_data: None,
    })
}

impl EmulatorSasl {
    fn check_plain(&self, init: &SaslInit) -> SaslCode {
        let Some(response) = init.initial_response.as_ref() else {
            return SaslCode::Auth;
        };
        let mut parts = response.split(|b| *b == 0);
        let (_authzid, user, password) = (parts.next(), parts.next(), parts.next());
        let (Some(user), Some(password)) = (user, password) else {
            return SaslCode::Auth;
        };
        if self.no_auth
            || self
                .keys
                .iter()
                .any(|k| k.name.as_bytes() == user && k.key.as_bytes() == password)
        {
            SaslCode::Ok
        } else {
            SaslCode::Auth
        }
    }
}

impl SaslAcceptor for EmulatorSasl {
    fn mechanisms(&self) -> Array<Symbol> {
        Array::from(vec![Symbol::from(ANONYMOUS), Symbol::from(PLAIN)])
    }

    fn on_init(&mut self, init: SaslInit) -> SaslServerFrame {
        match init.mechanism.as_str() {
            ANONYMOUS => outcome(SaslCode::Ok),
            PLAIN => outcome(self.check_plain(&init)),
            _ => outcome(SaslCode::Auth),
        }
    }

    fn on_response(&mut self, _response: SaslResponse) -> SaslServerFrame {
        // Neither mechanism uses challenges.
        outcome(SaslCode::Auth)
    }
}
