//! The interception CA on disk: `ca.pem` + `ca.key` (0600) in `ca_dir`, created once, loaded at
//! start. Must never log, print or put in an error the key's bytes.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::error::MitmError;
use super::issuing::{BACKDATE, MAX_CN_LEN, random_serial, truncate};

/// The CA certificate's file name in `ca_dir`.
pub const CERT_FILE: &str = "ca.pem";
/// The CA key's file name in `ca_dir` (mode 0600).
pub const KEY_FILE: &str = "ca.key";
/// The CA outlives many leaves; ten years is what mitmproxy and most local-CA tools choose.
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
const SUBJECT_PREFIX: &str = "ward interception CA";

/// Whether a CA key that other users may read stops ward (the default) or is only warned
/// about (`--allow-insecure-key`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum KeyAccess {
    /// Refuse a key readable beyond its owner.
    #[default]
    Private,
    /// Load it anyway, with a warning.
    AllowInsecure,
}

/// Checks `ca.key` in `dir`, when it exists: `Ok(Some(warning))` for an exposed key that
/// `access` allows, an error for one it does not. For `ward run` at start (whether or not the
/// policy inspects yet) and `ward check`, so both say what loading the CA would.
pub fn check_key(dir: &Path, access: KeyAccess) -> Result<Option<String>, MitmError> {
    let path = dir.join(KEY_FILE);
    match fs::metadata(&path) {
        Ok(meta) => key_mode(&path, &meta, access),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(&path, e)),
    }
}

/// A key readable by others lets them sign certificates every client of ward trusts. Group
/// read is allowed only on a root-owned file, PostgreSQL's rule for its server key: it is how
/// a Kubernetes Secret reaches a non-root pod (root:fsGroup, mode 0440) and how a system
/// keeps keys for a service group (root:ward 0640).
fn key_mode(
    path: &Path,
    meta: &fs::Metadata,
    access: KeyAccess,
) -> Result<Option<String>, MitmError> {
    let mode = meta.mode() & 0o777;
    let group_ok = meta.uid() == 0 && mode & 0o030 == 0;
    let exposed = mode & 0o007 != 0 || (mode & 0o070 != 0 && !group_ok);
    if !exposed {
        return Ok(None);
    }
    match access {
        KeyAccess::Private => Err(MitmError::InsecureKey {
            path: path.to_path_buf(),
            mode,
        }),
        KeyAccess::AllowInsecure => Ok(Some(format!(
            "{} has mode {mode:04o}: other users can read the CA key and forge certificates \
             that ward's clients trust; started anyway (--allow-insecure-key); run `chmod 600 {}`",
            path.display(),
            path.display()
        ))),
    }
}

/// The local CA that signs forged leaves.
pub struct Ca {
    pub(crate) issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    subject: String,
    not_after: SystemTime,
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ca")
            .field("subject", &self.subject)
            .field("fingerprint", &self.fingerprint_sha256())
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// Loads the CA in `dir`, creating it if neither file exists. One file without the other
    /// is an error: replacing a half-present CA could orphan certificates users already trust.
    pub fn load_or_create(dir: &Path, access: KeyAccess) -> Result<Ca, MitmError> {
        let (cert, key) = (dir.join(CERT_FILE), dir.join(KEY_FILE));
        match (cert.exists(), key.exists()) {
            (true, true) => Ca::load(dir, access),
            (false, false) => {
                let ca = Ca::create(dir)?;
                tracing::info!(path = %cert.display(), fingerprint = %ca.fingerprint_sha256(), "created interception CA");
                Ok(ca)
            }
            (true, false) => Err(bad(&key, "missing while ca.pem exists")),
            (false, true) => Err(bad(&cert, "missing while ca.key exists")),
        }
    }

    /// `ward ca init`: creates a new CA; an existing one is replaced only with `force`.
    pub fn init(dir: &Path, force: bool) -> Result<Ca, MitmError> {
        let (cert, key) = (dir.join(CERT_FILE), dir.join(KEY_FILE));
        if !force && (cert.exists() || key.exists()) {
            return Err(MitmError::CaExists(dir.to_path_buf()));
        }
        Ca::create(dir)
    }

