//! The CA server's configuration: `mercato-ca.toml` in the CA home, written with comments by
//! `mercato-ca init`, overridable by `MERCATO_CA_*` environment variables, checked by
//! [`Config::validate`] before the server starts.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::error::CaError;

/// The configuration file's name inside the CA home.
pub const CONFIG_FILE: &str = "mercato-ca.toml";

/// PBKDF2 iterations below this are refused: a stolen registry would fall to a dictionary in
/// minutes. Tests use this minimum; production uses the default.
pub const MIN_PBKDF2_ITERATIONS: u32 = 1_000;

/// Everything the CA server reads from `mercato-ca.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The listener and its TLS certificate.
    pub server: ServerConfig,
    /// Who the CA is.
    pub ca: CaConfig,
    /// What enrollment issues.
    pub enrollment: EnrollmentConfig,
    /// Secrets and signed requests.
    pub security: SecurityConfig,
    /// Revocation lists.
    pub crl: CrlConfig,
}

/// The listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// The address to listen on; port 0 picks a free port.
    pub listen: String,
    /// DNS names and IP addresses of the server's TLS certificate (what clients dial).
    pub hosts: Vec<String>,
    /// The largest request accepted, bytes; larger ones are refused before they are decoded.
    pub max_request_bytes: usize,
    /// How long one request may take, seconds.
    pub request_timeout_secs: u64,
    /// How long a TLS handshake may take, seconds.
    pub tls_handshake_timeout_secs: u64,
    /// How many requests one connection may have in flight.
    pub max_concurrent_requests_per_connection: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "0.0.0.0:7054".into(),
            hosts: vec!["localhost".into(), "127.0.0.1".into()],
            max_request_bytes: 64 * 1024,
            request_timeout_secs: 30,
            tls_handshake_timeout_secs: 10,
            max_concurrent_requests_per_connection: 32,
        }
    }
}

/// Who the CA is. Used by `init`; changing it later does not change the certificates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CaConfig {
    /// The common name of the enrollment CA's certificate.
    pub name: String,
    /// The organisation (the O of every certificate the CA issues).
    pub organization: String,
    /// The MSP id of the organisation, as channels name it.
    pub msp_id: String,
    /// How long the root CA certificates (enrollment and TLS) are valid, days.
    pub validity_days: i64,
}

impl Default for CaConfig {
    fn default() -> Self {
        CaConfig {
            name: "ca.org1.example.com".into(),
            organization: "Org1".into(),
            msp_id: "Org1MSP".into(),
            validity_days: 3650,
        }
    }
}

/// What enrollment issues.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnrollmentConfig {
    /// How long an enrollment certificate is valid, days (never past the CA's own expiry).
    pub ecert_validity_days: i64,
    /// How long a TLS certificate is valid, days.
    pub tls_validity_days: i64,
    /// How long an intermediate CA certificate is valid, days.
    pub intermediate_validity_days: i64,
    /// How many enrollments a registration allows when the registrar does not say: -1 is
    /// unlimited. When positive, it is also the most a registrar may allow.
    pub max_enrollments: i32,
}

impl Default for EnrollmentConfig {
    fn default() -> Self {
        EnrollmentConfig {
            ecert_validity_days: 365,
            tls_validity_days: 365,
            intermediate_validity_days: 1825,
            max_enrollments: -1,
        }
    }
}

/// Secrets and signed requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecurityConfig {
    /// PBKDF2-HMAC-SHA256 iterations for new secret hashes.
    pub pbkdf2_iterations: u32,
    /// A signed request is accepted only if its timestamp is within this many seconds of the
    /// server's clock, and only once within that window.
    pub request_max_age_secs: u64,
    /// How many signed requests the server remembers to refuse replays.
    pub replay_cache_capacity: usize,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        SecurityConfig {
            // OWASP's 2023 recommendation for PBKDF2-HMAC-SHA256.
            pbkdf2_iterations: 600_000,
            request_max_age_secs: 300,
            replay_cache_capacity: 100_000,
        }
    }
}

/// Revocation lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CrlConfig {
    /// How long a CRL is current (its next-update time), hours.
    pub validity_hours: i64,
}

impl Default for CrlConfig {
    fn default() -> Self {
        CrlConfig { validity_hours: 24 }
    }
}

