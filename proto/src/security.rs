//! Optional security of every PermaKey-RL server and client: a shared bearer token and TLS
//! (rustls, through tonic's `tls-ring` feature). Both are off by default.
//!
//! Decisions:
//! - **Every `permakey.v1` RPC needs the token** when one is configured, reads included: the
//!   writes (`ReplayService.InsertSequences`, `ReplayService.UpdatePriorities`,
//!   `LearnerService.ReportProgress`) change state, `ReplayService.Sample` advances the rate
//!   limiter and the sample counters, `KeypointService.Infer` spends the model's compute, and
//!   `LearnerService.GetParameters`/`StreamParameters` and `ReplayService.Stats` hand out the
//!   model and the run's state. One rule for all is simpler to audit than a list.
//! - **`grpc.health.v1` and server reflection stay open** (Kubernetes' gRPC probes and Docker
//!   health checks cannot send a token; neither reveals or changes anything but the service
//!   names), and so does the Prometheus `/metrics` endpoint, which is a separate, read-only
//!   HTTP listener ([`pkrl-telemetry`]).
//! - The token travels as `authorization: Bearer <token>` metadata; the server compares it in
//!   constant time ([`Token::matches`]) and refuses a missing or wrong one with
//!   `UNAUTHENTICATED` before the handler runs (a tonic interceptor on each `permakey.v1`
//!   service: [`ServerSecurity::require_token`]). Clients never retry `UNAUTHENTICATED`.
//! - Without TLS the token crosses the network in clear: turn TLS on wherever the network is
//!   not trusted. Servers serve TLS only when given a certificate and key
//!   ([`ServerSecurity::with_tls`]); clients use TLS for `https://` endpoints only and trust
//!   the CA given ([`ClientSecurity::with_tls`]), and refuse `http://` endpoints once a CA is
//!   set, so a TLS set-up never falls back to plaintext silently.
//! - Bad material (unreadable file, empty token, bad PEM) is found when the security is built,
//!   at process start, as one line ([`SecurityError`]), never on the first request.
//!
//! ```
//! use pkrl_proto::security::{ServerSecurity, Token};
//!
//! let security = ServerSecurity::default().with_token(Some(Token::new("s3cret-token", "example").unwrap()));
//! let mut check = security.require_token();
//! use tonic::service::Interceptor;
//! let refused = check.call(tonic::Request::new(())).unwrap_err();
//! assert_eq!(refused.code(), tonic::Code::Unauthenticated);
//! let mut request = tonic::Request::new(());
//! request.metadata_mut().insert("authorization", "Bearer s3cret-token".parse().unwrap());
//! assert!(check.call(request).is_ok());
//! ```

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::Arc,
};

use tonic::{
    Request, Status,
    metadata::{Ascii, MetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Certificate, Channel, ClientTlsConfig, Identity, ServerTlsConfig},
};

/// The environment variable clients and servers read the token from when the config names no
/// token file.
pub const TOKEN_ENV: &str = "PERMAKEY_TOKEN";

/// The token of the Kubernetes Secret as shipped (`deploy/k8s/token-secret.yaml`): servers
/// warn when they run with it, since everybody knows it.
pub const PLACEHOLDER_TOKEN: &str = "REPLACE-ME-with-a-long-random-token";

/// The metadata key the token travels in.
const AUTHORIZATION: &str = "authorization";
const BEARER: &[u8] = b"Bearer ";

/// Why security material could not be loaded; every message is one line and never contains the
/// token.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error("cannot read the token file {path}: {source}")]
    TokenFile { path: PathBuf, source: std::io::Error },
    #[error("the token from {origin} is empty")]
    EmptyToken { origin: String },
    #[error("the token from {origin} may hold only visible ASCII characters (letters, digits, punctuation), no spaces or line breaks inside")]
    TokenCharacters { origin: String },
    #[error("cannot read the TLS {what} {path}: {source}")]
    TlsFile { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("bad TLS {what}: {message}")]
    Tls { what: &'static str, message: String },
    #[error("endpoint '{endpoint}' is https:// but no CA to trust is configured (security.tls_ca)")]
    HttpsWithoutCa { endpoint: String },
    #[error("endpoint '{endpoint}' is plaintext http:// but TLS is configured (security.tls_ca): write it https://")]
    PlaintextWithCa { endpoint: String },
}

