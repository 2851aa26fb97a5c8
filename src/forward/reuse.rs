//! The upstream connection of the previous request, kept for the next one to the same
//! destination (browsers send many requests to one host over one proxy connection). A kept
//! connection is no pass: every request is judged (its user, method and path may differ from
//! the last), and one that another rule decides is dialled afresh, since that rule may send it
//! another way.

use std::net::IpAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use tokio::sync::Mutex;

use crate::config::Config;
use crate::error::{ErrorKind, ProxyError};
use crate::log::AccessRecord;
use crate::policy::{Facts, Judgement};
use crate::request::Request;
use crate::route;
use crate::target::Target;

/// The connection kept for the next request, and how it was judged.
pub(super) struct Kept {
    /// Where it goes.
    pub target: Target,
    /// The judgement that let its first request through.
    pub judgement: Judgement,
    /// The destination address that judgement used, if ward knew one.
    pub dst: Option<IpAddr>,
    /// The origin (or upstream proxy) connection.
    pub sender: SendRequest<Incoming>,
}

/// The slot shared by the requests of one client connection.
pub(super) type Reusable = Arc<Mutex<Option<Kept>>>;

/// The kept connection, if it goes to `req`'s target, is still usable and `req` is judged as
/// its first request was; a refusal is the request's answer. `None`: dial afresh.
pub(super) async fn take(
    reuse: &Reusable,
    req: &Request,
    cfg: &Config,
    rec: &mut AccessRecord,
) -> Result<Option<Kept>, ProxyError> {
    let kept = match reuse.lock().await.take() {
        Some(k) if k.target == req.target && k.sender.is_ready() => k,
        _ => return Ok(None),
    };
    let policy = &cfg.policy;
    let facts = Facts {
        dst: kept.dst,
        ..route::facts(req)
    };
    let judged = match kept.dst {
        Some(ip) => policy.judge_address(&facts, ip),
        None => match policy.judge_target(&facts) {
            Ok(j) => j,
            // This request's rule wants the address the first one did without: route it.
            Err(_) => return Ok(None),
        },
    };
    if judged.refusal.is_some() {
        rec.note_judgement(policy, &judged);
        let err = policy.refusal_error(&judged, &facts);
        return Err(err.unwrap_or_else(|| ProxyError::local(ErrorKind::Internal, "refused")));
    }
    if judged.decision != kept.judgement.decision {
        return Ok(None);
    }
    rec.note_judgement(policy, &judged);
    Ok(Some(kept))
}
