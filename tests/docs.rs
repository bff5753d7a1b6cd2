//! The configuration examples in the README parse with the types the binaries use, so the
//! documentation cannot drift from the code.

use ppea::net::config::{Role, ServerConfig};
use ppea::net::party::PartyJob;

/// The README's whole TOML examples (a server's, a party's, an accountability job's), without
/// the fragments that show one part of a party's job file ([`fragments`]).
fn toml_blocks() -> Vec<String> {
    all_toml_blocks()
        .into_iter()
        .filter(|b| !b.starts_with("[[servers]]"))
        .collect()
}

/// The README's TOML fragments: the `[[servers]]` list of a party's job file.
fn fragments() -> Vec<String> {
    all_toml_blocks()
        .into_iter()
        .filter(|b| b.starts_with("[[servers]]"))
        .collect()
}

fn all_toml_blocks() -> Vec<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in readme.lines() {
        match (&mut current, line.trim_start()) {
            (None, l) if l.starts_with("```toml") => current = Some(String::new()),
            (Some(b), l) if l.starts_with("```") => {
                blocks.push(std::mem::take(b));
                current = None;
            }
            (Some(b), _) => {
                b.push_str(line);
                b.push('\n');
            }
            _ => {}
        }
    }
    blocks
}

#[test]
fn readme_examples_parse() {
    let blocks = toml_blocks();
    assert_eq!(
        blocks.len(),
        4,
        "the README has a server, a party, a dealer-free and an accountability example"
    );
    #[derive(serde::Deserialize)]
    struct Params {
        params: ppea::model::align::JobParams,
    }
    let acc: Params = toml::from_str(&blocks[3]).expect("accountability example parses");
    assert!(acc.params.explain && acc.params.audit.enabled);
    assert_eq!(
        acc.params.audit,
        ppea::model::audit::AuditParams {
            enabled: true,
            ..Default::default()
        },
        "the README states the audit's defaults"
    );
    acc.params.validate().unwrap();
    let server: ServerConfig = toml::from_str(&blocks[0]).expect("server example parses");
    assert_eq!(
        (server.name.as_str(), server.role),
        ("server-0", Role::Compute)
    );
    assert!(server.listen_addr().is_ok());
    assert_eq!(
        server.limits,
        ppea::net::config::Limits::default(),
        "the README states the default limits"
    );
    let job: PartyJob = toml::from_str(&blocks[1]).expect("party example parses");
    assert_eq!(job.side_index().unwrap(), 0);
    assert_eq!(job.servers.len(), 2);
    assert_eq!(job.params.blocking.candidates, 64);
    // The example's key is a placeholder; a real one is 64 hex digits.
    assert!(job.key().is_err());
    let real = PartyJob {
        blocking_key: "ab".repeat(32),
        ..job
    };
    assert!(real.key().is_ok());
    // The key used is bound to the job id: the same agreed key gives other tokens in another job.
    let other_job = PartyJob {
        job: format!("{}-next", real.job),
        ..real.clone()
    };
    assert_ne!(real.key().unwrap(), other_job.key().unwrap());
    assert_eq!(
        real.key().unwrap(),
        ppea::model::blocking::BlockingKey([0xab; 32]).for_job(&real.job)
    );
    assert!(real.spec().validate().is_ok());
    // The dealer-free example: the party example with its [params] line and without its
    // [dealer] table is a valid job; with the table it is refused.
    let free: Params = toml::from_str(&blocks[2]).expect("dealer-free example parses");
    assert_eq!(free.params.correlation, ppea::mpc::source::Correlation::Ot);
    let mut ot = real.clone();
    ot.params.correlation = free.params.correlation;
    assert!(
        ot.spec().validate().is_err(),
        "a dealer beside correlation = \"ot\""
    );
    ot.dealer = None;
    ot.spec().validate().unwrap();
    let t = real.timing().unwrap();
    assert_eq!(t.liveness, ppea::net::liveness::Liveness::default());
    assert!(!real.evaluation);
}

/// Every problem in a job file is reported with the file's path, the bad blocking key too.
#[test]
fn job_file_errors_name_the_file() {
    let dir = std::env::temp_dir().join(format!("ppea-test-jobfile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let example = &toml_blocks()[1];
    let cases = [
        ("bad-key.toml", example.clone(), "blocking_key"),
        // 64 bytes of which the multi-byte characters do not split at every second byte (a
        // panic before the key was checked byte by byte), and 64 bytes with signs.
        (
            "euro-key.toml",
            example.replace("3f1c...64 hex digits...", &format!("{}0", "€".repeat(21))),
            "blocking_key",
        ),
        (
            "sign-key.toml",
            example.replace("3f1c...64 hex digits...", &"+0".repeat(32)),
            "blocking_key",
        ),
        (
            "bad-side.toml",
            example
                .replace("side = \"a\"", "side = \"c\"")
                .replace("3f1c...64 hex digits...", &"ab".repeat(32)),
            "side",
        ),
        (
            "bad-idle.toml",
            example
                .replace("idle_timeout_secs = 10", "idle_timeout_secs = 2")
                .replace("3f1c...64 hex digits...", &"ab".repeat(32)),
            "idle_timeout_secs",
        ),
    ];
    for (name, text, what) in cases {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        let e = PartyJob::load(&path).unwrap_err().to_string();
        assert!(
            e.starts_with(&path.display().to_string()) && e.contains(what),
            "{e}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `party certs` (write_dev_pki) leaves private keys readable by their owner only.
#[cfg(unix)]
#[test]
fn development_keys_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("ppea-test-keys-{}", std::process::id()));
    ppea::net::tls::write_dev_pki(&dir, &["server-0".to_string()]).unwrap();
    let mode = |f: &str| std::fs::metadata(dir.join(f)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("server-0.key"), 0o600);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn debug_output_hides_the_blocking_key() {
    let job: PartyJob = toml::from_str(&toml_blocks()[1]).unwrap();
    let shown = format!("{job:?}");
    assert!(
        shown.contains("<redacted>") && !shown.contains(&job.blocking_key),
        "{shown}"
    );
}

/// The README's job-file fragment for servers of several worker processes parses as a party
/// job's server list that a job may use (every server the same number of workers).
#[test]
fn readme_workers_fragment_parses() {
    let f = fragments();
    assert_eq!(f.len(), 1, "one [[servers]] fragment (workers)");
    #[derive(serde::Deserialize)]
    struct Servers {
        servers: Vec<ppea::net::job::Node>,
    }
    let s: Servers = toml::from_str(&f[0]).expect("the workers fragment parses");
    assert_eq!(s.servers.len(), 2);
    assert!(s.servers.iter().all(|n| n.worker_count() == 2));
    let job: PartyJob = toml::from_str(&toml_blocks()[1]).unwrap();
    let real = PartyJob {
        blocking_key: "ab".repeat(32),
        servers: s.servers,
        ..job
    };
    real.spec().validate().unwrap();
}
