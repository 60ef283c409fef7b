#![allow(clippy::unwrap_used)]

use shopmind_config::{Config, ConfigError, Device, LogFormat};

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn defaults_are_valid() {
    let c = Config::load(None, env(&[])).unwrap();
    assert_eq!(c, Config::default());
    assert!(c.nats.url.is_empty());
}

#[test]
fn file_then_environment_override_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shopmind.toml");
    std::fs::write(
        &path,
        "[nats]\nurl = \"nats://10.0.0.1:4222\"\n[inference]\nsessions = 4\ndevice = \"cuda\"\n[log]\nformat = \"json\"\n",
    )
    .unwrap();
    let c = Config::load(
        Some(&path),
        env(&[
            ("SHOPMIND__INFERENCE__SESSIONS", "8"),
            ("SHOPMIND__GATEWAY__LISTEN", "0.0.0.0:9000"),
            ("OTHER", "x"),
        ]),
    )
    .unwrap();
    assert_eq!(c.nats.url, "nats://10.0.0.1:4222");
    assert_eq!(c.inference.sessions, 8, "environment beats file");
    assert_eq!(c.inference.device, Device::Cuda);
    assert_eq!(c.log.format, LogFormat::Json);
    assert_eq!(c.gateway.listen.port(), 9000);
    assert_eq!(c.feature.recent_items_cap, 100, "untouched keys keep defaults");
}

#[test]
fn errors_name_the_key_and_the_problem() {
    let err = Config::load(None, env(&[("SHOPMIND__INFERENCE__SESSIONS", "0")])).unwrap_err();
    assert_eq!(
        err,
        ConfigError::Invalid { key: "inference.sessions".into(), reason: "must be 1..=64".into() }
    );

    let err = Config::load(None, env(&[("SHOPMIND__INFERENCE__SESSIONS", "many")])).unwrap_err();
    assert!(matches!(&err, ConfigError::Invalid { key, .. } if key == "inference.sessions"), "{err}");

    let err = Config::load(None, env(&[("SHOPMIND__NATS__URL", "http://x")])).unwrap_err();
    assert!(matches!(&err, ConfigError::Invalid { key, .. } if key == "nats.url"), "{err}");

    let err = Config::load(None, env(&[("SHOPMIND__GATEWAY__LISTEN", "not an address")])).unwrap_err();
    assert!(matches!(&err, ConfigError::Invalid { key, .. } if key == "gateway.listen"), "{err}");

    let err = Config::load(None, env(&[("SHOPMIND__INFERENCE__DEVICE", "tpu")])).unwrap_err();
    assert!(matches!(&err, ConfigError::Invalid { key, .. } if key == "inference.device"), "{err}");
}

#[test]
fn batching_keys_are_bounded() {
    for (var, value, key) in [
        ("SHOPMIND__INFERENCE__MAX_BATCH", "0", "inference.max_batch"),
        ("SHOPMIND__INFERENCE__MAX_BATCH", "4097", "inference.max_batch"),
        ("SHOPMIND__INFERENCE__MAX_QUEUE_DELAY_US", "1000001", "inference.max_queue_delay_us"),
        ("SHOPMIND__INFERENCE__MAX_QUEUE_DELAY_US", "-1", "inference.max_queue_delay_us"),
        ("SHOPMIND__INFERENCE__QUEUE_CAPACITY", "0", "inference.queue_capacity"),
    ] {
        let err = Config::load(None, env(&[(var, value)])).unwrap_err();
        assert!(matches!(&err, ConfigError::Invalid { key: k, .. } if k == key), "{var}={value}: {err}");
    }
    let c = Config::load(
        None,
        env(&[
            ("SHOPMIND__INFERENCE__MAX_BATCH", "4096"),
            ("SHOPMIND__INFERENCE__MAX_QUEUE_DELAY_US", "0"),
            ("SHOPMIND__INFERENCE__QUEUE_CAPACITY", "1"),
        ]),
    )
    .unwrap();
    assert_eq!(
        (c.inference.max_batch, c.inference.max_queue_delay_us, c.inference.queue_capacity),
        (4096, 0, 1)
    );
}

#[test]
fn tenants_are_validated_as_tenant_ids() {
    let c = Config::load(None, env(&[])).unwrap();
    assert!(c.ingest.accepts_tenant(&shopmind_domain::TenantId::parse("anyone").unwrap()));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.toml");
    std::fs::write(&path, "[ingest]\ntenants = [\"acme\"]\n").unwrap();
    let c = Config::load(Some(&path), env(&[])).unwrap();
    assert!(c.ingest.accepts_tenant(&shopmind_domain::TenantId::parse("acme").unwrap()));
    assert!(!c.ingest.accepts_tenant(&shopmind_domain::TenantId::parse("globex").unwrap()));
    std::fs::write(&path, "[ingest]\ntenants = [\"Bad Tenant\"]\n").unwrap();
    let err = Config::load(Some(&path), env(&[])).unwrap_err();
    assert!(matches!(&err, ConfigError::Invalid { key, .. } if key.starts_with("ingest.tenants")), "{err}");
}

