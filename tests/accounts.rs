//! The accounts service against a real PostgreSQL: a fresh database per test (`sqlx::test`).

use pipebridge::accounts::{
    self, AccessError, LogInError, SignUpError, TeamError, add_member, authorize, change_role,
    remove_member,
};
use pipebridge::domain::{CompanyName, Email, Password, Role, TenantId, UserId};
use sqlx::PgPool;

const PASSWORD: &str = "correct horse battery";

async fn sign_up(pool: &PgPool, email: &str, company: &str) -> (UserId, TenantId) {
    let done = accounts::sign_up(
        pool,
        &Email::parse(email).unwrap(),
        Password::parse_new(PASSWORD).unwrap(),
        &CompanyName::parse(company).unwrap(),
    )
    .await
    .unwrap();
    (done.user_id, done.tenant_id)
}

#[sqlx::test(migrator = "pipebridge::db::MIGRATOR")]
async fn sign_up_creates_user_tenant_and_owner(pool: PgPool) {
    let (user, tenant) = sign_up(&pool, "Ann@Example.com", "Acme").await;
    let member = authorize(&pool, user, tenant).await.unwrap();
    assert_eq!(member.role, Role::Owner);
    let tenants = accounts::tenants_of(&pool, user).await.unwrap();
    assert_eq!(tenants.len(), 1);
    assert_eq!(tenants[0].name, "Acme");
    assert_eq!(
        accounts::user_email(&pool, user).await.unwrap().as_deref(),
        Some("ann@example.com")
    );
    let hash: String = sqlx::query_scalar("select password_hash from users where id = $1")
        .bind(user)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(hash.starts_with("$argon2id$"), "stored hash is not argon2id: {hash}");
    assert!(!hash.contains(PASSWORD));
}

#[sqlx::test(migrator = "pipebridge::db::MIGRATOR")]
async fn duplicate_email_is_refused_whatever_its_case(pool: PgPool) {
    sign_up(&pool, "ann@example.com", "Acme").await;
    let again = accounts::sign_up(
        &pool,
        &Email::parse("ANN@example.com").unwrap(),
        Password::parse_new(PASSWORD).unwrap(),
        &CompanyName::parse("Acme 2").unwrap(),
    )
    .await;
    assert!(matches!(again, Err(SignUpError::EmailTaken)), "{again:?}");
    // Nothing of the failed sign-up is left behind.
    let tenants: i64 =
        sqlx::query_scalar("select count(*) from tenants").fetch_one(&pool).await.unwrap();
    assert_eq!(tenants, 1);
}

#[sqlx::test(migrator = "pipebridge::db::MIGRATOR")]
async fn log_in_succeeds_and_fails_alike_for_wrong_password_and_unknown_email(pool: PgPool) {
    let (user, _) = sign_up(&pool, "ann@example.com", "Acme").await;
    let ok =
        accounts::log_in(&pool, " Ann@Example.com ", PASSWORD, Some("10.0.0.1")).await.unwrap();
    assert_eq!(ok, user);

    let wrong =
        accounts::log_in(&pool, "ann@example.com", "wrong password!", Some("10.0.0.1")).await;
    let unknown = accounts::log_in(&pool, "bob@example.com", PASSWORD, Some("10.0.0.1")).await;
    let malformed = accounts::log_in(&pool, "not an email", PASSWORD, Some("10.0.0.1")).await;
    for result in [wrong, unknown, malformed] {
        let err = result.unwrap_err();
        assert!(matches!(err, LogInError::InvalidCredentials), "{err:?}");
        assert_eq!(err.to_string(), "Wrong email or password.");
    }
}

