//! Encryption in transit and credentials, against real servers: a `nats-server` that requires
//! TLS and a user, and `redis-server`s that require a password (one of them over TLS only).
//! Connections with the configured CA and credentials work; a wrong or missing secret fails at
//! once with an error that names the settings to check.

#![allow(clippy::unwrap_used)]

use shopmind_config::Config;
use shopmind_runtime::connect::{self, ConnectError, Embedded};
use shopmind_testkit::{NatsServer, RedisServer, TestCerts};

fn credentials_error(e: ConnectError) -> (String, String) {
    match e {
        ConnectError::Credentials { keys, reason } => (keys, reason),
        other => panic!("expected a credentials error, got {other}"),
    }
}

#[tokio::test]
async fn nats_over_tls_with_a_password_from_a_secret_file() {
    let certs = TestCerts::generate();
    let nats = NatsServer::start_secure(&certs, "svc", "nats-pass-1");
    let secrets = tempfile::tempdir().unwrap();
    let password_file = secrets.path().join("nats-password");
    std::fs::write(&password_file, "nats-pass-1\n").unwrap();

    let mut config = Config::default();
    config.nats.url = nats.tls_url();
    config.nats.user = "svc".into();
    config.nats.password_file = password_file.to_str().unwrap().into();
    config.nats.tls_ca_file = certs.ca().to_str().unwrap().into();
    let bus = connect::bus(&config, "test", Embedded::Forbidden).await.unwrap();
    connect::ensure_streams(&*bus, &config).await.unwrap();
    assert!(bus.stream_state(shopmind_runtime::topology::EVENTS_STREAM).await.is_ok());
    // The model registry shares the one authenticated connection.
    connect::bus_and_models(&config, "test", Embedded::Forbidden).await.unwrap();

    // A wrong password: refused at once, naming the settings.
    std::fs::write(&password_file, "wrong").unwrap();
    let (keys, reason) =
        credentials_error(connect::bus(&config, "test", Embedded::Forbidden).await.err().unwrap());
    assert!(keys.contains("nats.password"), "{keys}");
    assert!(reason.contains("refused the credentials"), "{reason}");
    assert!(!reason.contains("wrong"), "the secret is not shown: {reason}");

    // No credentials at all.
    let mut anonymous = config.clone();
    anonymous.nats.user.clear();
    anonymous.nats.password_file.clear();
    let (keys, _) =
        credentials_error(connect::bus(&anonymous, "test", Embedded::Forbidden).await.err().unwrap());
    assert!(keys.contains("nats.user"), "{keys}");

    // A missing secret file names its setting.
    config.nats.password_file = secrets.path().join("absent").to_str().unwrap().into();
    let (keys, _) =
        credentials_error(connect::bus(&config, "test", Embedded::Forbidden).await.err().unwrap());
    assert_eq!(keys, "nats.password_file");

    // Without the CA the server's certificate is not trusted.
    std::fs::write(&password_file, "nats-pass-1").unwrap();
    config.nats.password_file = password_file.to_str().unwrap().into();
    config.nats.tls_ca_file.clear();
    let (keys, reason) =
        credentials_error(connect::bus(&config, "test", Embedded::Forbidden).await.err().unwrap());
    assert!(keys.contains("nats.tls_ca_file"), "{keys}: {reason}");
}

#[tokio::test]
async fn redis_with_a_password() {
    let redis = RedisServer::start_secure("redis-pass-1", None);
    let mut config = Config::default();
    config.redis.url = redis.url();
    config.redis.password = "redis-pass-1".into();
    let store = connect::store(&config, "test", Embedded::Forbidden).await.unwrap();
    let key = shopmind_store::Key("sm:acme:probe".into());
    store.read(vec![shopmind_store::Read::Get { key }]).await.unwrap();

    for wrong in ["nope", ""] {
        config.redis.password = wrong.into();
        let (keys, reason) =
            credentials_error(connect::store(&config, "test", Embedded::Forbidden).await.err().unwrap());
        assert!(keys.contains("redis.password"), "{keys}: {reason}");
    }
}

#[tokio::test]
async fn redis_over_tls_with_the_configured_ca() {
    let certs = TestCerts::generate();
    let redis = RedisServer::start_secure("redis-pass-2", Some(&certs));
    let secrets = tempfile::tempdir().unwrap();
    let password_file = secrets.path().join("redis-password");
    std::fs::write(&password_file, "redis-pass-2\n").unwrap();
    let mut config = Config::default();
    config.redis.url = redis.tls_url();
    config.redis.password_file = password_file.to_str().unwrap().into();
    config.redis.tls_ca_file = certs.ca().to_str().unwrap().into();
    let store = connect::store(&config, "test", Embedded::Forbidden).await.unwrap();
    let key = shopmind_store::Key("sm:acme:probe".into());
    store.read(vec![shopmind_store::Read::Get { key }]).await.unwrap();

    // Without the CA, the platform's roots do not trust the test CA.
    config.redis.tls_ca_file.clear();
    assert!(connect::store(&config, "test", Embedded::Forbidden).await.is_err());
}