#[test]
fn unknown_keys_are_rejected_with_their_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, "[inference]\nsesions = 3\n").unwrap();
    let err = Config::load(Some(&path), env(&[])).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("sesions"), "{text}");

    let err = Config::load(None, env(&[("SHOPMIND__NOPE__X", "1")])).unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
}

#[test]
fn a_missing_or_broken_file_is_reported_with_its_path() {
    let err = Config::load(Some(std::path::Path::new("/nonexistent/s.toml")), env(&[])).unwrap_err();
    assert!(matches!(&err, ConfigError::File { path, .. } if path.ends_with("s.toml")), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[nats\n").unwrap();
    assert!(matches!(Config::load(Some(&path), env(&[])).unwrap_err(), ConfigError::File { .. }));
}

#[test]
fn the_example_file_is_complete_and_valid() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/shopmind.example.toml");
    let c = Config::load(Some(&path), env(&[])).unwrap();
    // The example documents every key with its default value.
    let example: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
    let defaults = toml::Table::try_from(Config::default()).unwrap();
    assert_eq!(example, defaults, "config/shopmind.example.toml must list every key with its default");
    assert_eq!(c, Config::default());
}

#[test]
fn metrics_listen_is_an_address_or_empty() {
    let c = Config::load(None, env(&[])).unwrap();
    assert_eq!(c.metrics.listen_addr(), Some("127.0.0.1:9090".parse().unwrap()));
    let c = Config::load(None, env(&[("SHOPMIND__METRICS__LISTEN", "0.0.0.0:9464")])).unwrap();
    assert_eq!(c.metrics.listen_addr(), Some("0.0.0.0:9464".parse().unwrap()));
    let c = Config::load(None, env(&[("SHOPMIND__METRICS__LISTEN", "")])).unwrap();
    assert_eq!(c.metrics.listen_addr(), None, "empty disables the endpoint");
    let err = Config::load(None, env(&[("SHOPMIND__METRICS__LISTEN", "localhost")])).unwrap_err();
    assert!(matches!(&err, ConfigError::Invalid { key, .. } if key == "metrics.listen"), "{err}");
}

#[test]
fn a_tenant_notification_table_overrides_only_what_it_names() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        r#"
[notification.defaults.policy]
frequency_cap = 7
[notification.tenants.acme.rules.cart_abandonment]
idle_s = 60
[[notification.tenants.acme.webhooks]]
name = "crm"
url = "http://127.0.0.1:9/hook"
secret = "s"
"#,
    )
    .unwrap();
    let c = Config::load(Some(&path), env(&[])).unwrap();
    let acme = c.notification.tenant("acme");
    assert_eq!(acme.rules.cart_abandonment.idle_s, 60);
    assert_eq!(acme.rules.cart_abandonment.min_intent, 0.5, "built-in default");
    assert_eq!(acme.policy.frequency_cap, 7, "from [notification.defaults]");
    assert_eq!(acme.webhooks.len(), 1);
    let other = c.notification.tenant("globex");
    assert_eq!(other.rules.cart_abandonment.idle_s, 1800);
    assert_eq!(other.policy.frequency_cap, 7);
    assert!(other.webhooks.is_empty());

    let webhook = |url: &str| {
        format!("[[notification.tenants.acme.webhooks]]\nname = \"x\"\nurl = \"{url}\"\nsecret = \"s\"\n")
    };
    std::fs::write(&path, webhook("https://hooks.example.com/x")).unwrap();
    let c = Config::load(Some(&path), env(&[])).unwrap();
    assert_eq!(c.notification.tenant("acme").webhooks[0].url, "https://hooks.example.com/x");
    std::fs::write(&path, webhook("ftp://a/")).unwrap();
    let err = Config::load(Some(&path), env(&[])).unwrap_err();
    assert!(
        matches!(&err, ConfigError::Invalid { key, .. } if key == "notification.tenants.acme.webhooks[0].url"),
        "{err}"
    );
    let err =
        Config::load(None, env(&[("SHOPMIND__NOTIFICATION__DEFAULTS__POLICY__DEFAULT_UTC_OFFSET", "CET")]))
            .unwrap_err();
    assert!(
        matches!(&err, ConfigError::Invalid { key, .. } if key == "notification.defaults.policy.default_utc_offset"),
        "{err}"
    );
    let zone = |z: &str| env(&[("SHOPMIND__NOTIFICATION__DEFAULTS__POLICY__DEFAULT_TIME_ZONE", z)]);
    let c = Config::load(None, zone("Europe/Berlin")).unwrap();
    assert_eq!(c.notification.defaults.policy.default_time_zone, "Europe/Berlin");
    let err = Config::load(None, zone("Europe/Atlantis")).unwrap_err();
    assert!(
        matches!(&err, ConfigError::Invalid { key, .. } if key == "notification.defaults.policy.default_time_zone"),
        "{err}"
    );
}