/// A shared secret token. `Debug` never shows it.
#[derive(Clone)]
pub struct Token(Arc<str>);

impl Token {
    /// A token from `text` with surrounding whitespace trimmed (a file's trailing newline);
    /// `origin` names where it came from in errors (a file, an environment variable).
    pub fn new(text: &str, origin: &str) -> Result<Self, SecurityError> {
        let token = text.trim();
        if token.is_empty() {
            return Err(SecurityError::EmptyToken { origin: origin.to_owned() });
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(SecurityError::TokenCharacters { origin: origin.to_owned() });
        }
        Ok(Self(token.into()))
    }

    /// The token in file `path` (a Docker or Kubernetes secret).
    pub fn from_file(path: &Path) -> Result<Self, SecurityError> {
        let text = std::fs::read_to_string(path).map_err(|source| SecurityError::TokenFile { path: path.to_owned(), source })?;
        Self::new(&text, &format!("file {}", path.display()))
    }

    /// Whether `presented` is this token, in time that depends only on the lengths (no early
    /// exit at the first differing byte, so timing does not reveal how much of a guess was
    /// right).
    pub fn matches(&self, presented: &[u8]) -> bool {
        let expected = self.0.as_bytes();
        if presented.len() != expected.len() {
            return false;
        }
        let difference = expected.iter().zip(presented).fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(difference) == 0
    }

