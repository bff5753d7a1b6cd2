//! The configuration examples in the README parse with the types the binaries use, so the
//! documentation cannot drift from the code.

use ppea::net::config::{Role, ServerConfig};
use ppea::net::party::PartyJob;

fn toml_blocks() -> Vec<String> {
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
        2,
        "the README has a server and a party example"
    );
    let server: ServerConfig = toml::from_str(&blocks[0]).expect("server example parses");
    assert_eq!(
        (server.name.as_str(), server.role),
        ("server-0", Role::Compute)
    );
    assert!(server.listen_addr().is_ok());
    assert_eq!(server.limits.max_jobs, 8);
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
    assert!(real.spec().validate().is_ok());
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
