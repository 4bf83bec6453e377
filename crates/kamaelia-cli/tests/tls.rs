//! TLS end to end: `kamaelia serve --tls-cert/--tls-key`, `kamaelia connect --tls` and
//! `kamaelia relay --tls-cert/--tls-key` against peers that are not our code (`openssl s_client`,
//! `openssl s_server`, Python's `ssl` module), and certificate verification failures.
//!
//! Each test makes its own throwaway PKI with rcgen in a temporary directory: a CA, a server
//! certificate for `localhost` and 127.0.0.1 signed by it, a certificate signed by it for another
//! name, and a second, unrelated CA.

mod util;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use util::{echo_server, require, run_python, run_with_input, Proc, Server, BIN, HANG_GUARD};

/// A temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "kamaelia-tls-{what}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the temporary directory");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A self-signed CA.
fn make_ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// A server certificate for `names` (DNS names or IP addresses) signed by `ca`, with its key, as PEM.
fn make_server_cert(ca: &CertifiedIssuer<'static, KeyPair>, names: &[&str]) -> (String, String) {
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, names[0]);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, ca).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// The PEM files of one test's PKI.
struct Pki {
    /// Holds the files; removed with the PKI.
    _dir: TempDir,
    /// The CA that signed `cert` and `wrong_name_cert`.
    ca: PathBuf,
    /// A CA that signed nothing here.
    other_ca: PathBuf,
    /// For `localhost` and 127.0.0.1.
    cert: PathBuf,
    key: PathBuf,
    /// For `not-localhost.example` only.
    wrong_name_cert: PathBuf,
    wrong_name_key: PathBuf,
}

impl Pki {
    fn new(test: &str) -> Pki {
        let dir = TempDir::new(test);
        let write = |name: &str, pem: &str| -> PathBuf {
            let path = dir.0.join(name);
            std::fs::write(&path, pem).expect("write a PEM file");
            path
        };
        let ca = make_ca("kamaelia test CA");
        let other = make_ca("unrelated test CA");
        let (cert, key) = make_server_cert(&ca, &["localhost", "127.0.0.1"]);
        let (wcert, wkey) = make_server_cert(&ca, &["not-localhost.example"]);
        Pki {
            ca: write("ca.pem", &ca.pem()),
            other_ca: write("other-ca.pem", &other.pem()),
            cert: write("server.pem", &cert),
            key: write("server.key", &key),
            wrong_name_cert: write("wrong-name.pem", &wcert),
            wrong_name_key: write("wrong-name.key", &wkey),
            _dir: dir,
        }
    }
}

fn s(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

/// `kamaelia serve` (echo) with TLS, on 127.0.0.1, port 0.
fn tls_echo_server(cert: &Path, key: &Path) -> Server {
    Server::start(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        s(cert),
        "--tls-key",
        s(key),
    ])
}

#[test]
fn openssl_s_client_gets_its_bytes_back_from_serve_tls() {
    require("openssl");
    let pki = Pki::new("s-client");
    let mut server = tls_echo_server(&pki.cert, &pki.key);
    let mut cmd = Command::new("openssl");
    // Verification on: a certificate problem aborts the handshake. -quiet -no_ign_eof: only the
    // data on stdout, and stdin EOF ends the session (close_notify).
    cmd.args([
        "s_client",
        "-connect",
        &format!("127.0.0.1:{}", server.port()),
        "-servername",
        "localhost",
        "-CAfile",
        s(&pki.ca),
        "-verify_return_error",
        "-verify_hostname",
        "localhost",
        "-quiet",
        "-no_ign_eof",
    ]);
    let mut client = Proc::spawn_lines("openssl s_client", cmd);
    for line in ["hello over tls", "and a second line", &"x".repeat(20_000)] {
        client.send_line(line);
        let echoed = client.next_line(HANG_GUARD).unwrap_or_else(|| {
            panic!(
                "no echo from the TLS server; s_client stderr:\n{}",
                client.stderr()
            )
        });
        assert_eq!(echoed, line);
    }
    client.close_stdin();
    let status = client.finish(HANG_GUARD);
    assert!(
        status.success(),
        "s_client failed ({status}); stderr:\n{}",
        client.stderr()
    );
    server.assert_healthy();
}

