//! Forged leaf certificates, one per normalised name (or IP), signed by the CA and kept in a
//! bounded cache. Pure CPU work: no I/O, and it must never reuse a serial or outlive the CA.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use dashmap::DashMap;
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::{CertifiedKey, SigningKey};

use super::ca::Ca;
use super::error::MitmError;
use super::issuing::{BACKDATE, MAX_CN_LEN, random_serial, truncate};
use crate::metrics::LeafCounters;
use crate::target::Host;

/// What a leaf is forged for: the SNI's normalised name, or the IP when there is no SNI.
pub type LeafName = Host;

/// The CA/Browser Forum caps publicly trusted leaves at 200 days from March 2026 (and 100,
/// then 47, later), and clients have begun to apply the cap to every chain; with the hour of
/// backdating and clock skew on either side, 197 days stays under it.
pub const MAX_LEAF_VALIDITY: Duration = Duration::from_secs(197 * 24 * 3600);
/// A cached leaf is re-forged after this long, well before it expires, so that a long-running
/// proxy never hands out a certificate near its end.
const CACHE_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Upstream certificates can list hundreds of names; copying more would bloat every handshake.
pub(crate) const MAX_EXTRA_SANS: usize = 32;
/// Leaves cached at most, by default: one per inspected name.
pub const DEFAULT_CAPACITY: usize = 10_000;

/// A forged leaf and when the cache should stop handing it out.
struct Leaf {
    key: Arc<CertifiedKey>,
    refresh_at: SystemTime,
}

/// One cache entry. The `OnceLock` makes concurrent first connections to a host wait for a
/// single forge instead of each signing their own.
#[derive(Default)]
struct Slot(OnceLock<Result<Leaf, String>>);

impl Slot {
    fn is_fresh(&self, now: SystemTime) -> bool {
        match self.0.get() {
            Some(Ok(leaf)) => now < leaf.refresh_at,
            // In flight (kept) or failed (dropped: the next caller retries).
            Some(Err(_)) => false,
            None => true,
        }
    }
}

/// Forged leaves, one per name, signed by the CA; bounded.
pub struct LeafCache {
    ca: Arc<Ca>,
    /// One key pair for every leaf: generating a key per host would dominate the forge time,
    /// and the CA's signature already binds each certificate to its name.
    leaf_key: KeyPair,
    signing_key: Arc<dyn SigningKey>,
    slots: DashMap<LeafName, Arc<Slot>>,
    capacity: usize,
    counters: Arc<LeafCounters>,
}

impl LeafCache {
    /// An empty cache of at most `capacity` leaves, signing with `ca`.
    pub fn new(ca: Arc<Ca>, capacity: usize) -> Result<Self, MitmError> {
        let leaf_key = KeyPair::generate()?;
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let signing_key = rustls::crypto::aws_lc_rs::sign::any_supported_type(&der)?;
        Ok(LeafCache {
            ca,
            leaf_key,
            signing_key,
            slots: DashMap::new(),
            capacity: capacity.max(1),
            counters: Arc::default(),
        })
    }

    /// The CA that signs the leaves.
    pub fn ca(&self) -> &Arc<Ca> {
        &self.ca
    }

    /// How many leaves were signed since start (cache misses): for metrics and tests.
    pub fn forged(&self) -> u64 {
        self.counters.forges.load(Ordering::Relaxed)
    }

    /// Counts hits, misses and forges into `counters` from now on (the process's metrics).
    pub fn count_into(&mut self, counters: Arc<LeafCounters>) {
        self.counters = counters;
    }