    fn bearer(&self) -> MetadataValue<Ascii> {
        format!("Bearer {}", self.0).parse().expect("visible ASCII is a valid header value")
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// The bytes of PEM file `path`, which must hold a `-----BEGIN <label>` block (tonic skips what
/// it cannot parse in a CA file, so an empty or wrong file would only show at the handshake).
fn read_pem(what: &'static str, path: &Path, label: &str) -> Result<Vec<u8>, SecurityError> {
    let bytes = std::fs::read(path).map_err(|source| SecurityError::TlsFile { what, path: path.to_owned(), source })?;
    let marker = format!("-----BEGIN {label}");
    if !String::from_utf8_lossy(&bytes).contains(&marker) {
        return Err(SecurityError::Tls { what, message: format!("{} has no {marker}----- block", path.display()) });
    }
    Ok(bytes)
}

/// One line from a tonic error and its sources.
fn error_line(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        line.push_str(": ");
        line.push_str(&cause.to_string());
        source = cause.source();
    }
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// What a server enforces: the token on every `permakey.v1` RPC and TLS, each when configured.
#[derive(Debug, Clone, Default)]
pub struct ServerSecurity {
    token: Option<Token>,
    tls: Option<ServerTlsConfig>,
}

impl ServerSecurity {
    /// Requires `token` (none: no authentication).
    pub fn with_token(mut self, token: Option<Token>) -> Self {
        self.token = token;
        self
    }

    /// Serves TLS with the PEM certificate chain `cert` and private key `key`; checks both now.
    pub fn with_tls(mut self, cert: &Path, key: &Path) -> Result<Self, SecurityError> {
        let identity = Identity::from_pem(read_pem("certificate", cert, "CERTIFICATE")?, read_pem("key", key, "")?);
        let tls = ServerTlsConfig::new().identity(identity);
        // tonic parses the PEM when the acceptor is built: do it once here, so a bad file stops
        // the process at start rather than when it begins serving.
        tonic::transport::Server::builder()
            .tls_config(tls.clone())
            .map_err(|e| SecurityError::Tls { what: "certificate or key", message: format!("{} / {}: {}", cert.display(), key.display(), error_line(&e)) })?;
        self.tls = Some(tls);
        Ok(self)
    }

    /// Whether a token is required.
    pub fn requires_token(&self) -> bool {
        self.token.is_some()
    }

    /// Whether the server speaks TLS.
    pub fn serves_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// [`crate::serving::server_builder`] with TLS when configured.
    pub fn server_builder(&self) -> Result<crate::serving::ServerBuilder, SecurityError> {
        let builder = crate::serving::server_builder();
        match &self.tls {
            None => Ok(builder),
            Some(tls) => builder.tls_config(tls.clone()).map_err(|e| SecurityError::Tls { what: "server configuration", message: error_line(&e) }),
        }
    }

    /// The interceptor that guards a `permakey.v1` service: wrap each generated server in
    /// [`ServerSecurity::guard`] (health and reflection are added unwrapped).
    pub fn require_token(&self) -> RequireToken {
        RequireToken { token: self.token.clone() }
    }

    /// `service` behind [`ServerSecurity::require_token`].
    pub fn guard<S>(&self, service: S) -> InterceptedService<S, RequireToken> {
        InterceptedService::new(service, self.require_token())
    }

    /// Logs what this server enforces (once, at start).
    pub fn log(&self, service: &str) {
        tracing::info!(service, token_required = self.requires_token(), tls = self.serves_tls(), "security");
        if self.token.as_ref().is_some_and(|token| token.matches(PLACEHOLDER_TOKEN.as_bytes())) {
            tracing::warn!(service, "the token is the published placeholder of deploy/k8s/token-secret.yaml: replace it with a random one");
        }
        if self.requires_token() && !self.serves_tls() {
            tracing::warn!(service, "a token without TLS crosses the network in clear: set security.tls_cert and security.tls_key where the network is not trusted");
        }
    }
}

/// A server interceptor: with a token configured, lets a request through only when its
/// `authorization` metadata is `Bearer <token>`; otherwise `UNAUTHENTICATED`.
#[derive(Debug, Clone)]
pub struct RequireToken {
    token: Option<Token>,
}

impl Interceptor for RequireToken {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(token) = &self.token else { return Ok(request) };
        let Some(value) = request.metadata().get(AUTHORIZATION) else {
            tracing::warn!(remote = ?request.remote_addr(), "request without a token refused");
            return Err(Status::unauthenticated(
                "this server requires a token: send `authorization: Bearer <token>` metadata (the client's security.token_file or PERMAKEY_TOKEN)",
            ));
        };
        let presented = value.as_bytes().strip_prefix(BEARER).unwrap_or(b"");
        if !token.matches(presented) {
            tracing::warn!(remote = ?request.remote_addr(), "request with a wrong token refused");
            return Err(Status::unauthenticated("invalid token: the `authorization: Bearer` token does not match the server's"));
        }
        Ok(request)
    }
}

/// What a client sends: the token on every call and TLS to `https://` endpoints, each when
/// configured.
#[derive(Debug, Clone, Default)]
pub struct ClientSecurity {
    token: Option<Token>,
    tls: Option<ClientTlsConfig>,
}

impl ClientSecurity {
    /// Sends `token` (none: no `authorization` metadata).
    pub fn with_token(mut self, token: Option<Token>) -> Self {
        self.token = token;
        self
    }

