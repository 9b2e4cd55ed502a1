//! Operators, login sessions and API tokens through the public API.

mod common;

use common::open;
use registry::Role;

#[test]
fn users_roles_and_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.redb");
    let r = open(&path);
    r.create_user("ada", "correct horse", Role::Admin, 0)
        .unwrap();
    r.create_user("bob", "battery staple", Role::Viewer, 0)
        .unwrap();

    // A token owned by a viewer with an admin role acts as a viewer.
    let (_, bob_token) = r
        .create_api_token("bob-admin", Some("bob"), Role::Admin, None, 1)
        .unwrap();
    let p = r
        .authenticate_api_token(bob_token.as_bytes(), 2)
        .unwrap()
        .unwrap();
    assert_eq!(p.role, Role::Viewer);
    assert_eq!(p.name, "token:bob-admin");
    // Promote bob: the (cached) token follows at once, capped by its own role.
    r.update_user("bob", Some(Role::Operator), None, None)
        .unwrap();
    let p = r
        .authenticate_api_token(bob_token.as_bytes(), 3)
        .unwrap()
        .unwrap();
    assert_eq!(p.role, Role::Operator);

    // Login sessions.
    let (session, p) = r
        .login("ada", b"correct horse", 3_600_000, 10)
        .unwrap()
        .unwrap();
    assert_eq!((p.name.as_str(), p.role), ("ada", Role::Admin));
    assert_eq!(
        r.authenticate_api_token(session.as_bytes(), 11).unwrap(),
        Some(p)
    );
    assert_eq!(r.login("ada", b"wrong horse", 1, 10).unwrap(), None);

    // Demoting ada caps her session at once.
    r.update_user("ada", Some(Role::Viewer), None, None)
        .unwrap();
    let p = r
        .authenticate_api_token(session.as_bytes(), 12)
        .unwrap()
        .unwrap();
    assert_eq!(p.role, Role::Viewer);

    // Disabling bob fails his (cached) token at once; enabling restores it.
    r.update_user("bob", None, Some(true), None).unwrap();
    assert_eq!(
        r.authenticate_api_token(bob_token.as_bytes(), 13).unwrap(),
        None
    );
    r.update_user("bob", None, Some(false), None).unwrap();
    assert!(r
        .authenticate_api_token(bob_token.as_bytes(), 14)
        .unwrap()
        .is_some());

    // Deleting bob deletes his tokens.
    assert!(r.delete_user("bob").unwrap());
    assert_eq!(
        r.authenticate_api_token(bob_token.as_bytes(), 15).unwrap(),
        None
    );
    assert!(r
        .list_api_tokens()
        .unwrap()
        .iter()
        .all(|t| t.owner.as_deref() != Some("bob")));

    // Everything but bob survives a reopen.
    drop(r);
    let r = open(&path);
    let users = r.list_users().unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!(
        (users[0].username.as_str(), users[0].role),
        ("ada", Role::Viewer)
    );
    assert!(r
        .authenticate_api_token(session.as_bytes(), 16)
        .unwrap()
        .is_some());
}

#[test]
fn revoked_token_fails_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let r = open(&dir.path().join("registry.redb"));
    let (t, secret) = r
        .create_api_token("ci", None, Role::Operator, None, 0)
        .unwrap();
    for now in 1..3 {
        assert!(r
            .authenticate_api_token(secret.as_bytes(), now)
            .unwrap()
            .is_some());
    }
    assert_eq!(r.cache_len(), 0, "generated tokens are not cached");
    assert!(r.revoke_api_token(&t.id).unwrap());
    assert_eq!(
        r.authenticate_api_token(secret.as_bytes(), 3).unwrap(),
        None
    );
}

#[test]
fn bootstrap_token_is_idempotent_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.redb");
    let first = {
        let r = open(&path);
        assert_eq!(r.api_token_count().unwrap(), 0);
        r.create_api_token_with_secret(
            "operator-chosen-secret",
            "bootstrap",
            None,
            Role::Admin,
            None,
            1,
        )
        .unwrap()
    };
    let r = open(&path);
    let again = r
        .create_api_token_with_secret(
            "operator-chosen-secret",
            "bootstrap",
            None,
            Role::Admin,
            None,
            2,
        )
        .unwrap();
    assert_eq!(first, again);
    assert_eq!(r.api_token_count().unwrap(), 1);
    let p = r
        .authenticate_api_token(b"operator-chosen-secret", 3)
        .unwrap()
        .unwrap();
    assert_eq!((p.name.as_str(), p.role), ("token:bootstrap", Role::Admin));
    assert_eq!(p.token_id, Some(first.id));
}