    fn count_lookup(&self, hit: bool) {
        let c = if hit {
            &self.counters.hits
        } else {
            &self.counters.misses
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Leaves cached now.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether no leaf is cached.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The cached leaf for `name` if there is a fresh one, else one forged for this use only
    /// and not cached: when the origin could not be reached its names are unknown, and a
    /// transient failure must not fix a leaf without them for the cache's lifetime.
    pub fn get_or_forge_uncached(
        &self,
        name: &LeafName,
        now: SystemTime,
    ) -> Result<Arc<CertifiedKey>, MitmError> {
        if let Some(slot) = self.slots.get(name)
            && let Some(Ok(leaf)) = slot.0.get()
            && now < leaf.refresh_at
        {
            self.count_lookup(true);
            return Ok(leaf.key.clone());
        }
        self.count_lookup(false);
        self.counters.forges.fetch_add(1, Ordering::Relaxed);
        self.forge(name, &[], now).map(|leaf| leaf.key)
    }

    /// The leaf for `name`, forged on first use. `extra_sans` (e.g. the upstream certificate's
    /// names) only count when the leaf is forged; the cache is keyed by `name` alone.
    pub fn get_or_forge(
        &self,
        name: &LeafName,
        extra_sans: &[String],
        now: SystemTime,
    ) -> Result<Arc<CertifiedKey>, MitmError> {
        // Two rounds at most: the second follows the removal of a stale or failed entry.
        for round in 0..2 {
            let slot = self.slot(name, now);
            if round == 0 {
                let cached = matches!(slot.0.get(), Some(Ok(leaf)) if now < leaf.refresh_at);
                self.count_lookup(cached);
            }
            let result = slot.0.get_or_init(|| {
                self.counters.forges.fetch_add(1, Ordering::Relaxed);
                self.forge(name, extra_sans, now).map_err(|e| e.to_string())
            });
            match result {
                Ok(leaf) if now < leaf.refresh_at => return Ok(leaf.key.clone()),
                Ok(_) => {}
                Err(why) => {
                    let why = why.clone();
                    self.slots.remove_if(name, |_, s| Arc::ptr_eq(s, &slot));
                    return Err(MitmError::Forge {
                        name: name.to_string(),
                        why,
                    });
                }
            }
            self.slots.remove_if(name, |_, s| Arc::ptr_eq(s, &slot));
        }
        // Only reachable with a clock that jumps backwards past a fresh forge; sign directly.
        self.counters.forges.fetch_add(1, Ordering::Relaxed);
        self.forge(name, extra_sans, now).map(|leaf| leaf.key)
    }

    fn slot(&self, name: &LeafName, now: SystemTime) -> Arc<Slot> {
        if let Some(slot) = self.slots.get(name) {
            return slot.clone();
        }
        // Evict before taking the entry lock: iterating while holding a shard lock deadlocks.
        if self.slots.len() >= self.capacity {
            self.make_room(now);
        }
        self.slots.entry(name.clone()).or_default().clone()
    }

    /// Drops stale entries, then, if still full, an arbitrary sixteenth of the cache: no LRU
    /// bookkeeping on the hot path, and a re-forge costs about a millisecond.
    fn make_room(&self, now: SystemTime) {
        self.slots.retain(|_, slot| slot.is_fresh(now));
        if self.slots.len() < self.capacity {
            return;
        }
        let victims: Vec<LeafName> = self
            .slots
            .iter()
            .take(self.capacity / 16 + 1)
            .map(|e| e.key().clone())
            .collect();
        for name in victims {
            self.slots.remove(&name);
        }
    }

    fn forge(
        &self,
        name: &LeafName,
        extra_sans: &[String],
        now: SystemTime,
    ) -> Result<Leaf, MitmError> {
        let not_after = (now + MAX_LEAF_VALIDITY).min(self.ca.not_after());
        let params = leaf_params(name, extra_sans, now, not_after)?;
        let cert = params.signed_by(&self.leaf_key, &self.ca.issuer)?;
        let chain = vec![cert.der().clone(), self.ca.cert_der().clone()];
        let key = Arc::new(CertifiedKey::new(chain, self.signing_key.clone()));
        // Half the remaining life at most, for a CA close to its own end.
        let lifetime = not_after.duration_since(now).unwrap_or_default();
        let refresh_at = now + CACHE_MAX_AGE.min(lifetime / 2);
        Ok(Leaf { key, refresh_at })
    }
}

fn leaf_params(
    name: &LeafName,
    extra_sans: &[String],
    now: SystemTime,
    not_after: SystemTime,
) -> Result<CertificateParams, MitmError> {
    let mut params = CertificateParams::default();
    let mut sans = vec![san_for(name)?];
    for extra in extra_sans.iter().take(MAX_EXTRA_SANS) {
        // An unusable upstream name is skipped: the primary name is what the client checks.
        // DNS names only: an IP SAN would invite clients to reuse this connection by address.
        if let Ok(san @ SanType::DnsName(_)) = parse_san(extra)
            && !sans.contains(&san)
        {
            sans.push(san);
        }
    }
    params.subject_alt_names = sans;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, truncate(&name.to_string(), MAX_CN_LEN));
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    // The authority key identifier is the CA's own subject key identifier (rcgen reads it
    // from a CA loaded from disk); the leaf gets a subject key identifier of its key too.
    params.use_authority_key_identifier_extension = true;
    params.not_before = (now - BACKDATE).into();
    params.not_after = not_after.into();
    params.serial_number = Some(random_serial());
    Ok(params)
}

fn san_for(name: &LeafName) -> Result<SanType, MitmError> {
    match name {
        Host::Ip(ip) => Ok(SanType::IpAddress(*ip)),
        Host::Name(n) => parse_san(n).map_err(|why| MitmError::Forge {
            name: n.clone(),
            why,
        }),
    }
}

fn parse_san(text: &str) -> Result<SanType, String> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    text.try_into()
        .map(SanType::DnsName)
        .map_err(|e: rcgen::Error| e.to_string())
}

#[cfg(test)]
mod tests;
