//! Authentication: key-pair JWTs (RS256) made and cached by the client, or static bearer tokens.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey};
use rsa::RsaPrivateKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use super::config::{AuthConfig, KeySource, SecretString, TokenSource, TokenType, PASSPHRASE_VAR};
use super::error::SnowflakeError;

/// Lifetime of the JWTs the client makes (Snowflake accepts at most one hour).
pub(crate) const JWT_LIFETIME: Duration = Duration::from_secs(59 * 60);
/// A cached JWT is replaced when it has less than this left.
const RENEW_BEFORE: Duration = Duration::from_secs(5 * 60);

/// The account identifier as it goes into JWT claims (Snowflake's key-pair documentation and its
/// connectors): upper-cased; an account locator with a region or cloud suffix
/// (`xy12345.us-east-1`, `xy12345.us-east-2.aws`) keeps only the locator (`XY12345`); the
/// organisation-account form (`myorg-myaccount`) is kept whole; for a global URL form
/// (`myacct-abc123.global`) the part before the first `-` is used.
pub(crate) fn normalize_account(account: &str) -> String {
    let upper = account.trim().to_ascii_uppercase();
    let cut = if upper.contains(".GLOBAL") {
        upper.split('-').next()
    } else {
        upper.split('.').next()
    };
    cut.unwrap_or_default().to_string()
}

/// The claims of a Snowflake key-pair JWT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwtClaims {
    /// `ACCOUNT.USER.SHA256:<fingerprint>`
    pub iss: String,
    /// `ACCOUNT.USER`
    pub sub: String,
    /// Seconds since the epoch.
    pub iat: i64,
    pub exp: i64,
}

/// The passphrase of an encrypted key and the field or variable it came from: errors name the
/// field to fix, never the value.
pub(crate) struct Passphrase {
    value: SecretString,
    /// `SNOWFLAKE_PRIVATE_KEY_PASSPHRASE`, or `field private_key_passphrase of secret <arn>`.
    origin: String,
}

/// A key as read: the PEM, its passphrase if one is given, and where a missing one belongs.
struct KeyText {
    pem: SecretString,
    passphrase: Option<Passphrase>,
    /// What to do when the key is encrypted and `passphrase` is None.
    missing_passphrase: String,
}

impl KeyText {
    /// A key given as text or in a file: its passphrase can only come from the environment.
    fn unencrypted(pem: SecretString) -> Self {
        Self {
            pem,
            passphrase: None,
            missing_passphrase: format!("set {PASSPHRASE_VAR}"),
        }
    }
}

/// What an operator can run to turn a key this client cannot decrypt into one it can.
const REENCRYPT: &str = "re-encrypt it with PBES2, e.g. `openssl pkcs8 -topk8 -v2 aes-256-cbc`";

fn parse_private_key(key: &KeyText) -> Result<RsaPrivateKey, SnowflakeError> {
    let pem = key.pem.expose().trim();
    if pem.contains("BEGIN ENCRYPTED PRIVATE KEY") {
        return decrypt_private_key(pem, key);
    }
    if pem.contains("BEGIN RSA PRIVATE KEY") {
        return RsaPrivateKey::from_pkcs1_pem(pem).map_err(|_| {
            SnowflakeError::Key("the PKCS#1 RSA private key cannot be parsed".into())
        });
    }
    if !pem.contains("BEGIN PRIVATE KEY") {
        return Err(SnowflakeError::Key(
            "the private key is not a PKCS#8 PEM (BEGIN PRIVATE KEY or BEGIN ENCRYPTED PRIVATE KEY)"
                .into(),
        ));
    }
    RsaPrivateKey::from_pkcs8_pem(pem).map_err(|_| {
        SnowflakeError::Key("the PKCS#8 private key cannot be parsed as an RSA key".into())
    })
}

