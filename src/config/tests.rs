use super::*;

#[test]
fn file_then_flags() {
    let dir = std::env::temp_dir().join(format!("sessiond-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("c.toml");
    std::fs::write(&path, "maxmemory = \"2gb\"\nmaxmemory-policy = \"volatile-ttl\"\nprotected-mode = \"no\"\nlisten = [\"127.0.0.1:7000\"]\n").unwrap();
    let args = ServeArgs {
        config: Some(path.clone()),
        maxmemory: Some("512mb".into()),
        ..Default::default()
    };
    let c = Config::resolve(&args).unwrap();
    assert_eq!(c.maxmemory, 512 * 1024 * 1024, "flag wins over file");
    assert_eq!(c.maxmemory_policy, Policy::VolatileTtl);
    assert!(!c.protected_mode);
    assert_eq!(c.listen[0].port(), 7000);
    let bad = ServeArgs {
        threads: Some(0),
        ..Default::default()
    };
    assert!(Config::resolve(&bad).unwrap_err().contains("threads"));
    std::fs::write(&path, "bogus-key = 1\n").unwrap();
    assert!(Config::resolve(&ServeArgs {
        config: Some(path),
        ..Default::default()
    })
    .unwrap_err()
    .contains("bogus-key"));
}

#[test]
fn tls_settings_need_each_other() {
    let port_only = ServeArgs {
        tls_port: Some(6390),
        ..Default::default()
    };
    assert!(Config::resolve(&port_only)
        .unwrap_err()
        .contains("tls-cert-file"));
    let files_only = ServeArgs {
        tls_cert_file: Some("c.pem".into()),
        tls_key_file: Some("k.pem".into()),
        ..Default::default()
    };
    assert!(Config::resolve(&files_only)
        .unwrap_err()
        .contains("tls-port"));
    let bad_auth = ServeArgs {
        tls_port: Some(6390),
        tls_cert_file: Some("c.pem".into()),
        tls_key_file: Some("k.pem".into()),
        tls_auth_clients: Some("maybe".into()),
        ..Default::default()
    };
    assert!(Config::resolve(&bad_auth)
        .unwrap_err()
        .contains("tls-auth-clients"));
}