    /// Trusts the PEM CA certificate(s) in `ca` for `https://` endpoints, and expects the
    /// servers' certificates to name `domain` (none: the endpoint's host); checks the CA now.
    pub fn with_tls(mut self, ca: &Path, domain: Option<&str>) -> Result<Self, SecurityError> {
        let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read_pem("CA certificate", ca, "CERTIFICATE")?));
        if let Some(domain) = domain {
            tls = tls.domain_name(domain);
        }
        tonic::transport::Endpoint::from_static("https://permakey.invalid")
            .tls_config(tls.clone())
            .map_err(|e| SecurityError::Tls { what: "CA certificate", message: format!("{}: {}", ca.display(), error_line(&e)) })?;
        self.tls = Some(tls);
        Ok(self)
    }

    /// Whether a token is sent.
    pub fn sends_token(&self) -> bool {
        self.token.is_some()
    }

    /// Whether TLS is configured.
    pub fn uses_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// `endpoint` with TLS applied: `https://` needs a CA, and a CA refuses `http://`.
    pub fn endpoint(&self, endpoint: tonic::transport::Endpoint) -> Result<tonic::transport::Endpoint, SecurityError> {
        let https = endpoint.uri().scheme_str() == Some("https");
        match (&self.tls, https) {
            (None, false) => Ok(endpoint),
            (Some(tls), true) => {
                endpoint.tls_config(tls.clone()).map_err(|e| SecurityError::Tls { what: "client configuration", message: error_line(&e) })
            }
            (None, true) => Err(SecurityError::HttpsWithoutCa { endpoint: endpoint.uri().to_string() }),
            (Some(_), false) => Err(SecurityError::PlaintextWithCa { endpoint: endpoint.uri().to_string() }),
        }
    }

    /// The interceptor that adds the token to each call.
    pub fn attach_token(&self) -> AttachToken {
        AttachToken { bearer: self.token.as_ref().map(Token::bearer) }
    }

    /// `channel` with [`ClientSecurity::attach_token`].
    pub fn wrap(&self, channel: Channel) -> SecuredChannel {
        InterceptedService::new(channel, self.attach_token())
    }
}

/// A client interceptor adding `authorization: Bearer <token>` when a token is configured.
#[derive(Clone)]
pub struct AttachToken {
    bearer: Option<MetadataValue<Ascii>>,
}

impl fmt::Debug for AttachToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AttachToken").field("token", &self.bearer.as_ref().map(|_| "<redacted>")).finish()
    }
}

impl Interceptor for AttachToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(bearer) = &self.bearer {
            request.metadata_mut().insert(AUTHORIZATION, bearer.clone());
        }
        Ok(request)
    }
}

/// The channel every PermaKey-RL client talks through: a tonic channel (TLS or not) whose calls
/// carry the token when one is configured.
pub type SecuredChannel = InterceptedService<Channel, AttachToken>;

