//! How fast two processes move bulk words over QUIC on this machine, both directions at once
//! (as a protocol round does), with the deployment's TLS and transport settings.
//!
//! `cargo run --release --example quic_throughput -- MB` runs a listener and a dialer as two
//! child processes and prints the MB/s each direction reached. A measuring aid for one user at
//! a time: its development certificates go to a fixed temporary directory
//! (`ppea-quic-throughput`) and the listener takes the fixed port 47111 on loopback.

use ppea::net::tls::{Identity, TlsFiles, write_dev_pki};
use std::path::Path;
use std::time::Instant;

fn files(dir: &Path, name: &str) -> TlsFiles {
    TlsFiles {
        ca: dir.join("ca.pem"),
        cert: dir.join(format!("{name}.pem")),
        key: dir.join(format!("{name}.key")),
    }
}

async fn pump(conn: quinn::Connection, open: bool, mb: usize) -> f64 {
    let (mut send, mut recv) = if open {
        let (mut s, r) = conn.open_bi().await.expect("open");
        s.write_all(&[1]).await.expect("hello");
        (s, r)
    } else {
        let (s, mut r) = conn.accept_bi().await.expect("accept");
        let mut one = [0u8; 1];
        r.read_exact(&mut one).await.expect("hello");
        (s, r)
    };
    let chunk = vec![7u8; 1 << 20];
    let start = Instant::now();
    let tx = async {
        for _ in 0..mb {
            send.write_all(&chunk).await.expect("write");
        }
        send.finish().expect("finish");
    };
    let rx = async {
        let mut buf = vec![0u8; 1 << 20];
        let mut got = 0usize;
        while got < mb << 20 {
            match recv.read(&mut buf).await.expect("read") {
                Some(n) => got += n,
                None => break,
            }
        }
        got
    };
    let (_, got) = tokio::join!(tx, rx);
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(got, mb << 20);
    println!(
        "{} {:.1} MB/s each way ({:.2} s); path MTU {}",
        if open { "dialer" } else { "listener" },
        (mb << 20) as f64 / 1e6 / secs,
        secs,
        conn.stats().path.current_mtu
    );
    // Both sides read everything before either closes.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    conn.close(0u32.into(), b"done");
    secs
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mb: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(400);
    let dir = std::env::temp_dir().join("ppea-quic-throughput");
    match args.get(2).map(String::as_str) {
        Some("listen") => {
            let id = Identity::load("a", &files(&dir, "a")).expect("identity");
            let ep = id.endpoint("127.0.0.1:47111".parse().unwrap()).expect("ep");
            let conn = ep.accept().await.expect("incoming").await.expect("conn");
            pump(conn, false, mb).await;
            ep.wait_idle().await;
        }
        Some("dial") => {
            let id = Identity::load("b", &files(&dir, "b")).expect("identity");
            let ep = id.client_endpoint().expect("ep");
            let conn = ep
                .connect("127.0.0.1:47111".parse().unwrap(), "a")
                .expect("connect")
                .await
                .expect("conn");
            pump(conn, true, mb).await;
            ep.wait_idle().await;
        }
        _ => {
            write_dev_pki(&dir, &["a".into(), "b".into()]).expect("pki");
            let me = std::env::current_exe().expect("exe");
            let mut l = std::process::Command::new(&me)
                .args([mb.to_string(), "listen".into()])
                .spawn()
                .expect("listener");
            std::thread::sleep(std::time::Duration::from_millis(300));
            let mut d = std::process::Command::new(&me)
                .args([mb.to_string(), "dial".into()])
                .spawn()
                .expect("dialer");
            d.wait().expect("dialer");
            l.wait().expect("listener");
        }
    }
}
