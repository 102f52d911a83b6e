//! `aimarket-hub keygen`.

use aimarket_protocol::signing::KeyPair;

use crate::support::{run, stderr, stdout};

#[test]
fn keygen_writes_a_private_seed_and_prints_its_public_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("nested/key");
    let out_str = out.to_str().unwrap();

    let first = run(&["keygen", "--out", out_str]);
    assert!(first.status.success(), "{}", stderr(&first));
    let printed = stdout(&first).trim().to_owned();
    let key = KeyPair::load(&out).unwrap();
    assert_eq!(printed, key.public_key().to_b64());
    assert_eq!(std::fs::read(&out).unwrap().len(), 32);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    // A second run refuses to overwrite and leaves the key alone.
    let again = run(&["keygen", "--out", out_str]);
    assert!(!again.status.success());
    assert!(stderr(&again).contains("--force"), "{}", stderr(&again));
    assert_eq!(KeyPair::load(&out).unwrap().public_key().to_b64(), printed);

    // --force replaces it.
    let forced = run(&["keygen", "--out", out_str, "--force"]);
    assert!(forced.status.success(), "{}", stderr(&forced));
    let replaced = stdout(&forced).trim().to_owned();
    assert_ne!(replaced, printed);
    assert_eq!(KeyPair::load(&out).unwrap().public_key().to_b64(), replaced);
}