/// Whether a status means the server refused the caller's credentials (never worth a retry).
pub fn refused(status: &Status) -> bool {
    matches!(status.code(), tonic::Code::Unauthenticated | tonic::Code::PermissionDenied)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_authorization(value: &str) -> Request<()> {
        let mut request = Request::new(());
        request.metadata_mut().insert(AUTHORIZATION, value.parse().unwrap());
        request
    }

    #[test]
    fn tokens_are_trimmed_and_checked() {
        assert!(Token::new(" abc-DEF_123.~\n", "test").unwrap().matches(b"abc-DEF_123.~"));
        let empty = Token::new(" \n", "file /run/secrets/token").unwrap_err().to_string();
        assert_eq!(empty, "the token from file /run/secrets/token is empty");
        let spaced = Token::new("two words", "PERMAKEY_TOKEN").unwrap_err().to_string();
        assert!(spaced.starts_with("the token from PERMAKEY_TOKEN may hold only visible ASCII"), "{spaced}");
        assert!(Token::new("naïve", "x").is_err(), "non-ASCII is refused");
        assert_eq!(format!("{:?}", Token::new("secret", "x").unwrap()), "Token(<redacted>)");
    }

    #[test]
    fn matching_is_exact() {
        let token = Token::new("secret", "x").unwrap();
        assert!(token.matches(b"secret"));
        for wrong in [&b""[..], b"secreT", b"secret ", b"secre", b"xsecret", b"Bearer secret"] {
            assert!(!token.matches(wrong), "{:?}", String::from_utf8_lossy(wrong));
        }
    }

    #[test]
    fn the_interceptor_refuses_missing_and_wrong_tokens() {
        let mut open = ServerSecurity::default().require_token();
        assert!(open.call(Request::new(())).is_ok(), "no token configured: everything passes");
        let mut guard = ServerSecurity::default().with_token(Some(Token::new("secret", "x").unwrap())).require_token();
        let missing = guard.call(Request::new(())).unwrap_err();
        assert_eq!(missing.code(), tonic::Code::Unauthenticated);
        assert!(missing.message().contains("requires a token"), "{}", missing.message());
        for wrong in ["Bearer wrong", "Bearer secretx", "secret", "Basic secret", "Bearer  secret", "bearer secret"] {
            let status = guard.call(with_authorization(wrong)).unwrap_err();
            assert_eq!(status.code(), tonic::Code::Unauthenticated, "{wrong}");
            assert!(status.message().starts_with("invalid token"), "{}", status.message());
        }
        assert!(guard.call(with_authorization("Bearer secret")).is_ok());
    }

    #[test]
    fn the_client_interceptor_sends_the_token_only_when_configured() {
        let request = ClientSecurity::default().attach_token().call(Request::new(())).unwrap();
        assert!(request.metadata().get(AUTHORIZATION).is_none());
        let client = ClientSecurity::default().with_token(Some(Token::new("secret", "x").unwrap()));
        let request = client.attach_token().call(Request::new(())).unwrap();
        assert_eq!(request.metadata().get(AUTHORIZATION).unwrap(), "Bearer secret");
        assert!(!format!("{client:?}").contains("secret"), "{client:?}");
        let mut guard = ServerSecurity::default().with_token(Some(Token::new("secret", "x").unwrap())).require_token();
        assert!(guard.call(request).is_ok(), "what the client sends is what the server expects");
    }

    #[test]
    fn missing_or_bad_files_give_one_line() {
        let error = Token::from_file(Path::new("/no/such/token")).unwrap_err().to_string();
        assert!(error.starts_with("cannot read the token file /no/such/token: "), "{error}");
        let error = ServerSecurity::default().with_tls(Path::new("/no/cert.pem"), Path::new("/no/key.pem")).unwrap_err().to_string();
        assert!(error.starts_with("cannot read the TLS certificate /no/cert.pem: "), "{error}");
        let error = ClientSecurity::default().with_tls(Path::new("/no/ca.pem"), None).unwrap_err().to_string();
        assert!(error.starts_with("cannot read the TLS CA certificate /no/ca.pem: "), "{error}");
        let dir = std::env::temp_dir().join(format!("pkrl-security-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "not a pem file\n").unwrap();
        let error = ServerSecurity::default().with_tls(&junk, &junk).unwrap_err().to_string();
        assert_eq!(error, format!("bad TLS certificate: {} has no -----BEGIN CERTIFICATE----- block", junk.display()));
        let error = ClientSecurity::default().with_tls(&junk, None).unwrap_err().to_string();
        assert!(error.starts_with("bad TLS CA certificate: "), "{error}");
        let fake = dir.join("fake.pem");
        std::fs::write(&fake, "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n").unwrap();
        let error = ServerSecurity::default().with_tls(&fake, &fake).unwrap_err().to_string();
        assert!(error.starts_with("bad TLS certificate or key: "), "{error}");
        assert!(!error.contains('\n'), "{error}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn endpoints_and_tls_must_agree() {
        let plain = tonic::transport::Endpoint::from_static("http://127.0.0.1:1");
        let secure = tonic::transport::Endpoint::from_static("https://127.0.0.1:1");
        assert!(ClientSecurity::default().endpoint(plain.clone()).is_ok());
        let error = ClientSecurity::default().endpoint(secure).unwrap_err().to_string();
        assert!(error.contains("is https:// but no CA"), "{error}");
        let with_ca = ClientSecurity { token: None, tls: Some(ClientTlsConfig::new()) };
        let error = with_ca.endpoint(plain).unwrap_err().to_string();
        assert!(error.contains("is plaintext http:// but TLS is configured"), "{error}");
    }
}