    /// Loads the CA in `dir`; both files must be there and match, and the key must not be
    /// readable by others unless `access` allows it.
    pub fn load(dir: &Path, access: KeyAccess) -> Result<Ca, MitmError> {
        let (cert_path, key_path) = (dir.join(CERT_FILE), dir.join(KEY_FILE));
        let cert_pem = fs::read_to_string(&cert_path).map_err(|e| io_err(&cert_path, e))?;
        let key_pem = read_key(&key_path, access)?;
        // KeyPair's errors never echo the key, so they are safe to show.
        let key = KeyPair::from_pem(&key_pem).map_err(|e| bad(&key_path, &e.to_string()))?;
        let cert_der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| bad(&cert_path, &format!("no PEM certificate: {e}")))?;
        // The SPKI bit string carries the raw public key, so a mismatched pair is caught here
        // instead of at the first client handshake.
        let public = key.public_key_raw();
        if !cert_der.windows(public.len()).any(|w| w == public) {
            return Err(bad(&key_path, "does not match the certificate in ca.pem"));
        }
        let (_, not_after) = super::der::validity(&cert_der)
            .ok_or_else(|| bad(&cert_path, "unreadable validity"))?;
        if not_after <= SystemTime::now() {
            return Err(bad(&cert_path, "expired; run `ward ca init --force`"));
        }
        let issuer = Issuer::from_ca_cert_der(&cert_der, key)
            .map_err(|e| bad(&cert_path, &e.to_string()))?;
        Ok(Ca {
            subject: super::der::subject_common_name(&cert_der)
                .unwrap_or_else(|| SUBJECT_PREFIX.to_string()),
            issuer,
            cert_pem,
            cert_der,
            not_after,
        })
    }

    fn create(dir: &Path) -> Result<Ca, MitmError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| io_err(dir, e))?;
        let key = KeyPair::generate()?;
        let now = SystemTime::now();
        let subject = ca_common_name();
        let params = ca_params(now, &subject);
        let cert = params.self_signed(&key)?;
        let cert_pem = cert.pem();
        // Key first: a crash in between leaves a key without a cert, which load_or_create
        // refuses loudly rather than silently minting a second CA.
        write_private(&dir.join(KEY_FILE), key.serialize_pem().as_bytes(), 0o600)?;
        write_private(&dir.join(CERT_FILE), cert_pem.as_bytes(), 0o644)?;
        Ok(Ca {
            subject,
            issuer: Issuer::new(params, key),
            cert_der: cert.der().clone(),
            cert_pem,
            not_after: now + CA_VALIDITY,
        })
    }

    /// The CA certificate, PEM (what `/ca.pem` and `ward ca export` give).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// When the CA expires: no leaf it signs outlives it.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// `AA:BB:...`, the form browsers and `openssl x509 -fingerprint -sha256` show.
    pub fn fingerprint_sha256(&self) -> String {
        crate::onboarding::fingerprint_sha256(self.cert_der.as_ref())
    }

    /// What `ward ca show` prints: where the CA is, which one it is, and how to trust it on
    /// each platform (the onboarding page's steps, as text).
    pub fn show_text(&self, dir: &Path, setup_url: &str) -> String {
        let dir = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        let pem = dir.join(CERT_FILE);
        let until = humantime::format_rfc3339_seconds(self.not_after);
        format!(
            "certificate  {p}\n\
             subject      {subject}\n\
             valid until  {until}\n\
             SHA-256      {fp}\n\
             \n{steps}",
            p = pem.display(),
            subject = self.subject,
            fp = self.fingerprint_sha256(),
            steps = crate::onboarding::steps_text(&pem.display().to_string(), setup_url),
        )
    }
}

fn ca_params(now: SystemTime, common_name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, "ward");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = (now - BACKDATE).into();
    params.not_after = (now + CA_VALIDITY).into();
    params.serial_number = Some(random_serial());
    params
}

fn ca_common_name() -> String {
    let cn = match local_hostname() {
        Some(host) => format!("{SUBJECT_PREFIX} ({host})"),
        None => SUBJECT_PREFIX.to_string(),
    };
    truncate(&cn, MAX_CN_LEN)
}

/// The host name makes CAs from several machines tellable apart in a trust store. Read from
/// procfs because `gethostname` would need unsafe code.
fn local_hostname() -> Option<String> {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_graphic()))
}

fn read_key(path: &Path, access: KeyAccess) -> Result<String, MitmError> {
    let meta = fs::metadata(path).map_err(|e| io_err(path, e))?;
    if let Some(warning) = key_mode(path, &meta, access)? {
        tracing::warn!("{warning}");
    }
    fs::read_to_string(path).map_err(|e| io_err(path, e))
}

/// Writes through a temporary file and a rename, so a reader never sees half a file and the
/// key is never, even briefly, readable by others.
fn write_private(path: &Path, bytes: &[u8], mode: u32) -> Result<(), MitmError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let _ = fs::remove_file(&tmp);
    let write = || -> io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io_err(path, e)
    })
}

fn io_err(path: &Path, source: io::Error) -> MitmError {
    MitmError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn bad(path: &Path, why: &str) -> MitmError {
    MitmError::BadCa {
        path: PathBuf::from(path),
        why: why.to_string(),
    }
}

#[cfg(test)]
mod tests;
