//! Throwaway certificates for the TLS tests, made with the `openssl` command (EC P-256 keys:
//! fast to generate): a CA, a server certificate for 127.0.0.1/localhost, client
//! certificates by Common Name, one from another CA, and one that expired in 2020.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::TempDir;

pub struct Certs {
    pub dir: TempDir,
}

const EC: &[&str] = &[
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
];

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl is installed (scripts/test installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Certs {
    /// A CA (`ca.crt`) and a server certificate (`server.crt`, `server.key`).
    pub fn new() -> Certs {
        let certs = Certs {
            dir: TempDir::new("certs"),
        };
        certs.ca("ca");
        certs.server("server");
        certs
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path(name)
    }

    pub fn arg(&self, name: &str) -> String {
        self.path(name).to_string_lossy().into_owned()
    }

    /// A self-signed CA `<name>.crt`/`<name>.key`.
    pub fn ca(&self, name: &str) {
        let mut args = vec!["req", "-x509"];
        args.extend_from_slice(EC);
        let (key, crt, subj) = (
            format!("{name}.key"),
            format!("{name}.crt"),
            format!("/CN=sessiond test {name}"),
        );
        args.extend_from_slice(&[
            "-keyout", &key, "-out", &crt, "-days", "3650", "-subj", &subj,
        ]);
        openssl(&self.dir.0, &args);
    }

    fn csr(&self, name: &str, cn: &str) {
        let mut args = vec!["req"];
        args.extend_from_slice(EC);
        let (key, csr, subj) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("/CN={cn}"),
        );
        args.extend_from_slice(&["-keyout", &key, "-out", &csr, "-subj", &subj]);
        openssl(&self.dir.0, &args);
    }

    fn sign(&self, name: &str, ca: &str, ext: &str) {
        let extfile = format!("{name}.ext");
        std::fs::write(self.path(&extfile), ext).expect("ext");
        let (csr, crt, ca_crt, ca_key) = (
            format!("{name}.csr"),
            format!("{name}.crt"),
            format!("{ca}.crt"),
            format!("{ca}.key"),
        );
        openssl(
            &self.dir.0,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca_crt,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-out",
                &crt,
                "-days",
                "365",
                "-extfile",
                &extfile,
            ],
        );
    }

    /// A server certificate `<name>.crt`/`<name>.key` for 127.0.0.1 and localhost.
    pub fn server(&self, name: &str) {
        self.csr(name, "localhost");
        self.sign(
            name,
            "ca",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n",
        );
    }

    /// A client certificate `<name>.crt`/`<name>.key` with Common Name `cn`, from `ca`.
    pub fn client(&self, name: &str, cn: &str, ca: &str) {
        self.csr(name, cn);
        self.sign(
            name,
            ca,
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n",
        );
    }

    /// A client certificate from `ca` valid only on 1 January 2020.
    pub fn expired_client(&self, name: &str, cn: &str) {
        self.csr(name, cn);
        std::fs::write(
            self.path("ca.cnf"),
            "[ca]\ndefault_ca=d\n[d]\ndatabase=index.txt\nnew_certs_dir=.\nserial=serial\n\
             default_md=sha256\npolicy=p\n[p]\ncommonName=supplied\n",
        )
        .expect("ca.cnf");
        std::fs::write(self.path("index.txt"), "").expect("index");
        std::fs::write(self.path("serial"), "01\n").expect("serial");
        std::fs::write(
            self.path("expired.ext"),
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n",
        )
        .expect("ext");
        let (csr, crt) = (format!("{name}.csr"), format!("{name}.crt"));
        openssl(
            &self.dir.0,
            &[
                "ca",
                "-config",
                "ca.cnf",
                "-batch",
                "-cert",
                "ca.crt",
                "-keyfile",
                "ca.key",
                "-in",
                &csr,
                "-out",
                &crt,
                "-startdate",
                "20200101000000Z",
                "-enddate",
                "20200102000000Z",
                "-extfile",
                "expired.ext",
            ],
        );
    }
}
