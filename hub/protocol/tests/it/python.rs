//! Running CPython as an oracle. A missing `python3` skips with a clear message.

use std::io::Write as _;
use std::process::{Command, Stdio};

/// Runs `python3 -c script` with `stdin`, returning stdout, or `None` (after printing
/// `SKIPPED: python3 not found`) when there is no python3.
pub fn run(test: &str, script: &str, stdin: &[u8]) -> Option<String> {
    let child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!("SKIPPED: python3 not found ({test})");
            return None;
        }
        Err(e) => panic!("cannot start python3: {e}"),
    };
    // Write from a thread so a large stdin cannot deadlock against a full stdout pipe.
    let mut pipe = child.stdin.take().expect("stdin is piped");
    let input = stdin.to_vec();
    let writer = std::thread::spawn(move || pipe.write_all(&input));
    let out = child.wait_with_output().expect("python3 runs");
    writer.join().expect("writer thread").expect("stdin write");
    assert!(
        out.status.success(),
        "python3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8(out.stdout).expect("python3 printed UTF-8"))
}