impl Config {
    /// Parses a configuration file's text.
    pub fn from_toml(text: &str) -> Result<Self, CaError> {
        toml::from_str(text).map_err(|e| CaError::Config(e.to_string()))
    }

    /// Applies `MERCATO_CA_*` overrides from `vars` (the process environment in the binary).
    /// Variables the server does not read (the client's `MERCATO_CA_URL`, ...) are ignored.
    pub fn apply_env(
        &mut self,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(), CaError> {
        fn num<T: std::str::FromStr>(key: &str, v: &str) -> Result<T, CaError> {
            v.trim()
                .parse()
                .map_err(|_| CaError::Config(format!("{key}={v:?} is not a number")))
        }
        for (key, v) in vars {
            match key.as_str() {
                "MERCATO_CA_LISTEN" => self.server.listen = v,
                "MERCATO_CA_HOSTS" => {
                    self.server.hosts = v
                        .split(',')
                        .map(str::trim)
                        .filter(|h| !h.is_empty())
                        .map(str::to_owned)
                        .collect();
                }
                "MERCATO_CA_MAX_REQUEST_BYTES" => self.server.max_request_bytes = num(&key, &v)?,
                "MERCATO_CA_PBKDF2_ITERATIONS" => self.security.pbkdf2_iterations = num(&key, &v)?,
                "MERCATO_CA_REQUEST_MAX_AGE_SECS" => {
                    self.security.request_max_age_secs = num(&key, &v)?;
                }
                "MERCATO_CA_ECERT_VALIDITY_DAYS" => {
                    self.enrollment.ecert_validity_days = num(&key, &v)?;
                }
                "MERCATO_CA_TLS_VALIDITY_DAYS" => {
                    self.enrollment.tls_validity_days = num(&key, &v)?;
                }
                "MERCATO_CA_MAX_ENROLLMENTS" => self.enrollment.max_enrollments = num(&key, &v)?,
                "MERCATO_CA_CRL_VALIDITY_HOURS" => self.crl.validity_hours = num(&key, &v)?,
                _ => {}
            }
        }
        Ok(())
    }

    /// Checks every value; the server refuses to start on the first bad one.
    pub fn validate(&self) -> Result<(), CaError> {
        let bad = |what: String| Err(CaError::Config(what));
        self.listen_addr()?;
        if self.server.hosts.is_empty() {
            return bad("server.hosts must name at least one host".into());
        }
        for host in &self.server.hosts {
            crate::server::core::check_host(host).map_err(|e| CaError::Config(e.to_string()))?;
        }
        if !(4096..=4 * 1024 * 1024).contains(&self.server.max_request_bytes) {
            return bad(format!(
                "server.max_request_bytes = {} (4096 to 4194304 allowed)",
                self.server.max_request_bytes
            ));
        }
        for (name, v) in [
            (
                "server.request_timeout_secs",
                self.server.request_timeout_secs,
            ),
            (
                "server.tls_handshake_timeout_secs",
                self.server.tls_handshake_timeout_secs,
            ),
        ] {
            if !(1..=3600).contains(&v) {
                return bad(format!("{name} = {v} (1 to 3600 allowed)"));
            }
        }
        if !(1..=10_000).contains(&self.server.max_concurrent_requests_per_connection) {
            return bad(format!(
                "server.max_concurrent_requests_per_connection = {} (1 to 10000 allowed)",
                self.server.max_concurrent_requests_per_connection
            ));
        }
        for (name, v) in [
            ("ca.name", &self.ca.name),
            ("ca.organization", &self.ca.organization),
            ("ca.msp_id", &self.ca.msp_id),
        ] {
            if v.trim().is_empty() || v.len() > 256 || v.chars().any(char::is_control) {
                return bad(format!(
                    "{name} = {v:?} (1 to 256 characters, no control characters)"
                ));
            }
        }
        for (name, v) in [
            ("ca.validity_days", self.ca.validity_days),
            (
                "enrollment.ecert_validity_days",
                self.enrollment.ecert_validity_days,
            ),
            (
                "enrollment.tls_validity_days",
                self.enrollment.tls_validity_days,
            ),
            (
                "enrollment.intermediate_validity_days",
                self.enrollment.intermediate_validity_days,
            ),
        ] {
            if !(1..=36_500).contains(&v) {
                return bad(format!("{name} = {v} (1 to 36500 days allowed)"));
            }
        }
        if self.enrollment.max_enrollments < -1 || self.enrollment.max_enrollments == 0 {
            return bad(format!(
                "enrollment.max_enrollments = {} (-1 for unlimited, or at least 1)",
                self.enrollment.max_enrollments
            ));
        }
        if self.security.pbkdf2_iterations < MIN_PBKDF2_ITERATIONS {
            return bad(format!(
                "security.pbkdf2_iterations = {} (at least {MIN_PBKDF2_ITERATIONS})",
                self.security.pbkdf2_iterations
            ));
        }
        if !(10..=3600).contains(&self.security.request_max_age_secs) {
            return bad(format!(
                "security.request_max_age_secs = {} (10 to 3600 allowed)",
                self.security.request_max_age_secs
            ));
        }
        if !(1000..=10_000_000).contains(&self.security.replay_cache_capacity) {
            return bad(format!(
                "security.replay_cache_capacity = {} (1000 to 10000000 allowed)",
                self.security.replay_cache_capacity
            ));
        }
        if !(1..=24 * 366).contains(&self.crl.validity_hours) {
            return bad(format!(
                "crl.validity_hours = {} (1 to 8784 allowed)",
                self.crl.validity_hours
            ));
        }
        Ok(())
    }

    /// The listen address.
    pub fn listen_addr(&self) -> Result<SocketAddr, CaError> {
        self.server.listen.parse().map_err(|_| {
            CaError::Config(format!(
                "server.listen = {:?} is not an address such as 0.0.0.0:7054",
                self.server.listen
            ))
        })
    }

    /// The configuration as a commented TOML file (what `init` writes).
    pub fn to_commented_toml(&self) -> String {
        // JSON string literals are valid TOML basic strings: the same quotes and escapes.
        let s = |v: &str| serde_json::to_string(v).unwrap_or_else(|_| "\"\"".into());
        let hosts = self
            .server
            .hosts
            .iter()
            .map(|h| s(h))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            r#"# Mercato certificate authority configuration, read by `mercato-ca start --home <home>`.
# These environment variables override the values below: MERCATO_CA_LISTEN,
# MERCATO_CA_HOSTS (comma-separated), MERCATO_CA_PBKDF2_ITERATIONS, MERCATO_CA_MAX_REQUEST_BYTES,
# MERCATO_CA_REQUEST_MAX_AGE_SECS, MERCATO_CA_ECERT_VALIDITY_DAYS, MERCATO_CA_TLS_VALIDITY_DAYS,
# MERCATO_CA_MAX_ENROLLMENTS, MERCATO_CA_CRL_VALIDITY_HOURS.

[server]
# The address the gRPC API listens on (TLS only). Port 0 picks a free port.
listen = {listen}
# The DNS names and IP addresses clients dial: the server's TLS certificate carries them. The
# certificate is issued again at start-up when this list changes.
hosts = [{hosts}]
# The largest request accepted, bytes (4096 to 4194304). Larger ones are refused undecoded.
max_request_bytes = {max_request_bytes}
# How long one request may take, and a TLS handshake, seconds.
request_timeout_secs = {request_timeout_secs}
tls_handshake_timeout_secs = {tls_handshake_timeout_secs}
# How many requests one connection may have in flight.
max_concurrent_requests_per_connection = {max_concurrent}

[ca]
# Who the CA is. `init` used these for the CA certificates; changing them later changes nothing
# already issued.
name = {name}
organization = {organization}
msp_id = {msp_id}
# How long the enrollment root and the TLS root are valid, days.
validity_days = {ca_validity}

[enrollment]
# How long issued certificates are valid, days. None outlives the CA certificate.
ecert_validity_days = {ecert_validity}
tls_validity_days = {tls_validity}
intermediate_validity_days = {intermediate_validity}
# How many times a secret may enroll when the registrar does not say; -1 is unlimited. When
# positive, it is also the most a registrar may allow.
max_enrollments = {max_enrollments}

[security]
# PBKDF2-HMAC-SHA256 iterations for secret hashes (at least 1000; each enrollment costs one
# hash, so this is also the price of guessing a secret).
pbkdf2_iterations = {pbkdf2}
# Signed requests (register, reenroll, revoke, gencrl, list) must carry a timestamp within this
# many seconds of the server's clock, and are accepted once: the server remembers the requests
# of the window (at most replay_cache_capacity of them) and refuses a second copy.
request_max_age_secs = {max_age}
replay_cache_capacity = {replay_capacity}

[crl]
# How long a generated CRL is current (its next-update time), hours.
validity_hours = {crl_hours}
"#,
            listen = s(&self.server.listen),
            hosts = hosts,
            max_request_bytes = self.server.max_request_bytes,
            request_timeout_secs = self.server.request_timeout_secs,
            tls_handshake_timeout_secs = self.server.tls_handshake_timeout_secs,
            max_concurrent = self.server.max_concurrent_requests_per_connection,
            name = s(&self.ca.name),
            organization = s(&self.ca.organization),
            msp_id = s(&self.ca.msp_id),
            ca_validity = self.ca.validity_days,
            ecert_validity = self.enrollment.ecert_validity_days,
            tls_validity = self.enrollment.tls_validity_days,
            intermediate_validity = self.enrollment.intermediate_validity_days,
            max_enrollments = self.enrollment.max_enrollments,
            pbkdf2 = self.security.pbkdf2_iterations,
            max_age = self.security.request_max_age_secs,
            replay_capacity = self.security.replay_cache_capacity,
            crl_hours = self.crl.validity_hours,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_valid_and_round_trips_through_the_commented_file() {
        let config = Config::default();
        config.validate().unwrap();
        let text = config.to_commented_toml();
        assert_eq!(Config::from_toml(&text).unwrap(), config);
    }

    #[test]
    fn odd_strings_survive_the_commented_file() {
        let mut config = Config::default();
        config.ca.organization = "Brand \"Quoted\" \\ Ünïcode".into();
        config.server.hosts = vec!["ca.example.com".into(), "::1".into()];
        let back = Config::from_toml(&config.to_commented_toml()).unwrap();
        assert_eq!(back, config);
    }

    #[test]
    fn environment_overrides_apply_and_bad_numbers_are_refused() {
        let mut config = Config::default();
        config
            .apply_env([
                ("MERCATO_CA_LISTEN".to_string(), "127.0.0.1:0".to_string()),
                ("MERCATO_CA_HOSTS".into(), "a.example, 10.0.0.1".into()),
                ("MERCATO_CA_PBKDF2_ITERATIONS".into(), "2000".into()),
                ("MERCATO_CA_URL".into(), "ignored by the server".into()),
            ])
            .unwrap();
        assert_eq!(config.server.listen, "127.0.0.1:0");
        assert_eq!(config.server.hosts, ["a.example", "10.0.0.1"]);
        assert_eq!(config.security.pbkdf2_iterations, 2000);
        assert!(
            config
                .apply_env([("MERCATO_CA_PBKDF2_ITERATIONS".into(), "lots".into())])
                .is_err()
        );
    }

    #[test]
    fn bad_values_are_refused() {
        type Change = Box<dyn Fn(&mut Config)>;
        let cases: Vec<(&str, Change)> = vec![
            ("listen", Box::new(|c| c.server.listen = "nowhere".into())),
            ("hosts", Box::new(|c| c.server.hosts.clear())),
            (
                "host",
                Box::new(|c| c.server.hosts = vec!["bad host".into()]),
            ),
            (
                "max_request_bytes",
                Box::new(|c| c.server.max_request_bytes = 10),
            ),
            ("pbkdf2", Box::new(|c| c.security.pbkdf2_iterations = 10)),
            (
                "max_enrollments",
                Box::new(|c| c.enrollment.max_enrollments = 0),
            ),
            ("msp_id", Box::new(|c| c.ca.msp_id = String::new())),
            (
                "validity",
                Box::new(|c| c.enrollment.ecert_validity_days = 0),
            ),
            ("crl", Box::new(|c| c.crl.validity_hours = 0)),
        ];
        for (name, change) in cases {
            let mut config = Config::default();
            change(&mut config);
            assert!(config.validate().is_err(), "{name} should be refused");
        }
        assert!(Config::from_toml("[server]\nlisten = 1").is_err());
        assert!(Config::from_toml("[nonsense]").is_err());
    }
}