/// An `ENCRYPTED PRIVATE KEY` (PKCS#8 `EncryptedPrivateKeyInfo`) decrypted with its passphrase:
/// PBES2 (RFC 8018) with PBKDF2-HMAC-SHA2 or scrypt and AES-CBC or DES-EDE3-CBC, what
/// `openssl pkcs8 -topk8 -v2 ...` writes. Legacy PBES1/PKCS#12 schemes are refused by name.
fn decrypt_private_key(pem: &str, key: &KeyText) -> Result<RsaPrivateKey, SnowflakeError> {
    let Some(passphrase) = &key.passphrase else {
        return Err(SnowflakeError::Key(format!(
            "the private key is encrypted (ENCRYPTED PRIVATE KEY) and no passphrase is given: {}",
            key.missing_passphrase
        )));
    };
    let unsupported = || {
        SnowflakeError::Key(format!(
            "the encrypted private key uses an encryption scheme this client does not support \
             (only PBES2 with PBKDF2-HMAC-SHA2 or scrypt, and AES-CBC or DES-EDE3-CBC): {REENCRYPT}"
        ))
    };
    let (_, der) = pkcs8::SecretDocument::from_pem(pem).map_err(|_| {
        SnowflakeError::Key("the encrypted private key is not a valid PEM document".into())
    })?;
    let info =
        pkcs8::EncryptedPrivateKeyInfo::try_from(der.as_bytes()).map_err(|_| unsupported())?;
    if info.encryption_algorithm.pbes2().is_none() {
        return Err(unsupported());
    }
    let decrypted = info
        .decrypt(passphrase.value.expose().as_bytes())
        .map_err(|e| match e {
            pkcs8::Error::EncryptedPrivateKey(
                pkcs8::pkcs5::Error::UnsupportedAlgorithm { .. }
                | pkcs8::pkcs5::Error::AlgorithmParametersInvalid { .. }
                | pkcs8::pkcs5::Error::NoPbes1CryptSupport,
            ) => unsupported(),
            // A wrong passphrase fails the CBC padding check, or (1 time in 256) yields bytes that
            // are not DER: either way the passphrase does not open this key.
            _ => SnowflakeError::Key(format!(
                "the encrypted private key cannot be decrypted with the passphrase from {}: \
                 wrong passphrase, or a damaged key",
                passphrase.origin
            )),
        })?;
    RsaPrivateKey::from_pkcs8_der(decrypted.as_bytes()).map_err(|_| {
        SnowflakeError::Key("the decrypted private key is not a PKCS#8 RSA key".into())
    })
}

fn fingerprint_of(key: &RsaPrivateKey) -> Result<String, SnowflakeError> {
    let der = key
        .to_public_key()
        .to_public_key_der()
        .map_err(|_| SnowflakeError::Key("cannot encode the public key".into()))?;
    let digest = Sha256::digest(der.as_bytes());
    Ok(format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    ))
}

#[cfg(test)]
/// `SHA256:<base64 of SHA-256 of the public key's DER (SubjectPublicKeyInfo)>` for a private key
/// PEM: what `RSA_PUBLIC_KEY_FP` shows in `DESC USER` and what `openssl` computes.
pub fn fingerprint_of_pem(pem: &str) -> Result<String, SnowflakeError> {
    fingerprint_of(&parse_private_key(&KeyText::unencrypted(
        SecretString::new(pem),
    ))?)
}

/// Makes key-pair JWTs for one account and user.
pub struct JwtSigner {
    qualified_user: String,
    fingerprint: String,
    key: EncodingKey,
}