#[test]
fn connect_tls_exchanges_data_both_ways_with_openssl_s_server() {
    require("openssl");
    let pki = Pki::new("s-server");
    let mut cmd = Command::new("openssl");
    // -rev: each line comes back reversed. -naccept 1: one connection, then exit.
    cmd.args([
        "s_server",
        "-accept",
        "127.0.0.1:0",
        "-cert",
        s(&pki.cert),
        "-key",
        s(&pki.key),
        "-rev",
        "-naccept",
        "1",
    ]);
    let mut server = Proc::spawn_lines("openssl s_server", cmd);
    let line = server.expect_line("ACCEPT ", HANG_GUARD);
    let port = line.rsplit(':').next().unwrap().trim().to_owned();

    let mut connect = Command::new(BIN);
    connect.args([
        "connect",
        &format!("localhost:{port}"),
        "--tls",
        "--ca",
        s(&pki.ca),
    ]);
    let (status, out, stderr) = run_with_input(
        "kamaelia connect --tls",
        connect,
        b"hello world\nsecond line\n".to_vec(),
        HANG_GUARD,
    );
    assert!(
        status.success(),
        "connect failed ({status}); stderr:\n{stderr}\ns_server stderr:\n{}",
        server.stderr()
    );
    assert_eq!(String::from_utf8_lossy(&out), "dlrow olleh\nenil dnoces\n");
    assert_eq!(stderr, "");
    // Our half-close (close_notify) ended s_server's session cleanly; it exits after one.
    let status = server.finish(HANG_GUARD);
    let rest = server.remaining_lines().join("\n");
    assert!(
        status.success(),
        "s_server failed ({status}); stdout:\n{rest}\nstderr:\n{}",
        server.stderr()
    );
    assert!(
        !rest.contains("CONNECTION FAILURE"),
        "s_server saw a failure:\n{rest}"
    );
}

/// Sends N random bytes over TLS (verifying the server against the CA given) while reading the
/// echo, keeping at most a window in flight; checks the echo; then closes TLS cleanly: our
/// close_notify, then the server's, then its FIN.
const TLS_ECHO_CLIENT_PY: &str = r#"
import os, socket, ssl, sys
host, port, n, ca = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
ctx = ssl.create_default_context(cafile=ca)
data = os.urandom(n)
raw = socket.create_connection((host, port), timeout=60)
s = ctx.wrap_socket(raw, server_hostname="localhost")
WINDOW = 256 * 1024
got = bytearray()
sent = 0
while len(got) < n:
    if sent < n and sent - len(got) < WINDOW:
        sent += s.send(data[sent:sent + 16384])
        continue
    b = s.recv(1 << 20)
    if not b:
        sys.exit(f"the server closed after {len(got)} of {n} bytes")
    got += b
if bytes(got) != data:
    i = next((i for i in range(min(len(got), n)) if got[i] != data[i]), min(len(got), n))
    sys.exit(f"sent {n} bytes, got {len(got)} back, first difference at byte {i}")
version = s.version()
plain = s.unwrap()
if plain.recv(1) != b"":
    sys.exit("data after the server's close_notify")
plain.close()
print("OK", len(got), version)
"#;

const TEN_MB: usize = 10 * 1024 * 1024;

#[test]
fn ten_megabytes_through_the_tls_echo_server_come_back_identical() {
    let pki = Pki::new("ten-mb");
    let mut server = tls_echo_server(&pki.cert, &pki.key);
    let out = run_python(
        "python ssl echo client",
        TLS_ECHO_CLIENT_PY,
        &[
            "127.0.0.1".into(),
            server.port().to_string(),
            TEN_MB.to_string(),
            s(&pki.ca).into(),
        ],
        HANG_GUARD,
    );
    assert_eq!(out, vec![format!("OK {TEN_MB} TLSv1.3")]);
    server.assert_healthy();
}

#[test]
fn relay_terminates_tls_in_front_of_a_plain_server() {
    let pki = Pki::new("relay");
    let mut target = echo_server();
    let mut relay = Server::start(&[
        "relay",
        "--listen",
        "127.0.0.1:0",
        "--to",
        &target.addr.to_string(),
        "--tls-cert",
        s(&pki.cert),
        "--tls-key",
        s(&pki.key),
    ]);
    let n = 2 * 1024 * 1024;
    let out = run_python(
        "python ssl client via relay",
        TLS_ECHO_CLIENT_PY,
        &[
            "127.0.0.1".into(),
            relay.port().to_string(),
            n.to_string(),
            s(&pki.ca).into(),
        ],
        HANG_GUARD,
    );
    assert_eq!(out, vec![format!("OK {n} TLSv1.3")]);
    relay.assert_healthy();
    target.assert_healthy();
}

