use super::*;
use crate::users::User;

fn users() -> Users {
    Users::new(vec![
        User {
            name: "alice".into(),
            secret: Secret::Plain("s3cret".into()),
        },
        User {
            name: "bob".into(),
            // bcrypt's minimum cost: these tests count hashes, they do not time them.
            secret: Secret::Bcrypt(bcrypt::hash("b-pass", 4).unwrap()),
        },
    ])
}

fn creds(user: &str, password: &str) -> Credentials {
    Credentials {
        user: user.into(),
        password: password.into(),
    }
}

#[tokio::test]
async fn plaintext_and_hashed_users_authenticate_and_wrong_ones_do_not() {
    let auth = Authenticator::default();
    assert_eq!(
        auth.authenticate(&Users::default(), None).await.unwrap(),
        None
    );
    let u = users();
    let ok = |r: Result<Option<String>, ProxyError>| r.unwrap();
    let kind = |r: Result<Option<String>, ProxyError>| r.unwrap_err().kind;
    assert_eq!(
        ok(auth.authenticate(&u, Some(&creds("alice", "s3cret"))).await),
        Some("alice".into())
    );
    assert_eq!(
        ok(auth.authenticate(&u, Some(&creds("bob", "b-pass"))).await),
        Some("bob".into())
    );
    assert_eq!(
        kind(auth.authenticate(&u, None).await),
        ErrorKind::AuthRequired
    );
    assert_eq!(
        kind(auth.authenticate(&u, Some(&creds("alice", "s3cre"))).await),
        ErrorKind::AuthRequired
    );
    assert_eq!(
        kind(auth.authenticate(&u, Some(&creds("bob", "b-pasS"))).await),
        ErrorKind::AuthRequired
    );
    // The password of one user is no good for another, nor the plaintext path for a hash.
    assert_eq!(
        kind(auth.authenticate(&u, Some(&creds("bob", "s3cret"))).await),
        ErrorKind::AuthRequired
    );
    let err = auth
        .authenticate(&u, Some(&creds("bob", "b-pasS")))
        .await
        .unwrap_err();
    assert!(!err.to_string().contains("b-pasS"), "{err}");
}

#[tokio::test]
async fn a_success_is_cached_and_a_failure_never_is() {
    let auth = Authenticator::default();
    let u = users();
    for _ in 0..3 {
        auth.authenticate(&u, Some(&creds("bob", "wrong")))
            .await
            .unwrap_err();
    }
    assert_eq!((auth.hashes_computed(), auth.cached()), (3, 0));
    for _ in 0..3 {
        auth.authenticate(&u, Some(&creds("bob", "b-pass")))
            .await
            .unwrap();
    }
    assert_eq!((auth.hashes_computed(), auth.cached()), (4, 1));
    // A cached success does not let a wrong password in.
    auth.authenticate(&u, Some(&creds("bob", "b-pas")))
        .await
        .unwrap_err();
    assert_eq!(auth.hashes_computed(), 5);
    // Plaintext users never reach the hash pool.
    auth.authenticate(&u, Some(&creds("alice", "s3cret")))
        .await
        .unwrap();
    assert_eq!(auth.hashes_computed(), 5);
}

#[tokio::test]
async fn an_unknown_name_costs_a_decoy_hash() {
    let auth = Authenticator::default();
    let err = auth
        .authenticate(&users(), Some(&creds("mallory", "b-pass")))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::AuthRequired);
    assert_eq!((auth.hashes_computed(), auth.cached()), (1, 0));
}

#[tokio::test]
async fn a_new_hash_for_the_user_voids_the_cached_success() {
    let auth = Authenticator::default();
    auth.authenticate(&users(), Some(&creds("bob", "b-pass")))
        .await
        .unwrap();
    let changed = Users::new(vec![User {
        name: "bob".into(),
        secret: Secret::Bcrypt(bcrypt::hash("new-pass", 4).unwrap()),
    }]);
    let err = auth
        .authenticate(&changed, Some(&creds("bob", "b-pass")))
        .await;
    assert!(err.is_err());
    auth.authenticate(&changed, Some(&creds("bob", "new-pass")))
        .await
        .unwrap();
}

#[test]
fn a_success_expires_after_the_ttl() {
    let mut v = Verified::default();
    let now = Instant::now();
    v.insert([7; 32], now);
    assert!(v.fresh(&[7; 32], now + CACHE_TTL - Duration::from_secs(1)));
    assert!(!v.fresh(&[7; 32], now + CACHE_TTL));
    assert!(!v.fresh(&[8; 32], now));
}

#[test]
fn the_cache_stays_within_its_cap() {
    let mut v = Verified::default();
    let now = Instant::now();
    for i in 0..CACHE_CAP + 10 {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&(i as u64).to_be_bytes());
        v.insert(key, now + Duration::from_millis(i as u64));
    }
    assert_eq!(v.expiry.len(), CACHE_CAP);
    // The newest is kept; the oldest went first.
    let mut newest = [0u8; 32];
    newest[..8].copy_from_slice(&((CACHE_CAP + 9) as u64).to_be_bytes());
    assert!(v.fresh(&newest, now));
    assert!(!v.fresh(&[0u8; 32], now));
}
