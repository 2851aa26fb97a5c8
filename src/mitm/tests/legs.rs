//! Each leg's negotiated TLS parameters reach the interception's result and its flow records:
//! a rustls client (which prefers X25519MLKEM768) through ward to origins that offer only
//! the hybrid group or only X25519.

use rustls::NamedGroup;

use super::*;

/// An origin for ORIGIN offering only `groups`, and the PEM of its CA.
async fn origin_with(groups: &[NamedGroup]) -> TestOrigin {
    let ca = Ca::new("origin CA");
    let tls = ca.issue(&[ORIGIN]).server_config_groups(ALPN_BOTH, groups);
    let origin = Origin::start(Service::Http(Some(Arc::new(tls)))).await;
    TestOrigin {
        addr: origin.addr,
        ca_pem: ca.pem(),
        origin,
    }
}

/// One GET through `ward` to `origin` by a client trusting ward's CA.
async fn get_via(
    ward: &Ward,
    origin: &TestOrigin,
) -> (
    Response<Incoming>,
    tokio::task::JoinHandle<Result<Intercepted, ProxyError>>,
) {
    let (client, task) = ward.connect(origin.addr).await;
    let trust = Some(ward.interceptor.ca().cert_der());
    let tls = client_tls(client, trust, &[b"http/1.1"]).await.unwrap();
    (get(tls, "/").await, task)
}

async fn legs_through_ward(groups: &[NamedGroup]) -> (Intercepted, serde_json::Value) {
    let origin = origin_with(groups).await;
    let ward = ward(&origin.ca_pem, None);
    let (resp, task) = get_via(&ward, &origin).await;
    assert_eq!(resp.status(), 200);
    let done = finished(task).await;
    let flow = ward.wait_flows(1).await.remove(0);
    (done, flow)
}

#[tokio::test]
async fn both_legs_are_recorded_apart_hybrid_and_classical() {
    for (groups, upstream) in [
        (&[NamedGroup::X25519MLKEM768][..], "X25519MLKEM768"),
        (&[NamedGroup::X25519][..], "X25519"),
    ] {
        let (done, flow) = legs_through_ward(groups).await;
        let client = done.legs.client.as_ref().expect("client leg");
        let origin = done.legs.upstream.as_ref().expect("origin leg");
        assert_eq!(client.kx, "X25519MLKEM768", "{done:?}");
        assert_eq!(client.version, "TLSv1_3");
        assert!(client.cipher.starts_with("TLS13_"), "{client:?}");
        assert_eq!(origin.kx, upstream, "{done:?}");
        assert_eq!(origin.version, "TLSv1_3");
        assert_eq!(flow["kx_client"], "X25519MLKEM768", "{flow}");
        assert_eq!(flow["kx_upstream"], upstream, "{flow}");
        assert_eq!(flow["tls_upstream"], "TLSv1_3", "{flow}");
        assert_eq!(flow["cipher_client"], client.cipher.as_str(), "{flow}");
    }
}

#[tokio::test]
async fn require_pq_refuses_a_classical_origin_with_a_502_that_says_why() {
    for (groups, hybrid) in [
        (&[NamedGroup::X25519][..], false),
        (&[NamedGroup::X25519MLKEM768][..], true),
    ] {
        let origin = origin_with(groups).await;
        let ward = ward_with(&origin.ca_pem, None, true);
        let (resp, task) = get_via(&ward, &origin).await;
        if hybrid {
            assert_eq!(resp.status(), 200);
            continue;
        }
        assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
        let status = resp.headers()["proxy-status"].to_str().unwrap().to_owned();
        assert!(status.contains("error=tls_protocol_error"), "{status}");
        assert!(
            status.contains("X25519, not a post-quantum hybrid"),
            "{status}"
        );
        let done = finished(task).await;
        assert_eq!(done.outcome, Outcome::UpstreamTlsFailed, "{done:?}");
        assert_eq!(
            done.legs.upstream, None,
            "the refused leg is not recorded as used"
        );
    }
}