#[test]
fn connect_tls_to_serve_tls_round_trips_and_closes_cleanly() {
    let pki = Pki::new("round-trip");
    let mut server = tls_echo_server(&pki.cert, &pki.key);
    let data = util::random_bytes(1024 * 1024, 11);
    let mut connect = Command::new(BIN);
    connect.args([
        "connect",
        &format!("localhost:{}", server.port()),
        "--tls",
        "--ca",
        s(&pki.ca),
    ]);
    let (status, out, stderr) =
        run_with_input("kamaelia connect --tls", connect, data.clone(), HANG_GUARD);
    assert!(
        status.success(),
        "connect failed ({status}); stderr:\n{stderr}"
    );
    assert_eq!(out.len(), data.len(), "got {} bytes back", out.len());
    assert!(out == data, "the echoed bytes differ");
    assert_eq!(stderr, "");
    server.assert_healthy();
}

/// Runs `kamaelia connect ARGS…` with stdin held open (it never ends while connect runs) and
/// asserts it fails, printing nothing on stdout and exactly one stderr line, which starts
/// `error:`. Returns that line.
fn assert_connect_fails_with_one_error_line(args: &[&str]) -> String {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env("KAMAELIA_LOG", "warn");
    let mut connect = Proc::spawn_lines("kamaelia connect", cmd);
    let status = connect.finish(HANG_GUARD);
    let out = connect.remaining_lines();
    let stderr = connect.stderr();
    assert!(
        !status.success(),
        "kamaelia {args:?} succeeded; stderr:\n{stderr}"
    );
    assert!(
        out.is_empty(),
        "kamaelia {args:?} printed on stdout: {out:?}"
    );
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(
        lines.len() == 1 && lines[0].starts_with("error:"),
        "kamaelia {args:?} should print one `error:` line, printed:\n{stderr}"
    );
    lines[0].to_owned()
}

#[test]
fn connect_tls_fails_with_one_error_line_when_the_ca_did_not_sign_the_certificate() {
    let pki = Pki::new("wrong-ca");
    let mut server = tls_echo_server(&pki.cert, &pki.key);
    let target = format!("localhost:{}", server.port());
    let line = assert_connect_fails_with_one_error_line(&[
        "connect",
        &target,
        "--tls",
        "--ca",
        s(&pki.other_ca),
    ]);
    assert!(line.contains("certificate"), "{line}");
    // Checked against the built-in roots, the test CA is unknown too.
    let line = assert_connect_fails_with_one_error_line(&["connect", &target, "--tls"]);
    assert!(line.contains("certificate"), "{line}");
    // The right CA works against the same server: the failures were about trust.
    let mut connect = Command::new(BIN);
    connect.args(["connect", &target, "--tls", "--ca", s(&pki.ca)]);
    let (status, out, stderr) = run_with_input("connect", connect, b"ok\n".to_vec(), HANG_GUARD);
    assert!(status.success(), "{status}: {stderr}");
    assert_eq!(out, b"ok\n");
    server.assert_healthy();
}

#[test]
fn connect_tls_fails_with_one_error_line_when_the_name_does_not_match() {
    let pki = Pki::new("wrong-name");
    let mut server = tls_echo_server(&pki.wrong_name_cert, &pki.wrong_name_key);
    let line = assert_connect_fails_with_one_error_line(&[
        "connect",
        &format!("localhost:{}", server.port()),
        "--tls",
        "--ca",
        s(&pki.ca),
    ]);
    assert!(line.contains("certificate"), "{line}");
    // By IP address too: the certificate names neither.
    let line = assert_connect_fails_with_one_error_line(&[
        "connect",
        &format!("127.0.0.1:{}", server.port()),
        "--tls",
        "--ca",
        s(&pki.ca),
    ]);
    assert!(line.contains("certificate"), "{line}");
    server.assert_healthy();
}

#[test]
fn openssl_s_client_is_refused_by_serve_tls_when_it_does_not_trust_the_ca() {
    require("openssl");
    let pki = Pki::new("s-client-refuses");
    let mut server = tls_echo_server(&pki.cert, &pki.key);
    let mut cmd = Command::new("openssl");
    cmd.args([
        "s_client",
        "-connect",
        &format!("127.0.0.1:{}", server.port()),
        "-servername",
        "localhost",
        "-CAfile",
        s(&pki.other_ca),
        "-verify_return_error",
        "-quiet",
        "-no_ign_eof",
    ]);
    let (status, _out, stderr) = run_with_input("openssl s_client", cmd, vec![], HANG_GUARD);
    assert!(
        !status.success(),
        "s_client trusted an unknown CA:\n{stderr}"
    );
    // The server carries on serving: a trusting client still gets its echo.
    let mut connect = Command::new(BIN);
    connect.args([
        "connect",
        &format!("localhost:{}", server.port()),
        "--tls",
        "--ca",
        s(&pki.ca),
    ]);
    let (status, out, stderr) = run_with_input("connect", connect, b"ok\n".to_vec(), HANG_GUARD);
    assert!(status.success(), "{status}: {stderr}");
    assert_eq!(out, b"ok\n");
    server.assert_healthy();
}