#[sqlx::test(migrator = "pipebridge::db::MIGRATOR")]
async fn repeated_failures_for_one_email_are_throttled(pool: PgPool) {
    sign_up(&pool, "ann@example.com", "Acme").await;
    for i in 0..5 {
        let ip = format!("10.0.0.{i}"); // different addresses: the email's own limit applies
        let e =
            accounts::log_in(&pool, "ann@example.com", "guess guess", Some(&ip)).await.unwrap_err();
        assert!(matches!(e, LogInError::InvalidCredentials), "attempt {i}: {e:?}");
    }
    // Now even the right password is refused until the window passes, with a clear message.
    let e =
        accounts::log_in(&pool, "ann@example.com", PASSWORD, Some("10.0.0.9")).await.unwrap_err();
    match &e {
        LogInError::Throttled { retry_after } => {
            assert!(
                retry_after.as_secs() > 14 * 60 && retry_after.as_secs() <= 15 * 60,
                "{retry_after:?}"
            );
        }
        other => panic!("expected throttling, got {other:?}"),
    }
    assert!(e.to_string().starts_with("Too many failed log-in attempts. Wait 15 minutes"), "{e}");

    // Once the failures are older than the window, the account opens again.
    sqlx::query("update login_failures set created_at = created_at - interval '16 minutes'")
        .execute(&pool)
        .await
        .unwrap();
    accounts::log_in(&pool, "ann@example.com", PASSWORD, Some("10.0.0.9")).await.unwrap();
}

#[sqlx::test(migrator = "pipebridge::db::MIGRATOR")]
async fn repeated_failures_from_one_address_are_throttled(pool: PgPool) {
    sign_up(&pool, "ann@example.com", "Acme").await;
    for i in 0..20 {
        let email = format!("guess{i}@example.com");
        accounts::log_in(&pool, &email, "guess guess", Some("192.0.2.7")).await.unwrap_err();
    }
    let e =
        accounts::log_in(&pool, "ann@example.com", PASSWORD, Some("192.0.2.7")).await.unwrap_err();
    assert!(matches!(e, LogInError::Throttled { .. }), "{e:?}");
    // Another address is not affected.
    accounts::log_in(&pool, "ann@example.com", PASSWORD, Some("192.0.2.8")).await.unwrap();
}

#[sqlx::test(migrator = "pipebridge::db::MIGRATOR")]
async fn a_stranger_gets_not_found_for_another_tenant(pool: PgPool) {
    let (_, tenant_a) = sign_up(&pool, "ann@example.com", "A").await;
    let (bob, _) = sign_up(&pool, "bob@example.com", "B").await;
    assert!(matches!(authorize(&pool, bob, tenant_a).await, Err(AccessError::NotFound)));
    let unknown = TenantId(uuid::Uuid::new_v4());
    assert!(matches!(authorize(&pool, bob, unknown).await, Err(AccessError::NotFound)));
}

#[sqlx::test(migrator = "pipebridge::db::MIGRATOR")]
async fn roles_decide_who_may_change_what(pool: PgPool) {
    let (ann, tenant) = sign_up(&pool, "ann@example.com", "Acme").await;
    let (bob, _) = sign_up(&pool, "bob@example.com", "Bob's").await;
    let (cid, _) = sign_up(&pool, "cid@example.com", "Cid's").await;
    let owner = authorize(&pool, ann, tenant).await.unwrap();

    add_member(&pool, &owner, &Email::parse("bob@example.com").unwrap(), Role::Viewer)
        .await
        .unwrap();
    let viewer = authorize(&pool, bob, tenant).await.unwrap();
    assert_eq!(viewer.role, Role::Viewer);

    // A viewer looks but does not change.
    let rename =
        accounts::rename_tenant(&pool, &viewer, &CompanyName::parse("Hijacked").unwrap()).await;
    assert!(matches!(rename, Err(AccessError::Forbidden)), "{rename:?}");
    let add =
        add_member(&pool, &viewer, &Email::parse("cid@example.com").unwrap(), Role::Viewer).await;
    assert!(matches!(add, Err(TeamError::Access(AccessError::Forbidden))), "{add:?}");
    assert!(accounts::members(&pool, &viewer).await.unwrap().len() == 2);

    // An admin manages the team, but not owners.
    change_role(&pool, &owner, bob, Role::Admin).await.unwrap();
    let admin = authorize(&pool, bob, tenant).await.unwrap();
    accounts::rename_tenant(&pool, &admin, &CompanyName::parse("Acme Ltd").unwrap()).await.unwrap();
    add_member(&pool, &admin, &Email::parse("cid@example.com").unwrap(), Role::Viewer)
        .await
        .unwrap();
    assert!(matches!(
        change_role(&pool, &admin, cid, Role::Owner).await,
        Err(TeamError::OwnerOnly)
    ));
    assert!(matches!(remove_member(&pool, &admin, ann).await, Err(TeamError::OwnerOnly)));
    assert!(matches!(
        add_member(&pool, &admin, &Email::parse("cid@example.com").unwrap(), Role::Viewer).await,
        Err(TeamError::AlreadyMember)
    ));
    assert!(matches!(
        add_member(&pool, &admin, &Email::parse("nobody@example.com").unwrap(), Role::Viewer).await,
        Err(TeamError::NoSuchUser)
    ));

    // The last owner stays.
    assert!(matches!(
        change_role(&pool, &owner, ann, Role::Admin).await,
        Err(TeamError::LastOwner)
    ));
    assert!(matches!(remove_member(&pool, &owner, ann).await, Err(TeamError::LastOwner)));
    change_role(&pool, &owner, cid, Role::Owner).await.unwrap();
    change_role(&pool, &owner, ann, Role::Admin).await.unwrap();

    remove_member(&pool, &admin, bob).await.unwrap();
    assert!(matches!(authorize(&pool, bob, tenant).await, Err(AccessError::NotFound)));
}