impl fmt::Debug for JwtSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtSigner")
            .field("qualified_user", &self.qualified_user)
            .field("fingerprint", &self.fingerprint)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl JwtSigner {
    /// From an unencrypted PKCS#8 (or PKCS#1) PEM RSA private key.
    pub fn from_pem(pem: &str, account: &str, user: &str) -> Result<Self, SnowflakeError> {
        Self::from_key(&KeyText::unencrypted(SecretString::new(pem)), account, user)
    }

    /// From a key as read, decrypted with its passphrase when it is encrypted.
    fn from_key(key: &KeyText, account: &str, user: &str) -> Result<Self, SnowflakeError> {
        let key = parse_private_key(key)?;
        let fingerprint = fingerprint_of(&key)?;
        let der = key
            .to_pkcs1_der()
            .map_err(|_| SnowflakeError::Key("cannot encode the private key".into()))?;
        let user = user.trim().to_ascii_uppercase();
        if user.is_empty() {
            return Err(SnowflakeError::Key("the user name is empty".into()));
        }
        Ok(Self {
            qualified_user: format!("{}.{}", normalize_account(account), user),
            fingerprint,
            key: EncodingKey::from_rsa_der(der.as_bytes()),
        })
    }

    /// `SHA256:...` of the public key.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// `ACCOUNT.USER`.
    pub fn subject(&self) -> &str {
        &self.qualified_user
    }

    /// The claims of a token issued at `iat` (seconds since the epoch), valid for [`JWT_LIFETIME`].
    pub fn claims_at(&self, iat: i64) -> JwtClaims {
        JwtClaims {
            iss: format!("{}.{}", self.qualified_user, self.fingerprint),
            sub: self.qualified_user.clone(),
            iat,
            exp: iat + JWT_LIFETIME.as_secs() as i64,
        }
    }

    /// Signs any claims with RS256 (tests use it for expired or mismatched tokens).
    pub fn sign(&self, claims: &JwtClaims) -> Result<String, SnowflakeError> {
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), claims, &self.key)
            .map_err(|e| SnowflakeError::Key(format!("cannot sign the JWT: {:?}", e.kind())))
    }

    /// A fresh token issued now.
    pub(crate) fn token_now(&self) -> Result<(String, i64), SnowflakeError> {
        let claims = self.claims_at(unix_now());
        Ok((self.sign(&claims)?, claims.exp))
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A resolved credential: key material read, ready to hand out bearer tokens.
pub(crate) struct Authenticator {
    kind: TokenType,
    source: Source,
}

enum Source {
    Static(SecretString),
    Jwt(Box<Jwt>),
}

/// Key-pair authentication: where the key comes from, and the signer and token made from it.
struct Jwt {
    key: KeyLoader,
    /// One lock for both, so a renewal after a 401 and the requests waiting for a token see the
    /// same key.
    state: Mutex<JwtState>,
}

struct JwtState {
    signer: JwtSigner,
    cached: Option<(SecretString, i64)>,
}

/// Reads the private key, at start-up and again after a 401: a key rotated in Secrets Manager
/// (or replaced in its file) then takes effect without waiting for a cold start.
struct KeyLoader {
    source: KeySource,
    account: String,
    user: String,
    /// Built once, when the key is in Secrets Manager.
    secrets: Option<aws_sdk_secretsmanager::Client>,
}

impl KeyLoader {
    async fn new(
        source: &KeySource,
        account: &str,
        user: &str,
        aws: Option<&aws_config::SdkConfig>,
    ) -> Self {
        let secrets = match source {
            KeySource::SecretArn(_) => Some(match aws {
                Some(sdk) => aws_sdk_secretsmanager::Client::new(sdk),
                None => aws_sdk_secretsmanager::Client::new(&crate::aws::load_config().await),
            }),
            KeySource::File(_) | KeySource::Pem(_) | KeySource::WithPassphrase { .. } => None,
        };
        Self {
            source: source.clone(),
            account: account.to_string(),
            user: user.to_string(),
            secrets,
        }
    }

    /// True when reading again may give another key (a PEM in the configuration cannot change).
    fn rereadable(&self) -> bool {
        match &self.source {
            KeySource::Pem(_) => false,
            KeySource::WithPassphrase { key, .. } => !matches!(**key, KeySource::Pem(_)),
            KeySource::File(_) | KeySource::SecretArn(_) => true,
        }
    }

    async fn load(&self) -> Result<JwtSigner, SnowflakeError> {
        let key = match &self.source {
            KeySource::WithPassphrase { key, passphrase } => KeyText {
                passphrase: Some(Passphrase {
                    value: passphrase.clone(),
                    origin: PASSPHRASE_VAR.to_string(),
                }),
                ..self.read(key).await?
            },
            plain => self.read(plain).await?,
        };
        JwtSigner::from_key(&key, &self.account, &self.user)
    }

    /// The key text of a source that is not [`KeySource::WithPassphrase`].
    async fn read(&self, source: &KeySource) -> Result<KeyText, SnowflakeError> {
        match source {
            KeySource::Pem(p) => Ok(KeyText::unencrypted(p.clone())),
            KeySource::File(path) => {
                let pem = std::fs::read_to_string(path).map_err(|e| {
                    SnowflakeError::Key(format!(
                        "cannot read the private key file {}: {}",
                        path.display(),
                        e.kind()
                    ))
                })?;
                Ok(KeyText::unencrypted(SecretString::new(pem)))
            }
            KeySource::SecretArn(arn) => Ok(key_text_from_secret(
                read_secret(self.secrets.as_ref(), arn).await?,
                arn,
            )),
            KeySource::WithPassphrase { .. } => Err(SnowflakeError::Key(
                "a key source with a passphrase cannot hold another one".into(),
            )),
        }
    }
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Reads the key or token (from Secrets Manager, a file or the configuration).
    pub(crate) async fn resolve(
        auth: &AuthConfig,
        account: &str,
        aws: Option<&aws_config::SdkConfig>,
    ) -> Result<Self, SnowflakeError> {
        match auth {
            AuthConfig::KeyPair { user, key } => {
                let key = KeyLoader::new(key, account, user, aws).await;
                let signer = key.load().await?;
                Ok(Self {
                    kind: TokenType::KeypairJwt,
                    source: Source::Jwt(Box::new(Jwt {
                        key,
                        state: Mutex::new(JwtState {
                            signer,
                            cached: None,
                        }),
                    })),
                })
            }
            AuthConfig::Token { kind, source } => {
                let token = match source {
                    TokenSource::Value(t) => t.clone(),
                    TokenSource::SecretArn(arn) => {
                        let loaded;
                        let client = match aws {
                            Some(sdk) => aws_sdk_secretsmanager::Client::new(sdk),
                            None => {
                                loaded = crate::aws::load_config().await;
                                aws_sdk_secretsmanager::Client::new(&loaded)
                            }
                        };
                        SecretString::new(secret_field(
                            read_secret(Some(&client), arn).await?,
                            &["token", "access_token"],
                        ))
                    }
                };
                if token.expose().trim().is_empty() {
                    return Err(SnowflakeError::Key("the token is empty".into()));
                }
                Ok(Self {
                    kind: *kind,
                    source: Source::Static(token),
                })
            }
        }
    }

    pub(crate) fn kind(&self) -> TokenType {
        self.kind
    }

    /// The bearer token to send: the cached JWT, or a new one when it expires within 5 minutes.
    pub(crate) async fn token(&self) -> Result<SecretString, SnowflakeError> {
        match &self.source {
            Source::Static(t) => Ok(t.clone()),
            Source::Jwt(jwt) => {
                let mut state = jwt.state.lock().await;
                if let Some((tok, exp)) = state.cached.as_ref() {
                    if unix_now() + (RENEW_BEFORE.as_secs() as i64) < *exp {
                        return Ok(tok.clone());
                    }
                }
                let (tok, exp) = state.signer.token_now()?;
                let tok = SecretString::new(tok);
                state.cached = Some((tok.clone(), exp));
                Ok(tok)
            }
        }
    }

    /// After a 401 for `rejected`: forgets the token, and reads the key again when it comes
    /// from Secrets Manager or a file, so the next [`token`](Self::token) is signed with the
    /// current key (a rotation takes effect without a cold start). Done once per rejected token:
    /// concurrent requests rejected with the same token find it already replaced. Static tokens
    /// cannot be renewed.
    pub(crate) async fn renew_after_401(
        &self,
        rejected: &SecretString,
    ) -> Result<(), SnowflakeError> {
        let Source::Jwt(jwt) = &self.source else {
            return Ok(());
        };
        let mut state = jwt.state.lock().await;
        if !state.cached.as_ref().is_some_and(|(t, _)| t == rejected) {
            return Ok(());
        }
        state.cached = None;
        if jwt.key.rereadable() {
            // Holding the lock: requests waiting for a token get one signed with the key read here.
            let signer = jwt.key.load().await?;
            if signer.fingerprint() != state.signer.fingerprint() {
                tracing::info!(
                    fingerprint = signer.fingerprint(),
                    previous = state.signer.fingerprint(),
                    "snowflake: private key re-read after a 401; a rotated key is now in use"
                );
            }
            state.signer = signer;
        }
        Ok(())
    }
}

/// The secret's fields when it is a JSON object.
fn secret_json(secret: &SecretString) -> Option<serde_json::Map<String, serde_json::Value>> {
    let raw = secret.expose().trim();
    match serde_json::from_str::<serde_json::Value>(raw) {
        Ok(serde_json::Value::Object(map)) if raw.starts_with('{') => Some(map),
        _ => None,
    }
}

/// The first of `fields` that `json` holds as a string, with its name.
fn first_field<'f>(
    json: &serde_json::Map<String, serde_json::Value>,
    fields: &[&'f str],
) -> Option<(&'f str, String)> {
    fields.iter().find_map(|f| match json.get(*f) {
        Some(serde_json::Value::String(v)) => Some((*f, v.clone())),
        _ => None,
    })
}

/// The value of the first of `fields` when the secret is a JSON object, else the secret itself.
fn secret_field(secret: SecretString, fields: &[&str]) -> String {
    secret_json(&secret)
        .and_then(|json| first_field(&json, fields))
        .map(|(_, v)| v)
        .unwrap_or_else(|| secret.expose().trim().to_string())
}

/// Where a key's PEM may be in a JSON secret (`privateKey`: AWS's Snowflake secret format,
/// https://docs.aws.amazon.com/secretsmanager/latest/userguide/mes-partner-Snowflake.html).
const KEY_FIELDS: [&str; 2] = ["private_key", "privateKey"];
/// Where an encrypted key's passphrase may be (`passphrase`: the same AWS format).
const PASSPHRASE_FIELDS: [&str; 2] = ["private_key_passphrase", "passphrase"];

/// The key and passphrase in a secret: the PEM itself, or JSON with [`KEY_FIELDS`] and
/// [`PASSPHRASE_FIELDS`].
fn key_text_from_secret(secret: SecretString, arn: &str) -> KeyText {
    let json = secret_json(&secret);
    let passphrase = json
        .as_ref()
        .and_then(|json| first_field(json, &PASSPHRASE_FIELDS))
        .map(|(field, value)| Passphrase {
            value: SecretString::new(value),
            origin: format!("field {field} of secret {arn}"),
        });
    KeyText {
        pem: SecretString::new(secret_field(secret, &KEY_FIELDS)),
        passphrase,
        missing_passphrase: format!(
            "store the secret {arn} as JSON with the fields private_key and private_key_passphrase"
        ),
    }
}

async fn read_secret(
    client: Option<&aws_sdk_secretsmanager::Client>,
    arn: &str,
) -> Result<SecretString, SnowflakeError> {
    let Some(client) = client else {
        return Err(SnowflakeError::Secret {
            arn: arn.to_string(),
            message: "no Secrets Manager client".into(),
        });
    };
    let out = client
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| SnowflakeError::Secret {
            arn: arn.to_string(),
            message: aws_sdk_secretsmanager::error::DisplayErrorContext(&e).to_string(),
        })?;
    match out.secret_string() {
        Some(s) => Ok(SecretString::new(s)),
        None => Err(SnowflakeError::Secret {
            arn: arn.to_string(),
            message: "the secret has no SecretString".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};

    fn fixture(name: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../local/keys")
            .join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn account_normalisation() {
        assert_eq!(normalize_account("xy12345.us-east-1"), "XY12345");
        assert_eq!(normalize_account("xy12345.us-east-2.aws"), "XY12345");
        assert_eq!(normalize_account("xy12345"), "XY12345");
        assert_eq!(normalize_account("myorg-myacct"), "MYORG-MYACCT");
        assert_eq!(normalize_account("myorg-my_acct"), "MYORG-MY_ACCT");
        assert_eq!(
            normalize_account("myorg-myacct.privatelink"),
            "MYORG-MYACCT"
        );
        assert_eq!(normalize_account("myacct-abc123.global"), "MYACCT");
        assert_eq!(normalize_account("localtest"), "LOCALTEST");
    }

    #[test]
    fn fingerprint_matches_openssl() {
        let pem = fixture("snowflake_test_key.p8");
        let expected = fixture("FINGERPRINT");
        assert_eq!(fingerprint_of_pem(&pem).unwrap(), expected.trim());
    }

    #[test]
    fn jwt_claims_and_signature() {
        let pem = fixture("snowflake_test_key.p8");
        let signer = JwtSigner::from_pem(&pem, "localtest.us-east-1", "loader").unwrap();
        let fp = fixture("FINGERPRINT");
        assert_eq!(signer.subject(), "LOCALTEST.LOADER");
        let (token, exp) = signer.token_now().unwrap();

        let public = fixture("snowflake_test_key.pub");
        let mut v = Validation::new(Algorithm::RS256);
        v.set_required_spec_claims(&["exp", "iss", "sub"]);
        v.validate_aud = false;
        let data = jsonwebtoken::decode::<JwtClaims>(
            &token,
            &DecodingKey::from_rsa_pem(public.as_bytes()).unwrap(),
            &v,
        )
        .expect("the token verifies with the fixture public key");
        let c = data.claims;
        assert_eq!(data.header.alg, Algorithm::RS256);
        assert_eq!(c.iss, format!("LOCALTEST.LOADER.{}", fp.trim()));
        assert_eq!(c.sub, "LOCALTEST.LOADER");
        assert_eq!(c.exp, exp);
        assert_eq!(c.exp - c.iat, 59 * 60);
        assert!((c.iat - unix_now()).abs() <= 2);
        // the key never shows in Debug
        assert!(!format!("{signer:?}").contains("PRIVATE"));
    }

    #[test]
    fn bad_keys_are_errors_without_material() {
        let err = JwtSigner::from_pem(
            "-----BEGIN PRIVATE KEY-----\nAAAASECRET\n-----END PRIVATE KEY-----",
            "a",
            "u",
        )
        .unwrap_err();
        assert!(matches!(err, SnowflakeError::Key(_)));
        assert!(!err.to_string().contains("SECRET"), "{err}");
        let err = JwtSigner::from_pem(
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nx\n-----END ENCRYPTED PRIVATE KEY-----",
            "a",
            "u",
        )
        .unwrap_err();
        assert!(err.to_string().contains("encrypted"), "{err}");
        assert!(JwtSigner::from_pem("not a pem", "a", "u").is_err());
    }

    /// Keys made by `openssl pkcs8 -topk8` from `local/keys/snowflake_test_key.p8` (see
    /// `shared/testdata/keys/README`), all with this test-only passphrase.
    const PASSPHRASE: &str = "test-only-passphrase";

    fn encrypted(name: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/keys")
            .join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn with_passphrase(pem: String, passphrase: Option<&str>) -> KeyText {
        KeyText {
            passphrase: passphrase.map(|p| Passphrase {
                value: SecretString::new(p),
                origin: PASSPHRASE_VAR.into(),
            }),
            ..KeyText::unencrypted(SecretString::new(pem))
        }
    }

    #[test]
    fn encrypted_pkcs8_keys_decrypt_to_the_same_key() {
        let expected = fixture("FINGERPRINT");
        for name in [
            "encrypted_aes256_pbkdf2.p8",
            "encrypted_aes128_scrypt.p8",
            "encrypted_pbes2_des3.p8",
        ] {
            let key = with_passphrase(encrypted(name), Some(PASSPHRASE));
            let signer = JwtSigner::from_key(&key, "localtest", "loader")
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(signer.fingerprint(), expected.trim(), "{name}");
        }
    }

    #[test]
    fn a_wrong_or_missing_passphrase_names_where_it_comes_from_never_the_value() {
        let pem = encrypted("encrypted_aes256_pbkdf2.p8");
        for wrong in ["wrong-passphrase-value", "test-only-passphrasf", ""] {
            let err = JwtSigner::from_key(&with_passphrase(pem.clone(), Some(wrong)), "a", "u")
                .unwrap_err()
                .to_string();
            assert!(err.contains(PASSPHRASE_VAR), "{err}");
            assert!(err.contains("wrong passphrase"), "{err}");
            assert!(wrong.is_empty() || !err.contains(wrong), "{err}");
        }
        let err = JwtSigner::from_key(&with_passphrase(pem.clone(), None), "a", "u")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no passphrase") && err.contains(PASSPHRASE_VAR),
            "{err}"
        );
        // the old entry point, for unencrypted keys only, says the same
        let err = JwtSigner::from_pem(&pem, "a", "u").unwrap_err().to_string();
        assert!(err.contains("encrypted"), "{err}");
    }

    #[test]
    fn legacy_pbes1_keys_are_refused_with_how_to_re_encrypt() {
        // openssl pkcs8 -topk8 -v1 PBE-SHA1-3DES: PKCS#12 PBE, no PBES2
        let key = with_passphrase(
            encrypted("encrypted_legacy_pbes1_3des.p8"),
            Some(PASSPHRASE),
        );
        let err = JwtSigner::from_key(&key, "a", "u").unwrap_err().to_string();
        assert!(
            err.contains("does not support") && err.contains("-v2 aes-256-cbc"),
            "{err}"
        );
        assert!(!err.contains(PASSPHRASE), "{err}");
    }

    #[test]
    fn a_secret_holds_the_key_and_its_passphrase() {
        let arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:sf-key";
        let pem = encrypted("encrypted_aes256_pbkdf2.p8");
        for field in PASSPHRASE_FIELDS {
            let secret = serde_json::json!({"private_key": pem, field: PASSPHRASE}).to_string();
            let key = key_text_from_secret(SecretString::new(secret), arn);
            let signer = JwtSigner::from_key(&key, "localtest", "loader").unwrap();
            assert_eq!(
                signer.fingerprint(),
                fixture("FINGERPRINT").trim(),
                "{field}"
            );
        }
        let secret = serde_json::json!({"privateKey": pem, "private_key_passphrase": "nope-nope"});
        let key = key_text_from_secret(SecretString::new(secret.to_string()), arn);
        let err = JwtSigner::from_key(&key, "a", "u").unwrap_err().to_string();
        assert!(
            err.contains(&format!("field private_key_passphrase of secret {arn}")),
            "{err}"
        );
        assert!(!err.contains("nope-nope"), "{err}");
        // the PEM alone as the secret string: the error says how to add the passphrase
        let key = key_text_from_secret(SecretString::new(pem), arn);
        let err = JwtSigner::from_key(&key, "a", "u").unwrap_err().to_string();
        assert!(
            err.contains("private_key_passphrase") && err.contains(arn),
            "{err}"
        );
    }

    #[tokio::test]
    async fn an_encrypted_key_file_and_its_passphrase_from_the_environment() {
        let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/keys/encrypted_aes256_pbkdf2.p8");
        let file = file.to_str().unwrap();
        let resolve = |passphrase: &'static str| {
            let env = [
                ("SNOWFLAKE_ACCOUNT", "localtest"),
                ("SNOWFLAKE_SCHEMA", "RAW"),
                ("SNOWFLAKE_USER", "loader"),
                ("SNOWFLAKE_PRIVATE_KEY_FILE", file),
                (PASSPHRASE_VAR, passphrase),
            ];
            let config = super::super::SnowflakeConfig::from_env(&crate::config::Env::new(&env));
            async move { Authenticator::resolve(&config.unwrap().auth, "localtest", None).await }
        };
        let auth = resolve(PASSPHRASE).await.unwrap();
        let Source::Jwt(jwt) = &auth.source else {
            panic!("key pair")
        };
        let fingerprint = jwt.state.lock().await.signer.fingerprint().to_string();
        assert_eq!(fingerprint, fixture("FINGERPRINT").trim());
        let err = resolve("not-the-passphrase").await.unwrap_err().to_string();
        assert!(
            err.contains(PASSPHRASE_VAR) && !err.contains("not-the-passphrase"),
            "{err}"
        );
    }

    #[test]
    fn secret_string_forms() {
        let pem = "-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----";
        assert_eq!(secret_field(SecretString::new(pem), &["private_key"]), pem);
        let json = serde_json::json!({"private_key": pem, "user": "x"}).to_string();
        assert_eq!(secret_field(SecretString::new(json), &["private_key"]), pem);
        assert_eq!(
            secret_field(SecretString::new(" tok \n"), &["token"]),
            "tok"
        );
    }

    #[tokio::test]
    async fn jwt_is_cached_and_renewed_after_invalidate() {
        let pem = fixture("snowflake_test_key.p8");
        let auth = Authenticator::resolve(
            &AuthConfig::KeyPair {
                user: "loader".into(),
                key: KeySource::Pem(SecretString::new(pem)),
            },
            "localtest",
            None,
        )
        .await
        .unwrap();
        assert_eq!(auth.kind(), TokenType::KeypairJwt);
        let a = auth.token().await.unwrap();
        let b = auth.token().await.unwrap();
        assert_eq!(a, b, "cached");
        auth.renew_after_401(&a).await.unwrap();
        // a new token is signed; same second → same claims and so the same RS256 signature, so
        // compare the cache state instead of the text
        let Source::Jwt(jwt) = &auth.source else {
            panic!("key pair")
        };
        assert!(jwt.state.lock().await.cached.is_none());
        let _ = auth.token().await.unwrap();
        assert!(jwt.state.lock().await.cached.is_some());
    }
}