#[test]
fn time_zones_parse_iana_names_and_offsets() {
    use shopmind_config::parse_time_zone;
    let berlin = parse_time_zone("Europe/Berlin").unwrap();
    assert_eq!(berlin.iana_name(), Some("Europe/Berlin"));
    // Summer (CEST, +02:00) and winter (CET, +01:00): daylight saving time is followed.
    let summer = jiff::Timestamp::from_second(1_783_000_000).unwrap(); // 2026-07-02
    let winter = jiff::Timestamp::from_second(1_768_000_000).unwrap(); // 2026-01-09
    assert_eq!(berlin.to_offset(summer).seconds(), 7200);
    assert_eq!(berlin.to_offset(winter).seconds(), 3600);
    assert_eq!(parse_time_zone("+05:30").unwrap().to_offset(summer).seconds(), 19_800);
    assert_eq!(parse_time_zone("UTC").unwrap().to_offset(winter).seconds(), 0);
    for bad in ["", "Europe/Atlantis", "Mars/Olympus", "+5:00", "-25:00", "../etc/passwd"] {
        assert!(parse_time_zone(bad).is_none(), "{bad}");
    }
}

#[test]
fn utc_offsets_parse() {
    use shopmind_config::parse_utc_offset;
    assert_eq!(parse_utc_offset("+00:00"), Some(0));
    assert_eq!(parse_utc_offset("UTC"), Some(0));
    assert_eq!(parse_utc_offset("+05:30"), Some(330));
    assert_eq!(parse_utc_offset("-08:00"), Some(-480));
    for bad in ["", "5", "+5:00", "+15:00", "+01:60", "CET", "+01"] {
        assert_eq!(parse_utc_offset(bad), None, "{bad}");
    }
}

#[test]
fn the_agent_report_and_the_intent_head_settings_are_checked() {
    let err = Config::load(None, env(&[("SHOPMIND__INFERENCE__RESOLUTION_IDLE_S", "0")])).unwrap_err();
    assert!(
        matches!(&err, ConfigError::Invalid { key, .. } if key == "inference.resolution_idle_s"),
        "{err}"
    );
    let err = Config::load(None, env(&[("SHOPMIND__INFERENCE__AGENT_REPORT_MAX_DAYS", "0")])).unwrap_err();
    assert!(
        matches!(&err, ConfigError::Invalid { key, .. } if key == "inference.agent_report_max_days"),
        "{err}"
    );
    let err = Config::load(None, env(&[("SHOPMIND__FEATURE__CONVERSATION_MESSAGES_CAP", "0")])).unwrap_err();
    assert!(
        matches!(&err, ConfigError::Invalid { key, .. } if key == "feature.conversation_messages_cap"),
        "{err}"
    );
    let enabled = [
        ("SHOPMIND__TRAINER__ASSISTANT__ENABLED", "true"),
        ("SHOPMIND__TRAINER__ASSISTANT__ENCODER_DIR", ""),
    ];
    let err = Config::load(None, env(&enabled)).unwrap_err();
    assert!(
        matches!(&err, ConfigError::Invalid { key, .. } if key == "trainer.assistant.encoder_dir"),
        "{err}"
    );
    let c = Config::load(None, env(&enabled[..1])).unwrap();
    assert!(c.trainer.assistant.enabled);
}

#[test]
fn edge_settings_are_checked_and_secrets_read_from_files() {
    let err = Config::load(None, env(&[("SHOPMIND__NATS__USER", "svc")])).unwrap_err();
    assert!(matches!(&err, ConfigError::Invalid { key, .. } if key == "nats.user"), "{err}");
    let err = Config::load(None, env(&[("SHOPMIND__GATEWAY__TLS__CERT_FILE", "/x.pem")])).unwrap_err();
    assert!(matches!(&err, ConfigError::Invalid { key, .. } if key == "gateway.tls"), "{err}");
    let err = Config::load(None, env(&[("SHOPMIND__GATEWAY__RATE_LIMIT__BURST", "0")])).unwrap_err();
    assert!(matches!(&err, ConfigError::Invalid { key, .. } if key == "gateway.rate_limit.burst"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shopmind.toml");
    std::fs::write(&path, "[gateway.api_keys]\nshort = \"acme\"\n").unwrap();
    let err = Config::load(Some(&path), env(&[])).unwrap_err();
    assert!(matches!(&err, ConfigError::Invalid { key, .. } if key == "gateway.api_keys"), "{err}");
    std::fs::write(&path, "[gateway.rate_limit.tenants.acme]\nrequests_per_second = 5.0\nburst = 2\n")
        .unwrap();
    let c = Config::load(Some(&path), env(&[])).unwrap();
    assert_eq!(c.gateway.rate_limit.tenants["acme"].burst, 2);

    let secret = dir.path().join("password");
    std::fs::write(&secret, "s3cret\n").unwrap();
    let file = secret.to_str().unwrap();
    assert_eq!(shopmind_config::secret("", file, "redis.password_file").unwrap(), "s3cret");
    assert_eq!(shopmind_config::secret("inline", "", "redis.password_file").unwrap(), "inline");
    let err = shopmind_config::secret("", "/nonexistent/pw", "redis.password_file").unwrap_err();
    assert!(matches!(&err, ConfigError::Invalid { key, .. } if key == "redis.password_file"), "{err}");
}