#[sqlx::test(migrator = "pipebridge::db::MIGRATOR")]
async fn a_user_can_belong_to_several_tenants(pool: PgPool) {
    let (ann, first) = sign_up(&pool, "ann@example.com", "Zeta").await;
    let second =
        accounts::create_tenant(&pool, ann, &CompanyName::parse("alpha").unwrap()).await.unwrap();
    let tenants = accounts::tenants_of(&pool, ann).await.unwrap();
    let ids: Vec<_> = tenants.iter().map(|t| t.id).collect();
    assert_eq!(ids, vec![second, first], "sorted by name, case-insensitively");
    assert!(tenants.iter().all(|t| t.role.0 == Role::Owner));
}

#[sqlx::test(migrator = "pipebridge::db::MIGRATOR")]
async fn mappings_are_validated_versioned_and_scoped(pool: PgPool) {
    use pipebridge::mapping::store::{self, SaveError};
    let (ann, tenant) = sign_up(&pool, "ann@example.com", "Acme").await;
    let owner = authorize(&pool, ann, tenant).await.unwrap();
    let first = store::save(&pool, &owner, store::SEED_YAML, None).await.unwrap();
    assert_eq!(first.version, 1);
    let e = store::save(&pool, &owner, "connectors: { pipedrive: {} }\npersn_mapping: {}\n", None)
        .await
        .unwrap_err();
    assert!(matches!(&e, SaveError::Unreadable(m) if m.contains("persn_mapping")), "{e:?}");
    let bad = store::SEED_YAML.replace("first_name: FIRSTNAME", "first_name: FULLNAME");
    match store::save(&pool, &owner, &bad, None).await.unwrap_err() {
        SaveError::Invalid(problems) => assert_eq!(problems[0].at, "person_mapping.first_name"),
        other => panic!("{other:?}"),
    }
    let second = store::save(
        &pool,
        &owner,
        &store::SEED_YAML.replace("customers: 62", "customers: 70"),
        None,
    )
    .await
    .unwrap();
    assert_eq!(second.version, 2, "failed saves do not take a version");
    let (version, yaml) = store::current(&pool, &owner).await.unwrap().unwrap();
    assert_eq!(version, 2);
    assert!(yaml.contains("customers: 70") && !yaml.contains("api_token"));
    let history = store::versions(&pool, &owner).await.unwrap();
    assert_eq!(history.iter().map(|v| v.version).collect::<Vec<_>>(), vec![2, 1]);
    assert_eq!(history[0].author.as_deref(), Some("ann@example.com"));

    // Another tenant sees nothing of it; a viewer may not save.
    let (bob, bob_tenant) = sign_up(&pool, "bob@example.com", "Bravo").await;
    let bob_member = authorize(&pool, bob, bob_tenant).await.unwrap();
    assert!(store::current(&pool, &bob_member).await.unwrap().is_none());
    add_member(&pool, &owner, &Email::parse("bob@example.com").unwrap(), Role::Viewer)
        .await
        .unwrap();
    let viewer = authorize(&pool, bob, tenant).await.unwrap();
    assert!(matches!(
        store::save(&pool, &viewer, store::SEED_YAML, None).await,
        Err(SaveError::Access(AccessError::Forbidden))
    ));
}
