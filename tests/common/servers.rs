//! Real object-storage servers for the tests, each started on a free port of 127.0.0.1 and
//! stopped when dropped: moto's S3 server (PyPI, `moto_server`) and Azurite's blob service
//! (npm, `azurite-blob`). Buckets and containers are made with the services' own tools (an
//! unsigned PUT for moto, the Azure SDK for Python for Azurite), never by synvault.
//!
//! Tests skip when a server is not installed, and never when
//! `SYNVAULT_REQUIRE_OBJECT_STORAGE=1` (`.ci/run` installs both and sets it).
#![allow(dead_code)]

use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::env::Env;

/// Azurite's well-known development account.
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Which service a server speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    S3,
    Azure,
}

/// A running server; dropping it stops it.
pub struct Server {
    pub kind: Kind,
    pub port: u16,
    child: Child,
    _data: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn required() -> bool {
    std::env::var("SYNVAULT_REQUIRE_OBJECT_STORAGE").as_deref() == Ok("1")
}

/// `program` on PATH.
fn find(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_listening(port: u16, child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("{what} exited with {status} before it listened");
        }
        assert!(Instant::now() < deadline, "{what} never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Server {
    /// Starts a server of `kind`, or `None` (the test skips) where it is not installed.
    pub fn start(kind: Kind) -> Option<Server> {
        let program = match kind {
            Kind::S3 => "moto_server",
            Kind::Azure => "azurite-blob",
        };
        let Some(binary) = find(program) else {
            assert!(
                !required(),
                "{program} is not on PATH and SYNVAULT_REQUIRE_OBJECT_STORAGE=1"
            );
            eprintln!("skipped: {program} is not installed");
            return None;
        };
        Some(Server::start_at(kind, &binary, free_port()))
    }

    /// Starts the server `binary` of `kind` on `port` (again on the same port after a stop).
    fn start_at(kind: Kind, binary: &Path, port: u16) -> Server {
        let data = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(binary);
        match kind {
            Kind::S3 => cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()]),
            Kind::Azure => cmd
                .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
                .arg("--location")
                .arg(data.path())
                .args(["--silent", "--skipApiVersionCheck", "--loose"]),
        };
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_listening(port, &mut child, binary.to_str().unwrap());
        Server {
            kind,
            port,
            child,
            _data: data,
        }
    }

    /// The service's URL.
    pub fn endpoint(&self) -> String {
        match self.kind {
            Kind::S3 => format!("http://127.0.0.1:{}", self.port),
            Kind::Azure => format!("http://127.0.0.1:{}/{AZURITE_ACCOUNT}", self.port),
        }
    }

    /// Makes an empty bucket (container) named `name`.
    pub fn make_bucket(&self, name: &str) {
        match self.kind {
            Kind::S3 => {
                let ok = Command::new("curl")
                    .args(["-sf", "-X", "PUT"])
                    .arg(format!("{}/{name}", self.endpoint()))
                    .stdout(Stdio::null())
                    .status()
                    .unwrap()
                    .success();
                assert!(ok, "moto did not make bucket {name}");
            }
            Kind::Azure => {
                let python = find("moto_server")
                    .and_then(|m| m.parent().map(|d| d.join("python3")))
                    .filter(|p| p.is_file())
                    .unwrap_or_else(|| PathBuf::from("python3"));
                let script = format!(
                    "from azure.storage.blob import BlobServiceClient as C\n\
                     C.from_connection_string('DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};BlobEndpoint={}').create_container('{name}')",
                    self.endpoint()
                );
                let out = Command::new(python).arg("-c").arg(script).output().unwrap();
                assert!(
                    out.status.success(),
                    "cannot make container {name}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }

    /// The environment a synvault process needs to reach this server.
    pub fn vars(&self) -> Vec<(String, String)> {
        let mut vars = vec![("SYNVAULT_ENDPOINT".to_string(), self.endpoint())];
        match self.kind {
            Kind::S3 => {
                vars.push(("AWS_ACCESS_KEY_ID".into(), "testing".into()));
                vars.push(("AWS_SECRET_ACCESS_KEY".into(), "testing".into()));
                vars.push(("AWS_REGION".into(), "us-east-1".into()));
            }
            Kind::Azure => {
                vars.push(("AZURE_STORAGE_ACCOUNT_NAME".into(), AZURITE_ACCOUNT.into()));
                vars.push(("AZURE_STORAGE_ACCOUNT_KEY".into(), AZURITE_KEY.into()));
            }
        }
        vars
    }

    /// The vault URL of prefix `prefix` in bucket `bucket`.
    pub fn url(&self, bucket: &str, prefix: &str) -> String {
        let scheme = match self.kind {
            Kind::S3 => "s3",
            Kind::Azure => "azure",
        };
        format!("{scheme}://{bucket}/{prefix}")
    }

    /// A test environment whose vault is a new prefix of a new bucket of this server, with
    /// its catalog in the environment's directory; `init` has run.
    pub fn env(&self, bucket: &str) -> Env {
        self.make_bucket(bucket);
        let env = Env::remote(self.url(bucket, "vault"), self.vars());
        let out = env.run(&["init"]);
        assert!(
            out.status.success(),
            "init failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        env
    }
}

/// A TCP proxy in front of a server that can be taken down and brought back, as a link or a
/// service that fails for a while: when down, it cuts every open connection and refuses new
/// ones (they are accepted and closed at once).
pub struct FaultProxy {
    pub port: u16,
    up: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl FaultProxy {
    /// A proxy on a free port forwarding to `server`'s port.
    pub fn before(server: &Server) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (to, up_flag, conns) = (server.port, up.clone(), open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if !up_flag.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(upstream) = TcpStream::connect(("127.0.0.1", to)) else {
                    continue;
                };
                {
                    let mut conns = conns.lock().unwrap();
                    conns.push(client.try_clone().unwrap());
                    conns.push(upstream.try_clone().unwrap());
                }
                pipe(client.try_clone().unwrap(), upstream.try_clone().unwrap());
                pipe(upstream, client);
            }
        });
        FaultProxy { port, up, open }
    }

    /// The proxy's URL for a service at `endpoint` (the server's own URL).
    pub fn endpoint(&self, server: &Server) -> String {
        server
            .endpoint()
            .replace(&format!(":{}", server.port), &format!(":{}", self.port))
    }

    /// The environment of `server` with requests going through this proxy.
    pub fn vars(&self, server: &Server) -> Vec<(String, String)> {
        let mut vars = server.vars();
        for (key, value) in &mut vars {
            if key == "SYNVAULT_ENDPOINT" {
                *value = self.endpoint(server);
            }
        }
        vars
    }

    /// Cuts every connection and refuses new ones until [`FaultProxy::up`].
    pub fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        for conn in self.open.lock().unwrap().drain(..) {
            let _ = conn.shutdown(Shutdown::Both);
        }
    }

    pub fn up(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

/// Copies bytes from `from` to `to` on a thread until either side closes.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(Shutdown::Write);
    });
}
